//! Schemas: what each column of a dataset is and which values it may hold.
//!
//! A [`Schema`] lists columns with their kind (numeric, categorical code, label), whether they
//! may be missing, and the observed range or categories. [`Schema::infer`] derives one from a
//! reference dataset the way TFDV's `infer_schema` does (a column seen without missing values
//! is required; categorical columns get their observed domain); the validator then checks new
//! data against it. Schemas round-trip through serde JSON.
//!
//! ```
//! use mlops_core::{Dataset, Schema};
//! use ndarray::array;
//!
//! let data = Dataset::new(array![[1.0_f32, 0.0], [3.0, 1.0]], vec!["x".into(), "y".into()])?;
//! let schema = Schema::infer(&data);
//! let x = schema.column("x").unwrap();
//! assert_eq!((x.min, x.max, x.nullable), (Some(1.0), Some(3.0), false));
//! let json = serde_json::to_string(&schema).unwrap();
//! assert_eq!(serde_json::from_str::<Schema>(&json).unwrap(), schema);
//! # Ok::<(), mlops_core::Error>(())
//! ```

use std::collections::BTreeSet;

use ndarray::ArrayView1;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// A real-valued feature.
    Numeric,
    /// A categorical feature stored as integer codes.
    Categorical,
    /// The label.
    Label,
}

impl ColumnKind {
    /// Every variant, in declaration order.
    pub const ALL: [ColumnKind; 3] = [
        ColumnKind::Numeric,
        ColumnKind::Categorical,
        ColumnKind::Label,
    ];

    /// The serialized name (`numeric`, `categorical`, `label`), as serde writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
            ColumnKind::Label => "label",
        }
    }
}

/// One column of a [`Schema`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// Column name.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// Whether missing values (NaN, empty cells) are allowed.
    #[serde(default)]
    pub nullable: bool,
    /// Smallest value observed in the reference (finite values only). Data values are `f32`;
    /// range checks compare in `f32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value observed in the reference (finite values only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Allowed integer codes of a categorical column (or label values), sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<i64>>,
}

impl ColumnSchema {
    /// A column with a kind and no constraints beyond it.
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Self {
        ColumnSchema {
            name: name.into(),
            kind,
            nullable: false,
            min: None,
            max: None,
            categories: None,
        }
    }

    fn infer(name: &str, kind: ColumnKind, values: ArrayView1<'_, f32>) -> Self {
        let mut col = ColumnSchema::new(name, kind);
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        let mut codes = BTreeSet::new();
        for &v in values {
            if v.is_nan() {
                col.nullable = true;
                continue;
            }
            if v.is_finite() {
                min = min.min(v);
                max = max.max(v);
                if kind != ColumnKind::Numeric && v.fract() == 0.0 {
                    codes.insert(v as i64);
                }
            }
        }
        if min <= max {
            col.min = Some(f32_as_decimal(min));
            col.max = Some(f32_as_decimal(max));
        }
        if kind != ColumnKind::Numeric {
            col.categories = Some(codes.into_iter().collect());
        }
        col
    }
}

/// The `f64` whose shortest decimal text is the `f32`'s (10.82, not 10.819999694824219), so
/// JSON shows what the data said; converting it back with `as f32` gives the same `f32`.
fn f32_as_decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The columns of a dataset, features first in their order, then the label if there is one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The columns.
    pub columns: Vec<ColumnSchema>,
}

impl Schema {
    /// Infers a schema from a reference dataset: kinds from the dataset, `nullable` when a
    /// missing value was seen, observed min/max, and the categories of categorical columns and
    /// of the label.
    pub fn infer(data: &Dataset) -> Schema {
        let kinds = data.schema().columns.iter().map(|c| c.kind);
        let mut columns: Vec<ColumnSchema> = data
            .feature_names()
            .zip(kinds)
            .enumerate()
            .map(|(j, (name, kind))| ColumnSchema::infer(name, kind, data.feature_column(j)))
            .collect();
        if let (Some(labels), Some(name)) = (data.labels(), data.label_name()) {
            columns.push(ColumnSchema::infer(name, ColumnKind::Label, labels.view()));
        }
        tracing::debug!(
            columns = columns.len(),
            rows = data.n_rows(),
            "schema inferred"
        );
        Schema { columns }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The feature columns (every column but the label).
    pub fn features(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.columns.iter().filter(|c| c.kind != ColumnKind::Label)
    }

    /// The label column, if any.
    pub fn label(&self) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.kind == ColumnKind::Label)
    }
}
