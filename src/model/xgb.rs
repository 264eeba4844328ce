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

mod dense;
mod load;
mod predict;
mod schema;

pub use schema::{parse_base_score, MAX_CLASSES, MAX_FEATURES};

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
    /// The document parsed, but does not have the saved-model schema.
    #[error("{file} is not a valid xgboost JSON model: {source}")]
    Schema {
        file: String,
        #[source]
        source: serde_json::Error,
    },
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
impl Booster {
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
}

#[cfg(test)]
mod tests;
