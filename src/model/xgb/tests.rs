use super::predict::{argmax, sigmoid, softmax};
use super::*;
use serde_json::json;
use serde_json::Value;
use std::path::Path;

/// A depth-2 binary model: f0 < 0.5 (missing → left) then f1 < 1.0 (missing → right).
fn tiny(base_score: Value, objective: &str) -> Value {
    json!({"learner": {
        "learner_model_param": {"base_score": base_score, "num_class": "0", "num_feature": "2", "num_target": "1"},
        "objective": {"name": objective},
        "gradient_booster": {"name": "gbtree", "model": {
            "tree_info": [0, 0],
            "trees": [
                {"left_children": [1, -1, 3, -1, -1], "right_children": [2, -1, 4, -1, -1],
                 "split_indices": [0, 0, 1, 0, 0], "split_conditions": [0.5, -1.0, 1.0, 0.25, 2.0],
                 "default_left": [1, 0, 0, 0, 0], "split_type": [0, 0, 0, 0, 0],
                 "tree_param": {"num_nodes": "5", "size_leaf_vector": "1"}},
                {"left_children": [-1], "right_children": [-1], "split_indices": [0],
                 "split_conditions": [0.125], "default_left": [false], "split_type": [0]}
            ]}}
    }})
}

fn load(v: &Value) -> Result<Booster, XgbError> {
    Booster::from_bytes(v.to_string().as_bytes(), "tiny.json")
}

#[test]
fn walks_splits_missing_values_and_both_base_score_forms() {
    for bs in [json!("5E-1"), json!("[5E-1]")] {
        let b = load(&tiny(bs, "reg:squarederror")).unwrap();
        assert_eq!(b.num_feature(), 2);
        let m = DenseMatrix {
            data: vec![
                0.4,
                9.0, // left leaf -1.0
                0.5,
                0.5, // 0.5 is not < 0.5: right, then f1 < 1.0: leaf 0.25
                f32::NAN,
                0.0, // missing f0: default left
                2.0,
                f32::NAN, // missing f1: default right, leaf 2.0
            ],
            rows: 4,
            cols: 2,
        };
        let p = b.predict(&m).unwrap();
        assert_eq!(
            p,
            vec![0.5 - 1.0 + 0.125, 0.5 + 0.25 + 0.125, -0.375, 2.625]
        );
    }
}

#[test]
fn logistic_starts_from_logit_of_base_score() {
    let b = load(&tiny(json!("[2.5E-1]"), "binary:logistic")).unwrap();
    let m = DenseMatrix {
        data: vec![0.0, 0.0],
        rows: 1,
        cols: 2,
    };
    let margin = b.predict_margin(&m.data, 1).unwrap()[0];
    let expected = (0.25f32 / 0.75).ln() - 1.0 + 0.125;
    assert!((margin - expected).abs() < 1e-6, "{margin} vs {expected}");
    let p = b.predict(&m).unwrap()[0];
    assert!((p - 1.0 / (1.0 + (-expected).exp())).abs() < 1e-6);
    assert!(matches!(
        load(&tiny(json!("1.5"), "binary:logistic")),
        Err(XgbError::Invalid { .. })
    ));
}

#[test]
fn rejects_legacy_binary_with_conversion_hint() {
    let e = Booster::from_bytes(b"binf\0\0\0\0rest", "xgboost-model").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("xgboost-model") && msg.contains("save_model(\"model.json\")"));
}

#[test]
fn rejects_bad_trees_with_their_location() {
    let mut v = tiny(json!("5E-1"), "reg:squarederror");
    v["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][2] = json!(7);
    let msg = load(&v).unwrap_err().to_string();
    assert!(
        msg.contains("trees[0].split_indices") && msg.contains("feature 7"),
        "{msg}"
    );
    let mut v = tiny(json!("5E-1"), "reg:squarederror");
    v["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][2] = json!(0);
    assert!(load(&v)
        .unwrap_err()
        .to_string()
        .contains("outside the tree"));
    let mut v = tiny(json!("5E-1"), "reg:squarederror");
    v["learner"]["gradient_booster"]["model"]["trees"][0]["right_children"][2] = json!(3);
    assert!(load(&v).unwrap_err().to_string().contains("reached twice"));
    let v = tiny(json!("5E-1"), "rank:ndcg");
    assert!(load(&v).unwrap_err().to_string().contains("rank:ndcg"));
    assert!(Booster::from_bytes(b"hello", "x").is_err());
    let e = Booster::from_bytes(b"\x80\x04\x95", "x").unwrap_err();
    assert!(e.to_string().contains("pickle"));
}

#[test]
fn complete_and_pointer_layouts_agree_bit_for_bit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgb");
    for name in [
        "binary_deep_nan.ubj",
        "multi_softprob_nan.json",
        "binary_lossguide_nan.json",
    ] {
        let b = Booster::load(&dir.join(name)).unwrap();
        let stem = name.split('.').next().unwrap();
        let csv = std::fs::read(dir.join(format!("{stem}.csv"))).unwrap();
        let m = crate::model::parse_csv(&csv, Some(b.num_feature())).unwrap();
        let mut sparse = b.clone();
        sparse.trees.iter_mut().for_each(|t| t.dense = None);
        let (a, c) = (b.predict(&m).unwrap(), sparse.predict(&m).unwrap());
        assert!(
            a.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}"
        );
    }
    // Depth-8 trees use the complete layout; the lossguide trees (depth 12-17) do not.
    let b = Booster::load(&dir.join("binary_deep_nan.ubj")).unwrap();
    assert!(b.trees.iter().all(|t| t.dense.is_some()));
    let b = Booster::load(&dir.join("binary_lossguide_nan.json")).unwrap();
    assert!(b.trees.iter().all(|t| t.dense.is_none()));
}

#[test]
fn softmax_and_argmax_match_definitions() {
    let mut v = [1.0f32, 2.0, 3.0];
    softmax(&mut v);
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).collect();
    let s: f64 = e.iter().sum();
    for (a, b) in v.iter().zip(&e) {
        assert!((*a as f64 - b / s).abs() < 1e-7);
    }
    assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), 1.0);
    assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    assert_eq!(sigmoid(-1000.0), 1.0 / (88.7f32.exp() + 1.0));
}
