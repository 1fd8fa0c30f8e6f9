//! Search spaces: named parameters with a distribution, optionally active only when a
//! categorical parent takes given values (conditional parameters).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How one parameter is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// A float in `[low, high]`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// A float in `[low, high]`, uniform in log space (`low > 0`).
    LogUniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// An integer in `[low, high]`, optionally uniform in log space.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound (inclusive).
        high: i64,
        /// Uniform in log space (`low >= 1`).
        #[serde(default)]
        log: bool,
    },
    /// One of the choices.
    Categorical {
        /// The choices.
        choices: Vec<String>,
    },
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A categorical choice.
    Choice(String),
}

impl ParamValue {
    /// The value as a float (integers converted; `None` for a choice).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(i) => Some(*i as f64),
            ParamValue::Float(f) => Some(*f),
            ParamValue::Choice(_) => None,
        }
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Choice(c) => f.write_str(c),
        }
    }
}

/// The values of one trial's active parameters.
pub type Assignment = BTreeMap<String, ParamValue>;

/// Active only when `parent` (a categorical parameter defined earlier) is one of `values`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The parent parameter.
    pub parent: String,
    /// Parent values that activate this parameter.
    pub values: Vec<String>,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Name (a `--name=value` flag of a Katib trial).
    pub name: String,
    /// Its distribution.
    pub distribution: Distribution,
    /// When it is active (always, if `None`).
    #[serde(default)]
    pub condition: Option<Condition>,
}

/// An ordered list of parameters, checked on construction.
///
/// ```
/// use mlops_train::hpo::{Distribution, Param, SearchSpace};
///
/// let space = SearchSpace::new(vec![
///     Param { name: "lr".into(), distribution: Distribution::LogUniform { low: 1e-4, high: 1e-1 }, condition: None },
///     Param { name: "layers".into(), distribution: Distribution::Int { low: 1, high: 3, log: false }, condition: None },
/// ])?;
/// assert_eq!(space.params().len(), 2);
/// assert!(SearchSpace::new(vec![Param { name: "x".into(), distribution: Distribution::Uniform { low: 1.0, high: 0.0 }, condition: None }]).is_err());
/// # Ok::<(), mlops_train::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Param>", into = "Vec<Param>")]
pub struct SearchSpace {
    params: Vec<Param>,
}

impl TryFrom<Vec<Param>> for SearchSpace {
    type Error = Error;
    fn try_from(params: Vec<Param>) -> Result<Self> {
        SearchSpace::new(params)
    }
}

impl From<SearchSpace> for Vec<Param> {
    fn from(s: SearchSpace) -> Self {
        s.params
    }
}

impl SearchSpace {
    /// Checks names (unique, non-empty, `[A-Za-z0-9_-]`), bounds (finite, `low < high`, log
    /// bounds positive), choices (non-empty, unique) and conditions (on an earlier categorical
    /// parameter, with values among its choices).
    pub fn new(params: Vec<Param>) -> Result<Self> {
        if params.is_empty() {
            return Err(Error::invalid(
                "search space",
                "[]",
                "at least one parameter",
            ));
        }
        for (i, p) in params.iter().enumerate() {
            let field = |what: &str| format!("search space parameter `{}` {what}", p.name);
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::invalid(
                    format!("search space parameter {i} name"),
                    format!("{:?}", p.name),
                    "letters, digits, `_` and `-`",
                ));
            }
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::invalid(field("name"), &p.name, "a name used once"));
            }
            match &p.distribution {
                Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => {
                    let log = matches!(p.distribution, Distribution::LogUniform { .. });
                    if !(low.is_finite() && high.is_finite() && low < high && (!log || *low > 0.0))
                    {
                        return Err(Error::invalid(
                            field("bounds"),
                            format!("[{low}, {high}]"),
                            if log {
                                "finite 0 < low < high"
                            } else {
                                "finite low < high"
                            },
                        ));
                    }
                }
                Distribution::Int { low, high, log } => {
                    if low > high || (*log && *low < 1) {
                        return Err(Error::invalid(
                            field("bounds"),
                            format!("[{low}, {high}]"),
                            if *log {
                                "1 <= low <= high"
                            } else {
                                "low <= high"
                            },
                        ));
                    }
                }
                Distribution::Categorical { choices } => {
                    let mut seen = std::collections::HashSet::new();
                    if choices.is_empty() || !choices.iter().all(|c| seen.insert(c)) {
                        return Err(Error::invalid(
                            field("choices"),
                            format!("{choices:?}"),
                            "at least one choice, each once",
                        ));
                    }
                }
            }
            if let Some(c) = &p.condition {
                let parent = params[..i].iter().find(|q| q.name == c.parent);
                let ok = match parent.map(|q| &q.distribution) {
                    Some(Distribution::Categorical { choices }) => {
                        !c.values.is_empty() && c.values.iter().all(|v| choices.contains(v))
                    }
                    _ => false,
                };
                if !ok {
                    return Err(Error::invalid(
                        field("condition"),
                        format!("{} in {:?}", c.parent, c.values),
                        "an earlier categorical parameter and some of its choices",
                    ));
                }
            }
        }
        Ok(SearchSpace { params })
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Whether `p` is active given the values assigned so far.
    pub(crate) fn is_active(p: &Param, assigned: &Assignment) -> bool {
        match &p.condition {
            None => true,
            Some(c) => {
                matches!(assigned.get(&c.parent), Some(ParamValue::Choice(v)) if c.values.contains(v))
            }
        }
    }
}

/// A numeric parameter's position in `[0, 1]` (log-scaled where the distribution is), and
/// back. Integers map to the centre of their cell.
pub(crate) fn to_unit(d: &Distribution, v: &ParamValue) -> Option<f64> {
    let x = v.as_f64()?;
    Some(
        match d {
            Distribution::Uniform { low, high } => (x - low) / (high - low),
            Distribution::LogUniform { low, high } => (x.ln() - low.ln()) / (high.ln() - low.ln()),
            Distribution::Int { low, high, log } => {
                let (l, h) = (*low as f64 - 0.5, *high as f64 + 0.5);
                if *log {
                    (x.ln() - l.max(0.5).ln()) / (h.ln() - l.max(0.5).ln())
                } else {
                    (x - l) / (h - l)
                }
            }
            Distribution::Categorical { .. } => return None,
        }
        .clamp(0.0, 1.0),
    )
}

/// The value at unit position `u` of a numeric distribution.
pub(crate) fn from_unit(d: &Distribution, u: f64) -> ParamValue {
    let u = u.clamp(0.0, 1.0);
    match d {
        Distribution::Uniform { low, high } => ParamValue::Float(low + u * (high - low)),
        Distribution::LogUniform { low, high } => ParamValue::Float(
            (low.ln() + u * (high.ln() - low.ln()))
                .exp()
                .clamp(*low, *high),
        ),
        Distribution::Int { low, high, log } => {
            let (l, h) = (*low as f64 - 0.5, *high as f64 + 0.5);
            let x = if *log {
                let l = l.max(0.5);
                (l.ln() + u * (h.ln() - l.ln())).exp()
            } else {
                l + u * (h - l)
            };
            ParamValue::Int((x.round() as i64).clamp(*low, *high))
        }
        Distribution::Categorical { choices } => {
            let i = ((u * choices.len() as f64) as usize).min(choices.len() - 1);
            ParamValue::Choice(choices[i].clone())
        }
    }
}
