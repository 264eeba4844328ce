//! A native evaluator for XGBoost tree models saved by `Booster.save_model` (JSON or UBJSON).
//!
//! Parity with xgboost's own `predict` is the contract (1e-6 absolute at any output scale), so
//! the arithmetic follows xgboost's order in `f32`: the margin starts at the base score (in
//! margin space: `logit(base_score)` for logistic objectives, computed in f32), each tree adds
//! its leaf in tree order, a node sends a row left when `x < split_condition` (f32) and a
//! missing value (NaN) where `default_left` says; the objective's transform comes last.
//!
//! Speed: the trees are flattened into one array of 16-byte nodes (leaves point at
//! themselves, so every row of a block walks exactly `depth` steps without branches), rows are
//! scored in blocks of [`BLOCK_ROWS`] per tree pass so the block's features stay in L1, and
//! chunks of blocks run in parallel on rayon.

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::ubjson;

/// Rows scored together per tree pass.
pub const BLOCK_ROWS: usize = 64;
/// Rows per parallel task (a multiple of [`BLOCK_ROWS`]).
const CHUNK_ROWS: usize = BLOCK_ROWS * 32;

/// Why a model file could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum XgbError {
    #[error("cannot read model file {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} is in xgboost's legacy binary format (it starts with \"binf\"; SageMaker's \
         built-in XGBoost 1.7 writes it as `xgboost-model`), which c360 does not read. Convert it \
         once with xgboost < 3.1: `import xgboost as xgb; b = xgb.Booster(); \
         b.load_model(\"xgboost-model\"); b.save_model(\"model.json\")`, then point c360 at \
         model.json (or save as model.ubj for UBJSON)"
    )]
    LegacyBinary { file: String },
    #[error("{file} is not a valid xgboost JSON model: {reason}")]
    Json { file: String, reason: String },
    #[error("{file} is not a valid xgboost UBJSON model: {source}")]
    Ubjson {
        file: String,
        #[source]
        source: ubjson::UbjsonError,
    },
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
    #[error("{file}: {what} is not supported by c360's evaluator{hint}")]
    Unsupported {
        file: String,
        what: String,
        hint: String,
    },
}

/// The objective, which decides the base-score conversion and the output transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// `binary:logistic`: the probability of the positive class.
    BinaryLogistic,
    /// `binary:logitraw`: the raw margin.
    BinaryLogitRaw,
    /// `reg:logistic`: the sigmoid of the margin.
    RegLogistic,
    /// `reg:squarederror` (and `reg:linear`, its old name).
    RegSquaredError,
    /// `reg:absoluteerror`.
    RegAbsoluteError,
    /// `count:poisson`: `exp(margin)`.
    CountPoisson,
    /// `multi:softprob`: one probability per class.
    MultiSoftprob,
    /// `multi:softmax`: the index of the most probable class.
    MultiSoftmax,
}

impl Objective {
    /// Every objective name c360 can evaluate.
    pub const NAMES: &'static [&'static str] = &[
        "binary:logistic",
        "binary:logitraw",
        "reg:logistic",
        "reg:squarederror",
        "reg:linear",
        "reg:absoluteerror",
        "count:poisson",
        "multi:softprob",
        "multi:softmax",
    ];

    pub fn parse(name: &str) -> Option<Objective> {
        Some(match name {
            "binary:logistic" => Objective::BinaryLogistic,
            "binary:logitraw" => Objective::BinaryLogitRaw,
            "reg:logistic" => Objective::RegLogistic,
            "reg:squarederror" | "reg:linear" => Objective::RegSquaredError,
            "reg:absoluteerror" => Objective::RegAbsoluteError,
            "count:poisson" => Objective::CountPoisson,
            "multi:softprob" => Objective::MultiSoftprob,
            "multi:softmax" => Objective::MultiSoftmax,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::BinaryLogistic => "binary:logistic",
            Objective::BinaryLogitRaw => "binary:logitraw",
            Objective::RegLogistic => "reg:logistic",
            Objective::RegSquaredError => "reg:squarederror",
            Objective::RegAbsoluteError => "reg:absoluteerror",
            Objective::CountPoisson => "count:poisson",
            Objective::MultiSoftprob => "multi:softprob",
            Objective::MultiSoftmax => "multi:softmax",
        }
    }

    /// The base score (as stored) converted to margin space, in f32 like xgboost.
    fn base_to_margin(self, p: f32) -> f32 {
        match self {
            Objective::BinaryLogistic | Objective::RegLogistic => -(1.0f32 / p - 1.0f32).ln(),
            Objective::CountPoisson => p.ln(),
            _ => p,
        }
    }
}

/// The file format a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Json,
    Ubjson,
}

/// A dense row-major matrix of features; NaN is a missing value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DenseMatrix {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl DenseMatrix {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// One flattened node. Leaves have `left == right == self`, so extra steps stay put.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    cond: f32,
    /// Feature index; the top bit is `default_left`.
    feat: u32,
    left: u32,
    right: u32,
}

const DEFAULT_LEFT: u32 = 1 << 31;
const FEATURE_MASK: u32 = !DEFAULT_LEFT;

#[derive(Debug, Clone, Copy)]
struct TreeMeta {
    root: u32,
    depth: u32,
    group: u32,
    /// Offsets into the dense arrays when the tree is stored complete (see [`DNode`]).
    dense: Option<(u32, u32)>,
}

/// A node of a tree stored complete, level by level: the children of position `i` are
/// `2i+1` and `2i+2`, so a step needs no child pointers. A leaf above the bottom level is
/// copied into both subtrees (its own split is a dummy), which keeps every path `depth` long.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct DNode {
    cond: f32,
    /// Feature index; the top bit is `default_left`.
    feat: u32,
}

/// Trees at most this deep are stored complete (2^depth leaves); deeper ones (lossguide)
/// keep the pointer layout.
const MAX_DENSE_DEPTH: u32 = 10;

/// A loaded tree ensemble, ready to score.
#[derive(Debug, Clone)]
pub struct Booster {
    objective: Objective,
    format: ModelFormat,
    num_feature: usize,
    num_group: usize,
    base_margin: Vec<f32>,
    nodes: Vec<Node>,
    leaf: Vec<f32>,
    dense: Vec<DNode>,
    dense_leaf: Vec<f32>,
    trees: Vec<TreeMeta>,
}

// ---- the saved-model schema (only the fields c360 reads) ----

#[derive(Deserialize)]
struct JModel {
    learner: JLearner,
}

#[derive(Deserialize)]
struct JLearner {
    gradient_booster: JBooster,
    learner_model_param: JLearnerParam,
    objective: JObjective,
}

#[derive(Deserialize)]
struct JLearnerParam {
    base_score: Value,
    #[serde(default)]
    num_class: Option<Value>,
    num_feature: Value,
    #[serde(default)]
    num_target: Option<Value>,
}

#[derive(Deserialize)]
struct JObjective {
    name: String,
}

#[derive(Deserialize)]
struct JBooster {
    name: String,
    #[serde(default)]
    model: Option<JGbtree>,
    /// `dart` wraps a gbtree and weighs each tree.
    #[serde(default)]
    gbtree: Option<Box<JBooster>>,
    #[serde(default)]
    weight_drop: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct JGbtree {
    trees: Vec<JTree>,
    tree_info: Vec<i64>,
}

#[derive(Deserialize)]
struct JTree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<Value>,
    #[serde(default)]
    split_type: Vec<i64>,
    #[serde(default)]
    tree_param: Option<JTreeParam>,
}

#[derive(Deserialize)]
struct JTreeParam {
    #[serde(default)]
    size_leaf_vector: Option<Value>,
}

/// The most features a model may read (xgboost stores feature indexes in 31 bits; c360's
/// CSV rows are built from feature sets far smaller than this).
pub const MAX_FEATURES: usize = 1 << 20;
/// The most classes of a multi-class model.
pub const MAX_CLASSES: usize = 10_000;

/// A count stored as a number or a string (`"3"`, `3`, `"3E0"`), checked against `max`
/// before it sizes anything.
fn count_of(v: &Value, max: usize) -> Result<usize, String> {
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
fn num_of(v: &Value) -> Option<f64> {
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

impl Booster {
    /// Loads a model file, telling JSON from UBJSON by content (not by name).
    pub fn load(path: &Path) -> Result<Booster, XgbError> {
        let file = path.display().to_string();
        let bytes = crate::project::read_bounded(path, crate::project::MAX_MODEL_BYTES).map_err(
            |source| XgbError::Io {
                file: file.clone(),
                source,
            },
        )?;
        Booster::from_bytes(&bytes, &file)
    }

    /// Loads a model from memory; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Booster, XgbError> {
        if bytes.starts_with(b"binf") {
            return Err(XgbError::LegacyBinary {
                file: file.to_string(),
            });
        }
        let first = bytes
            .iter()
            .copied()
            .find(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let is_ubjson = first == b'{' && bytes.get(1).is_some_and(|&b| b"iUIlL}$#N".contains(&b));
        let (model, format) = if is_ubjson {
            let v = ubjson::parse(bytes).map_err(|source| XgbError::Ubjson {
                file: file.to_string(),
                source,
            })?;
            let m: JModel = serde_json::from_value(v).map_err(|e| XgbError::Json {
                file: file.to_string(),
                reason: e.to_string(),
            })?;
            (m, ModelFormat::Ubjson)
        } else if first == b'{' {
            let m: JModel = serde_json::from_slice(bytes).map_err(|e| XgbError::Json {
                file: file.to_string(),
                reason: e.to_string(),
            })?;
            (m, ModelFormat::Json)
        } else if first == 0x80 {
            // Old SageMaker XGBoost containers (0.90) pickled the Booster.
            return Err(XgbError::Json {
                file: file.to_string(),
                reason: "this is a Python pickle, not a saved model; in Python: \
                         `b = pickle.load(open(path, \"rb\")); b.save_model(\"model.json\")`"
                    .into(),
            });
        } else {
            return Err(XgbError::Json {
                file: file.to_string(),
                reason: "not a JSON or UBJSON document (expected it to start with '{'); is this \
                         really an xgboost model saved with Booster.save_model?"
                    .into(),
            });
        };
        Booster::build(model, format, file)
    }

    fn build(m: JModel, format: ModelFormat, file: &str) -> Result<Booster, XgbError> {
        let invalid = |key: &str, reason: String| XgbError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            reason,
        };
        let unsupported = |what: String, hint: &str| XgbError::Unsupported {
            file: file.to_string(),
            what,
            hint: hint.to_string(),
        };
        let l = m.learner;
        let objective = Objective::parse(&l.objective.name).ok_or_else(|| {
            unsupported(
                format!("objective {:?}", l.objective.name),
                &format!(" (supported: {})", Objective::NAMES.join(", ")),
            )
        })?;
        let p = &l.learner_model_param;
        let num_feature = count_of(&p.num_feature, MAX_FEATURES)
            .map_err(|reason| invalid("learner.learner_model_param.num_feature", reason))?;
        if num_feature == 0 {
            return Err(invalid(
                "learner.learner_model_param.num_feature",
                "0: a model reads at least one feature".into(),
            ));
        }
        let num_class = match &p.num_class {
            Some(v) => count_of(v, MAX_CLASSES)
                .map_err(|reason| invalid("learner.learner_model_param.num_class", reason))?,
            None => 0,
        };
        if let Some(t) = p.num_target.as_ref().and_then(num_of) {
            if t > 1.0 {
                return Err(unsupported(
                    format!("a multi-target model (num_target = {t})"),
                    "",
                ));
            }
        }
        let multi = matches!(
            objective,
            Objective::MultiSoftprob | Objective::MultiSoftmax
        );
        let num_group = if multi { num_class.max(1) } else { 1 };
        if multi && num_class < 2 {
            return Err(invalid(
                "learner.learner_model_param.num_class",
                format!(
                    "{} needs num_class >= 2, found {num_class}",
                    objective.name()
                ),
            ));
        }
        let base = parse_base_score(&p.base_score).ok_or_else(|| {
            invalid(
                "learner.learner_model_param.base_score",
                format!(
                    "expected a number like \"5E-1\" or a list like \"[3.2848E-1]\", found {}",
                    p.base_score
                ),
            )
        })?;
        let base: Vec<f32> = match base.len() {
            1 => vec![base[0]; num_group],
            n if n == num_group => base,
            n => {
                return Err(invalid(
                    "learner.learner_model_param.base_score",
                    format!("{n} values for {num_group} output groups"),
                ))
            }
        };
        if matches!(
            objective,
            Objective::BinaryLogistic | Objective::RegLogistic
        ) && base.iter().any(|b| !(*b > 0.0 && *b < 1.0))
        {
            return Err(invalid(
                "learner.learner_model_param.base_score",
                format!("a logistic objective needs 0 < base_score < 1, found {base:?}"),
            ));
        }
        if objective == Objective::CountPoisson && base.iter().any(|b| *b <= 0.0) {
            return Err(invalid(
                "learner.learner_model_param.base_score",
                format!("count:poisson needs base_score > 0, found {base:?}"),
            ));
        }
        let base_margin = base.iter().map(|&b| objective.base_to_margin(b)).collect();

        let gb = l.gradient_booster;
        // dart: the trees of an inner gbtree, each leaf scaled by its tree's weight (xgboost
        // multiplies weight and leaf in f32 when it predicts; scaling once here gives the
        // same bits).
        let (gb, weights) = match gb.name.as_str() {
            "gbtree" => (gb, None),
            "dart" => {
                let w = gb.weight_drop.ok_or_else(|| {
                    invalid(
                        "learner.gradient_booster.weight_drop",
                        "missing in a dart model".into(),
                    )
                })?;
                let inner = gb.gbtree.ok_or_else(|| {
                    invalid(
                        "learner.gradient_booster.gbtree",
                        "missing in a dart model".into(),
                    )
                })?;
                (*inner, Some(w))
            }
            other => {
                return Err(unsupported(
                    format!("booster {other:?}"),
                    " (only gbtree and dart; gblinear models have no trees)",
                ))
            }
        };
        let model = gb.model.ok_or_else(|| {
            invalid(
                "learner.gradient_booster.model",
                "missing (no trees in the file)".into(),
            )
        })?;
        if model.tree_info.len() != model.trees.len() {
            return Err(invalid(
                "learner.gradient_booster.model.tree_info",
                format!(
                    "{} entries for {} trees",
                    model.tree_info.len(),
                    model.trees.len()
                ),
            ));
        }

        if let Some(w) = &weights {
            if w.len() != model.trees.len() {
                return Err(invalid(
                    "learner.gradient_booster.weight_drop",
                    format!("{} weights for {} trees", w.len(), model.trees.len()),
                ));
            }
        }
        let total: usize = model.trees.iter().map(|t| t.left_children.len()).sum();
        if total >= FEATURE_MASK as usize {
            return Err(invalid(
                "learner.gradient_booster.model.trees",
                "too many nodes".into(),
            ));
        }
        let mut nodes = Vec::with_capacity(total);
        let mut leaf = Vec::with_capacity(total);
        let mut trees = Vec::with_capacity(model.trees.len());
        for (ti, (t, &group)) in model.trees.iter().zip(&model.tree_info).enumerate() {
            let key = |field: &str| format!("learner.gradient_booster.model.trees[{ti}].{field}");
            if let Some(v) = t
                .tree_param
                .as_ref()
                .and_then(|p| p.size_leaf_vector.as_ref())
                .and_then(num_of)
            {
                if v > 1.0 {
                    return Err(unsupported(
                        format!("tree {ti} with vector leaves (size_leaf_vector = {v})"),
                        " (train with multi_strategy=\"one_output_per_tree\")",
                    ));
                }
            }
            if group < 0 || group as usize >= num_group {
                return Err(invalid(
                    &format!("learner.gradient_booster.model.tree_info[{ti}]"),
                    format!("group {group} outside 0..{num_group}"),
                ));
            }
            let n = t.left_children.len();
            if n == 0 {
                return Err(invalid(&key("left_children"), "empty tree".into()));
            }
            for (name, len) in [
                ("right_children", t.right_children.len()),
                ("split_indices", t.split_indices.len()),
                ("split_conditions", t.split_conditions.len()),
                ("default_left", t.default_left.len()),
            ] {
                if len != n {
                    return Err(invalid(&key(name), format!("{len} entries for {n} nodes")));
                }
            }
            if let Some(i) = t.split_type.iter().position(|&s| s != 0) {
                return Err(unsupported(
                    format!("categorical split at tree {ti} node {i}"),
                    " (train with numerical features or one-hot encode them)",
                ));
            }
            let offset = nodes.len() as u32;
            for i in 0..n {
                let (l, r) = (t.left_children[i], t.right_children[i]);
                let value = t.split_conditions[i] as f32;
                if l == -1 {
                    let value = match &weights {
                        Some(w) => w[ti] as f32 * value,
                        None => value,
                    };
                    let me = offset + i as u32;
                    nodes.push(Node {
                        cond: 0.0,
                        feat: 0,
                        left: me,
                        right: me,
                    });
                    leaf.push(value);
                    continue;
                }
                let in_range = |c: i64| c > 0 && (c as usize) < n && c as usize != i;
                if !in_range(l) || !in_range(r) {
                    return Err(invalid(
                        &key("left_children"),
                        format!("node {i} has children {l}, {r} outside the tree"),
                    ));
                }
                let f = t.split_indices[i];
                if f < 0 || f as u64 >= num_feature as u64 {
                    return Err(invalid(
                        &key("split_indices"),
                        format!("node {i} splits on feature {f}, but the model has {num_feature} features"),
                    ));
                }
                let dl = match &t.default_left[i] {
                    Value::Bool(b) => *b,
                    v => num_of(v).map(|x| x != 0.0).ok_or_else(|| {
                        invalid(&key("default_left"), format!("node {i}: {v} is not 0/1"))
                    })?,
                };
                nodes.push(Node {
                    cond: value,
                    feat: f as u32 | if dl { DEFAULT_LEFT } else { 0 },
                    left: offset + l as u32,
                    right: offset + r as u32,
                });
                leaf.push(0.0);
            }
            let depth = tree_depth(&nodes[offset as usize..], offset).ok_or_else(|| {
                invalid(
                    &key("left_children"),
                    "the nodes do not form a tree (a node is reached twice)".into(),
                )
            })?;
            trees.push(TreeMeta {
                root: offset,
                depth,
                group: group as u32,
                dense: None,
            });
        }
        let mut dense = Vec::new();
        let mut dense_leaf = Vec::new();
        for t in trees.iter_mut().filter(|t| t.depth <= MAX_DENSE_DEPTH) {
            let (n0, l0) = (dense.len(), dense_leaf.len());
            dense.resize(n0 + (1usize << t.depth) - 1, DNode::default());
            dense_leaf.resize(l0 + (1usize << t.depth), 0.0);
            fill_dense(
                &nodes,
                &leaf,
                t.root,
                0,
                0,
                t.depth,
                &mut dense[n0..],
                &mut dense_leaf[l0..],
            );
            t.dense = Some((n0 as u32, l0 as u32));
        }
        Ok(Booster {
            objective,
            format,
            num_feature,
            num_group,
            base_margin,
            nodes,
            leaf,
            dense,
            dense_leaf,
            trees,
        })
    }

    pub fn objective(&self) -> Objective {
        self.objective
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// Number of feature columns each row must have.
    pub fn num_feature(&self) -> usize {
        self.num_feature
    }

    /// Number of output groups (classes for multi-class models, else 1).
    pub fn num_group(&self) -> usize {
        self.num_group
    }

    pub fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Values per row in [`Booster::predict`]'s output: one per class for `multi:softprob`,
    /// else one.
    pub fn output_width(&self) -> usize {
        if self.objective == Objective::MultiSoftprob {
            self.num_group
        } else {
            1
        }
    }

    /// Raw margins, `rows * num_group` values row-major. `x` holds `rows * num_feature`
    /// values; a shorter or longer slice is an error of the caller and returns `None`.
    pub fn predict_margin(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        let nf = self.num_feature;
        if x.len() != rows.checked_mul(nf)? {
            return None;
        }
        let ng = self.num_group;
        let mut out = vec![0f32; rows.checked_mul(ng)?];
        if rows <= CHUNK_ROWS {
            self.score_chunk(x, &mut out);
        } else {
            out.par_chunks_mut(CHUNK_ROWS * ng)
                .zip(x.par_chunks(CHUNK_ROWS * nf.max(1)))
                .for_each(|(o, xs)| self.score_chunk(xs, o));
        }
        Some(out)
    }

    /// Predictions after the objective's transform: `rows * output_width()` values.
    pub fn predict(&self, m: &DenseMatrix) -> Option<Vec<f32>> {
        if m.cols != self.num_feature {
            return None;
        }
        let mut margin = self.predict_margin(&m.data, m.rows)?;
        let ng = self.num_group;
        match self.objective {
            Objective::BinaryLogistic | Objective::RegLogistic => {
                margin.iter_mut().for_each(|v| *v = sigmoid(*v))
            }
            Objective::CountPoisson => margin.iter_mut().for_each(|v| *v = v.exp()),
            Objective::MultiSoftprob => margin.chunks_mut(ng).for_each(softmax),
            Objective::MultiSoftmax => {
                return Some(margin.chunks(ng).map(argmax).collect());
            }
            Objective::BinaryLogitRaw
            | Objective::RegSquaredError
            | Objective::RegAbsoluteError => {}
        }
        Some(margin)
    }

    /// Scores `x` (whole rows) into `out`, block by block.
    fn score_chunk(&self, x: &[f32], out: &mut [f32]) {
        let nf = self.num_feature;
        let ng = self.num_group;
        let rows = out.len() / ng;
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(BLOCK_ROWS);
            self.score_block(
                &x[start * nf..(start + n) * nf],
                &mut out[start * ng..(start + n) * ng],
                n,
            );
            start += n;
        }
    }

    fn score_block(&self, x: &[f32], out: &mut [f32], rows: usize) {
        let nf = self.num_feature;
        let ng = self.num_group;
        for r in 0..rows {
            out[r * ng..(r + 1) * ng].copy_from_slice(&self.base_margin);
        }
        // The hot loop indexes without bounds checks; what makes that sound is checked
        // here once per block and by `build` once per model.
        assert!(x.len() >= rows * nf && out.len() >= rows * ng && rows <= BLOCK_ROWS);
        assert!(self.leaf.len() == self.nodes.len());
        let nodes = &self.nodes[..];
        let mut idx = [0u32; BLOCK_ROWS];
        let idx = &mut idx[..rows];
        for t in &self.trees {
            if let Some((n0, l0)) = t.dense {
                self.score_dense(t, n0 as usize, l0 as usize, x, out, idx);
                continue;
            }
            idx.fill(t.root);
            for _ in 0..t.depth {
                for (r, i) in idx.iter_mut().enumerate() {
                    // SAFETY: `build` makes every child index (and every leaf's self index)
                    // a valid index of `nodes`, and roots are valid; so `*i` always is.
                    let n = unsafe { *nodes.get_unchecked(*i as usize) };
                    // SAFETY: `build` checks feature < num_feature (= nf) for every split;
                    // leaves use feature 0, and a tree with depth > 0 implies nf >= 1. With
                    // r < rows and x.len() >= rows * nf (asserted above) the index is in range.
                    let v = unsafe { *x.get_unchecked(r * nf + (n.feat & FEATURE_MASK) as usize) };
                    // NaN compares false, so it goes left only through default_left.
                    let go_left = (v < n.cond) | (v.is_nan() & (n.feat & DEFAULT_LEFT != 0));
                    *i = if go_left { n.left } else { n.right };
                }
            }
            let g = t.group as usize;
            for (r, i) in idx.iter().enumerate() {
                // SAFETY: `*i` is a valid node index (above) and leaf.len() == nodes.len().
                out[r * ng + g] += unsafe { *self.leaf.get_unchecked(*i as usize) };
            }
        }
    }
}

impl Booster {
    /// One complete-layout tree over a block of rows (see [`DNode`]).
    #[inline]
    fn score_dense(
        &self,
        t: &TreeMeta,
        n0: usize,
        l0: usize,
        x: &[f32],
        out: &mut [f32],
        idx: &mut [u32],
    ) {
        let nf = self.num_feature;
        let ng = self.num_group;
        let nodes = &self.dense[n0..n0 + (1usize << t.depth) - 1];
        let leaves = &self.dense_leaf[l0..l0 + (1usize << t.depth)];
        idx.fill(0);
        for _ in 0..t.depth {
            for (r, i) in idx.iter_mut().enumerate() {
                // SAFETY: after k < depth steps, i < 2^k - 1 + 2^k <= 2^depth - 1 = nodes.len().
                let n = unsafe { *nodes.get_unchecked(*i as usize) };
                // SAFETY: as in `score_block`: feature < nf, r < rows, x.len() >= rows * nf.
                let v = unsafe { *x.get_unchecked(r * nf + (n.feat & FEATURE_MASK) as usize) };
                let go_left = (v < n.cond) | (v.is_nan() & (n.feat & DEFAULT_LEFT != 0));
                *i = 2 * *i + 2 - go_left as u32;
            }
        }
        let first_leaf = (1u32 << t.depth) - 1;
        let g = t.group as usize;
        for (r, i) in idx.iter().enumerate() {
            out[r * ng + g] += leaves[(*i - first_leaf) as usize];
        }
    }
}

/// Copies the subtree at `src` into complete layout at position `pos` (level `level`).
#[allow(clippy::too_many_arguments)]
fn fill_dense(
    nodes: &[Node],
    leaf: &[f32],
    src: u32,
    pos: usize,
    level: u32,
    depth: u32,
    dense: &mut [DNode],
    dense_leaf: &mut [f32],
) {
    let n = nodes[src as usize];
    let is_leaf = n.left == src;
    if level == depth {
        // `depth` is the longest path, so whatever reaches the bottom level is a leaf.
        dense_leaf[pos - ((1usize << depth) - 1)] = leaf[src as usize];
        return;
    }
    let (l, r) = if is_leaf {
        dense[pos] = DNode::default();
        (src, src)
    } else {
        dense[pos] = DNode {
            cond: n.cond,
            feat: n.feat,
        };
        (n.left, n.right)
    };
    fill_dense(
        nodes,
        leaf,
        l,
        2 * pos + 1,
        level + 1,
        depth,
        dense,
        dense_leaf,
    );
    fill_dense(
        nodes,
        leaf,
        r,
        2 * pos + 2,
        level + 1,
        depth,
        dense,
        dense_leaf,
    );
}

/// The depth (number of splits on the longest path) of the tree whose nodes are `nodes`
/// (global indexes start at `offset`); `None` if a node is reachable twice.
fn tree_depth(nodes: &[Node], offset: u32) -> Option<u32> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![(0usize, 0u32)];
    let mut depth = 0;
    while let Some((i, d)) = stack.pop() {
        if std::mem::replace(seen.get_mut(i)?, true) {
            return None;
        }
        let n = nodes[i];
        let me = offset + i as u32;
        if n.left == me {
            depth = depth.max(d);
        } else {
            stack.push(((n.left - offset) as usize, d + 1));
            stack.push(((n.right - offset) as usize, d + 1));
        }
    }
    Some(depth)
}

/// xgboost's `common::Sigmoid` (f32, clamped so `exp` cannot overflow).
#[inline]
fn sigmoid(x: f32) -> f32 {
    let e = (-x).min(88.7f32).exp();
    1.0f32 / (e + 1.0f32 + 1e-16f32)
}

/// xgboost's `common::Softmax`: shift by the max, `exp` in f32, sum in f64.
fn softmax(v: &mut [f32]) {
    let wmax = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for x in v.iter_mut() {
        *x = (*x - wmax).exp();
        sum += *x as f64;
    }
    let s = sum as f32;
    for x in v.iter_mut() {
        *x /= s;
    }
}

/// Index of the first maximum, as xgboost's `multi:softmax` reports it.
fn argmax(v: &[f32]) -> f32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
