//! XGBoost's JSON model format.

use serde::Deserialize;
use serde_json::Value;

use super::layout::{Builder, Child, SourceNode, SourceSplit};
use super::{TreeEnsemble, TreeFlavor, MAX_CATEGORY};
use crate::error::{Error, Result};

const WHAT: &str = "XGBoost model";

#[derive(Deserialize)]
struct File {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    feature_names: Vec<String>,
    #[serde(default)]
    feature_types: Vec<String>,
    gradient_booster: Booster,
    learner_model_param: ModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct Booster {
    name: String,
    #[serde(default)]
    model: Option<Trees>,
}

#[derive(Deserialize)]
struct Trees {
    trees: Vec<Tree>,
    #[serde(default)]
    tree_info: Vec<i64>,
}

#[derive(Deserialize)]
struct ModelParam {
    base_score: String,
    #[serde(default)]
    num_class: Option<String>,
    num_feature: String,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct Tree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<Value>,
    #[serde(default)]
    split_type: Vec<i64>,
    #[serde(default)]
    categories: Vec<i64>,
    #[serde(default)]
    categories_nodes: Vec<i64>,
    #[serde(default)]
    categories_segments: Vec<i64>,
    #[serde(default)]
    categories_sizes: Vec<i64>,
    tree_param: TreeParam,
}

#[derive(Deserialize)]
struct TreeParam {
    num_nodes: String,
    #[serde(default)]
    size_leaf_vector: Option<String>,
}

fn bad(item: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Artifact {
        item: format!("{WHAT} {}", item.into()),
        message: message.into(),
    }
}

fn count(field: &str, text: &str) -> Result<usize> {
    text.trim()
        .parse()
        .map_err(|_| bad(field, format!("found {text:?}, expected a whole number")))
}

/// XGBoost's base score: `"5E-1"`, or `"[5E-1]"` since xgboost 3 (one value per target).
fn base_score(text: &str) -> Result<f32> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let values: Vec<&str> = inner.split(',').map(str::trim).collect();
    let parsed = match values.as_slice() {
        [one] => one.parse::<f32>().ok(),
        _ => None,
    };
    match parsed {
        Some(b) if b > 0.0 && b < 1.0 => Ok(b),
        _ => Err(bad(
            "learner_model_param.base_score",
            format!("found {text:?}, expected one probability in (0, 1)"),
        )),
    }
}

impl TreeEnsemble {
    /// Reads XGBoost's JSON model (`booster.save_model("model.json")`): a `gbtree` booster of
    /// one target with the `binary:logistic` or `reg:logistic` objective, numerical and
    /// categorical splits. Every tree is checked (indices, features, finite leaves) and laid
    /// out flat. Feature names come from the file, or are `f0`, `f1`, ... as XGBoost names
    /// them. All trees are used, as `Booster.predict` does by default. An early-stopped
    /// model's `best_iteration` is not applied (scikit-learn's `XGBClassifier.predict_proba`
    /// applies it): save the trees to serve, `booster[: best_iteration + 1].save_model(...)`;
    /// [`TreeEnsemble::best_iteration`] reports one the file records. The binary UBJSON
    /// format is refused: save with a `.json` name.
    pub fn from_xgboost_json(bytes: &[u8]) -> Result<Self> {
        if bytes.first() == Some(&b'{') && bytes.get(1).is_some_and(|b| *b == b'L' || *b == b'i') {
            return Err(bad(
                "file",
                "UBJSON (xgboost's binary JSON), expected text JSON: save the model with a .json file name",
            ));
        }
        let file: File = serde_json::from_slice(bytes).map_err(|cause| Error::Json {
            what: format!("{WHAT} (XGBoost's JSON model format)"),
            cause,
        })?;
        let learner = file.learner;
        let objective = learner.objective.name;
        if objective != "binary:logistic" && objective != "reg:logistic" {
            return Err(bad(
                "objective",
                format!("found {objective:?}, expected binary:logistic or reg:logistic (a binary classifier's probability)"),
            ));
        }
        if learner.gradient_booster.name != "gbtree" {
            return Err(bad(
                "gradient_booster",
                format!(
                    "found {:?}, expected gbtree (dart and gblinear boosters are not read)",
                    learner.gradient_booster.name
                ),
            ));
        }
        let params = learner.learner_model_param;
        for (field, value) in [
            ("num_class", &params.num_class),
            ("num_target", &params.num_target),
        ] {
            if let Some(v) = value {
                if count(field, v)? > 1 {
                    return Err(bad(
                        format!("learner_model_param.{field}"),
                        format!("found {v}, expected a binary model (0 or 1)"),
                    ));
                }
            }
        }
        let n_features = count("learner_model_param.num_feature", &params.num_feature)?;
        super::layout::check_features(n_features, WHAT)?;
        let base = base_score(&params.base_score)?;
        // XGBoost's ProbToMargin, in f32.
        let base_margin = -(1.0_f32 / base - 1.0).ln();
        let model = learner
            .gradient_booster
            .model
            .ok_or_else(|| bad("gradient_booster.model", "missing, expected the trees"))?;
        if let Some(g) = model.tree_info.iter().find(|&&g| g != 0) {
            return Err(bad(
                "tree_info",
                format!("a tree of output group {g}, expected group 0 only (a binary model)"),
            ));
        }
        let names = if learner.feature_names.is_empty() {
            (0..n_features).map(|i| format!("f{i}")).collect()
        } else if learner.feature_names.len() == n_features {
            learner.feature_names
        } else {
            return Err(bad(
                "feature_names",
                format!(
                    "{} names for num_feature {n_features}, expected one per feature",
                    learner.feature_names.len()
                ),
            ));
        };
        let categorical: Vec<bool> = if learner.feature_types.len() == n_features {
            learner.feature_types.iter().map(|t| t == "c").collect()
        } else {
            vec![false; n_features]
        };
        let mut builder = Builder::new(TreeFlavor::Xgboost, n_features, WHAT)?;
        for (t, tree) in model.trees.iter().enumerate() {
            let (nodes, root) = read_tree(&mut builder, t, tree)?;
            builder.add_tree(t, &nodes, root)?;
        }
        let mut ensemble = builder.finish(
            names,
            categorical,
            f64::from(base_margin),
            1.0,
            false,
            objective,
        )?;
        ensemble.best_iteration = learner
            .attributes
            .get("best_iteration")
            .and_then(|v| match v {
                Value::String(s) => s.trim().parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            });
        Ok(ensemble)
    }
}

/// One tree's split nodes (indexed as in the file) and its root.
fn read_tree(builder: &mut Builder, t: usize, tree: &Tree) -> Result<(Vec<SourceNode>, Child)> {
    let item = |field: &str| format!("tree {t} {field}");
    let n = count(&item("tree_param.num_nodes"), &tree.tree_param.num_nodes)?;
    if let Some(s) = &tree.tree_param.size_leaf_vector {
        if count(&item("size_leaf_vector"), s)? > 1 {
            return Err(bad(
                item("tree_param.size_leaf_vector"),
                format!("found {s}, expected 0 or 1 (vector leaves are multi-target)"),
            ));
        }
    }
    if n == 0 {
        return Err(bad(
            item("tree_param.num_nodes"),
            "found 0, expected at least the root",
        ));
    }
    for (field, len) in [
        ("left_children", tree.left_children.len()),
        ("right_children", tree.right_children.len()),
        ("split_indices", tree.split_indices.len()),
        ("split_conditions", tree.split_conditions.len()),
        ("default_left", tree.default_left.len()),
    ] {
        if len != n {
            return Err(bad(
                item(field),
                format!("{len} entries, expected num_nodes = {n}"),
            ));
        }
    }
    if !tree.split_type.is_empty() && tree.split_type.len() != n {
        return Err(bad(
            item("split_type"),
            format!(
                "{} entries, expected num_nodes = {n}",
                tree.split_type.len()
            ),
        ));
    }
    // Category sets of this tree's categorical nodes.
    let mut set_of = std::collections::HashMap::new();
    let k = tree.categories_nodes.len();
    if tree.categories_segments.len() != k || tree.categories_sizes.len() != k {
        return Err(bad(
            item("categories_segments"),
            format!(
                "{} nodes, {} segments and {} sizes, expected as many of each",
                k,
                tree.categories_segments.len(),
                tree.categories_sizes.len()
            ),
        ));
    }
    // Each listed node a categorical split, listed once, and the segments no longer in all
    // than the category list: reading the sets is linear in the file.
    let total: u64 = tree
        .categories_sizes
        .iter()
        .map(|&z| u64::try_from(z).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add);
    if total > tree.categories.len() as u64 {
        return Err(bad(
            item("categories_sizes"),
            format!(
                "segments of {total} categories in all, expected at most the {} listed",
                tree.categories.len()
            ),
        ));
    }
    for i in 0..k {
        let (node, start, size) = (
            tree.categories_nodes[i],
            tree.categories_segments[i],
            tree.categories_sizes[i],
        );
        let categorical = usize::try_from(node)
            .ok()
            .filter(|&j| j < n)
            .is_some_and(|j| tree.split_type.get(j) == Some(&1));
        if !categorical || set_of.contains_key(&node) {
            return Err(bad(
                item("categories_nodes"),
                format!("node {node}, expected a categorical split node listed once"),
            ));
        }
        let range = usize::try_from(start)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(s, z)| Some(s..s.checked_add(z)?))
            .filter(|r| r.end <= tree.categories.len());
        let Some(range) = range else {
            return Err(bad(
                item("categories_segments"),
                format!(
                    "segment {start} of size {size}, expected a range within the {} categories",
                    tree.categories.len()
                ),
            ));
        };
        let cats = &tree.categories[range];
        let mut words = Vec::new();
        for &c in cats {
            if !(0..i64::from(MAX_CATEGORY)).contains(&c) {
                return Err(bad(
                    item("categories"),
                    format!("category {c}, expected 0 to {}", MAX_CATEGORY - 1),
                ));
            }
            let c = c as usize;
            if words.len() <= c / 32 {
                words.resize(c / 32 + 1, 0u32);
            }
            words[c / 32] |= 1 << (c % 32);
        }
        set_of.insert(node, builder.add_set(&words)?);
    }
    let is_leaf = |j: usize| tree.left_children[j] == -1;
    let child = |from: usize, j: i64| -> Result<Child> {
        match usize::try_from(j).ok().filter(|&j| j < n) {
            Some(j) if is_leaf(j) => Ok(Child::Leaf(f64::from(tree.split_conditions[j] as f32))),
            Some(j) => Ok(Child::Node(j)),
            None => Err(bad(
                item(&format!("node {from}")),
                format!("child {j}, expected a node below {n}"),
            )),
        }
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        if is_leaf(i) {
            // Placeholder: leaves are never reached as split nodes (`child` turns them into
            // leaf values).
            nodes.push(SourceNode {
                split: SourceSplit::Numeric {
                    feature: 0,
                    threshold: 0.0,
                    default_left: false,
                    zero_missing: false,
                },
                left: Child::Leaf(0.0),
                right: Child::Leaf(0.0),
            });
            continue;
        }
        let feature = usize::try_from(tree.split_indices[i]).map_err(|_| {
            bad(
                item(&format!("node {i}")),
                format!(
                    "split index {}, expected a feature index",
                    tree.split_indices[i]
                ),
            )
        })?;
        let default_left = match &tree.default_left[i] {
            Value::Bool(b) => *b,
            Value::Number(v) if v.as_i64() == Some(0) => false,
            Value::Number(v) if v.as_i64() == Some(1) => true,
            other => {
                return Err(bad(
                    item(&format!("default_left[{i}]")),
                    format!("found {other}, expected 0, 1, true or false"),
                ))
            }
        };
        let categorical = tree.split_type.get(i).copied().unwrap_or(0) == 1;
        let split = if categorical {
            let set = *set_of.get(&(i as i64)).ok_or_else(|| {
                bad(
                    item(&format!("node {i}")),
                    "a categorical split without categories (categories_nodes does not list it)",
                )
            })?;
            SourceSplit::Categorical {
                feature,
                set,
                default_left,
            }
        } else {
            SourceSplit::Numeric {
                feature,
                threshold: tree.split_conditions[i] as f32,
                default_left,
                zero_missing: false,
            }
        };
        nodes.push(SourceNode {
            split,
            left: child(i, tree.left_children[i])?,
            right: child(i, tree.right_children[i])?,
        });
    }
    let root = if is_leaf(0) {
        Child::Leaf(f64::from(tree.split_conditions[0] as f32))
    } else {
        Child::Node(0)
    };
    Ok((nodes, root))
}
