//! Building the flat layout from the readers' trees, checking every index.

use super::{
    CategorySet, Node, TreeEnsemble, TreeFlavor, CATEGORICAL, DEFAULT_LEFT, FEATURE_MASK, LEAF,
    MAX_CATEGORY_WORDS, MAX_NODES, ZERO_MISSING,
};
use crate::error::{Error, Result};

/// A child as a reader sees it: another split node of the same tree, or a leaf value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Child {
    Node(usize),
    Leaf(f64),
}

/// A split as a reader sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SourceSplit {
    /// Left when `x < threshold`; NaN (and, with `zero_missing`, |x| ≤ 1e-35) takes
    /// `default_left`.
    Numeric {
        feature: usize,
        threshold: f32,
        default_left: bool,
        zero_missing: bool,
    },
    /// Category set `set` (from [`Builder::add_set`]); NaN takes `default_left` where the
    /// flavor has one.
    Categorical {
        feature: usize,
        set: u32,
        default_left: bool,
    },
}

/// A split node of one tree, with its children.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceNode {
    pub split: SourceSplit,
    pub left: Child,
    pub right: Child,
}

/// Collects trees into one [`TreeEnsemble`].
pub(crate) struct Builder {
    flavor: TreeFlavor,
    n_features: usize,
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// Each split tree's first node (a leaf root's entry is unused).
    tree_starts: Vec<u32>,
    leaves: Vec<f64>,
    sets: Vec<CategorySet>,
    words: Vec<u32>,
    what: &'static str,
}

fn bad(item: String, message: String) -> Error {
    Error::Artifact { item, message }
}

/// A model file's feature count, checked before anything is allocated for it.
pub(crate) fn check_features(n_features: usize, what: &str) -> Result<()> {
    let most = super::MAX_FEATURES.min(FEATURE_MASK as usize);
    if n_features == 0 || n_features > most {
        return Err(bad(
            format!("{what} feature count"),
            format!("found {n_features}, expected 1 to {most}"),
        ));
    }
    Ok(())
}

impl Builder {
    /// An empty ensemble of `n_features` inputs; `what` names the model file in errors.
    pub fn new(flavor: TreeFlavor, n_features: usize, what: &'static str) -> Result<Self> {
        check_features(n_features, what)?;
        Ok(Builder {
            flavor,
            n_features,
            nodes: Vec::new(),
            roots: Vec::new(),
            tree_starts: Vec::new(),
            leaves: Vec::new(),
            sets: Vec::new(),
            words: Vec::new(),
            what,
        })
    }

    /// Adds a category set (32-bit words, bit `c % 32` of word `c / 32` set for category `c`);
    /// returns its index.
    pub fn add_set(&mut self, words: &[u32]) -> Result<u32> {
        if self.words.len() + words.len() > MAX_CATEGORY_WORDS {
            return Err(bad(
                format!("{} category sets", self.what),
                format!(
                    "more than {MAX_CATEGORY_WORDS} words of category bits, expected fewer (categories up to {})",
                    super::MAX_CATEGORY
                ),
            ));
        }
        let offset = self.words.len() as u32;
        self.words.extend_from_slice(words);
        self.sets.push(CategorySet {
            offset,
            len: words.len() as u32,
        });
        Ok((self.sets.len() - 1) as u32)
    }

    fn leaf(&mut self, tree: usize, value: f64) -> Result<u32> {
        if !value.is_finite() {
            return Err(bad(
                format!("{} tree {tree}", self.what),
                format!("a leaf value of {value}, expected a finite number"),
            ));
        }
        if self.leaves.len() >= MAX_NODES {
            return Err(self.too_big());
        }
        self.leaves.push(value);
        Ok(LEAF | (self.leaves.len() - 1) as u32)
    }

    fn too_big(&self) -> Error {
        bad(
            format!("{} trees", self.what),
            format!("more than {MAX_NODES} nodes or leaves, expected fewer"),
        )
    }

    /// Adds tree number `tree` (for errors) with split nodes `nodes` and root `root`. Each node
    /// must be reached exactly once from the root (a tree, not a graph); nodes not reached
    /// are ignored, as the libraries ignore them.
    pub fn add_tree(&mut self, tree: usize, nodes: &[SourceNode], root: Child) -> Result<()> {
        let start = match root {
            Child::Leaf(v) => {
                let leaf = self.leaf(tree, v)?;
                self.roots.push(leaf);
                self.tree_starts.push(self.nodes.len() as u32);
                return Ok(());
            }
            Child::Node(r) => r,
        };
        let base = self.nodes.len();
        let what = self.what;
        let mut new_index = vec![u32::MAX; nodes.len()];
        let mut order = Vec::with_capacity(nodes.len());
        let mut claim = |j: usize, order: &mut Vec<usize>| -> Result<()> {
            let item = || format!("{what} tree {tree}");
            if j >= nodes.len() {
                return Err(bad(
                    item(),
                    format!("a child index {j}, expected a node below {}", nodes.len()),
                ));
            }
            if new_index[j] != u32::MAX {
                return Err(bad(
                    item(),
                    format!("node {j} is reached twice, expected a tree (each node one parent)"),
                ));
            }
            if base + order.len() >= MAX_NODES {
                return Err(bad(item(), format!("more than {MAX_NODES} nodes")));
            }
            new_index[j] = (base + order.len()) as u32;
            order.push(j);
            Ok(())
        };
        claim(start, &mut order)?;
        let mut k = 0;
        while k < order.len() {
            let node = nodes[order[k]];
            k += 1;
            for child in [node.left, node.right] {
                if let Child::Node(j) = child {
                    claim(j, &mut order)?;
                }
            }
        }
        for &src in &order {
            let node = nodes[src];
            let (feature, threshold, mut bits) = match node.split {
                SourceSplit::Numeric {
                    feature,
                    threshold,
                    default_left,
                    zero_missing,
                } => {
                    if threshold.is_nan() {
                        return Err(bad(
                            format!("{} tree {tree} node {src}", self.what),
                            "a NaN split threshold, expected a number".into(),
                        ));
                    }
                    let mut bits = 0;
                    if default_left {
                        bits |= DEFAULT_LEFT;
                    }
                    if zero_missing {
                        bits |= ZERO_MISSING;
                    }
                    (feature, threshold, bits)
                }
                SourceSplit::Categorical {
                    feature,
                    set,
                    default_left,
                } => {
                    if set as usize >= self.sets.len() {
                        return Err(bad(
                            format!("{} tree {tree} node {src}", self.what),
                            format!(
                                "category set {set}, expected one of the {} the model defines",
                                self.sets.len()
                            ),
                        ));
                    }
                    let bits = CATEGORICAL | if default_left { DEFAULT_LEFT } else { 0 };
                    (feature, f32::from_bits(set), bits)
                }
            };
            if feature >= self.n_features {
                return Err(bad(
                    format!("{} tree {tree} node {src}", self.what),
                    format!(
                        "a split on feature {feature}, expected one of the model's {} features",
                        self.n_features
                    ),
                ));
            }
            bits |= feature as u32;
            let mut child = |c: Child| -> Result<u32> {
                match c {
                    Child::Node(j) => Ok(new_index[j]),
                    Child::Leaf(v) => self.leaf(tree, v),
                }
            };
            let left = child(node.left)?;
            let right = child(node.right)?;
            self.nodes.push(Node {
                threshold,
                bits,
                left,
                right,
            });
        }
        self.roots.push(base as u32);
        self.tree_starts.push(base as u32);
        Ok(())
    }

    /// The ensemble. `feature_names` and `categorical` have one entry per feature.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        feature_names: Vec<String>,
        categorical: Vec<bool>,
        base_margin: f64,
        sigmoid: f64,
        average: bool,
        objective: String,
    ) -> Result<TreeEnsemble> {
        debug_assert_eq!(feature_names.len(), self.n_features);
        debug_assert_eq!(categorical.len(), self.n_features);
        if self.roots.is_empty() {
            return Err(bad(
                format!("{} trees", self.what),
                "no trees, expected at least one".into(),
            ));
        }
        if !(base_margin.is_finite() && sigmoid.is_finite() && sigmoid > 0.0) {
            return Err(bad(
                format!("{} base score", self.what),
                format!(
                    "a base margin of {base_margin} and a sigmoid of {sigmoid}, expected finite numbers (sigmoid > 0)"
                ),
            ));
        }
        // Leaves become nodes after the splits, each looping on itself (threshold NaN, no
        // flags: every step goes right, to itself); children point at them. Each tree's depth
        // is its deepest leaf's (breadth-first order: a parent comes before its children).
        let splits = self.nodes.len();
        if splits + self.leaves.len() > MAX_NODES {
            return Err(self.too_big());
        }
        let leaf_node = |c: u32| {
            if c & LEAF != 0 {
                (splits as u32) + (c & !LEAF)
            } else {
                c
            }
        };
        let mut nodes = self.nodes;
        let mut depth_of = vec![0_u32; splits + self.leaves.len()];
        let mut depths = Vec::with_capacity(self.roots.len());
        let roots: Vec<u32> = self.roots.iter().map(|&r| leaf_node(r)).collect();
        let mut tree_end = self.tree_starts.clone();
        tree_end.push(splits as u32);
        for (t, &root) in roots.iter().enumerate() {
            let mut deepest = 0;
            if (root as usize) < splits {
                for i in self.tree_starts[t] as usize..tree_end[t + 1] as usize {
                    let d = depth_of[i];
                    for c in [nodes[i].left, nodes[i].right] {
                        let c = leaf_node(c) as usize;
                        depth_of[c] = d + 1;
                        deepest = deepest.max(d + 1);
                    }
                }
            }
            depths.push(deepest);
        }
        for n in &mut nodes {
            n.left = leaf_node(n.left);
            n.right = leaf_node(n.right);
        }
        let mut values = vec![0.0; splits];
        for (i, &v) in self.leaves.iter().enumerate() {
            let at = (splits + i) as u32;
            nodes.push(Node {
                threshold: f32::NAN,
                bits: 0,
                left: at,
                right: at,
            });
            values.push(v);
        }
        let plain = nodes
            .iter()
            .all(|n| n.bits & (CATEGORICAL | ZERO_MISSING) == 0);
        Ok(TreeEnsemble {
            flavor: self.flavor,
            feature_names,
            categorical,
            plain,
            nodes,
            values,
            roots,
            depths,
            splits,
            sets: self.sets,
            words: self.words,
            base_margin,
            sigmoid,
            average,
            objective,
            best_iteration: None,
        })
    }
}

/// The least f32 `t` with `x <= threshold ⟺ x < t` for every f32 `x`: LightGBM's `<=` on an
/// f64 threshold as one f32 `<`.
pub(crate) fn below_to_strict(threshold: f64) -> f32 {
    let mut a = threshold as f32;
    if f64::from(a) > threshold {
        a = a.next_down();
    }
    a.next_up()
}
