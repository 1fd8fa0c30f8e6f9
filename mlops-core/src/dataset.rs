//! The in-memory table every step reads: features, optional labels and sample weights, and
//! the schema that names and types the columns.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::schema::{ColumnKind, ColumnSchema, Schema};

/// Features (`Array2<f32>`, rows × columns), optional labels and sample weights, and a
/// [`Schema`] whose feature columns name the feature columns in order (the label, if any,
/// comes last in the schema).
///
/// Missing values are `NaN`. Invariants, checked by every constructor: the schema has one
/// feature column per feature, names are unique and non-empty, labels and weights have one
/// entry per row.
///
/// ```
/// use mlops_core::Dataset;
/// use ndarray::array;
///
/// let data = Dataset::new(array![[0.5_f32, 1.0], [1.5, 2.0]], vec!["a".into(), "b".into()])?
///     .with_labels(array![0.0_f32, 1.0], "y")?;
/// assert_eq!(data.n_rows(), 2);
/// assert_eq!(data.feature_names().collect::<Vec<_>>(), ["a", "b"]);
/// assert_eq!(data.column("b")?.to_vec(), vec![1.0, 2.0]);
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    features: Array2<f32>,
    labels: Option<Array1<f32>>,
    weights: Option<Array1<f32>>,
    schema: Schema,
    /// An ordering column (time, sequence number) kept in full `f64` precision beside the
    /// features, never a feature itself.
    order: Option<(String, Array1<f64>)>,
}

fn check_unique_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (j, name) in names.enumerate() {
        if name.is_empty() {
            return Err(Error::invalid(
                format!("column name #{j}"),
                "\"\"",
                "a non-empty name",
            ));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(
                format!("column name #{j}"),
                name,
                "a name not used by another column",
            ));
        }
    }
    Ok(())
}

impl Dataset {
    /// A dataset of numeric features named `feature_names`.
    pub fn new(features: Array2<f32>, feature_names: Vec<String>) -> Result<Self> {
        if features.ncols() != feature_names.len() {
            return Err(Error::LengthMismatch {
                left: "feature columns",
                left_len: features.ncols(),
                right: "feature_names",
                right_len: feature_names.len(),
            });
        }
        check_unique_names(feature_names.iter().map(String::as_str))?;
        let columns = feature_names
            .into_iter()
            .map(|n| ColumnSchema::new(n, ColumnKind::Numeric))
            .collect();
        Ok(Dataset {
            features,
            labels: None,
            weights: None,
            schema: Schema { columns },
            order: None,
        })
    }

    /// Adds (or replaces) the label column.
    pub fn with_labels(mut self, labels: Array1<f32>, name: impl Into<String>) -> Result<Self> {
        if labels.len() != self.n_rows() {
            return Err(Error::LengthMismatch {
                left: "rows",
                left_len: self.n_rows(),
                right: "labels",
                right_len: labels.len(),
            });
        }
        let name = name.into();
        self.schema.columns.retain(|c| c.kind != ColumnKind::Label);
        self.schema
            .columns
            .push(ColumnSchema::new(name, ColumnKind::Label));
        check_unique_names(self.schema.columns.iter().map(|c| c.name.as_str()))?;
        self.labels = Some(labels);
        Ok(self)
    }

    /// Adds (or replaces) the sample weights.
    pub fn with_weights(mut self, weights: Array1<f32>) -> Result<Self> {
        if weights.len() != self.n_rows() {
            return Err(Error::LengthMismatch {
                left: "rows",
                left_len: self.n_rows(),
                right: "sample weights",
                right_len: weights.len(),
            });
        }
        self.weights = Some(weights);
        Ok(self)
    }

    /// Marks the named feature columns as categorical codes.
    pub fn with_categorical(mut self, names: &[&str]) -> Result<Self> {
        if names.is_empty() {
            return Ok(self);
        }
        let index: std::collections::HashMap<String, usize> = self
            .feature_names()
            .enumerate()
            .map(|(j, n)| (n.to_string(), j))
            .collect();
        for name in names {
            let j = match index.get(*name) {
                Some(&j) => j,
                None => self.feature_index(name)?,
            };
            self.schema.columns[j].kind = ColumnKind::Categorical;
        }
        Ok(self)
    }

    /// Replaces the schema by `schema` (for example one inferred from a reference), which must
    /// list the same feature columns in the same order, and the label when there is one.
    pub fn with_schema(mut self, schema: Schema) -> Result<Self> {
        let ours: Vec<&str> = self.feature_names().collect();
        let theirs: Vec<&str> = schema.features().map(|c| c.name.as_str()).collect();
        if ours != theirs {
            return Err(Error::invalid(
                "schema feature columns",
                theirs.join(","),
                format!("the dataset's columns in order: {}", ours.join(",")),
            ));
        }
        match (self.label_name(), schema.label()) {
            (Some(a), Some(b)) if a == b.name => {}
            (None, None) => {}
            (a, b) => {
                return Err(Error::invalid(
                    "schema label column",
                    b.map_or("none", |c| c.name.as_str()),
                    format!("the dataset's label: {}", a.unwrap_or("none")),
                ))
            }
        }
        let mut columns: Vec<ColumnSchema> = schema.features().cloned().collect();
        columns.extend(schema.label().cloned());
        self.schema = Schema { columns };
        Ok(self)
    }

    /// The feature matrix, the labels and the weights, taken out without a copy (to hand
    /// them to another library).
    ///
    /// ```
    /// let data = mlops_core::Dataset::new(ndarray::Array2::zeros((3, 2)), vec!["a".into(), "b".into()])?;
    /// let (x, labels, weights) = data.into_arrays();
    /// assert_eq!((x.dim(), labels, weights), ((3, 2), None, None));
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn into_arrays(self) -> (Array2<f32>, Option<Array1<f32>>, Option<Array1<f32>>) {
        (self.features, self.labels, self.weights)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.features.nrows()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.features.ncols()
    }

    /// The feature matrix, rows × columns.
    pub fn features(&self) -> ArrayView2<'_, f32> {
        self.features.view()
    }

    /// Feature column `j`; callers pass `j < n_features()`.
    pub(crate) fn feature_column(&self, j: usize) -> ArrayView1<'_, f32> {
        self.features.column(j)
    }

    /// The labels, if any.
    pub fn labels(&self) -> Option<&Array1<f32>> {
        self.labels.as_ref()
    }

    /// The sample weights, if any.
    pub fn weights(&self) -> Option<&Array1<f32>> {
        self.weights.as_ref()
    }

    /// The schema (feature columns in order, then the label).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The feature names, in column order.
    pub fn feature_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.schema.features().map(|c| c.name.as_str())
    }

    /// The kind of each feature column, in column order.
    pub fn feature_kinds(&self) -> impl Iterator<Item = ColumnKind> + '_ {
        self.schema.features().map(|c| c.kind)
    }

    /// The label column's name, if there is a label.
    pub fn label_name(&self) -> Option<&str> {
        self.schema.label().map(|c| c.name.as_str())
    }

    /// The position of feature `name`.
    pub fn feature_index(&self, name: &str) -> Result<usize> {
        self.feature_names()
            .position(|n| n == name)
            .ok_or_else(|| Error::MissingColumn {
                name: name.to_string(),
                available: self.feature_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The feature column `name`.
    pub fn column(&self, name: &str) -> Result<ArrayView1<'_, f32>> {
        Ok(self.features.column(self.feature_index(name)?))
    }

    /// The dataset's fingerprint: lower-case hex sha256 of its shape, column names, features,
    /// labels and weights (little-endian f32 bits, row-major). The one fingerprint trainers,
    /// trackers, studies and the registry's lineage record, so the same data gives the same
    /// string everywhere.
    ///
    /// ```
    /// use mlops_core::Dataset;
    /// use ndarray::array;
    ///
    /// let a = Dataset::new(array![[1.0_f32, 2.0]], vec!["x".into(), "y".into()])?;
    /// let b = Dataset::new(array![[1.0_f32, 2.5]], vec!["x".into(), "y".into()])?;
    /// assert_eq!(a.fingerprint().len(), 64);
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.n_rows() as u64).to_le_bytes());
        h.update((self.n_features() as u64).to_le_bytes());
        for c in &self.schema.columns {
            h.update((c.name.len() as u64).to_le_bytes());
            h.update(c.name.as_bytes());
        }
        let mut buf = Vec::with_capacity(4 * self.n_features().max(1));
        for row in self.features.rows() {
            buf.clear();
            row.iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            h.update(&buf);
        }
        for (tag, values) in [(b'y', &self.labels), (b'w', &self.weights)] {
            if let Some(values) = values {
                h.update([tag]);
                values.iter().for_each(|v| h.update(v.to_le_bytes()));
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Attaches an ordering column (a time or sequence number) named `name`, kept in full
    /// `f64` precision and never used as a feature: Unix times and large ids do not survive
    /// `f32` (Unix seconds fall on a 128 s grid). [`Dataset::split_at_value`] and
    /// [`Dataset::ordered_split`] use it by name.
    ///
    /// ```
    /// use mlops_core::Dataset;
    /// use ndarray::array;
    ///
    /// let data = Dataset::new(array![[1.0_f32], [2.0]], vec!["x".into()])?
    ///     .with_order(array![1_700_000_099.0, 1_700_000_101.0], "time")?;
    /// let (past, future) = data.split_at_value("time", 1_700_000_100.0)?;
    /// assert_eq!((past.n_rows(), future.n_rows()), (1, 1));
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn with_order(mut self, values: Array1<f64>, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if values.len() != self.n_rows() {
            return Err(Error::LengthMismatch {
                left: "order column",
                left_len: values.len(),
                right: "rows",
                right_len: self.n_rows(),
            });
        }
        if self.feature_names().any(|n| n == name) || self.label_name() == Some(name.as_str()) {
            return Err(Error::invalid(
                "order column name",
                &name,
                "a name no feature or label column has",
            ));
        }
        self.order = Some((name, values));
        Ok(self)
    }

    /// The ordering column, when there is one: its name and values.
    pub fn order_column(&self) -> Option<(&str, &Array1<f64>)> {
        self.order.as_ref().map(|(n, v)| (n.as_str(), v))
    }

    /// The first non-finite feature value (NaN for a missing cell, or ±inf), as
    /// `(row, column name, value)`, scanning row by row.
    pub fn first_non_finite(&self) -> Option<(usize, &str, f32)> {
        self.features
            .rows()
            .into_iter()
            .enumerate()
            .find_map(|(i, row)| {
                row.iter()
                    .position(|v| !v.is_finite())
                    .map(|j| (i, self.schema.columns[j].name.as_str(), row[j]))
            })
    }

    /// Refuses a dataset with a non-finite feature, naming `role` (say `test`), the column, the
    /// row, the value and `expected` (what the caller needs, with the remedy).
    ///
    /// ```
    /// use mlops_core::Dataset;
    /// use ndarray::array;
    ///
    /// let d = Dataset::new(array![[1.0_f32, f32::NAN]], vec!["a".into(), "b".into()])?;
    /// let err = d.check_finite("test", "a finite number (impute before scoring)").unwrap_err();
    /// assert!(err.to_string().contains("test feature `b` at row 0 = missing"));
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn check_finite(&self, role: &str, expected: &str) -> Result<()> {
        match self.first_non_finite() {
            None => Ok(()),
            Some((i, name, v)) => Err(Error::invalid(
                format!("{role} feature `{name}` at row {i}"),
                if v.is_nan() {
                    "missing (an empty or NA cell)".to_string()
                } else {
                    v.to_string()
                },
                expected,
            )),
        }
    }

    /// Weighted count of rows labelled 1 (`None` without labels).
    pub fn positive_weight(&self) -> Option<f64> {
        let labels = self.labels.as_ref()?;
        Some(
            labels
                .iter()
                .enumerate()
                .filter(|(_, &y)| y == 1.0)
                .map(|(i, _)| self.weights.as_ref().map_or(1.0, |w| f64::from(w[i])))
                .sum(),
        )
    }

    /// A new dataset with rows `indices` (in that order; repeats allowed).
    pub fn select_rows(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.n_rows()) {
            return Err(Error::invalid(
                "row index",
                bad,
                format!("an index below the row count {}", self.n_rows()),
            ));
        }
        Ok(Dataset {
            features: self.features.select(Axis(0), indices),
            labels: self.labels.as_ref().map(|l| l.select(Axis(0), indices)),
            weights: self.weights.as_ref().map(|w| w.select(Axis(0), indices)),
            schema: self.schema.clone(),
            order: self
                .order
                .as_ref()
                .map(|(n, v)| (n.clone(), v.select(Axis(0), indices))),
        })
    }

    /// The rows of `parts`, in order, as one dataset (a window of batches). Every part must
    /// have the first one's schema (names, kinds, label), and labels, weights and the order
    /// column in all parts or in none.
    ///
    /// ```
    /// use mlops_core::Dataset;
    /// use ndarray::array;
    ///
    /// let a = Dataset::new(array![[1.0_f32]], vec!["x".into()])?.with_labels(array![0.0], "y")?;
    /// let b = Dataset::new(array![[2.0_f32], [3.0]], vec!["x".into()])?.with_labels(array![1.0, 0.0], "y")?;
    /// let both = Dataset::concat(&[&a, &b])?;
    /// assert_eq!(both.column("x")?.to_vec(), vec![1.0, 2.0, 3.0]);
    /// assert!(Dataset::concat(&[]).is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn concat(parts: &[&Dataset]) -> Result<Dataset> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("datasets to concatenate", "none", "at least one"))?;
        for (i, p) in parts.iter().enumerate().skip(1) {
            if p.schema != first.schema {
                return Err(Error::invalid(
                    format!("schema of dataset #{i}"),
                    p.schema
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    "the first dataset's schema (same columns, kinds and label)",
                ));
            }
            let shape = |d: &Dataset| {
                (
                    d.labels.is_some(),
                    d.weights.is_some(),
                    d.order.as_ref().map(|(n, _)| n.clone()),
                )
            };
            if shape(p) != shape(first) {
                return Err(Error::invalid(
                    format!("dataset #{i}"),
                    format!("{:?} (labels, weights, order column)", shape(p)),
                    format!("the first dataset's {:?}", shape(first)),
                ));
            }
        }
        let views: Vec<ArrayView2<'_, f32>> = parts.iter().map(|p| p.features.view()).collect();
        let features = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::invalid("datasets to concatenate", e, "equal widths"))?;
        let cat1 = |get: &dyn Fn(&Dataset) -> Option<ArrayView1<'_, f32>>| -> Option<Array1<f32>> {
            let views: Option<Vec<ArrayView1<'_, f32>>> = parts.iter().map(|p| get(p)).collect();
            views.map(|v| ndarray::concatenate(Axis(0), &v).expect("1-d arrays concatenate"))
        };
        let order = first.order.as_ref().map(|(name, _)| {
            let v: Vec<ArrayView1<'_, f64>> = parts
                .iter()
                .filter_map(|p| p.order.as_ref().map(|(_, v)| v.view()))
                .collect();
            (
                name.clone(),
                ndarray::concatenate(Axis(0), &v).expect("1-d arrays concatenate"),
            )
        });
        Ok(Dataset {
            features,
            labels: cat1(&|d| d.labels.as_ref().map(|l| l.view())),
            weights: cat1(&|d| d.weights.as_ref().map(|w| w.view())),
            schema: first.schema.clone(),
            order,
        })
    }

    /// A new dataset of the named feature columns, in the order named (a model's inputs taken
    /// from a wider table); labels, weights and the order column kept. A name the dataset
    /// lacks is an error listing its columns.
    ///
    /// ```
    /// let x = ndarray::array![[1.0_f32, 2.0, 3.0]];
    /// let data = mlops_core::Dataset::new(x, vec!["a".into(), "b".into(), "c".into()])?;
    /// let picked = data.select_features(&["c", "a"])?;
    /// assert_eq!(picked.features().row(0).to_vec(), [3.0, 1.0]);
    /// assert!(data.select_features(&["z"]).is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn select_features(&self, names: &[&str]) -> Result<Dataset> {
        let pick: Vec<usize> = names
            .iter()
            .map(|n| self.feature_index(n))
            .collect::<Result<_>>()?;
        check_unique_names(names.iter().copied())?;
        Ok(self.with_feature_columns(&pick))
    }

    /// The feature columns at `indices` (in range, in that order), the rest kept.
    fn with_feature_columns(&self, indices: &[usize]) -> Dataset {
        let mut columns: Vec<ColumnSchema> = indices
            .iter()
            .map(|&j| self.schema.columns[j].clone())
            .collect();
        columns.extend(self.schema.label().cloned());
        Dataset {
            features: self.features.select(Axis(1), indices),
            labels: self.labels.clone(),
            weights: self.weights.clone(),
            schema: Schema { columns },
            order: self.order.clone(),
        }
    }

    /// A new dataset without the named feature columns (for example an ordering column that
    /// must not be a feature).
    pub fn drop_features(&self, names: &[&str]) -> Result<Dataset> {
        let drop: Vec<usize> = names
            .iter()
            .map(|n| self.feature_index(n))
            .collect::<Result<_>>()?;
        let keep: Vec<usize> = (0..self.n_features())
            .filter(|j| !drop.contains(j))
            .collect();
        Ok(self.with_feature_columns(&keep))
    }
}
