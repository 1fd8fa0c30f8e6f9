//! What a comparison runs: the per-column tests ([`DriftTest`]) and the configuration
//! ([`DriftConfig`]: significance, correction, preset, thresholds, minimum samples).

use std::collections::BTreeMap;
use std::fmt;

use mlops_core::ColumnKind;
use serde::{Deserialize, Serialize};

use crate::correction::Correction;
use crate::error::{Error, Result};
use crate::stats::KsMethod;

/// A per-column drift test. Names are the ones the `drift_report` example takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    /// Two-sample Kolmogorov–Smirnov (p-value).
    Ks,
    /// Two-sample Cramér–von Mises (p-value).
    Cvm,
    /// Anderson–Darling k-sample (p-value, scipy's clamped one).
    Ad,
    /// Mann–Whitney U (p-value).
    Mwu,
    /// Wasserstein-1 divided by the reference std (distance).
    Wasserstein,
    /// Energy distance divided by the reference std (distance).
    Energy,
    /// Population stability index on reference-quantile bins (distance).
    Psi,
    /// Jensen–Shannon distance on bins or categories (distance).
    Js,
    /// Hellinger distance on bins or categories (distance).
    Hellinger,
    /// Total variation distance on bins or categories (distance).
    Tv,
    /// KL(current ‖ reference) on bins or categories (distance).
    Kl,
    /// Chi-square test of homogeneity on category counts (p-value).
    Chi2,
    /// G-test on category counts (p-value).
    GTest,
    /// Two-proportion Z-test of a binary category (p-value).
    Z,
}

impl DriftTest {
    /// Every test.
    pub const ALL: [DriftTest; 14] = [
        DriftTest::Ks,
        DriftTest::Cvm,
        DriftTest::Ad,
        DriftTest::Mwu,
        DriftTest::Wasserstein,
        DriftTest::Energy,
        DriftTest::Psi,
        DriftTest::Js,
        DriftTest::Hellinger,
        DriftTest::Tv,
        DriftTest::Kl,
        DriftTest::Chi2,
        DriftTest::GTest,
        DriftTest::Z,
    ];

    /// The snake_case name. The serialized name, as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftTest::Ks => "ks",
            DriftTest::Cvm => "cvm",
            DriftTest::Ad => "ad",
            DriftTest::Mwu => "mwu",
            DriftTest::Wasserstein => "wasserstein",
            DriftTest::Energy => "energy",
            DriftTest::Psi => "psi",
            DriftTest::Js => "js",
            DriftTest::Hellinger => "hellinger",
            DriftTest::Tv => "tv",
            DriftTest::Kl => "kl",
            DriftTest::Chi2 => "chi2",
            DriftTest::GTest => "g_test",
            DriftTest::Z => "z",
        }
    }

    /// The same as [`as_str`](Self::as_str).
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    /// Whether the test decides by p-value (else by a distance threshold).
    pub fn uses_pvalue(self) -> bool {
        matches!(
            self,
            DriftTest::Ks
                | DriftTest::Cvm
                | DriftTest::Ad
                | DriftTest::Mwu
                | DriftTest::Chi2
                | DriftTest::GTest
                | DriftTest::Z
        )
    }

    /// The default distance threshold (Evidently's 0.1 for every distance).
    pub fn default_threshold(self) -> f64 {
        0.1
    }

    pub(super) fn needs_numeric(self) -> bool {
        matches!(
            self,
            DriftTest::Ks
                | DriftTest::Cvm
                | DriftTest::Ad
                | DriftTest::Mwu
                | DriftTest::Wasserstein
                | DriftTest::Energy
                | DriftTest::Psi
        )
    }

    pub(super) fn needs_categorical(self) -> bool {
        matches!(self, DriftTest::Chi2 | DriftTest::GTest | DriftTest::Z)
    }
}

impl fmt::Display for DriftTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DriftTest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        DriftTest::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DriftTest::ALL.iter().map(|t| t.name()).collect();
                Error::invalid("drift test", s, format!("one of {}", names.join(", ")))
            })
    }
}

/// How a batch is compared with a reference, as written (serde with defaults, or in code);
/// [`DriftConfig::check`] turns it into the [`CheckedDriftConfig`] that
/// [`ReferenceProfile::compare`](crate::ReferenceProfile::compare) and
/// [`DriftMonitor::new`](crate::DriftMonitor::new) take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Significance level of p-value tests (default 0.05).
    pub alpha: f64,
    /// Correction across the family of p-values of a report (default Holm).
    pub correction: Correction,
    /// Tests run on every column, the first deciding; empty = the preset (see
    /// [`DriftConfig::preset`]).
    pub tests: Vec<DriftTest>,
    /// Per-column overrides of `tests`.
    pub column_tests: BTreeMap<String, Vec<DriftTest>>,
    /// Distance thresholds by test (default 0.1 each).
    pub thresholds: BTreeMap<DriftTest, f64>,
    /// Only these columns (empty = every column of the profile).
    pub columns: Vec<String>,
    /// How KS p-values are computed.
    pub ks_method: KsMethod,
    /// Effect-size gate: a p-value test flags drift only if the effect (KS statistic for
    /// numeric columns, total variation for categorical ones) is at least this.
    pub min_effect: Option<f64>,
    /// Dataset drift when at least this share of columns drifted (Evidently's 0.5).
    pub drift_share: f64,
    /// The seed's rule: dataset drift when the mean effect (mean KS statistic) exceeds this
    /// (0.3); `None` turns it off.
    pub mean_effect_threshold: Option<f64>,
    /// Size above which the preset switches from tests to distances (Evidently's 1000).
    pub preset_size: usize,
    /// Fewest non-missing values on each side (and rows, for the missing-value test) for a
    /// column to be tested (default 30); below it the column is
    /// [`ColumnStatus::InsufficientData`](super::ColumnStatus::InsufficientData), never "no drift" and never "drift".
    pub min_samples: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            alpha: 0.05,
            correction: Correction::Holm,
            tests: Vec::new(),
            column_tests: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            columns: Vec::new(),
            ks_method: KsMethod::Auto,
            min_effect: None,
            drift_share: 0.5,
            mean_effect_threshold: Some(0.3),
            preset_size: 1000,
            min_samples: 30,
        }
    }
}

mlops_core::checked_config! {
    /// A checked [`DriftConfig`] (see [`DriftConfig::check`]). Read its fields through
    /// `Deref`.
    ///
    /// ```
    /// use mlops_drift::{CheckedDriftConfig, DriftConfig};
    ///
    /// let config = DriftConfig { alpha: 0.01, ..DriftConfig::default() }.check()?;
    /// assert_eq!(config.alpha, 0.01);
    /// assert_eq!(CheckedDriftConfig::default().config(), &DriftConfig::default());
    /// let stored: CheckedDriftConfig = serde_json::from_str(r#"{"alpha": 0.01}"#)?;
    /// assert_eq!(stored, config);
    /// assert!(serde_json::from_str::<CheckedDriftConfig>(r#"{"alpha": 2}"#).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[derive(Debug, Clone, PartialEq)]
    pub struct CheckedDriftConfig(DriftConfig);
}

impl Default for CheckedDriftConfig {
    /// [`DriftConfig::default`], which passes its check (a test runs it).
    fn default() -> Self {
        CheckedDriftConfig {
            config: DriftConfig::default(),
        }
    }
}

impl DriftConfig {
    /// Checks every field and returns the checked config; an error names the field
    /// (`DriftConfig.alpha`), its value and what was expected.
    ///
    /// ```
    /// use mlops_drift::DriftConfig;
    ///
    /// let e = DriftConfig { alpha: 1.5, ..DriftConfig::default() }.check().unwrap_err();
    /// assert!(e.to_string().starts_with("invalid DriftConfig.alpha = 1.5"), "{e}");
    /// ```
    pub fn check(self) -> Result<CheckedDriftConfig> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::invalid(
                "DriftConfig.alpha",
                self.alpha,
                "a number in (0, 1)",
            ));
        }
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return Err(Error::invalid(
                "DriftConfig.drift_share",
                self.drift_share,
                "a number in (0, 1]",
            ));
        }
        for (t, v) in &self.thresholds {
            if !(v.is_finite() && *v >= 0.0) {
                return Err(Error::invalid(
                    format!("DriftConfig.thresholds.{t}"),
                    v,
                    "a finite number >= 0",
                ));
            }
        }
        for (name, v) in [
            ("min_effect", self.min_effect),
            ("mean_effect_threshold", self.mean_effect_threshold),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(Error::invalid(
                        format!("DriftConfig.{name}"),
                        v,
                        "a finite number >= 0",
                    ));
                }
            }
        }
        if self.min_samples == 0 {
            return Err(Error::invalid(
                "DriftConfig.min_samples",
                self.min_samples,
                "at least 1 value per side",
            ));
        }
        Ok(CheckedDriftConfig { config: self })
    }

    /// Evidently's preset: numeric columns get KS up to `preset_size` reference rows and the
    /// normalized Wasserstein distance above; categorical columns get chi-square (Z for two
    /// categories) up to `preset_size` and the Jensen–Shannon distance above.
    pub fn preset(
        &self,
        kind: ColumnKind,
        reference_rows: usize,
        n_categories: usize,
    ) -> DriftTest {
        let small = reference_rows <= self.preset_size;
        match (kind, small) {
            (ColumnKind::Categorical, true) if n_categories <= 2 => DriftTest::Z,
            (ColumnKind::Categorical, true) => DriftTest::Chi2,
            (ColumnKind::Categorical, false) => DriftTest::Js,
            (_, true) => DriftTest::Ks,
            (_, false) => DriftTest::Wasserstein,
        }
    }

    pub(super) fn threshold(&self, test: DriftTest) -> f64 {
        self.thresholds
            .get(&test)
            .copied()
            .unwrap_or(test.default_threshold())
    }
}
