//! LightGBM's text model format.

use std::collections::HashMap;

use super::layout::{below_to_strict, Builder, Child, SourceNode, SourceSplit};
use super::{TreeEnsemble, TreeFlavor};
use crate::error::{Error, Result};

const WHAT: &str = "LightGBM model";

fn bad(item: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Artifact {
        item: format!("{WHAT} {}", item.into()),
        message: message.into(),
    }
}

/// The `key=value` lines of one section.
struct Section<'a> {
    name: String,
    values: HashMap<&'a str, &'a str>,
    flags: Vec<&'a str>,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Result<&'a str> {
        self.values
            .get(key)
            .copied()
            .ok_or_else(|| bad(format!("{} {key}", self.name), "missing"))
    }

    fn one<T: std::str::FromStr>(&self, key: &str, expected: &str) -> Result<T> {
        let text = self.get(key)?;
        text.trim().parse().map_err(|_| {
            bad(
                format!("{} {key}", self.name),
                format!("found {text:?}, expected {expected}"),
            )
        })
    }

    /// A space-separated list; absent or empty is an empty list.
    fn list<T: std::str::FromStr>(&self, key: &str, expected: &str) -> Result<Vec<T>> {
        let Some(text) = self.values.get(key) else {
            return Ok(Vec::new());
        };
        text.split_whitespace()
            .enumerate()
            .map(|(i, v)| {
                v.parse().map_err(|_| {
                    bad(
                        format!("{} {key}[{i}]", self.name),
                        format!("found {v:?}, expected {expected}"),
                    )
                })
            })
            .collect()
    }

    fn list_of_len<T: std::str::FromStr>(
        &self,
        key: &str,
        len: usize,
        expected: &str,
    ) -> Result<Vec<T>> {
        let v = self.list(key, expected)?;
        if v.len() != len {
            return Err(bad(
                format!("{} {key}", self.name),
                format!("{} values, expected {len}", v.len()),
            ));
        }
        Ok(v)
    }
}

/// Splits the file into the header and one section per tree.
fn sections(text: &str) -> Result<(Section<'_>, Vec<Section<'_>>)> {
    let mut header = Section {
        name: "header".into(),
        values: HashMap::new(),
        flags: Vec::new(),
    };
    let mut trees: Vec<Section> = Vec::new();
    let mut ended = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line == "end of trees" {
            ended = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(n) = line.strip_prefix("Tree=") {
            trees.push(Section {
                name: format!("tree {n}"),
                values: HashMap::new(),
                flags: Vec::new(),
            });
            continue;
        }
        let section = trees.last_mut().unwrap_or(&mut header);
        match line.split_once('=') {
            Some((k, v)) => {
                section.values.insert(k, v);
            }
            None => section.flags.push(line),
        }
    }
    if !ended {
        return Err(bad(
            "file",
            "no `end of trees` line: the file is cut short or not a LightGBM text model",
        ));
    }
    Ok((header, trees))
}

/// The sigmoid parameter of a binary objective line (`binary sigmoid:1`, `cross_entropy`).
fn objective_sigmoid(objective: &str) -> Result<f64> {
    let mut parts = objective.split_whitespace();
    let name = parts.next().unwrap_or("");
    match name {
        "binary" => {
            let mut sigmoid = 1.0;
            for p in parts {
                if let Some(v) = p.strip_prefix("sigmoid:") {
                    sigmoid = v.parse().map_err(|_| {
                        bad(
                            "header objective",
                            format!("sigmoid {v:?}, expected a number"),
                        )
                    })?;
                }
            }
            Ok(sigmoid)
        }
        "cross_entropy" | "xentropy" => Ok(1.0),
        _ => Err(bad(
            "header objective",
            format!(
                "found {objective:?}, expected binary or cross_entropy (a binary classifier's probability)"
            ),
        )),
    }
}

impl TreeEnsemble {
    /// Reads LightGBM's text model (`booster.save_model("model.txt")` or `model_to_string()`):
    /// one class with the `binary` or `cross_entropy` objective, numerical splits with every
    /// missing type and categorical splits; a random-forest model's trees are averaged. Linear
    /// trees are refused. Every tree is checked (indices, features, finite leaves) and laid
    /// out flat.
    pub fn from_lightgbm_text(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            bad(
                "file",
                format!("not UTF-8 text ({e}): not a LightGBM text model"),
            )
        })?;
        if !text.starts_with("tree") {
            return Err(bad(
                "file",
                "does not start with `tree`: not a LightGBM text model",
            ));
        }
        let (header, trees) = sections(text)?;
        let num_class: usize = header.one("num_class", "a whole number")?;
        let per_iteration: usize = header.one("num_tree_per_iteration", "a whole number")?;
        if num_class != 1 || per_iteration != 1 {
            return Err(bad(
                "header num_class",
                format!(
                    "{num_class} classes and {per_iteration} trees per iteration, expected a binary model (1 and 1)"
                ),
            ));
        }
        let objective = header.get("objective")?.trim().to_string();
        let sigmoid = objective_sigmoid(&objective)?;
        let max_feature: usize = header.one("max_feature_idx", "a whole number")?;
        let n_features = max_feature
            .checked_add(1)
            .ok_or_else(|| bad("header max_feature_idx", "too large"))?;
        super::layout::check_features(n_features, WHAT)?;
        // LightGBM writes names joined by one ASCII space (it replaces spaces in names), and
        // keeps tabs and other spaces inside them.
        let names: Vec<String> = match header.values.get("feature_names") {
            Some(v) => v.split(' ').map(String::from).collect(),
            None => (0..n_features).map(|i| format!("Column_{i}")).collect(),
        };
        if names.len() != n_features {
            return Err(bad(
                "header feature_names",
                format!(
                    "{} names for max_feature_idx {max_feature}, expected {n_features}",
                    names.len()
                ),
            ));
        }
        let infos: Vec<&str> = header
            .values
            .get("feature_infos")
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default();
        let categorical: Vec<bool> = (0..n_features)
            .map(|i| {
                infos
                    .get(i)
                    .is_some_and(|info| !info.starts_with('[') && *info != "none")
            })
            .collect();
        let average = header.flags.contains(&"average_output");
        let mut builder = Builder::new(TreeFlavor::Lightgbm, n_features, WHAT)?;
        for (t, tree) in trees.iter().enumerate() {
            let (nodes, root) = read_tree(&mut builder, tree)?;
            builder.add_tree(t, &nodes, root)?;
        }
        builder.finish(names, categorical, 0.0, sigmoid, average, objective)
    }
}

fn read_tree(builder: &mut Builder, tree: &Section<'_>) -> Result<(Vec<SourceNode>, Child)> {
    let num_leaves: usize = tree.one("num_leaves", "a whole number")?;
    if num_leaves == 0 {
        return Err(bad(
            format!("{} num_leaves", tree.name),
            "0, expected at least 1",
        ));
    }
    if tree
        .values
        .get("is_linear")
        .is_some_and(|v| v.trim() == "1")
    {
        return Err(bad(
            format!("{} is_linear", tree.name),
            "a linear tree, expected constant leaves (linear_tree models are not read)",
        ));
    }
    let leaves: Vec<f64> = tree.list_of_len("leaf_value", num_leaves, "a number")?;
    if num_leaves == 1 {
        return Ok((Vec::new(), Child::Leaf(leaves[0])));
    }
    let n = num_leaves - 1;
    let features: Vec<usize> = tree.list_of_len("split_feature", n, "a feature index")?;
    let thresholds: Vec<f64> = tree.list_of_len("threshold", n, "a number")?;
    let decision: Vec<u8> = tree.list_of_len("decision_type", n, "a decision type (0-15)")?;
    let left: Vec<i64> = tree.list_of_len("left_child", n, "a node index")?;
    let right: Vec<i64> = tree.list_of_len("right_child", n, "a node index")?;
    let num_cat: usize = match tree.values.get("num_cat") {
        Some(_) => tree.one("num_cat", "a whole number")?,
        None => 0,
    };
    if num_cat > n {
        return Err(bad(
            format!("{} num_cat", tree.name),
            format!("{num_cat} category sets, expected at most one per split ({n})"),
        ));
    }
    let mut sets = Vec::with_capacity(num_cat);
    if num_cat > 0 {
        let bounds: Vec<usize> = tree.list_of_len("cat_boundaries", num_cat + 1, "an offset")?;
        let words: Vec<u32> = tree.list("cat_threshold", "a 32-bit word")?;
        for i in 0..num_cat {
            let (a, b) = (bounds[i], bounds[i + 1]);
            if a > b || b > words.len() {
                return Err(bad(
                    format!("{} cat_boundaries", tree.name),
                    format!(
                        "set {i} spans {a}..{b}, expected a range within the {} words of cat_threshold",
                        words.len()
                    ),
                ));
            }
            sets.push(builder.add_set(&words[a..b])?);
        }
    }
    let child = |i: usize, c: i64| -> Result<Child> {
        if c >= 0 {
            let c = c as usize;
            if c >= n {
                return Err(bad(
                    format!("{} node {i}", tree.name),
                    format!("child {c}, expected a node below {n}"),
                ));
            }
            Ok(Child::Node(c))
        } else {
            let leaf = (!c) as usize;
            leaves.get(leaf).map(|&v| Child::Leaf(v)).ok_or_else(|| {
                bad(
                    format!("{} node {i}", tree.name),
                    format!("leaf {leaf}, expected one below num_leaves = {num_leaves}"),
                )
            })
        }
    };
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let d = decision[i];
        let default_left = d & 2 != 0;
        let split = if d & 1 != 0 {
            let t = thresholds[i];
            let index = t as usize;
            if t < 0.0 || t.fract() != 0.0 || index >= sets.len() {
                return Err(bad(
                    format!("{} node {i}", tree.name),
                    format!(
                        "category set {t}, expected one of the tree's {} (num_cat)",
                        sets.len()
                    ),
                ));
            }
            SourceSplit::Categorical {
                feature: features[i],
                set: sets[index],
                default_left: false,
            }
        } else {
            let threshold = below_to_strict(thresholds[i]);
            match (d >> 2) & 3 {
                // None: NaN is read as 0 and compared.
                0 => SourceSplit::Numeric {
                    feature: features[i],
                    threshold,
                    default_left: 0.0 < threshold,
                    zero_missing: false,
                },
                1 => SourceSplit::Numeric {
                    feature: features[i],
                    threshold,
                    default_left,
                    zero_missing: true,
                },
                2 => SourceSplit::Numeric {
                    feature: features[i],
                    threshold,
                    default_left,
                    zero_missing: false,
                },
                _ => {
                    return Err(bad(
                        format!("{} decision_type[{i}]", tree.name),
                        format!("{d}: missing type 3, expected 0 (none), 1 (zero) or 2 (NaN)"),
                    ))
                }
            }
        };
        nodes.push(SourceNode {
            split,
            left: child(i, left[i])?,
            right: child(i, right[i])?,
        });
    }
    Ok((nodes, Child::Node(0)))
}
