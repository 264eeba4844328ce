use super::limits::effective_max_connections;
use super::stall::WriteStall;
use super::*;

fn model() -> Booster {
    let v = serde_json::json!({"learner": {
        "learner_model_param": {"base_score": "[1E0]", "num_class": "0", "num_feature": "2"},
        "objective": {"name": "reg:squarederror"},
        "gradient_booster": {"name": "gbtree", "model": {"tree_info": [0], "trees": [
            {"left_children": [1, -1, -1], "right_children": [2, -1, -1],
             "split_indices": [1, 0, 0], "split_conditions": [0.5, 10.0, 20.0],
             "default_left": [0, 0, 0]}]}}}});
    Booster::from_bytes(v.to_string().as_bytes(), "m.json").unwrap()
}

#[test]
fn invoke_scores_refuses_and_maps_statuses() {
    let m = model();
    assert_eq!(
        invoke(&m, Some("text/csv; charset=utf-8"), b"0,0\n0,1\n0,\n").unwrap(),
        Invocation::Predictions {
            body: b"11\n21\n21\n".to_vec(),
            rows: 3
        }
    );
    assert_eq!(invoke(&m, None, b"\n \n").unwrap(), Invocation::Empty);
    let e = invoke(&m, Some("application/json"), b"[1,2]").unwrap_err();
    assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let e = invoke(&m, Some("text/csv"), b"1,2,3\n").unwrap_err();
    assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(e.to_string().contains("line 1 has 3 fields, expected 2"));
    let e = InvocationError::TooLarge { size: 2, limit: 1 };
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let (a, _b) = tokio::io::duplex(1024);
    let mut w = WriteStall::new(a, Duration::from_millis(200));
    let t = std::time::Instant::now();
    let big = vec![0u8; 64 * 1024];
    let e = w.write_all(&big).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(e
        .to_string()
        .contains("read nothing of the response for 0.2 s"));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A reader that keeps up is never cut, however long it takes overall.
    let (a, mut b) = tokio::io::duplex(1024);
    let mut w = WriteStall::new(a, Duration::from_millis(200));
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut n = 0;
        let mut buf = [0u8; 512];
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match b.read(&mut buf).await {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k,
            }
        }
    });
    w.write_all(&vec![1u8; 16 * 1024]).await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    assert_eq!(reader.await.unwrap(), 16 * 1024);
}

#[test]
fn server_limits_are_range_checked() {
    assert_eq!(parse_seconds(" 0.5 "), Ok(Duration::from_millis(500)));
    for bad in ["0", "-1", "nan", "inf", "1e300", "3601", "x", ""] {
        assert!(parse_seconds(bad).is_err(), "{bad}");
    }
    let ok = ServeConfig::default().limits();
    assert_eq!(ok.check(MAX_MODEL_BODY_BYTES), Ok(()));
    let e = ServerLimits {
        max_connections: 0,
        ..ok
    }
    .check(MAX_MODEL_BODY_BYTES)
    .unwrap_err();
    assert_eq!(e, "max connections 0: 1 to 65536");
    let e = ServerLimits {
        max_body_bytes: MAX_MODEL_BODY_BYTES + 1,
        ..ok
    }
    .check(MAX_MODEL_BODY_BYTES)
    .unwrap_err();
    assert!(
        e.starts_with("max body bytes 104923137: 1 to 104923136"),
        "{e}"
    );
    assert_eq!(effective_max_connections(1), 1);
}

#[test]
fn execution_parameters_serialize_like_the_contract() {
    let p = ExecutionParameters {
        max_concurrent_transforms: 4,
        batch_strategy: ContractBatchStrategy::MultiRecord,
        max_payload_in_mb: 6,
    };
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"MaxConcurrentTransforms":4,"BatchStrategy":"MULTI_RECORD","MaxPayloadInMB":6}"#
    );
}
