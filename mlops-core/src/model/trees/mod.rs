//! Gradient-boosted tree ensembles from XGBoost and LightGBM, read from their own formats and
//! compiled into one flat layout that scores batches natively.
//!
//! - [`TreeEnsemble::from_xgboost_json`]: XGBoost's JSON model (`Booster.save_model("m.json")`,
//!   format of xgboost ≥ 1.0; `gbtree` boosters with `binary:logistic` or `reg:logistic`),
//!   numerical and categorical splits.
//! - [`TreeEnsemble::from_lightgbm_text`]: LightGBM's text model (`Booster.save_model`,
//!   `model_to_string`; `binary` or `cross_entropy` objectives), numerical splits with each
//!   missing type (none, zero, NaN) and categorical splits.
//!
//! Every tree's nodes are laid out breadth first in one array of 16-byte nodes (threshold,
//! feature and flags, two children), so a child always follows its parent; each leaf is a
//! node that loops on itself, and each tree records its depth. Traversals advance in lockstep,
//! one level at a time and without a branch on the common numeric split: for fewer than 16
//! rows, 16 trees of one row together; for more, the rows of a 64-row block through one tree
//! together (so the tree stays in cache). Either way each row's leaves are summed in tree
//! order, as the libraries sum them.
//!
//! The libraries' semantics are kept exactly:
//! - **Comparisons.** XGBoost goes left when `x < threshold` (in f32); LightGBM when
//!   `x <= threshold` (in f64). A LightGBM threshold is stored as the least f32 above
//!   every f32 `<=` it, so one `x < t` serves both, exactly, for every f32 input.
//! - **Missing values** (NaN): XGBoost's default direction per node; LightGBM's missing type
//!   per node (`NaN`: the default direction; `Zero`: NaN and 0 take the default direction;
//!   `None`: NaN is read as 0). LightGBM reads every |x| ≤ `kZeroThreshold` (1e-35 as an f32)
//!   as 0 before any split, and so does this engine. An infinite value is compared as a
//!   number, as both libraries do.
//! - **Categories** (the input is the category's code): XGBoost sends the node's categories
//!   right and every other value, a negative one or one of 2^24 and above included, left (NaN:
//!   the default direction); LightGBM sends its categories left and every other value right
//!   (NaN, a value whose truncation is negative and one past `i32::MAX`, too).
//! - **Sums and links.** XGBoost sums in f32 in tree order from the base margin and applies
//!   the logistic in f32; LightGBM sums in f64 (averaged for random-forest models) and applies
//!   `1 / (1 + exp(-sigmoid · raw))` in f64.
//!
//! ```
//! use mlops_core::model::trees::TreeEnsemble;
//!
//! // One LightGBM tree: x0 <= 0.5 goes left (leaf -1.0), else right (leaf 2.0).
//! let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
//!     max_feature_idx=0\nobjective=binary sigmoid:1\nfeature_names=x0\n\n\
//!     Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=2\n\
//!     left_child=-1\nright_child=-2\nleaf_value=-1 2\nshrinkage=1\n\nend of trees\n";
//! let trees = TreeEnsemble::from_lightgbm_text(text.as_bytes())?;
//! let x = ndarray::array![[0.5_f32], [0.75], [f32::NAN]];
//! let mut p = [0.0_f32; 3];
//! trees.predict_proba_into(x.view(), &mut p)?;
//! assert!((p[0] - 1.0 / (1.0 + 1.0_f32.exp())).abs() < 1e-7); // 0.5 <= 0.5: left
//! assert!((p[1] - 1.0 / (1.0 + (-2.0_f32).exp())).abs() < 1e-7);
//! assert_eq!(p[2], p[0]); // missing type none: NaN is read as 0
//! # Ok::<(), mlops_core::Error>(())
//! ```

mod layout;
mod lightgbm;
mod xgboost;

use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which library's semantics a tree ensemble follows (comparisons, categories, sums, link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeFlavor {
    /// XGBoost: f32 sums, categories in the set go right.
    Xgboost,
    /// LightGBM: f64 sums, categories in the set go left.
    Lightgbm,
}

/// The most nodes an ensemble may hold in all, splits and leaves together (24 bytes each in
/// the layout, about 2.4 GB at the bound, and about twice that while it is built): a bound on
/// what a model file can make a loader allocate.
pub const MAX_NODES: usize = 100_000_000;

/// The most 32-bit words of category sets an ensemble may hold (64 MiB).
pub const MAX_CATEGORY_WORDS: usize = 16 << 20;

/// Highest category code an XGBoost split may name, plus one (XGBoost's own limit, 2^24: codes
/// above it are not exact in f32). LightGBM codes go to `i32::MAX`, bounded by
/// [`MAX_CATEGORY_WORDS`].
pub const MAX_CATEGORY: u32 = 1 << 24;

/// The most input features a tree model may read (a bound on what a model file can make a
/// loader allocate for names).
pub const MAX_FEATURES: usize = 1 << 20;

/// LightGBM's `kZeroThreshold` (`1e-35f`): inputs within it of 0 are read as 0.
const ZERO_THRESHOLD: f32 = 1e-35;

/// A child reference to leaf `i` while a tree is built (`LEAF | i`).
const LEAF: u32 = 1 << 31;
const FEATURE_MASK: u32 = (1 << 24) - 1;
const DEFAULT_LEFT: u32 = 1 << 24;
const ZERO_MISSING: u32 = 1 << 25;
const CATEGORICAL: u32 = 1 << 26;

/// One split, 16 bytes. `bits` holds the feature index and the flags; `threshold` is the
/// split value, or for a categorical split the index of its category set (as f32 bits).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    threshold: f32,
    bits: u32,
    left: u32,
    right: u32,
}

impl PartialEq for Node {
    /// Bit for bit: a leaf's NaN threshold equals itself.
    fn eq(&self, other: &Self) -> bool {
        (self.threshold.to_bits(), self.bits, self.left, self.right)
            == (
                other.threshold.to_bits(),
                other.bits,
                other.left,
                other.right,
            )
    }
}

/// A category set: `len` words from `offset` in the ensemble's category words.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CategorySet {
    offset: u32,
    len: u32,
}

/// A compiled tree ensemble (see the module docs). Built only by the readers, which check
/// every index; a value of this type always traverses to a leaf.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    flavor: TreeFlavor,
    feature_names: Vec<String>,
    categorical: Vec<bool>,
    /// Splits, then one self-looping node per leaf (threshold NaN: every step stays), so a
    /// traversal may take more steps than a row's path needs.
    nodes: Vec<Node>,
    /// Each node's leaf value (0 for a split).
    values: Vec<f64>,
    roots: Vec<u32>,
    /// Steps from each tree's root to its deepest leaf.
    depths: Vec<u32>,
    /// No split needs more than `x < t` with a default direction (no categorical or
    /// zero-as-missing split).
    plain: bool,
    splits: usize,
    sets: Vec<CategorySet>,
    words: Vec<u32>,
    /// Added to the sum of leaves (XGBoost's base margin; 0 for LightGBM).
    base_margin: f64,
    /// LightGBM's `sigmoid` parameter (1 for XGBoost).
    sigmoid: f64,
    /// Divide the sum by the number of trees (LightGBM random forests).
    average: bool,
    objective: String,
    /// XGBoost's recorded `best_iteration` (early stopping), not applied.
    best_iteration: Option<u64>,
}

/// `n.left` if `left`, else `n.right`, without a branch: a mispredicted jump per level would
/// cost more than the level's work.
#[inline(always)]
fn select(n: &Node, left: bool) -> u32 {
    n.right ^ ((n.left ^ n.right) & u32::from(left).wrapping_neg())
}

/// Rows per block: each tree scores this many rows before the next tree.
const BLOCK: usize = 64;

/// Traversals advanced together for a batch of fewer rows: trees of one row.
const LANES: usize = 16;

impl TreeEnsemble {
    /// The library whose semantics this ensemble follows.
    pub fn flavor(&self) -> TreeFlavor {
        self.flavor
    }

    /// Feature names, in input order (from the model file, or `f0`, `f1`, ... as the libraries
    /// name unnamed features).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Whether each feature is categorical (its value is a category code).
    pub fn categorical(&self) -> &[bool] {
        &self.categorical
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of split nodes in all trees.
    pub fn n_splits(&self) -> usize {
        self.splits
    }

    /// The objective as the model file names it (`binary:logistic`, `binary sigmoid:1`).
    pub fn objective(&self) -> &str {
        &self.objective
    }

    /// The `best_iteration` an early-stopped XGBoost model records, which scoring does not
    /// apply (every tree of the file is used, as `Booster.predict` does).
    pub fn best_iteration(&self) -> Option<u64> {
        self.best_iteration
    }

    /// The highest feature index any split reads, if any split exists.
    pub fn max_split_feature(&self) -> Option<usize> {
        self.nodes[..self.splits]
            .iter()
            .map(|n| (n.bits & FEATURE_MASK) as usize)
            .max()
    }

    /// The same ensemble reading its features under `names` (one per feature, in order): for a
    /// model file without names, or to rename them. Errors: the wrong count.
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.feature_names.len() {
            return Err(Error::invalid(
                "feature names",
                format!("{} names", names.len()),
                format!(
                    "{} names, one per feature of the tree model",
                    self.feature_names.len()
                ),
            ));
        }
        self.feature_names = names;
        Ok(self)
    }

    /// One step of a traversal from node `at` for `row` (LightGBM's tiny inputs already read
    /// as 0): a split's child, or a leaf itself. The common numeric split is decided without a
    /// branch, so many independent traversals (trees of one row, or rows of one tree) overlap
    /// in the CPU.
    #[inline(always)]
    fn step(&self, at: u32, row: &[f32]) -> u32 {
        let n = &self.nodes[at as usize];
        let v = row[(n.bits & FEATURE_MASK) as usize];
        let left = if n.bits & (CATEGORICAL | ZERO_MISSING) == 0 {
            (v < n.threshold) | (v.is_nan() & (n.bits & DEFAULT_LEFT != 0))
        } else if n.bits & CATEGORICAL != 0 {
            self.category_goes_left(n, v)
        } else if v.is_nan() || v == 0.0 {
            n.bits & DEFAULT_LEFT != 0
        } else {
            v < n.threshold
        };
        select(n, left)
    }

    /// [`Self::step`] for an ensemble without categorical or zero-as-missing splits.
    #[inline(always)]
    fn step_plain(&self, at: u32, row: &[f32]) -> u32 {
        let n = &self.nodes[at as usize];
        let v = row[(n.bits & FEATURE_MASK) as usize];
        select(
            n,
            (v < n.threshold) | (v.is_nan() & (n.bits & DEFAULT_LEFT != 0)),
        )
    }

    fn category_goes_left(&self, n: &Node, v: f32) -> bool {
        let set = self.sets[n.threshold.to_bits() as usize];
        let words = &self.words[set.offset as usize..(set.offset + set.len) as usize];
        let contains = |code: u32| {
            words
                .get((code / 32) as usize)
                .is_some_and(|w| w >> (code % 32) & 1 == 1)
        };
        match self.flavor {
            TreeFlavor::Xgboost => {
                if v.is_nan() {
                    n.bits & DEFAULT_LEFT != 0
                } else if v < 0.0 || v >= MAX_CATEGORY as f32 {
                    true
                } else {
                    !contains(v as u32)
                }
            }
            TreeFlavor::Lightgbm => {
                // C++'s static_cast<int> truncates toward zero: -0.5 is category 0; a code past
                // i32::MAX is in no set.
                if v.is_nan() || v.trunc() < 0.0 || v >= 2_147_483_648.0 {
                    false
                } else {
                    contains(v as u32)
                }
            }
        }
    }

    /// The raw score (margin) of every row of `x`: the sum of its leaves plus the base
    /// margin, in the library's precision; the value the link reads. (For a LightGBM random
    /// forest that is the trees' average, where LightGBM's `raw_score` is their sum.)
    pub fn predict_margin_into(&self, x: ArrayView2<'_, f32>, out: &mut [f64]) -> Result<()> {
        self.check(x, out.len())?;
        let mut buf = Vec::new();
        for start in (0..x.nrows()).step_by(BLOCK) {
            let end = (start + BLOCK).min(x.nrows());
            let block = x.slice_axis(Axis(0), ndarray::Slice::from(start..end));
            self.margin_block(block, &mut buf, &mut out[start..end]);
        }
        Ok(())
    }

    /// Scores one block of at most [`BLOCK`] rows (checked by the caller).
    fn margin_block(&self, block: ArrayView2<'_, f32>, buf: &mut Vec<f32>, out: &mut [f64]) {
        let zeroed = |v: f32| if v.abs() <= ZERO_THRESHOLD { 0.0 } else { v };
        let data: &[f32] = match block.to_slice() {
            // LightGBM's predictor reads |x| <= kZeroThreshold as 0: copied where one occurs.
            Some(d)
                if self.flavor == TreeFlavor::Lightgbm
                    && d.iter().any(|v| v.abs() <= ZERO_THRESHOLD && *v != 0.0) =>
            {
                buf.clear();
                buf.extend(d.iter().map(|&v| zeroed(v)));
                buf
            }
            Some(d) => d,
            None => {
                buf.clear();
                if self.flavor == TreeFlavor::Lightgbm {
                    buf.extend(block.iter().map(|&v| zeroed(v)));
                } else {
                    buf.extend(block.iter().copied());
                }
                buf
            }
        };
        match self.flavor {
            TreeFlavor::Xgboost => {
                let mut acc = [self.base_margin as f32; BLOCK];
                self.leaves_of(data, |r, v| acc[r] += v as f32);
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = f64::from(a);
                }
            }
            TreeFlavor::Lightgbm => {
                let mut acc = [self.base_margin; BLOCK];
                self.leaves_of(data, |r, v| acc[r] += v);
                let scale = if self.average && !self.roots.is_empty() {
                    1.0 / self.roots.len() as f64
                } else {
                    1.0
                };
                for (o, a) in out.iter_mut().zip(acc) {
                    *o = a * scale;
                }
            }
        }
    }

    /// Calls `add(row, leaf value)` for every row of `data` (row-major, at most [`BLOCK`]
    /// rows) and every tree, trees in order for each row (the libraries' summation order).
    #[inline(always)]
    fn leaves_of(&self, data: &[f32], add: impl FnMut(usize, f64)) {
        if self.plain {
            self.walk(data, add, |at, row| self.step_plain(at, row));
        } else {
            self.walk(data, add, |at, row| self.step(at, row));
        }
    }

    /// Whether every traversal in `at` has reached its leaf (leaves follow the splits).
    #[inline(always)]
    fn all_leaves(&self, at: &[u32]) -> bool {
        at.iter().all(|&a| a as usize >= self.splits)
    }

    /// [`Self::leaves_of`] with `step`. Few rows: [`LANES`] trees of one row advance
    /// together; more: the block's rows through one tree together.
    #[inline(always)]
    fn walk(
        &self,
        data: &[f32],
        mut add: impl FnMut(usize, f64),
        step: impl Fn(u32, &[f32]) -> u32,
    ) {
        let n = self.n_features();
        let rows = data.len() / n;
        if rows < LANES {
            for (r, row) in data.chunks_exact(n).enumerate() {
                for (group, depths) in self.roots.chunks(LANES).zip(self.depths.chunks(LANES)) {
                    let mut at = [0_u32; LANES];
                    let at = &mut at[..group.len()];
                    at.copy_from_slice(group);
                    let steps = depths.iter().copied().max().unwrap_or(0);
                    for level in 0..steps {
                        for a in at.iter_mut() {
                            *a = step(*a, row);
                        }
                        // A lopsided tree (LightGBM's leaf-wise growth) is deeper than most
                        // paths through it: stop once every lane is at a leaf.
                        if level % 4 == 3 && self.all_leaves(at) {
                            break;
                        }
                    }
                    for &a in at.iter() {
                        add(r, self.values[a as usize]);
                    }
                }
            }
            return;
        }
        let mut at = [0_u32; BLOCK];
        for (&root, &depth) in self.roots.iter().zip(&self.depths) {
            let at = &mut at[..rows];
            at.fill(root);
            for level in 0..depth {
                for (r, a) in at.iter_mut().enumerate() {
                    *a = step(*a, &data[r * n..(r + 1) * n]);
                }
                if level % 4 == 3 && self.all_leaves(at) {
                    break;
                }
            }
            for (r, &a) in at.iter().enumerate() {
                add(r, self.values[a as usize]);
            }
        }
    }

    /// The probability of the positive class for every row of `x` (the link applied to the
    /// margin, in the library's precision), written into `out`.
    pub fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        self.check(x, out.len())?;
        let mut margin = [0.0_f64; BLOCK];
        let mut buf = Vec::new();
        for start in (0..x.nrows()).step_by(BLOCK) {
            let end = (start + BLOCK).min(x.nrows());
            let block = x.slice_axis(Axis(0), ndarray::Slice::from(start..end));
            let m = &mut margin[..end - start];
            self.margin_block(block, &mut buf, m);
            for (o, &m) in out[start..end].iter_mut().zip(m.iter()) {
                *o = self.link(m);
            }
        }
        Ok(())
    }

    fn link(&self, margin: f64) -> f32 {
        match self.flavor {
            TreeFlavor::Xgboost => {
                let m = margin as f32;
                1.0 / (1.0 + (-m).exp())
            }
            TreeFlavor::Lightgbm => (1.0 / (1.0 + (-self.sigmoid * margin).exp())) as f32,
        }
    }

    fn check(&self, x: ArrayView2<'_, f32>, out: usize) -> Result<()> {
        if x.ncols() != self.n_features() {
            return Err(Error::invalid(
                "batch columns",
                x.ncols(),
                format!("{} features, as the tree model reads", self.n_features()),
            ));
        }
        if out != x.nrows() {
            return Err(Error::LengthMismatch {
                left: "batch rows",
                left_len: x.nrows(),
                right: "output buffer",
                right_len: out,
            });
        }
        Ok(())
    }
}

/// A tree model as a [`Predictor`](super::Predictor): its ensemble with the artifact's spec
/// (input names, threshold, background, performance estimator). Missing values (NaN) are
/// routed as the library routes them; see the module docs.
#[derive(Debug, Clone)]
pub struct TreeModel {
    spec: super::ModelSpec,
    ensemble: std::sync::Arc<TreeEnsemble>,
}

impl TreeModel {
    /// The predictor of a tree artifact (an error for another kind).
    pub fn new(artifact: &super::ModelArtifact) -> Result<Self> {
        let ensemble = artifact.trees().ok_or_else(|| {
            Error::invalid(
                "model kind",
                artifact.spec().kind,
                "a tree model (xgboost or lightgbm)",
            )
        })?;
        Ok(TreeModel {
            spec: artifact.spec().clone(),
            ensemble: ensemble.clone(),
        })
    }

    /// The compiled ensemble.
    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.ensemble
    }
}

impl super::Predictor for TreeModel {
    fn feature_names(&self) -> &[String] {
        &self.spec.input_features
    }

    fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        super::check_batch(self.n_features(), x, out)?;
        self.ensemble.predict_proba_into(x, out)
    }

    fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    fn background(&self) -> Option<&super::Background> {
        self.spec.background.as_ref()
    }
}
