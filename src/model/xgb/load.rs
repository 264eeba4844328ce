//! Loading a saved model: telling JSON from UBJSON, checking every count, index and
//! pointer the scorer relies on, and flattening the trees into the two node layouts.

use std::path::Path;

use serde_json::Value;

use super::dense::densify;
use super::schema::{count_of, num_of, parse_base_score, JBooster, JGbtree, JLearnerParam};
use super::schema::{JModel, JTree, MAX_CLASSES, MAX_FEATURES};
use super::{ubjson, Booster, ModelFormat, Node, Objective, TreeMeta, XgbError};
use super::{DEFAULT_LEFT, FEATURE_MASK};

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
            let m: JModel = serde_json::from_value(v).map_err(|source| XgbError::Schema {
                file: file.to_string(),
                source,
            })?;
            (m, ModelFormat::Ubjson)
        } else if first == b'{' {
            let m: JModel = serde_json::from_slice(bytes).map_err(|source| XgbError::Schema {
                file: file.to_string(),
                source,
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

    /// Checks the schema and flattens it into a scorer (see the module header for the layouts).
    fn build(m: JModel, format: ModelFormat, file: &str) -> Result<Booster, XgbError> {
        let at = At(file);
        let l = m.learner;
        let objective = Objective::parse(&l.objective.name).ok_or_else(|| {
            at.unsupported(
                format!("objective {:?}", l.objective.name),
                &format!(" (supported: {})", Objective::NAMES.join(", ")),
            )
        })?;
        let Header {
            num_feature,
            num_group,
            base_margin,
        } = header(&at, objective, &l.learner_model_param)?;
        let (model, weights) = trees_of(&at, l.gradient_booster)?;
        let total: usize = model.trees.iter().map(|t| t.left_children.len()).sum();
        if total >= FEATURE_MASK as usize {
            return Err(at.invalid(
                "learner.gradient_booster.model.trees",
                "too many nodes".into(),
            ));
        }
        let mut flat = Flat {
            nodes: Vec::with_capacity(total),
            leaf: Vec::with_capacity(total),
        };
        let mut trees = Vec::with_capacity(model.trees.len());
        for (ti, (t, &group)) in model.trees.iter().zip(&model.tree_info).enumerate() {
            let weight = weights.as_ref().map(|w| w[ti]);
            let shape = (num_feature, num_group);
            trees.push(flat.push_tree(&at, ti, t, group, weight, shape)?);
        }
        let Flat { nodes, leaf } = flat;
        let (dense, dense_leaf) = densify(&nodes, &leaf, &mut trees);
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
}

/// Builds the errors of one model file.
struct At<'a>(&'a str);

impl At<'_> {
    fn invalid(&self, key: &str, reason: String) -> XgbError {
        XgbError::Invalid {
            file: self.0.to_string(),
            key: key.to_string(),
            reason,
        }
    }

    fn unsupported(&self, what: String, hint: &str) -> XgbError {
        XgbError::Unsupported {
            file: self.0.to_string(),
            what,
            hint: hint.to_string(),
        }
    }
}

/// The checked `learner_model_param`.
struct Header {
    num_feature: usize,
    num_group: usize,
    /// The base score of each output group, in margin space.
    base_margin: Vec<f32>,
}

/// Checks the feature and class counts and the base score against the objective.
fn header(at: &At, objective: Objective, p: &JLearnerParam) -> Result<Header, XgbError> {
    let num_feature = count_of(&p.num_feature, MAX_FEATURES)
        .map_err(|reason| at.invalid("learner.learner_model_param.num_feature", reason))?;
    if num_feature == 0 {
        return Err(at.invalid(
            "learner.learner_model_param.num_feature",
            "0: a model reads at least one feature".into(),
        ));
    }
    let num_class = match &p.num_class {
        Some(v) => count_of(v, MAX_CLASSES)
            .map_err(|reason| at.invalid("learner.learner_model_param.num_class", reason))?,
        None => 0,
    };
    if let Some(t) = p.num_target.as_ref().and_then(num_of) {
        if t > 1.0 {
            return Err(at.unsupported(format!("a multi-target model (num_target = {t})"), ""));
        }
    }
    let multi = matches!(
        objective,
        Objective::MultiSoftprob | Objective::MultiSoftmax
    );
    let num_group = if multi { num_class.max(1) } else { 1 };
    if multi && num_class < 2 {
        return Err(at.invalid(
            "learner.learner_model_param.num_class",
            format!(
                "{} needs num_class >= 2, found {num_class}",
                objective.name()
            ),
        ));
    }
    let base = parse_base_score(&p.base_score).ok_or_else(|| {
        at.invalid(
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
            return Err(at.invalid(
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
        return Err(at.invalid(
            "learner.learner_model_param.base_score",
            format!("a logistic objective needs 0 < base_score < 1, found {base:?}"),
        ));
    }
    if objective == Objective::CountPoisson && base.iter().any(|b| *b <= 0.0) {
        return Err(at.invalid(
            "learner.learner_model_param.base_score",
            format!("count:poisson needs base_score > 0, found {base:?}"),
        ));
    }
    let base_margin = base.iter().map(|&b| objective.base_to_margin(b)).collect();
    Ok(Header {
        num_feature,
        num_group,
        base_margin,
    })
}

/// The trees of a gbtree or dart booster, with dart's per-tree weights; `tree_info` and the
/// weights are checked to have one entry per tree.
fn trees_of(at: &At, gb: JBooster) -> Result<(JGbtree, Option<Vec<f64>>), XgbError> {
    // dart: the trees of an inner gbtree, each leaf scaled by its tree's weight (xgboost
    // multiplies weight and leaf in f32 when it predicts; scaling once here gives the
    // same bits).
    let (gb, weights) = match gb.name.as_str() {
        "gbtree" => (gb, None),
        "dart" => {
            let w = gb.weight_drop.ok_or_else(|| {
                at.invalid(
                    "learner.gradient_booster.weight_drop",
                    "missing in a dart model".into(),
                )
            })?;
            let inner = gb.gbtree.ok_or_else(|| {
                at.invalid(
                    "learner.gradient_booster.gbtree",
                    "missing in a dart model".into(),
                )
            })?;
            (*inner, Some(w))
        }
        other => {
            return Err(at.unsupported(
                format!("booster {other:?}"),
                " (only gbtree and dart; gblinear models have no trees)",
            ))
        }
    };
    let model = gb.model.ok_or_else(|| {
        at.invalid(
            "learner.gradient_booster.model",
            "missing (no trees in the file)".into(),
        )
    })?;
    if model.tree_info.len() != model.trees.len() {
        return Err(at.invalid(
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
            return Err(at.invalid(
                "learner.gradient_booster.weight_drop",
                format!("{} weights for {} trees", w.len(), model.trees.len()),
            ));
        }
    }
    Ok((model, weights))
}

/// The pointer layout being built: every tree's nodes, and the leaf value of each node.
struct Flat {
    nodes: Vec<Node>,
    leaf: Vec<f32>,
}

impl Flat {
    /// Checks tree `ti` (its arrays, group, children and split features) and appends it;
    /// `shape` is (num_feature, num_group), `weight` dart's weight for this tree.
    fn push_tree(
        &mut self,
        at: &At,
        ti: usize,
        t: &JTree,
        group: i64,
        weight: Option<f64>,
        (num_feature, num_group): (usize, usize),
    ) -> Result<TreeMeta, XgbError> {
        let key = |field: &str| format!("learner.gradient_booster.model.trees[{ti}].{field}");
        if let Some(v) = t
            .tree_param
            .as_ref()
            .and_then(|p| p.size_leaf_vector.as_ref())
            .and_then(num_of)
        {
            if v > 1.0 {
                return Err(at.unsupported(
                    format!("tree {ti} with vector leaves (size_leaf_vector = {v})"),
                    " (train with multi_strategy=\"one_output_per_tree\")",
                ));
            }
        }
        if group < 0 || group as usize >= num_group {
            return Err(at.invalid(
                &format!("learner.gradient_booster.model.tree_info[{ti}]"),
                format!("group {group} outside 0..{num_group}"),
            ));
        }
        let n = t.left_children.len();
        if n == 0 {
            return Err(at.invalid(&key("left_children"), "empty tree".into()));
        }
        for (name, len) in [
            ("right_children", t.right_children.len()),
            ("split_indices", t.split_indices.len()),
            ("split_conditions", t.split_conditions.len()),
            ("default_left", t.default_left.len()),
        ] {
            if len != n {
                return Err(at.invalid(&key(name), format!("{len} entries for {n} nodes")));
            }
        }
        if let Some(i) = t.split_type.iter().position(|&s| s != 0) {
            return Err(at.unsupported(
                format!("categorical split at tree {ti} node {i}"),
                " (train with numerical features or one-hot encode them)",
            ));
        }
        let offset = self.nodes.len() as u32;
        for i in 0..n {
            let (l, r) = (t.left_children[i], t.right_children[i]);
            let value = t.split_conditions[i] as f32;
            if l == -1 {
                let value = match weight {
                    Some(w) => w as f32 * value,
                    None => value,
                };
                let me = offset + i as u32;
                self.nodes.push(Node {
                    cond: 0.0,
                    feat: 0,
                    left: me,
                    right: me,
                });
                self.leaf.push(value);
                continue;
            }
            let in_range = |c: i64| c > 0 && (c as usize) < n && c as usize != i;
            if !in_range(l) || !in_range(r) {
                return Err(at.invalid(
                    &key("left_children"),
                    format!("node {i} has children {l}, {r} outside the tree"),
                ));
            }
            let f = t.split_indices[i];
            if f < 0 || f as u64 >= num_feature as u64 {
                return Err(at.invalid(
                    &key("split_indices"),
                    format!(
                        "node {i} splits on feature {f}, but the model has {num_feature} features"
                    ),
                ));
            }
            let dl = match &t.default_left[i] {
                Value::Bool(b) => *b,
                v => num_of(v).map(|x| x != 0.0).ok_or_else(|| {
                    at.invalid(&key("default_left"), format!("node {i}: {v} is not 0/1"))
                })?,
            };
            self.nodes.push(Node {
                cond: value,
                feat: f as u32 | if dl { DEFAULT_LEFT } else { 0 },
                left: offset + l as u32,
                right: offset + r as u32,
            });
            self.leaf.push(0.0);
        }
        let depth = tree_depth(&self.nodes[offset as usize..], offset).ok_or_else(|| {
            at.invalid(
                &key("left_children"),
                "the nodes do not form a tree (a node is reached twice)".into(),
            )
        })?;
        Ok(TreeMeta {
            root: offset,
            depth,
            group: group as u32,
            dense: None,
        })
    }
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
