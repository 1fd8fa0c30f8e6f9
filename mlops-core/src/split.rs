//! Splitting a [`Dataset`]: seeded stratified train/validation/test splits, and ordered splits
//! by a column (time) for drift replays.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};

/// Shares of rows for each part; each in [0, 1), summing to 1 (within 1e-9), train > 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFractions {
    /// Share of rows for training.
    pub train: f64,
    /// Share of rows for validation (early stopping, threshold choice).
    pub validation: f64,
    /// Share of rows held out for the final evaluation.
    pub test: f64,
}

impl Default for SplitFractions {
    /// 70 / 15 / 15.
    fn default() -> Self {
        SplitFractions {
            train: 0.70,
            validation: 0.15,
            test: 0.15,
        }
    }
}

impl SplitFractions {
    /// Checks the fractions.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("SplitFractions.train", self.train),
            ("SplitFractions.validation", self.validation),
            ("SplitFractions.test", self.test),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(Error::invalid(name, v, "a number in [0, 1)"));
            }
        }
        if self.train <= 0.0 {
            return Err(Error::invalid(
                "SplitFractions.train",
                self.train,
                "a number > 0",
            ));
        }
        let sum = self.train + self.validation + self.test;
        if (sum - 1.0).abs() > 1e-9 {
            return Err(Error::invalid(
                "SplitFractions (train + validation + test)",
                sum,
                "a sum of 1",
            ));
        }
        Ok(())
    }

    /// Row counts for `n` rows: validation and test rounded, train the rest.
    fn counts(&self, n: usize) -> (usize, usize, usize) {
        let val = (n as f64 * self.validation).round() as usize;
        let test = ((n as f64 * self.test).round() as usize).min(n - val);
        (n - val - test, val, test)
    }
}

/// The three parts of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training rows.
    pub train: Dataset,
    /// Validation rows.
    pub validation: Dataset,
    /// Test rows.
    pub test: Dataset,
}

impl Dataset {
    /// A seeded split that keeps each label value's share in every part (rows of each class
    /// are shuffled with ChaCha8 seeded by `seed`, then cut by `fractions`). Within a part,
    /// rows keep their original order. The same data, fractions and seed give the same split on
    /// every platform.
    ///
    /// ```
    /// use mlops_core::{Dataset, SplitFractions};
    /// use ndarray::{Array1, Array2};
    ///
    /// let x = Array2::from_shape_fn((100, 1), |(i, _)| i as f32);
    /// let y = Array1::from_shape_fn(100, |i| (i < 20) as u8 as f32);
    /// let data = Dataset::new(x, vec!["x".into()])?.with_labels(y, "y")?;
    /// let split = data.stratified_split(SplitFractions::default(), 42)?;
    /// assert_eq!(split.train.n_rows(), 70);
    /// assert_eq!(split.test.positive_weight(), Some(3.0));
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn stratified_split(&self, fractions: SplitFractions, seed: u64) -> Result<Split> {
        fractions.validate()?;
        let labels = self.labels().ok_or_else(|| {
            Error::invalid(
                "labels",
                "none",
                "a label column for a stratified split (use an ordered split for unlabelled data)",
            )
        })?;
        if let Some(i) = labels.iter().position(|y| y.is_nan()) {
            return Err(Error::invalid(
                format!("labels[{i}]"),
                "NaN",
                "a label on every row for a stratified split",
            ));
        }
        let mut classes: Vec<f32> = labels.to_vec();
        classes.sort_unstable_by(f32::total_cmp);
        classes.dedup();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for class in classes {
            let mut rows: Vec<usize> = (0..self.n_rows()).filter(|&i| labels[i] == class).collect();
            rows.shuffle(&mut rng);
            let (n_train, n_val, _) = fractions.counts(rows.len());
            train.extend_from_slice(&rows[..n_train]);
            val.extend_from_slice(&rows[n_train..n_train + n_val]);
            test.extend_from_slice(&rows[n_train + n_val..]);
        }
        for part in [&mut train, &mut val, &mut test] {
            part.sort_unstable();
        }
        Ok(Split {
            train: self.select_rows(&train)?,
            validation: self.select_rows(&val)?,
            test: self.select_rows(&test)?,
        })
    }

    /// Rows whose `column` is `< boundary`, and the rest, each in the original order: a time
    /// split (train on the past, test on the future). `column` is the ordering column
    /// ([`Dataset::with_order`], compared in full `f64` precision) or a feature column.
    ///
    /// ```
    /// use mlops_core::Dataset;
    /// use ndarray::array;
    ///
    /// let data = Dataset::new(array![[3.0_f32], [1.0], [2.0]], vec!["time".into()])?;
    /// let (past, future) = data.split_at_value("time", 2.0)?;
    /// assert_eq!(past.column("time")?.to_vec(), vec![1.0]);
    /// assert_eq!(future.column("time")?.to_vec(), vec![3.0, 2.0]);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn split_at_value(&self, column: &str, boundary: f64) -> Result<(Dataset, Dataset)> {
        let col = self.ordering_column(column)?;
        let (before, after): (Vec<usize>, Vec<usize>) =
            (0..self.n_rows()).partition(|&i| col[i] < boundary);
        Ok((self.select_rows(&before)?, self.select_rows(&after)?))
    }

    /// Rows sorted by `column` (stable, so equal values keep file order), then cut by
    /// `fractions`: the earliest rows train, the next validate, the latest test.
    pub fn ordered_split(&self, column: &str, fractions: SplitFractions) -> Result<Split> {
        fractions.validate()?;
        let col = self.ordering_column(column)?;
        let mut order: Vec<usize> = (0..self.n_rows()).collect();
        order.sort_by(|&a, &b| col[a].total_cmp(&col[b]));
        let (n_train, n_val, _) = fractions.counts(order.len());
        Ok(Split {
            train: self.select_rows(&order[..n_train])?,
            validation: self.select_rows(&order[n_train..n_train + n_val])?,
            test: self.select_rows(&order[n_train + n_val..])?,
        })
    }

    /// The values of the ordering column `column` (full precision), or of the feature column
    /// of that name; NaN refused.
    fn ordering_column(&self, column: &str) -> Result<Vec<f64>> {
        let col: Vec<f64> = match self.order_column() {
            Some((name, values)) if name == column => values.to_vec(),
            _ => self.column(column)?.iter().map(|v| f64::from(*v)).collect(),
        };
        if let Some(i) = col.iter().position(|v| v.is_nan()) {
            return Err(Error::invalid(
                format!("{column}[{i}]"),
                "NaN",
                "a value on every row of an ordering column",
            ));
        }
        Ok(col)
    }
}
