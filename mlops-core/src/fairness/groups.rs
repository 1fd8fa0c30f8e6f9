//! Which group each row belongs to: one sensitive column, or several and their intersections.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The most groups one assessment may hold (a column of ids passed by mistake would otherwise
/// make one group per row).
pub const MAX_GROUPS: usize = 10_000;

/// The longest group value, in bytes.
pub const MAX_GROUP_VALUE_BYTES: usize = 256;

/// Each row's group, from one or several sensitive columns. With several columns a group is an
/// intersection (`("F", "b")`), and only intersections that occur are groups, as in Fairlearn's
/// `MetricFrame`. Groups are sorted by their values (column by column, as text).
///
/// The columns need not be model features: they are passed beside the predictions.
///
/// ```
/// use mlops_core::fairness::SensitiveGroups;
///
/// let sex = ["F", "M", "F", "M"];
/// let band = ["young", "young", "old", "young"];
/// let g = SensitiveGroups::new(&[("sex", &sex[..]), ("age", &band[..])])?;
/// assert_eq!(g.group_count(), 3);
/// assert_eq!(g.name(g.group_of(1)), "sex=M, age=young");
/// assert_eq!(g.find(&["F", "old"]), Some(g.group_of(2)));
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SensitiveGroups {
    columns: Vec<String>,
    keys: Vec<Vec<String>>,
    of_row: Vec<u32>,
}

impl SensitiveGroups {
    /// Groups from named columns of equal length (at least one row, at most [`MAX_GROUPS`]
    /// groups, values of at most [`MAX_GROUP_VALUE_BYTES`] bytes).
    pub fn new<S: AsRef<str>>(columns: &[(&str, &[S])]) -> Result<Self> {
        let Some((_, first)) = columns.first() else {
            return Err(Error::invalid(
                "sensitive_features",
                "no columns",
                "at least one sensitive column",
            ));
        };
        let rows = first.len();
        let mut names = Vec::with_capacity(columns.len());
        for (name, values) in columns {
            if values.len() != rows {
                return Err(Error::invalid(
                    format!("sensitive_features[{name:?}]"),
                    format!("{} values", values.len()),
                    format!("{rows} values, as many as the first column has"),
                ));
            }
            if names.contains(&name.to_string()) {
                return Err(Error::invalid(
                    "sensitive_features",
                    name,
                    "distinct column names",
                ));
            }
            names.push(name.to_string());
        }
        if rows == 0 {
            return Err(Error::invalid(
                "sensitive_features",
                "0 rows",
                "at least one row",
            ));
        }
        let mut index: BTreeMap<Vec<&str>, u32> = BTreeMap::new();
        let mut raw = Vec::with_capacity(rows);
        for row in 0..rows {
            let key: Vec<&str> = columns.iter().map(|(_, v)| v[row].as_ref()).collect();
            if let Some(long) = key.iter().find(|v| v.len() > MAX_GROUP_VALUE_BYTES) {
                return Err(Error::invalid(
                    format!("sensitive_features[{row}]"),
                    format!("a value of {} bytes", long.len()),
                    format!("group values of at most {MAX_GROUP_VALUE_BYTES} bytes"),
                ));
            }
            let next = index.len() as u32;
            let id = *index.entry(key).or_insert(next);
            if index.len() > MAX_GROUPS {
                return Err(too_many(index.len()));
            }
            raw.push(id);
        }
        // Renumber in sorted key order.
        let mut order = vec![0u32; index.len()];
        let mut keys = Vec::with_capacity(index.len());
        for (sorted, (key, first_seen)) in index.into_iter().enumerate() {
            order[first_seen as usize] = sorted as u32;
            keys.push(key.into_iter().map(str::to_string).collect());
        }
        let of_row = raw.into_iter().map(|id| order[id as usize]).collect();
        Ok(SensitiveGroups {
            columns: names,
            keys,
            of_row,
        })
    }

    /// Groups from integer codes already assigned (`codes[i]` indexes `keys`), the fast path a
    /// binding uses after encoding its columns. Every key has one value per column; every code
    /// must be in range; keys must be distinct. Keys are kept in the order given (a binding
    /// passes them sorted); a key no row has takes no part in any measure.
    ///
    /// ```
    /// use mlops_core::fairness::SensitiveGroups;
    ///
    /// let g = SensitiveGroups::from_codes(
    ///     vec!["race".into()],
    ///     vec![vec!["a".into()], vec!["b".into()]],
    ///     vec![1, 0, 1],
    /// )?;
    /// assert_eq!(g.rows_per_group(), vec![1, 2]);
    /// assert!(SensitiveGroups::from_codes(vec!["race".into()], vec![vec!["a".into()]], vec![3]).is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn from_codes(
        columns: Vec<String>,
        keys: Vec<Vec<String>>,
        codes: Vec<u32>,
    ) -> Result<Self> {
        if columns.is_empty() {
            return Err(Error::invalid(
                "sensitive_features",
                "no columns",
                "at least one sensitive column",
            ));
        }
        if codes.is_empty() {
            return Err(Error::invalid(
                "sensitive_features",
                "0 rows",
                "at least one row",
            ));
        }
        if keys.len() > MAX_GROUPS {
            return Err(too_many(keys.len()));
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(Error::invalid(
                    "sensitive_features",
                    c,
                    "distinct column names",
                ));
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if let Some(long) = key.iter().find(|v| v.len() > MAX_GROUP_VALUE_BYTES) {
                return Err(Error::invalid(
                    format!("group_keys[{i}]"),
                    format!("a value of {} bytes", long.len()),
                    format!("group values of at most {MAX_GROUP_VALUE_BYTES} bytes"),
                ));
            }
            if key.len() != columns.len() {
                return Err(Error::invalid(
                    format!("group_keys[{i}]"),
                    format!("{} values", key.len()),
                    format!("one value per sensitive column ({})", columns.len()),
                ));
            }
            if !seen.insert(key) {
                return Err(Error::invalid(
                    format!("group_keys[{i}]"),
                    key.join(", "),
                    "distinct group keys",
                ));
            }
        }
        if let Some((row, code)) = codes
            .iter()
            .enumerate()
            .find(|(_, &c)| c as usize >= keys.len())
        {
            return Err(Error::invalid(
                format!("group_codes[{row}]"),
                code,
                format!("a group index below {}", keys.len()),
            ));
        }
        Ok(SensitiveGroups {
            columns,
            keys,
            of_row: codes,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.of_row.len()
    }

    /// Always false: construction refuses empty input.
    pub fn is_empty(&self) -> bool {
        self.of_row.is_empty()
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.keys.len()
    }

    /// The sensitive column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Group `g`'s values, one per column.
    pub fn key(&self, g: usize) -> &[String] {
        &self.keys[g]
    }

    /// Group `g` for a person: the value alone with one column, `col=value, ...` with several.
    pub fn name(&self, g: usize) -> String {
        if self.columns.len() == 1 {
            return self.keys[g][0].clone();
        }
        self.columns
            .iter()
            .zip(&self.keys[g])
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The group of row `row`.
    pub fn group_of(&self, row: usize) -> usize {
        self.of_row[row] as usize
    }

    /// Each row's group.
    pub fn codes(&self) -> &[u32] {
        &self.of_row
    }

    /// The group whose values are `key` (one per column).
    pub fn find<S: AsRef<str>>(&self, key: &[S]) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.len() == key.len() && k.iter().zip(key).all(|(a, b)| a == b.as_ref()))
    }

    /// Rows in each group.
    pub fn rows_per_group(&self) -> Vec<usize> {
        let mut n = vec![0; self.keys.len()];
        for &g in &self.of_row {
            n[g as usize] += 1;
        }
        n
    }
}

fn too_many(n: usize) -> Error {
    Error::invalid(
        "sensitive_features",
        format!("{n} groups"),
        format!("at most {MAX_GROUPS} groups (is an id column passed as a sensitive feature?)"),
    )
}
