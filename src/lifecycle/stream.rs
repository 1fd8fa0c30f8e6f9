//! A labeled stream cut into batches, for replaying the loop ([`backtest`](super::backtest)):
//! the synthetic card transactions (`mlops_core::synthetic`, with a known change), or any
//! time-ordered labeled CSV. Errors name the settings' fields (`batch_size`, `shift_at`, ...)
//! so a host can say them in its own words (a flag, a config key).
//!
//! ```
//! use mlops::lifecycle::stream::{Stream, SyntheticStream};
//!
//! let s = Stream::synthetic(&SyntheticStream { batches: 6, batch_size: 200, shift_batch: 4, gradual: 0, seed: 1 })?;
//! assert_eq!((s.batches.len(), s.shift_batch, s.spans[2].as_str()), (6, Some(4), "hour 2"));
//! let e = Stream::synthetic(&SyntheticStream { batches: 6, batch_size: 200, shift_batch: 6, gradual: 0, seed: 1 });
//! assert!(e.unwrap_err().to_string().starts_with("invalid shift_batch = 6"));
//! # Ok::<(), mlops::lifecycle::Error>(())
//! ```

use std::path::Path;

use mlops_core::synthetic::{Shift, TransactionConfig, TransactionStream};
use mlops_core::{CsvOptions, Dataset};

use super::{Error, Result};

/// The stream the loop replays, cut into batches.
#[derive(Debug, Clone)]
pub struct Stream {
    /// What it is, for the timeline.
    pub name: String,
    /// Every batch, in time order.
    pub batches: Vec<Dataset>,
    /// The first batch with rows from after the change (`None`: no known change).
    pub shift_batch: Option<usize>,
    /// The built-in stream, for fresh rows of the new world (the oracle's training data).
    pub synthetic: Option<TransactionStream>,
    /// Human-readable position of each batch's first and last row (`rows 0..499`, `day 0..364`).
    pub spans: Vec<String>,
    /// Every row's label in time order, positive or not (a CSV's rows past its last batch
    /// included): what a different batch size or history length would put in the history.
    pub positives: Vec<bool>,
}

impl Stream {
    /// What to change when the history (`train_batches` batches of `batch_rows` rows) holds
    /// fewer than `needed` positive labels: only values that pass every other check
    /// (`train_batches` at most [`MAX_TRAIN_BATCHES`] and two batches below the stream's count,
    /// `batch_size` in [`MIN_BATCH_SIZE`]..=[`MAX_BATCH_SIZE`], at least 4 batches), or plainly
    /// that no value helps. `knobs` are the host's names of the batch size and of the history's
    /// batches (`["--batch-size", "--train-batches"]` on a command line).
    ///
    /// ```
    /// use mlops::lifecycle::stream::{Stream, SyntheticStream};
    ///
    /// let s = Stream::synthetic(&SyntheticStream { batches: 8, batch_size: 100, shift_batch: 6, gradual: 0, seed: 1 })?;
    /// let hint = s.history_hint(1, 100, 1_000_000, ["batch_size", "train_batches"]);
    /// assert!(hint.contains("no batch_size or train_batches gives the history enough"), "{hint}");
    /// # Ok::<(), mlops::lifecycle::Error>(())
    /// ```
    pub fn history_hint(
        &self,
        train_batches: usize,
        batch_rows: usize,
        needed: usize,
        knobs: [&str; 2],
    ) -> String {
        let [size, train] = knobs;
        let total = self.positives.iter().filter(|p| **p).count();
        let rows = self.positives.len();
        // Rows from the start that hold `needed` positives.
        let Some(k) = self
            .positives
            .iter()
            .enumerate()
            .filter(|(_, p)| **p)
            .nth(needed.saturating_sub(1))
            .map(|(i, _)| i + 1)
        else {
            return format!(
                "the whole stream ({rows} rows) holds {total} positive labels, fewer than {needed}: no {size} or {train} gives the history enough; use data with more positives"
            );
        };
        let max_train = |n: usize| n.saturating_sub(2).min(MAX_TRAIN_BATCHES);
        if self.synthetic.is_some() {
            // The built-in stream is regenerated for another batch size: only more batches of
            // the same stream are exact.
            let t = k.div_ceil(batch_rows);
            return if t <= max_train(self.batches.len()) {
                format!("{train} {t} with {size} {batch_rows}")
            } else {
                format!(
                    "a larger {size} (the stream's first {k} rows hold {needed} positives; it has {} batches)",
                    self.batches.len()
                )
            };
        }
        // A CSV cut into batches of `bs` rows: how many batches it makes.
        let n = |bs: usize| (rows + bs / 2) / bs;
        let fits = |bs: usize, t: usize| {
            (MIN_BATCH_SIZE..=MAX_BATCH_SIZE).contains(&bs)
                && n(bs) >= 4
                && t >= 1
                && t <= max_train(n(bs))
                && t * bs >= k
        };
        let mut ways = Vec::new();
        let bs = k.div_ceil(train_batches).max(MIN_BATCH_SIZE);
        if fits(bs, train_batches) {
            ways.push(format!("{size} {bs} with {train} {train_batches}"));
        }
        let t = k.div_ceil(batch_rows);
        if fits(batch_rows, t) {
            ways.push(format!("{train} {t} with {size} {batch_rows}"));
        }
        if ways.is_empty() {
            if let Some(bs) =
                (MIN_BATCH_SIZE..=rows.min(MAX_BATCH_SIZE)).find(|&bs| fits(bs, k.div_ceil(bs)))
            {
                ways.push(format!("{size} {bs} with {train} {}", k.div_ceil(bs)));
            }
        }
        if ways.is_empty() {
            format!(
                "the stream's first {k} rows hold {needed} positive labels, and no {size} and {train} put that many rows in the history while leaving two batches to serve"
            )
        } else {
            format!(
                "the stream's first {k} rows hold {needed}: e.g. {}",
                ways.join(", or ")
            )
        }
    }
}

/// The smallest batch a stream is cut into (rows).
pub const MIN_BATCH_SIZE: usize = 50;
/// The largest batch a stream is cut into (rows).
pub const MAX_BATCH_SIZE: usize = 10_000_000;
/// The most batches of history [`Stream::history_hint`] suggests.
pub const MAX_TRAIN_BATCHES: usize = 1_000;

/// Settings of the synthetic card-transaction stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticStream {
    /// Batches (one simulated hour each).
    pub batches: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// The first batch of the new world.
    pub shift_batch: usize,
    /// The change is gradual over this many batches (0 or 1: abrupt).
    pub gradual: usize,
    /// Seed of the data.
    pub seed: u64,
}

/// The most rows the built-in stream may hold (it is generated up front, in memory, and the
/// run copies parts of it). Measured (`/usr/bin/time -v`, debug build, `--batches 6
/// --train-batches 2 --trials 1`): peak RSS 58 MB at 120,000 rows, 459 MB at 1.2 million, 1.07
/// GB at 3 million: about 340 bytes a row over the whole run (the stream alone, about 55), so
/// about 1.7 GB at this cap.
pub const MAX_STREAM_ROWS: usize = 5_000_000;

impl Stream {
    /// The synthetic stream of `s`, generated in memory (at most [`MAX_STREAM_ROWS`] rows).
    pub fn synthetic(s: &SyntheticStream) -> Result<Stream> {
        if s.batches.saturating_mul(s.batch_size) > MAX_STREAM_ROWS {
            return Err(Error::invalid(
            "batch_size",
            s.batch_size,
            format!(
                "at most {} rows a batch with batches = {} (the stream is generated in memory, at most {MAX_STREAM_ROWS} rows in all)",
                MAX_STREAM_ROWS / s.batches.max(1),
                s.batches
            ),
        ));
        }
        if s.shift_batch >= s.batches {
            return Err(Error::invalid(
                "shift_batch",
                s.shift_batch,
                format!("a batch below batches ({})", s.batches),
            ));
        }
        let shift = if s.gradual > 1 {
            Shift::gradual(s.shift_batch, s.gradual)
        } else {
            Shift::abrupt(s.shift_batch)
        };
        let stream = TransactionStream::new(TransactionConfig {
            batch_size: s.batch_size,
            shift: Some(shift),
            seed: s.seed,
            ..TransactionConfig::default()
        })?;
        let batches = (0..s.batches)
            .map(|i| stream.batch(i))
            .collect::<mlops_core::Result<Vec<_>>>()?;
        let spans = (0..s.batches)
            .map(|i| format!("hour {i}"))
            .collect::<Vec<_>>();
        let positives = batches
            .iter()
            .flat_map(|b| b.labels().into_iter().flatten().map(|y| *y > 0.5))
            .collect();
        Ok(Stream {
            name: format!(
                "synthetic card transactions ({} batches x {} rows, {} shift at batch {})",
                s.batches,
                s.batch_size,
                if s.gradual > 1 {
                    format!("gradual ({} batches)", s.gradual)
                } else {
                    "abrupt".to_string()
                },
                s.shift_batch
            ),
            batches,
            shift_batch: Some(s.shift_batch),
            positives,
            synthetic: Some(stream),
            spans,
        })
    }

    /// A labeled CSV or Parquet file (by its name, see `Dataset::from_path`) ordered by `order_col`, cut into batches of `batch_size` rows (a last batch
    /// of fewer than half as many rows is dropped); `shift_at` is where its known change is, in
    /// `order_col` units. Errors name `data`, `order_col`, `batch_size`, `shift_at`.
    pub fn csv(
        path: &Path,
        label: &str,
        order_col: &str,
        shift_at: Option<f64>,
        batch_size: usize,
    ) -> Result<Stream> {
        let options = CsvOptions {
            order: Some(order_col.to_string()),
            ..CsvOptions::with_label(label)
        };
        let data = Dataset::from_path(path, &options)?;
        if data.n_features() == 0 {
            return Err(Error::invalid(
            "data",
            path.display(),
            format!("feature columns: every column but the label {label:?} and the order {order_col:?} is a feature, and the file has no feature columns"),
        ));
        }
        data.check_finite(
            "data",
            "a finite number on every row (impute missing values first)",
        )?;
        let Some((_, order)) = data.order_column() else {
            return Err(Error::invalid(
                "order_col",
                order_col,
                "a column the file holds",
            ));
        };
        if let Some(i) = order.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("order_col {order_col:?} at row {i}"),
                order[i],
                "a finite value on every row",
            ));
        }
        let mut rows: Vec<usize> = (0..data.n_rows()).collect();
        rows.sort_by(|&a, &b| order[a].total_cmp(&order[b]));
        let Some(labels) = data.labels() else {
            return Err(Error::invalid("label", label, "a column the file holds"));
        };
        let positives = rows.iter().map(|&r| labels[r] > 0.5).collect();
        let n_batches = (rows.len() + batch_size / 2) / batch_size;
        if n_batches < 4 {
            return Err(Error::invalid(
            "batch_size",
            batch_size,
            format!(
                "at most {} rows a batch: {} has {} rows, {n_batches} batches of {batch_size}, and the loop needs at least 4",
                rows.len() / 4,
                path.display(),
                rows.len()
            ),
        ));
        }
        let mut batches = Vec::with_capacity(n_batches);
        let mut spans = Vec::with_capacity(n_batches);
        let mut shift_batch = None;
        for b in 0..n_batches {
            let end = ((b + 1) * batch_size).min(rows.len());
            let idx = &rows[b * batch_size..end];
            let first = order[idx[0]];
            let last = order[idx[idx.len() - 1]];
            if shift_batch.is_none() && shift_at.is_some_and(|s| last >= s) {
                shift_batch = Some(b);
            }
            spans.push(format!("{order_col} {first}..{last}"));
            batches.push(data.select_rows(idx)?);
        }
        if let (Some(s), None) = (shift_at, shift_batch) {
            return Err(Error::invalid(
                "shift_at",
                s,
                format!("a value within the {order_col:?} column's range"),
            ));
        }
        Ok(Stream {
            name: format!(
                "{} ({n_batches} batches x {batch_size} rows by {order_col:?}{})",
                path.display(),
                shift_at.map_or(String::new(), |s| format!(", change at {order_col} = {s}"))
            ),
            batches,
            shift_batch,
            synthetic: None,
            spans,
            positives,
        })
    }
}
