//! A seeded synthetic card-transaction stream with a realistic fraud structure and a
//! configurable shift: the built-in data of the closed loop (`examples/pipeline`) and of tests
//! that need a world that changes on cue.
//!
//! Each row is one transaction. About 1.5% are fraud before the shift (2% after). Features:
//!
//! | column | kind | what it holds |
//! |---|---|---|
//! | `amount_log` | numeric | ln of the amount (legitimate median about 30) |
//! | `amount_vs_avg_log` | numeric | ln(amount / the card's 30-day average) |
//! | `hour` | numeric | local time of day, in [0, 24) |
//! | `merchant_category` | categorical | 0 grocery, 1 fuel, 2 restaurant, 3 travel, 4 electronics, 5 online retail, 6 gaming, 7 jewelry |
//! | `distance_log` | numeric | ln(1 + km from the card's home) |
//! | `card_present` | categorical | 1 chip or swipe, 0 card not present |
//! | `txn_count_24h` | numeric | the card's transactions in the last 24 hours |
//! | `account_age_log` | numeric | ln of the account's age in days |
//! | `foreign` | categorical | 1 abroad |
//! | `failed_logins_7d` | numeric | failed logins on the account in the last 7 days |
//!
//! Before the shift, fraud is the classic stolen-card pattern: large amounts far above the
//! card's average, at night, far from home, abroad, electronics, travel and jewelry. The shift
//! ([`Shift`]) changes two things, each of which can be switched off: spending
//! (`covariate`: larger and later purchases, more online retail, fewer card-present payments,
//! more transactions a day) and the fraud concept (`concept`: account takeover and card
//! testing: small amounts below the average, in the daytime, near home, gaming and online
//! retail, new accounts, bursts of transactions, failed logins). A model of the old fraud
//! loses much of its ranking power on the new one, and a drift monitor sees the spending
//! change in most columns. The shift is abrupt, or gradual over some batches (each row is drawn
//! from the new world with a probability that ramps up linearly).
//!
//! Batches are random access: batch `i` depends only on the seed and `i`.
//!
//! ```
//! use mlops_core::synthetic::{Shift, TransactionConfig, TransactionStream};
//!
//! let stream = TransactionStream::new(TransactionConfig {
//!     batch_size: 2_000,
//!     shift: Some(Shift::abrupt(10)),
//!     ..TransactionConfig::default()
//! })?;
//! let before = stream.batch(3)?;
//! assert_eq!((before.n_rows(), before.n_features()), (2_000, 10));
//! assert_eq!(stream.new_world_share(3), 0.0);
//! assert_eq!(stream.new_world_share(10), 1.0);
//! let frauds = before.positive_weight().unwrap();
//! assert!((5.0..=70.0).contains(&frauds), "{frauds}"); // about 1.5% of 2,000
//! # Ok::<(), mlops_core::Error>(())
//! ```

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Dataset;

/// The feature columns, in order.
pub const FEATURES: [&str; 10] = [
    "amount_log",
    "amount_vs_avg_log",
    "hour",
    "merchant_category",
    "distance_log",
    "card_present",
    "txn_count_24h",
    "account_age_log",
    "foreign",
    "failed_logins_7d",
];

/// The categorical feature columns (integer codes).
pub const CATEGORICAL: [&str; 3] = ["merchant_category", "card_present", "foreign"];

/// The label column (1 = fraud).
pub const LABEL: &str = "is_fraud";

/// The order column (Unix seconds of simulated time).
pub const TIME: &str = "time";

/// How the world changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ShiftKind {
    /// Every row from batch `at_batch` on comes from the new world.
    Abrupt,
    /// The new world's share ramps linearly: `k / over_batches` in batch `at_batch + k - 1`,
    /// all of it from batch `at_batch + over_batches - 1` on.
    Gradual {
        /// Batches the change takes, ≥ 1.
        over_batches: usize,
    },
}

/// A change of the world at a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// The first batch with rows from the new world.
    pub at_batch: usize,
    /// Abrupt or gradual.
    pub kind: ShiftKind,
    /// Whether spending patterns change (the features of legitimate transactions).
    pub covariate: bool,
    /// Whether the fraud concept changes (the features of fraudulent transactions).
    pub concept: bool,
}

impl Shift {
    /// An abrupt change of spending and of the fraud concept at `at_batch`.
    pub fn abrupt(at_batch: usize) -> Self {
        Shift {
            at_batch,
            kind: ShiftKind::Abrupt,
            covariate: true,
            concept: true,
        }
    }

    /// A change of spending and of the fraud concept ramping over `over_batches` from
    /// `at_batch`.
    pub fn gradual(at_batch: usize, over_batches: usize) -> Self {
        Shift {
            kind: ShiftKind::Gradual { over_batches },
            ..Shift::abrupt(at_batch)
        }
    }
}

/// The stream's settings. serde with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionConfig {
    /// Transactions per batch, ≥ 1 (default 5,000).
    pub batch_size: usize,
    /// Fraud rate before the shift, in (0, 1) (default 0.015).
    pub fraud_rate: f64,
    /// Fraud rate of the new world, in (0, 1) (default 0.02).
    pub fraud_rate_after: f64,
    /// Simulated seconds a batch spans, > 0 (default 3,600).
    pub seconds_per_batch: f64,
    /// Unix seconds of the first transaction (default 2026-01-01T00:00:00Z).
    pub start_unix: f64,
    /// The change, if any (default: abrupt at batch 15).
    pub shift: Option<Shift>,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            batch_size: 5_000,
            fraud_rate: 0.015,
            fraud_rate_after: 0.02,
            seconds_per_batch: 3_600.0,
            start_unix: 1_767_225_600.0,
            shift: Some(Shift::abrupt(15)),
            seed: 0,
        }
    }
}

impl TransactionConfig {
    /// Checks every field; errors name it.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::invalid(
                "TransactionConfig.batch_size",
                0,
                "at least 1",
            ));
        }
        for (field, v) in [
            ("TransactionConfig.fraud_rate", self.fraud_rate),
            ("TransactionConfig.fraud_rate_after", self.fraud_rate_after),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(Error::invalid(field, v, "a rate in (0, 1)"));
            }
        }
        if !(self.seconds_per_batch.is_finite() && self.seconds_per_batch > 0.0) {
            return Err(Error::invalid(
                "TransactionConfig.seconds_per_batch",
                self.seconds_per_batch,
                "seconds > 0",
            ));
        }
        if !self.start_unix.is_finite() {
            return Err(Error::invalid(
                "TransactionConfig.start_unix",
                self.start_unix,
                "finite Unix seconds",
            ));
        }
        if let Some(Shift {
            kind: ShiftKind::Gradual { over_batches: 0 },
            ..
        }) = self.shift
        {
            return Err(Error::invalid(
                "TransactionConfig.shift.over_batches",
                0,
                "at least 1 batch",
            ));
        }
        Ok(())
    }
}

/// One world's distributions of one class.
struct Profile {
    amount: (f64, f64),
    amount_vs_avg: (f64, f64),
    /// Two daytime modes: (weight of the first, mean 1, sd 1, mean 2, sd 2).
    hour: (f64, f64, f64, f64, f64),
    merchant: [f64; 8],
    distance: (f64, f64),
    card_present: f64,
    txn_count: f64,
    account_age: (f64, f64),
    foreign: f64,
    failed_logins: f64,
}

const LEGIT_OLD: Profile = Profile {
    amount: (3.4, 1.0),
    amount_vs_avg: (0.0, 0.5),
    hour: (0.6, 12.5, 3.0, 19.0, 2.5),
    merchant: [0.28, 0.14, 0.20, 0.05, 0.06, 0.20, 0.04, 0.03],
    distance: (1.6, 0.9),
    card_present: 0.7,
    txn_count: 3.0,
    account_age: (6.6, 0.9),
    foreign: 0.05,
    failed_logins: 0.15,
};

const LEGIT_NEW: Profile = Profile {
    amount: (3.9, 1.05),
    hour: (0.45, 14.0, 3.0, 20.5, 2.0),
    merchant: [0.20, 0.10, 0.17, 0.05, 0.07, 0.33, 0.05, 0.03],
    distance: (2.0, 1.0),
    card_present: 0.5,
    txn_count: 4.0,
    ..LEGIT_OLD
};

const FRAUD_OLD: Profile = Profile {
    amount: (4.3, 1.1),
    amount_vs_avg: (0.8, 0.8),
    hour: (0.6, 2.5, 2.5, 13.0, 4.0),
    merchant: [0.08, 0.06, 0.08, 0.15, 0.25, 0.20, 0.06, 0.12],
    distance: (2.8, 1.3),
    card_present: 0.35,
    txn_count: 4.0,
    account_age: (6.3, 1.0),
    foreign: 0.25,
    failed_logins: 0.4,
};

const FRAUD_NEW: Profile = Profile {
    amount: (3.2, 0.9),
    amount_vs_avg: (-0.3, 0.6),
    hour: (0.3, 2.5, 2.5, 14.0, 3.5),
    merchant: [0.06, 0.06, 0.06, 0.05, 0.10, 0.30, 0.30, 0.07],
    distance: (2.3, 1.1),
    card_present: 0.2,
    txn_count: 7.0,
    account_age: (5.0, 1.2),
    foreign: 0.12,
    failed_logins: 1.2,
};

fn normal(rng: &mut ChaCha8Rng, (mean, sd): (f64, f64)) -> f64 {
    Normal::new(mean, sd).map_or(mean, |n| n.sample(rng))
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> f64 {
    Poisson::new(lambda).map_or(0.0, |p| p.sample(rng))
}

impl Profile {
    fn draw(&self, rng: &mut ChaCha8Rng, row: &mut [f32]) {
        let (w, m1, s1, m2, s2) = self.hour;
        let hour = if rng.random::<f64>() < w {
            normal(rng, (m1, s1))
        } else {
            normal(rng, (m2, s2))
        };
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut merchant = 7;
        for (k, p) in self.merchant.iter().enumerate() {
            acc += p;
            if u < acc {
                merchant = k;
                break;
            }
        }
        let values = [
            normal(rng, self.amount),
            normal(rng, self.amount_vs_avg),
            hour.rem_euclid(24.0),
            merchant as f64,
            normal(rng, self.distance).max(0.0),
            f64::from(u8::from(rng.random::<f64>() < self.card_present)),
            poisson(rng, self.txn_count),
            normal(rng, self.account_age).max(0.0),
            f64::from(u8::from(rng.random::<f64>() < self.foreign)),
            poisson(rng, self.failed_logins),
        ];
        for (cell, v) in row.iter_mut().zip(values) {
            *cell = v as f32;
        }
    }
}

/// The stream (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionStream {
    config: TransactionConfig,
}

impl TransactionStream {
    /// A stream with `config` (checked).
    pub fn new(config: TransactionConfig) -> Result<Self> {
        config.validate()?;
        Ok(TransactionStream { config })
    }

    /// Its settings.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// The share of batch `index`'s rows drawn from the new world (0 before the shift, 1 once
    /// it is complete).
    pub fn new_world_share(&self, index: usize) -> f64 {
        match self.config.shift {
            None => 0.0,
            Some(s) if index < s.at_batch => 0.0,
            Some(Shift {
                kind: ShiftKind::Abrupt,
                ..
            }) => 1.0,
            Some(Shift {
                at_batch,
                kind: ShiftKind::Gradual { over_batches },
                ..
            }) => ((index - at_batch + 1) as f64 / over_batches as f64).min(1.0),
        }
    }

    /// Batch `index`: `batch_size` labeled transactions (label [`LABEL`]) with their time in
    /// the order column [`TIME`], in time order.
    pub fn batch(&self, index: usize) -> Result<Dataset> {
        let seed = self
            .config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(index as u64);
        let start = self.config.start_unix + index as f64 * self.config.seconds_per_batch;
        self.generate(
            self.config.batch_size,
            self.new_world_share(index),
            seed,
            start,
        )
    }

    /// `rows` transactions all from the new world (`true`) or the old one, drawn with `seed`
    /// independently of the batches: fresh data for a reference model (an oracle trained on
    /// the new world). Their times span one batch from the start.
    pub fn sample(&self, rows: usize, new_world: bool, seed: u64) -> Result<Dataset> {
        if rows == 0 {
            return Err(Error::invalid("rows", 0, "at least 1"));
        }
        let share = if new_world && self.config.shift.is_some() {
            1.0
        } else {
            0.0
        };
        self.generate(rows, share, seed ^ 0x05EE_D0F0_AC1E, self.config.start_unix)
    }

    fn generate(&self, rows: usize, share: f64, seed: u64, start: f64) -> Result<Dataset> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shift = self.config.shift;
        let covariate = shift.is_some_and(|s| s.covariate);
        let concept = shift.is_some_and(|s| s.concept);
        let mut x = Array2::<f32>::zeros((rows, FEATURES.len()));
        let mut y = Array1::<f32>::zeros(rows);
        let mut times: Vec<f64> = (0..rows)
            .map(|_| start + rng.random::<f64>() * self.config.seconds_per_batch)
            .collect();
        times.sort_by(f64::total_cmp);
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            let new = share > 0.0 && rng.random::<f64>() < share;
            let rate = if new {
                self.config.fraud_rate_after
            } else {
                self.config.fraud_rate
            };
            let fraud = rng.random::<f64>() < rate;
            let profile = match (fraud, new) {
                (false, true) if covariate => &LEGIT_NEW,
                (false, _) => &LEGIT_OLD,
                (true, true) if concept => &FRAUD_NEW,
                (true, _) => &FRAUD_OLD,
            };
            let cells = row
                .as_slice_mut()
                .ok_or_else(|| Error::invalid("feature row", "strided", "a contiguous row"))?;
            profile.draw(&mut rng, cells);
            y[i] = f32::from(u8::from(fraud));
        }
        Dataset::new(x, FEATURES.iter().map(|s| s.to_string()).collect())?
            .with_categorical(&CATEGORICAL)?
            .with_labels(y, LABEL)?
            .with_order(Array1::from(times), TIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ScoredSamples;

    fn rate(d: &Dataset) -> f64 {
        d.positive_weight().unwrap() / d.n_rows() as f64
    }

    fn mean(d: &Dataset, column: &str) -> f64 {
        let c = d.column(column).unwrap();
        c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len() as f64
    }

    /// A fixed score of the old fraud pattern (amount above the average, far from home,
    /// abroad): how far the old concept carries.
    fn old_rule_auc(d: &Dataset) -> f64 {
        let x = d.features();
        let scores: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| f64::from(r[1] + 0.5 * r[4] + r[8]))
            .collect();
        let labels: Vec<f64> = d.labels().unwrap().iter().map(|&v| f64::from(v)).collect();
        ScoredSamples::new(&labels, &scores, None)
            .unwrap()
            .roc_auc()
            .unwrap()
    }

    fn stream(shift: Option<Shift>) -> TransactionStream {
        TransactionStream::new(TransactionConfig {
            batch_size: 40_000,
            shift,
            seed: 3,
            ..TransactionConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn the_base_rate_is_about_one_and_a_half_percent_then_two() {
        let s = stream(Some(Shift::abrupt(5)));
        let before = rate(&s.batch(1).unwrap());
        let after = rate(&s.batch(6).unwrap());
        // 40,000 rows: the binomial sd of the rate is about 0.0006 (0.0007 after).
        assert!((before - 0.015).abs() < 0.003, "{before}");
        assert!((after - 0.02).abs() < 0.003, "{after}");
        let s = TransactionStream::new(TransactionConfig::default()).unwrap();
        let d = s.batch(0).unwrap();
        assert_eq!(d.n_rows(), 5_000);
        assert!((0.01..=0.02).contains(&rate(&d)), "{}", rate(&d));
    }

    #[test]
    fn batches_are_deterministic_time_ordered_and_differ_by_index_and_seed() {
        let s = stream(None);
        assert_eq!(s.batch(2).unwrap(), s.batch(2).unwrap());
        assert_ne!(s.batch(2).unwrap(), s.batch(3).unwrap());
        let other = TransactionStream::new(TransactionConfig {
            seed: 4,
            ..*s.config()
        })
        .unwrap();
        assert_ne!(s.batch(2).unwrap(), other.batch(2).unwrap());
        let d = s.batch(2).unwrap();
        let (name, t) = d.order_column().unwrap();
        assert_eq!(name, TIME);
        assert!(t.windows(2).into_iter().all(|w| w[0] <= w[1]));
        let first = TransactionConfig::default().start_unix + 2.0 * 3_600.0;
        assert!(t[0] >= first && t[t.len() - 1] < first + 3_600.0);
        assert!(d.first_non_finite().is_none());
        let kinds: Vec<_> = d.feature_kinds().collect();
        assert_eq!(kinds[3], crate::ColumnKind::Categorical);
    }

    #[test]
    fn an_abrupt_shift_moves_spending_and_breaks_the_old_fraud_pattern() {
        let s = stream(Some(Shift::abrupt(5)));
        let (before, after) = (s.batch(4).unwrap(), s.batch(5).unwrap());
        assert!(mean(&after, "amount_log") - mean(&before, "amount_log") > 0.35);
        assert!(mean(&before, "card_present") - mean(&after, "card_present") > 0.15);
        assert!(mean(&after, "txn_count_24h") - mean(&before, "txn_count_24h") > 0.7);
        let (auc_before, auc_after) = (old_rule_auc(&before), old_rule_auc(&after));
        assert!(auc_before > 0.85, "{auc_before}");
        assert!(auc_after < 0.7, "{auc_after}");
        // No shift: the same pattern holds in a late batch.
        let still = stream(None);
        assert!(old_rule_auc(&still.batch(30).unwrap()) > 0.85);
    }

    #[test]
    fn covariate_only_and_concept_only_shifts_change_only_their_part() {
        let covariate = stream(Some(Shift {
            concept: false,
            ..Shift::abrupt(0)
        }));
        let d = covariate.batch(1).unwrap();
        assert!(mean(&d, "amount_log") > 3.75);
        assert!(old_rule_auc(&d) > 0.8, "{}", old_rule_auc(&d));
        let concept = stream(Some(Shift {
            covariate: false,
            ..Shift::abrupt(0)
        }));
        let d = concept.batch(1).unwrap();
        assert!((mean(&d, "amount_log") - 3.4).abs() < 0.05);
        assert!(old_rule_auc(&d) < 0.7);
    }

    #[test]
    fn a_gradual_shift_ramps_the_new_worlds_share() {
        let s = stream(Some(Shift::gradual(10, 4)));
        let shares: Vec<f64> = (8..16).map(|i| s.new_world_share(i)).collect();
        assert_eq!(shares, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        let amount: Vec<f64> = [9, 11, 14]
            .iter()
            .map(|&i| mean(&s.batch(i).unwrap(), "amount_log"))
            .collect();
        assert!(amount[0] < amount[1] && amount[1] < amount[2], "{amount:?}");
    }

    #[test]
    fn samples_come_from_one_world_and_bad_settings_are_named() {
        let s = stream(Some(Shift::abrupt(5)));
        let new = s.sample(20_000, true, 1).unwrap();
        assert!(old_rule_auc(&new) < 0.7);
        assert!(old_rule_auc(&s.sample(20_000, false, 1).unwrap()) > 0.85);
        assert!(s.sample(0, true, 1).is_err());
        for (config, field) in [
            (
                TransactionConfig {
                    batch_size: 0,
                    ..TransactionConfig::default()
                },
                "batch_size",
            ),
            (
                TransactionConfig {
                    fraud_rate: 1.0,
                    ..TransactionConfig::default()
                },
                "fraud_rate",
            ),
            (
                TransactionConfig {
                    seconds_per_batch: f64::NAN,
                    ..TransactionConfig::default()
                },
                "seconds_per_batch",
            ),
            (
                TransactionConfig {
                    shift: Some(Shift::gradual(3, 0)),
                    ..TransactionConfig::default()
                },
                "over_batches",
            ),
        ] {
            let err = TransactionStream::new(config).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
