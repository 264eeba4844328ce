//! The saved-model schema c360 reads (only the fields it uses) and the number forms xgboost
//! writes: counts and scores stored as numbers or as strings (`"5E-1"`, `"[3.2848E-1]"`).

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub(super) struct JModel {
    pub(super) learner: JLearner,
}

#[derive(Deserialize)]
pub(super) struct JLearner {
    pub(super) gradient_booster: JBooster,
    pub(super) learner_model_param: JLearnerParam,
    pub(super) objective: JObjective,
}

#[derive(Deserialize)]
pub(super) struct JLearnerParam {
    pub(super) base_score: Value,
    #[serde(default)]
    pub(super) num_class: Option<Value>,
    pub(super) num_feature: Value,
    #[serde(default)]
    pub(super) num_target: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct JObjective {
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct JBooster {
    pub(super) name: String,
    #[serde(default)]
    pub(super) model: Option<JGbtree>,
    /// `dart` wraps a gbtree and weighs each tree.
    #[serde(default)]
    pub(super) gbtree: Option<Box<JBooster>>,
    #[serde(default)]
    pub(super) weight_drop: Option<Vec<f64>>,
}

#[derive(Deserialize)]
pub(super) struct JGbtree {
    pub(super) trees: Vec<JTree>,
    pub(super) tree_info: Vec<i64>,
}

#[derive(Deserialize)]
pub(super) struct JTree {
    pub(super) left_children: Vec<i64>,
    pub(super) right_children: Vec<i64>,
    pub(super) split_indices: Vec<i64>,
    pub(super) split_conditions: Vec<f64>,
    pub(super) default_left: Vec<Value>,
    #[serde(default)]
    pub(super) split_type: Vec<i64>,
    #[serde(default)]
    pub(super) tree_param: Option<JTreeParam>,
}

#[derive(Deserialize)]
pub(super) struct JTreeParam {
    #[serde(default)]
    pub(super) size_leaf_vector: Option<Value>,
}

/// The most features a model may read (xgboost stores feature indexes in 31 bits; c360's
/// CSV rows are built from feature sets far smaller than this).
pub const MAX_FEATURES: usize = 1 << 20;
/// The most classes of a multi-class model.
pub const MAX_CLASSES: usize = 10_000;

/// A count stored as a number or a string (`"3"`, `3`, `"3E0"`), checked against `max`
/// before it sizes anything.
pub(super) fn count_of(v: &Value, max: usize) -> Result<usize, String> {
    let f = num_of(v).ok_or_else(|| format!("not a count: {v}"))?;
    if !(f >= 0.0 && f.fract() == 0.0) {
        return Err(format!("not a count: {v}"));
    }
    if f > max as f64 {
        return Err(format!("{v} is out of range (at most {max})"));
    }
    Ok(f as usize)
}

/// Reads a number xgboost may store as a string ("5E-1") or as a number.
pub(super) fn num_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// Parses `base_score`: `"5E-1"` (xgboost 1.x/2.x) or `"[3.2848E-1]"` / `"[a,b,c]"` (3.x,
/// one value per output group). Each value is parsed straight to f32, as xgboost does.
pub fn parse_base_score(v: &Value) -> Option<Vec<f32>> {
    match v {
        Value::Number(n) => n.as_f64().map(|f| vec![f as f32]),
        Value::Array(a) => a.iter().map(|x| num_of(x).map(|f| f as f32)).collect(),
        Value::String(s) => {
            let s = s.trim();
            let inner = match s.strip_prefix('[') {
                Some(rest) => rest.strip_suffix(']')?,
                None => s,
            };
            inner
                .split(',')
                .map(|p| p.trim().parse::<f32>().ok())
                .collect()
        }
        _ => None,
    }
}
