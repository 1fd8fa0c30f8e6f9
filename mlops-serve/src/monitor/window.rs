//! Bounded windows: the last rows a version scored (features, prediction, time) and the last
//! labeled rows (score, label). Memory is set by the capacity, never by the traffic.

use mlops_core::Dataset;
use ndarray::{Array2, ArrayView2};

/// The most recent `capacity` rows of a fixed set of `f32` columns, each with its time, in a
/// ring.
#[derive(Debug)]
pub(crate) struct RowWindow {
    columns: usize,
    capacity: usize,
    /// `capacity * columns` values, row-major; row `i` of the ring at `i * columns`.
    values: Vec<f32>,
    predictions: Vec<f32>,
    /// Microseconds since the Unix epoch.
    times: Vec<i64>,
    /// The ring's next write position.
    next: usize,
    len: usize,
}

impl RowWindow {
    pub(crate) fn new(columns: usize, capacity: usize) -> Self {
        RowWindow {
            columns,
            capacity,
            values: Vec::new(),
            predictions: Vec::new(),
            times: Vec::new(),
            next: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends one row (`x.len() == columns`), overwriting the oldest once full. Storage
    /// grows with the rows up to the capacity, then stays.
    pub(crate) fn push(&mut self, x: &[f32], prediction: f32, time: i64) {
        debug_assert_eq!(x.len(), self.columns);
        if self.values.len() < self.capacity * self.columns {
            self.values.extend_from_slice(x);
            self.predictions.push(prediction);
            self.times.push(time);
        } else {
            let at = self.next * self.columns;
            self.values[at..at + self.columns].copy_from_slice(x);
            self.predictions[self.next] = prediction;
            self.times[self.next] = time;
        }
        self.next = (self.next + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// Appends every row of `x` with its prediction, all at `time`.
    pub(crate) fn push_rows(&mut self, x: ArrayView2<'_, f32>, predictions: &[f32], time: i64) {
        for (row, &p) in x.rows().into_iter().zip(predictions) {
            match row.as_slice() {
                Some(s) => self.push(s, p, time),
                None => self.push(&row.to_vec(), p, time),
            }
        }
    }

    /// Ring positions, oldest first.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let start = if self.len < self.capacity {
            0
        } else {
            self.next
        };
        (0..self.len).map(move |i| (start + i) % self.capacity)
    }

    /// The earliest and the latest time of its rows (`None` when empty): by value, not by
    /// position, so a clock that stepped back still gives `earliest <= latest`.
    pub(crate) fn bounds(&self) -> Option<(i64, i64)> {
        let times = &self.times[..self.len.min(self.times.len())];
        let first = *times.first()?;
        Some(
            times
                .iter()
                .fold((first, first), |(lo, hi), &t| (lo.min(t), hi.max(t))),
        )
    }

    /// The features as a dataset named `names`, oldest row first (no order column: a
    /// feature may be called anything, `time` included).
    pub(crate) fn features(&self, names: &[String]) -> mlops_core::Result<Dataset> {
        let mut flat = Vec::with_capacity(self.len * self.columns);
        for i in self.order() {
            flat.extend_from_slice(&self.values[i * self.columns..(i + 1) * self.columns]);
        }
        let x = Array2::from_shape_vec((self.len, self.columns), flat)
            .map_err(|e| mlops_core::Error::invalid("monitor window", e, "a row-major matrix"))?;
        Dataset::new(x, names.to_vec())
    }

    /// The scores, oldest first, without the NaN ones (a row scored NaN has no estimate);
    /// and how many were NaN.
    pub(crate) fn scores(&self) -> (Vec<f64>, usize) {
        let all: Vec<f32> = self.order().map(|i| self.predictions[i]).collect();
        let kept: Vec<f64> = all
            .iter()
            .filter(|p| !p.is_nan())
            .map(|&p| f64::from(p))
            .collect();
        let dropped = all.len() - kept.len();
        (kept, dropped)
    }

    /// The predictions as a one-column dataset named `name`, oldest first.
    pub(crate) fn predictions(&self, name: &str) -> mlops_core::Result<Dataset> {
        let p: Vec<f32> = self.order().map(|i| self.predictions[i]).collect();
        let x = Array2::from_shape_vec((p.len(), 1), p)
            .map_err(|e| mlops_core::Error::invalid("monitor window", e, "one column"))?;
        Dataset::new(x, vec![name.to_string()])
    }
}

/// The most recent `capacity` labeled rows: score, label and sensitive group, in a ring.
#[derive(Debug)]
pub(crate) struct LabelWindow {
    capacity: usize,
    scores: Vec<f32>,
    labels: Vec<f32>,
    groups: Vec<Option<std::sync::Arc<str>>>,
    next: usize,
}

impl LabelWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        LabelWindow {
            capacity,
            scores: Vec::new(),
            labels: Vec::new(),
            groups: Vec::new(),
            next: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }

    /// Appends a labeled row; a non-finite score (a row the model answered NaN for) is not
    /// kept: no metric can read it.
    pub(crate) fn push(
        &mut self,
        score: f32,
        label: bool,
        group: Option<std::sync::Arc<str>>,
    ) -> bool {
        if !score.is_finite() {
            return false;
        }
        let label = if label { 1.0 } else { 0.0 };
        if self.scores.len() < self.capacity {
            self.scores.push(score);
            self.labels.push(label);
            self.groups.push(group);
        } else {
            self.scores[self.next] = score;
            self.labels[self.next] = label;
            self.groups[self.next] = group;
        }
        self.next = (self.next + 1) % self.capacity;
        true
    }

    /// The labeled rows as scored samples (order does not matter to a metric).
    pub(crate) fn samples(&self) -> mlops_core::Result<mlops_core::metrics::ScoredSamples> {
        mlops_core::metrics::ScoredSamples::from_f32(&self.labels, &self.scores, None)
    }

    /// The rows that have a group, as fairness data (decisions at `threshold`); `None` when
    /// no row has one.
    pub(crate) fn by_group(&self, threshold: f32) -> Option<mlops_core::fairness::FairnessData> {
        use mlops_core::fairness::{FairnessData, SensitiveGroups};
        let rows: Vec<usize> = (0..self.len())
            .filter(|&i| self.groups[i].is_some())
            .collect();
        if rows.is_empty() {
            return None;
        }
        let names: Vec<&str> = rows
            .iter()
            .filter_map(|&i| self.groups[i].as_deref())
            .collect();
        let groups = SensitiveGroups::new(&[("group", &names[..])]).ok()?;
        let labels: Vec<f64> = rows.iter().map(|&i| f64::from(self.labels[i])).collect();
        let scores: Vec<f64> = rows.iter().map(|&i| f64::from(self.scores[i])).collect();
        FairnessData::from_scores(&labels, &scores, f64::from(threshold), None, groups).ok()
    }

    /// Positive rows kept.
    pub(crate) fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l == 1.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_ring_keeps_the_last_rows_in_order_with_their_times() {
        let mut w = RowWindow::new(2, 3);
        assert_eq!(w.bounds(), None);
        w.push_rows(array![[1.0, 10.0], [2.0, 20.0]].view(), &[0.1, 0.2], 5);
        assert_eq!(w.len(), 2);
        w.push_rows(array![[3.0, 30.0], [4.0, 40.0]].view(), &[0.3, 0.4], 6);
        assert_eq!(w.len(), 3);
        let d = w.features(&["a".into(), "b".into()]).unwrap();
        assert_eq!(d.features(), &array![[2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]);
        assert_eq!(w.bounds(), Some((5, 6)));
        let p = w.predictions("prediction").unwrap();
        assert_eq!(p.features().column(0).to_vec(), vec![0.2, 0.3, 0.4]);
        // Non-contiguous rows (a transposed view) land the same.
        let t = array![[5.0, 6.0], [50.0, 60.0]];
        w.push_rows(t.t(), &[0.5, 0.6], 7);
        let d = w.features(&["time".into(), "b".into()]).unwrap();
        assert_eq!(d.features(), &array![[4.0, 40.0], [5.0, 50.0], [6.0, 60.0]]);
        // A clock that stepped back: the bounds are still earliest, latest.
        w.push(&[7.0, 70.0], 0.7, 1);
        assert_eq!(w.bounds(), Some((1, 7)));
    }

    #[test]
    fn labels_drop_nan_scores_and_keep_the_last() {
        let mut l = LabelWindow::new(2);
        assert!(!l.push(f32::NAN, true, None));
        assert!(l.push(0.9, true, None));
        assert!(l.push(0.1, false, None));
        assert!(l.push(0.2, false, None));
        assert_eq!((l.len(), l.positives()), (2, 0));
    }
}
