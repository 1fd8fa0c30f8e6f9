//! What a route table holds: the variants (each a model), the live arms with their weights in
//! bucket order, and an optional shadow; checked before it is installed.

use std::sync::Arc;

use mlops_core::model::Predictor;

use crate::{Error, Result};

/// Sticky routing hashes a request key into this many buckets; weights are in hundredths of a
/// percent, one bucket each.
pub const BUCKETS: u32 = 10_000;

/// A model the router can send requests to.
#[derive(Clone)]
pub struct Variant {
    /// Its name in routes, statistics and metrics (`stable`, `canary`, an A/B arm's name).
    pub name: String,
    /// The model version it serves, when it came from a registry.
    pub version: Option<u64>,
    /// The model.
    pub predictor: Arc<dyn Predictor>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Variant {
    /// A variant named `name` serving `predictor`.
    pub fn new(
        name: impl Into<String>,
        version: Option<u64>,
        predictor: Arc<dyn Predictor>,
    ) -> Self {
        Variant {
            name: name.into(),
            version,
            predictor,
        }
    }
}

/// A shadow: `percent` of live requests are also scored by `variant`, off the request path.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowRoute {
    /// The variant scoring mirrored requests (it serves no live traffic unless it is also an
    /// arm).
    pub variant: String,
    /// Percent of requests mirrored, in [0, 100].
    pub percent: f64,
}

/// A route table's contents.
///
/// Arms own consecutive bucket ranges in the order given, so the first arm (the canary, in a
/// rollout) owns the lowest buckets: raising its weight only takes buckets from the next arm,
/// and lowering it gives back the highest of its buckets first.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Every model the table can reach (arms, the shadow, variants only forced to).
    pub variants: Vec<Variant>,
    /// The live arms, in bucket order: a variant name and its percent of traffic. Percents are
    /// multiples of 0.01 (one bucket) and sum to 100.
    pub weights: Vec<(String, f64)>,
    /// An optional shadow.
    pub shadow: Option<ShadowRoute>,
}

impl Routes {
    /// One variant taking all traffic.
    pub fn single(variant: Variant) -> Self {
        let name = variant.name.clone();
        Routes {
            variants: vec![variant],
            weights: vec![(name, 100.0)],
            shadow: None,
        }
    }
}

/// Percent → buckets, refusing what is not a whole number of buckets.
pub(crate) fn buckets_of(field: &str, percent: f64) -> Result<u32> {
    let b = percent * f64::from(BUCKETS) / 100.0;
    if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) || (b - b.round()).abs() > 1e-6 {
        return Err(Error::invalid(
            field,
            percent,
            "a percent in [0, 100], a multiple of 0.01 (one of 10,000 buckets)",
        ));
    }
    Ok(b.round() as u32)
}

/// Checked routes: arm `i` owns buckets `[upper[i-1], upper[i])`.
pub(crate) struct Checked {
    pub(crate) arm_variant: Vec<usize>,
    pub(crate) arm_upper: Vec<u32>,
    pub(crate) shadow: Option<(usize, u32)>,
}

pub(crate) fn check(routes: &Routes) -> Result<Checked> {
    if routes.variants.is_empty() {
        return Err(Error::invalid(
            "Routes.variants",
            "[]",
            "at least one variant",
        ));
    }
    let features = routes.variants[0].predictor.feature_names();
    for (i, v) in routes.variants.iter().enumerate() {
        if v.name.is_empty() || v.name.len() > 128 || v.name.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("Routes.variants[{i}].name"),
                format!("{:?}", v.name),
                "1 to 128 printable characters",
            ));
        }
        if routes.variants[..i].iter().any(|o| o.name == v.name) {
            return Err(Error::invalid(
                format!("Routes.variants[{i}].name"),
                format!("{:?}", v.name),
                "a name no other variant has",
            ));
        }
        if v.predictor.feature_names() != features {
            return Err(Error::invalid(
                format!("Routes.variants[{i}] ({}) features", v.name),
                format!("{:?}", v.predictor.feature_names()),
                format!("the features of {}: {features:?}", routes.variants[0].name),
            ));
        }
    }
    let index = |field: String, name: &str| {
        routes
            .variants
            .iter()
            .position(|v| v.name == name)
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("{name:?}"),
                    "the name of a variant of Routes.variants",
                )
            })
    };
    if routes.weights.is_empty() {
        return Err(Error::invalid("Routes.weights", "[]", "at least one arm"));
    }
    let mut arm_variant = Vec::new();
    let mut arm_upper = Vec::new();
    let mut upper = 0u32;
    for (i, (name, percent)) in routes.weights.iter().enumerate() {
        let v = index(format!("Routes.weights[{i}]"), name)?;
        if arm_variant.contains(&v) {
            return Err(Error::invalid(
                format!("Routes.weights[{i}]"),
                format!("{name:?}"),
                "a variant listed once",
            ));
        }
        upper += buckets_of(&format!("Routes.weights[{i}] ({name})"), *percent)?;
        arm_variant.push(v);
        arm_upper.push(upper);
    }
    if upper != BUCKETS {
        let total: f64 = routes.weights.iter().map(|(_, p)| p).sum();
        return Err(Error::invalid(
            "Routes.weights (sum)",
            total,
            "percents summing to 100",
        ));
    }
    let shadow = match &routes.shadow {
        None => None,
        Some(s) => {
            let v = index("Routes.shadow.variant".into(), &s.variant)?;
            let live = arm_variant
                .iter()
                .zip(&arm_upper)
                .scan(0u32, |lower, (&a, &up)| {
                    let share = up - *lower;
                    *lower = up;
                    Some((a, share))
                })
                .any(|(a, share)| a == v && share > 0);
            if live {
                return Err(Error::invalid(
                    "Routes.shadow.variant",
                    format!("{:?}", s.variant),
                    "a variant with no live traffic (its statistics would mix both roles)",
                ));
            }
            Some((v, buckets_of("Routes.shadow.percent", s.percent)?))
        }
    };
    Ok(Checked {
        arm_variant,
        arm_upper,
        shadow,
    })
}
