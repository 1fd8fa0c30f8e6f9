//! Reading the log back: the scored rows of one model in a time window, joined to their
//! labels, as a labeled [`Dataset`] (what a retrain job fits on), with counts of everything
//! that was read, left out, or could not be read.
//!
//! - **Partitions.** Only the `hour=` folders of the model that overlap the window are
//!   listed; every whole `*.parquet` file in them is read, and only its rows with
//!   `from <= time < to` are kept. Hidden (`.…`) and temporary files are not data: they are
//!   listed in [`LoggedWindow::skipped`] and never read.
//! - **Labels** are read from the label partitions of `[from, to + label_lag)` (labels are
//!   posted after their rows) and join scored rows on `(request_id, row)`. A row labeled twice
//!   takes the **last post** (the latest `time`; at equal times the later file, then the later
//!   row of the file). Rows with no label (or no request id) and labels that match no scored
//!   row of the window are counted, not errors.
//! - **One feature set.** A model whose feature columns changed leaves files of two sets in
//!   the log. The rows kept are those of the requested set ([`ReadOptions::features`], in any
//!   column order, returned in the requested order) or, with none requested, of the set of the
//!   window's latest row; files of another set are listed in [`LoggedWindow::skipped`] and
//!   their rows counted in [`WindowCounts::rows_other_features`]; sets are never mixed.
//! - **Ambiguous rows.** Scored rows sharing a `(request_id, row)` key (a client reusing an
//!   id) cannot be told apart by a label: they are left out and counted.
//! - **A corrupt file** (not Parquet, or not the log's columns) is skipped, named in
//!   [`LoggedWindow::skipped`] with the reason, and its rows are not counted; a store that
//!   cannot be listed or read is an error.
//! - **Bounded.** More than [`ReadOptions::max_rows`] scored rows in the window (or label rows
//!   read) is an error naming the setting, before the rest is read.
//! - **An empty result is not an error.** A window with no files, or no labels, returns a
//!   dataset of 0 rows and counts that say why; a retrain refuses it
//!   (`mlops::lifecycle::Retrainer` errors on a window of 0 rows).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use mlops_serve::predlog::{read_window, LogParts, PredictionLog, ReadOptions, ScoredBatch};
//! use ndarray::array;
//!
//! let dir = tempfile::tempdir()?;
//! let url = dir.path().to_str().unwrap();
//! let log = PredictionLog::open(url, LogParts::default())?;
//! let (model, variant) = (Arc::<str>::from("fraud"), Arc::<str>::from("stable"));
//! let features: Arc<[String]> = vec!["amount".to_string(), "age".to_string()].into();
//! let x = array![[12.5_f32, 40.0], [80.0, 22.0]];
//! log.record_scored(&ScoredBatch {
//!     model: &model, features: &features, request_id: Some("r-1"),
//!     variant: &variant, version: Some(3), x: x.view(), predictions: &[0.1, 0.9],
//! })?;
//! log.record_labels(&model, "r-1", &[0.0, 1.0])?;
//! log.close()?;
//!
//! let now = SystemTime::now();
//! let window = futures::executor::block_on(read_window(
//!     url, "fraud", now - Duration::from_secs(600), now + Duration::from_secs(1),
//!     &ReadOptions::default(),
//! ))?;
//! assert_eq!((window.counts.rows_read, window.counts.labeled), (2, 2));
//! assert_eq!(window.data.labels().unwrap().to_vec(), vec![0.0, 1.0]);
//! assert_eq!(window.data.feature_names().collect::<Vec<_>>(), ["amount", "age"]);
//! assert_eq!(window.versions.get(&3), Some(&2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mlops_core::clock::unix_micros as micros;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, TimestampMicrosecondType, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use mlops_core::object_store::path::Path;
use mlops_core::object_store::{ObjectStore, ObjectStoreExt};
use mlops_core::store_url::{open_url, require_existing, OpenedStore};
use mlops_core::Dataset;
use ndarray::{Array1, Array2};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use super::files::{feature_column, hour_name, parse_hour_name, partition_value, RowKind};
use super::{PREDICTION, PREDICTION_COLUMNS};
use crate::{Error, ErrorKind, Result};

/// The label column of a [`LoggedWindow`]'s dataset.
pub const LABEL_COLUMN: &str = "label";

/// The order column of a [`LoggedWindow`]'s dataset: the time each row was scored, in
/// seconds since the epoch (UTC).
pub const ORDER_COLUMN: &str = "time";

/// The default of [`ReadOptions::max_rows`]: 2 Mi rows (about 240 MB at 30 features).
pub const DEFAULT_MAX_ROWS: usize = 1 << 21;

/// How a window is read (see the module docs).
///
/// ```
/// use mlops_serve::predlog::ReadOptions;
///
/// let options = ReadOptions { features: Some(vec!["amount".into(), "age".into()]), ..ReadOptions::default() };
/// assert_eq!(options.max_rows, mlops_serve::predlog::DEFAULT_MAX_ROWS);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReadOptions {
    /// The feature columns to keep (the model's, in its order); `None`: the set of the
    /// window's latest scored row.
    pub features: Option<Vec<String>>,
    /// Most scored rows in the window, and most label rows read (at least 1): past it the read
    /// is an error naming this setting.
    pub max_rows: usize,
    /// How long after the window's end a label may be posted and still be read.
    pub label_lag: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            features: None,
            max_rows: DEFAULT_MAX_ROWS,
            label_lag: Duration::from_secs(24 * 3_600),
        }
    }
}

/// A file that was listed and not read as data, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFile {
    /// Its key under the log's root (`predictions/model=…/hour=…/…`).
    pub path: String,
    /// Why: a hidden or temporary file, not Parquet, not the log's columns, another feature set.
    pub reason: String,
}

/// What a window read found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WindowCounts {
    /// Parquet files read whole (scored rows and labels).
    pub files_read: u64,
    /// Scored rows in the window of the kept feature set.
    pub rows_read: u64,
    /// Of those, rows joined to a label: the dataset's rows.
    pub labeled: u64,
    /// Rows with no label posted (or no request id to post one under).
    pub unlabeled: u64,
    /// Rows left out because another row of the window has the same `(request_id, row)`.
    pub ambiguous: u64,
    /// Scored rows in the window of another feature set, left out.
    pub rows_other_features: u64,
    /// Label rows read (every post, in the label window).
    pub label_rows_read: u64,
    /// `(request_id, row)` keys labeled more than once (the last post won).
    pub relabeled: u64,
    /// Labeled keys that match no scored row of the window (posted for rows outside it, or
    /// whose rows were dropped).
    pub labels_without_rows: u64,
    /// Rows read with no model version.
    pub rows_without_version: u64,
}

/// A window of the log, joined (see the module docs).
#[derive(Debug, Clone)]
pub struct LoggedWindow {
    /// The labeled rows, oldest first: the features in the kept set's order, the label
    /// ([`LABEL_COLUMN`], 0 or 1) and the scoring time ([`ORDER_COLUMN`]). 0 rows when
    /// nothing in the window is labeled.
    pub data: Dataset,
    /// The feature set kept (empty when the window holds no scored row and none was asked).
    pub features: Vec<String>,
    /// What was read and left out.
    pub counts: WindowCounts,
    /// Rows read per model version (kept feature set).
    pub versions: BTreeMap<u64, u64>,
    /// Files not read as data, with why.
    pub skipped: Vec<SkippedFile>,
}

impl LoggedWindow {
    /// Rows of each class in [`LoggedWindow::data`]: `(negatives, positives)`.
    ///
    /// ```
    /// # fn f(w: &mlops_serve::predlog::LoggedWindow) {
    /// let (negatives, positives) = w.class_counts();
    /// # }
    /// ```
    pub fn class_counts(&self) -> (usize, usize) {
        self.data.labels().map_or((0, 0), |l| {
            let positives = l.iter().filter(|&&y| y == 1.0).count();
            (l.len() - positives, positives)
        })
    }
}

/// Reads the window `[from, to)` of `model` from the log at `location` (a folder or store
/// URL; a local folder must exist). See the module docs for what is kept and counted.
pub async fn read_window(
    location: &str,
    model: &str,
    from: SystemTime,
    to: SystemTime,
    options: &ReadOptions,
) -> Result<LoggedWindow> {
    require_existing("prediction log URL", location)?;
    let opened = open_url("prediction log URL", location, &BTreeMap::new())?;
    read_window_in(&opened, model, from, to, options).await
}

/// [`read_window`] on a store already opened (a host's own, a test's in-memory one).
///
/// ```
/// use std::collections::BTreeMap;
/// use std::time::{Duration, UNIX_EPOCH};
/// use mlops_serve::predlog::{read_window_in, ReadOptions};
///
/// let opened = mlops_core::store_url::open_url("log", "memory://", &BTreeMap::new())?;
/// let (from, to) = (UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(3_600));
/// let w = futures::executor::block_on(read_window_in(&opened, "fraud", from, to, &ReadOptions::default()))?;
/// assert_eq!((w.counts.files_read, w.data.n_rows()), (0, 0));
/// let e = futures::executor::block_on(read_window_in(&opened, "fraud", to, from, &ReadOptions::default())).unwrap_err();
/// assert!(e.to_string().contains("window"), "{e}");
/// # Ok::<(), mlops_serve::Error>(())
/// ```
pub async fn read_window_in(
    opened: &OpenedStore,
    model: &str,
    from: SystemTime,
    to: SystemTime,
    options: &ReadOptions,
) -> Result<LoggedWindow> {
    let (from_us, to_us) = (micros(from), micros(to));
    if from_us >= to_us {
        return Err(Error::invalid(
            "window",
            format!("[{from_us} µs, {to_us} µs)"),
            "a start before its end",
        ));
    }
    if options.max_rows == 0 {
        return Err(Error::invalid("ReadOptions.max_rows", 0, "at least 1 row"));
    }
    if model.is_empty() {
        return Err(Error::invalid("model", "\"\"", "a model name"));
    }
    let source = Source::of(opened);
    let mut read = Read {
        model,
        options,
        counts: WindowCounts::default(),
        skipped: Vec::new(),
    };
    // Scored rows, grouped by feature set (a sorted list of names).
    let mut groups: BTreeMap<Vec<String>, Scored> = BTreeMap::new();
    let mut in_window = 0_usize;
    for key in source
        .files(RowKind::Predictions, model, from_us, to_us)
        .await?
    {
        let rows = read
            .data_file(&source, &key, RowKind::Predictions, (from_us, to_us))
            .await?;
        let Some(Rows::Scored(file)) = rows else {
            continue;
        };
        in_window += file.len();
        if in_window > options.max_rows {
            return Err(read.too_many("scored rows", from_us, to_us));
        }
        if file.len() > 0 {
            let mut set = file.features.clone();
            set.sort();
            groups
                .entry(set)
                .or_insert_with(|| Scored::empty(file.features.clone()))
                .append(file, key);
        }
    }
    let wanted = match &options.features {
        Some(f) => {
            let mut set = f.clone();
            set.sort();
            if set.windows(2).any(|w| w[0] == w[1]) {
                return Err(Error::invalid(
                    "ReadOptions.features",
                    format!("{f:?}"),
                    "distinct feature names",
                ));
            }
            Some((set, f.clone()))
        }
        // The set of the latest row.
        None => groups
            .iter()
            .max_by_key(|(_, g)| g.latest)
            .map(|(set, g)| (set.clone(), g.latest_order.clone())),
    };
    let (kept, order) = match wanted {
        Some((set, order)) => (groups.remove(&set), order),
        None => (None, Vec::new()),
    };
    // Every scored key of the window, of any set: a label of another set's row has a row.
    let mut all_keys: HashMap<(Arc<str>, u32), u32> = HashMap::new();
    for g in groups.values().chain(kept.iter()) {
        for (id, row) in g.keys() {
            *all_keys.entry((id.clone(), row)).or_default() += 1;
        }
    }
    for (_, g) in groups {
        read.counts.rows_other_features += g.len() as u64;
        for key in g.files {
            read.skip(
                &key,
                format!(
                    "its features {:?} are not the kept set {order:?}",
                    g.features
                ),
            );
        }
    }
    let labels = read.labels(&source, from_us, to_us).await?;
    read.counts.labels_without_rows = labels
        .keys()
        .filter(|(id, row)| !all_keys.contains_key(&(id.clone(), *row)))
        .count() as u64;
    let kept = kept.unwrap_or_else(|| Scored::empty(order.clone()));
    let (data, versions) = read.join(kept, &order, &labels, &all_keys)?;
    tracing::info!(model, counts = ?read.counts, skipped = read.skipped.len(), "prediction log window read");
    Ok(LoggedWindow {
        data,
        features: order,
        counts: read.counts,
        versions,
        skipped: read.skipped,
    })
}

const HOUR_US: i64 = 3_600_000_000;

/// Where the files are: a local folder read with `std::fs` (the names exactly as the writer
/// made them), or a store.
enum Source {
    Local(PathBuf),
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: Path,
    },
}

impl Source {
    fn of(opened: &OpenedStore) -> Self {
        match &opened.local_dir {
            Some(dir) => Source::Local(dir.clone()),
            None => Source::Store {
                store: opened.store.clone(),
                prefix: opened.prefix.clone(),
            },
        }
    }

    /// Every file key (`kind/model=…/hour=…/name`) in the hour folders of `model` that overlap
    /// `[from_us, to_us)`, in key order.
    async fn files(
        &self,
        kind: RowKind,
        model: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<String>> {
        let root = format!("{}/model={}", kind.as_str(), partition_value(model));
        // By number: hour names sort as text only up to year 9999.
        let hours = from_us.div_euclid(HOUR_US)..=(to_us - 1).div_euclid(HOUR_US);
        let mut keys = Vec::new();
        for folder in self.list(&root, true).await? {
            let Some(hour) = folder.strip_prefix("hour=").and_then(parse_hour_name) else {
                continue;
            };
            if hours.contains(&hour) {
                let dir = format!("{root}/{folder}");
                for name in self.list(&dir, false).await? {
                    keys.push(format!("{dir}/{name}"));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The names of the folders (`folders`) or files directly under `dir`; none when `dir`
    /// does not exist.
    async fn list(&self, dir: &str, folders: bool) -> Result<Vec<String>> {
        match self {
            Source::Local(root) => {
                let path = root.join(dir);
                let listed = mlops_core::runtime::spawn_blocking(move || {
                    let entries = match std::fs::read_dir(&path) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                        Err(e) => return Err((path, e)),
                    };
                    let mut names = Vec::new();
                    for entry in entries {
                        let entry = entry.map_err(|e| (path.clone(), e))?;
                        let is_dir = entry.file_type().map_err(|e| (path.clone(), e))?.is_dir();
                        if is_dir == folders {
                            names.push(entry.file_name().to_string_lossy().into_owned());
                        }
                    }
                    Ok(names)
                })
                .await?;
                listed.map_err(|(path, e)| {
                    Error::with_cause(
                        ErrorKind::Unavailable,
                        format!("prediction log: listing {}: {e}", path.display()),
                        e,
                    )
                })
            }
            Source::Store { store, prefix } => {
                let full = join(prefix, dir);
                let path = Path::parse(&full).map_err(|e| {
                    Error::invalid("prediction log key", &full, format!("a store path ({e})"))
                })?;
                let store = store.clone();
                let listed = mlops_core::runtime::spawn(async move {
                    store.list_with_delimiter(Some(&path)).await
                })
                .await?
                .map_err(|e| store_error(&full, "listing", e))?;
                Ok(if folders {
                    listed
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().map(str::to_owned))
                        .collect()
                } else {
                    listed
                        .objects
                        .iter()
                        .filter_map(|o| o.location.filename().map(str::to_owned))
                        .collect()
                })
            }
        }
    }

    /// The file at `key` decoded as `kind` with its rows in `[from, to)`: `Ok(Err(why))` when
    /// it is not a file of the log (corrupt, other columns), `Err` when it cannot be read.
    async fn read(&self, key: &str, kind: RowKind, from: i64, to: i64) -> Result<Decoded> {
        match self {
            Source::Local(root) => {
                let path = root.join(key);
                let read = mlops_core::runtime::spawn_blocking({
                    let path = path.clone();
                    move || std::fs::File::open(path).map(|f| decode(f, kind, from, to))
                })
                .await?;
                read.map_err(|e| {
                    Error::with_cause(
                        ErrorKind::Unavailable,
                        format!("prediction log: reading {}: {e}", path.display()),
                        e,
                    )
                })
            }
            Source::Store { store, prefix } => {
                let full = join(prefix, key);
                let path = Path::parse(&full).map_err(|e| {
                    Error::invalid("prediction log key", &full, format!("a store path ({e})"))
                })?;
                let store = store.clone();
                let bytes =
                    mlops_core::runtime::spawn(
                        async move { store.get(&path).await?.bytes().await },
                    )
                    .await?
                    .map_err(|e| store_error(&full, "reading", e))?;
                Ok(decode(bytes, kind, from, to))
            }
        }
    }
}

/// A file's rows in the window, or why it is not a file of the log.
type Decoded = std::result::Result<Rows, String>;

enum Rows {
    Scored(ScoredFile),
    Labels(Vec<LabelPost>),
}

fn decode<R: ChunkReader + 'static>(r: R, kind: RowKind, from: i64, to: i64) -> Decoded {
    let batches = batches(r)?;
    match kind {
        RowKind::Predictions => decode_scored(&batches, from, to).map(Rows::Scored),
        RowKind::Labels => decode_labels(&batches, from, to).map(Rows::Labels),
    }
}

fn join(prefix: &Path, key: &str) -> String {
    if prefix.as_ref().is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    }
}

fn store_error(key: &str, action: &str, e: mlops_core::object_store::Error) -> Error {
    let kind = match e {
        mlops_core::object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        _ => ErrorKind::Unavailable,
    };
    Error::with_cause(kind, format!("prediction log: {action} {key}: {e}"), e)
}

/// One file's scored rows in the window (columns in the file's order).
struct ScoredFile {
    features: Vec<String>,
    ids: Vec<Option<Arc<str>>>,
    rows: Vec<u32>,
    times: Vec<i64>,
    versions: Vec<Option<u64>>,
    /// Row-major, `features.len()` values a row.
    x: Vec<f32>,
}

impl ScoredFile {
    fn len(&self) -> usize {
        self.times.len()
    }
}

/// The scored rows of one feature set, in the set's first file's column order.
struct Scored {
    features: Vec<String>,
    /// The time of the latest row, and the column order of its file.
    latest: Option<i64>,
    latest_order: Vec<String>,
    ids: Vec<Option<Arc<str>>>,
    rows: Vec<u32>,
    times: Vec<i64>,
    versions: Vec<Option<u64>>,
    x: Vec<f32>,
    files: Vec<String>,
}

impl Scored {
    fn empty(features: Vec<String>) -> Self {
        Scored {
            latest: None,
            latest_order: features.clone(),
            features,
            ids: vec![],
            rows: vec![],
            times: vec![],
            versions: vec![],
            x: vec![],
            files: vec![],
        }
    }

    fn len(&self) -> usize {
        self.times.len()
    }

    fn keys(&self) -> impl Iterator<Item = (&Arc<str>, u32)> + '_ {
        self.ids
            .iter()
            .zip(&self.rows)
            .filter_map(|(id, &row)| id.as_ref().map(|id| (id, row)))
    }

    /// Appends `file` (the same set, maybe in another column order).
    fn append(&mut self, file: ScoredFile, key: String) {
        let latest = file.times.iter().copied().max();
        if latest >= self.latest {
            self.latest = latest;
            self.latest_order.clone_from(&file.features);
        }
        let width = self.features.len();
        let index: Vec<usize> = self
            .features
            .iter()
            .map(|name| file.features.iter().position(|f| f == name).unwrap_or(0))
            .collect();
        if width > 0 {
            for values in file.x.chunks_exact(width) {
                self.x.extend(index.iter().map(|&j| values[j]));
            }
        }
        self.ids.extend(file.ids);
        self.rows.extend(file.rows);
        self.times.extend(file.times);
        self.versions.extend(file.versions);
        self.files.push(key);
    }
}

/// The latest post of one `(request_id, row)` key: (time, read order, label).
type LabelPosts = HashMap<(Arc<str>, u32), (i64, u64, u8)>;

struct Read<'a> {
    model: &'a str,
    options: &'a ReadOptions,
    counts: WindowCounts,
    skipped: Vec<SkippedFile>,
}

impl Read<'_> {
    fn skip(&mut self, key: &str, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(%key, %reason, "prediction log: file skipped");
        self.skipped.push(SkippedFile {
            path: key.to_owned(),
            reason,
        });
    }

    fn too_many(&self, what: &str, from_us: i64, to_us: i64) -> Error {
        Error::invalid(
            "ReadOptions.max_rows",
            self.options.max_rows,
            format!(
                "at least the {what} of model {:?} in [{}, {}) (read a shorter window or raise it)",
                self.model,
                format_time(from_us),
                format_time(to_us)
            ),
        )
    }

    /// A data file's rows in `[from, to)`, or `None` (recorded as skipped) for a hidden or
    /// temporary file and for one that is not a file of the log.
    async fn data_file(
        &mut self,
        source: &Source,
        key: &str,
        kind: RowKind,
        (from, to): (i64, i64),
    ) -> Result<Option<Rows>> {
        let name = key.rsplit('/').next().unwrap_or(key);
        if name.starts_with('.') || !name.ends_with(".parquet") {
            self.skip(key, "not a data file (hidden, temporary or not *.parquet)");
            return Ok(None);
        }
        match source.read(key, kind, from, to).await? {
            Ok(rows) => {
                self.counts.files_read += 1;
                Ok(Some(rows))
            }
            Err(why) => {
                self.skip(key, why);
                Ok(None)
            }
        }
    }

    /// Every label post in `[from, to + label_lag)`, the last post of each key kept.
    async fn labels(&mut self, source: &Source, from_us: i64, to_us: i64) -> Result<LabelPosts> {
        let lag = i64::try_from(self.options.label_lag.as_micros()).unwrap_or(i64::MAX);
        let until = to_us.saturating_add(lag);
        let mut posts = LabelPosts::new();
        let mut order = 0_u64;
        for key in source
            .files(RowKind::Labels, self.model, from_us, until)
            .await?
        {
            let rows = self
                .data_file(source, &key, RowKind::Labels, (from_us, until))
                .await?;
            let Some(Rows::Labels(file)) = rows else {
                continue;
            };
            self.counts.label_rows_read += file.len() as u64;
            if self.counts.label_rows_read > self.options.max_rows as u64 {
                return Err(self.too_many("label rows", from_us, until));
            }
            for (id, row, time, label) in file {
                order += 1;
                match posts.entry((id, row)) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((time, order, label));
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        self.counts.relabeled += 1;
                        if (time, order) >= (o.get().0, o.get().1) {
                            o.insert((time, order, label));
                        }
                    }
                }
            }
        }
        Ok(posts)
    }

    /// The kept rows joined to their labels, oldest first; rows per version.
    fn join(
        &mut self,
        kept: Scored,
        order: &[String],
        labels: &LabelPosts,
        all_keys: &HashMap<(Arc<str>, u32), u32>,
    ) -> Result<(Dataset, BTreeMap<u64, u64>)> {
        let width = kept.features.len();
        let index: Vec<usize> = order
            .iter()
            .map(|name| kept.features.iter().position(|f| f == name).unwrap_or(0))
            .collect();
        let mut versions = BTreeMap::new();
        let mut chosen: Vec<(i64, &str, u32, usize, u8)> = Vec::new();
        self.counts.rows_read = kept.len() as u64;
        for i in 0..kept.len() {
            match kept.versions[i] {
                Some(v) => *versions.entry(v).or_insert(0_u64) += 1,
                None => self.counts.rows_without_version += 1,
            }
            let Some(id) = &kept.ids[i] else {
                self.counts.unlabeled += 1;
                continue;
            };
            let key = (id.clone(), kept.rows[i]);
            if all_keys.get(&key).copied().unwrap_or(0) > 1 {
                self.counts.ambiguous += 1;
                continue;
            }
            match labels.get(&key) {
                Some(&(_, _, label)) => chosen.push((kept.times[i], id, kept.rows[i], i, label)),
                None => self.counts.unlabeled += 1,
            }
        }
        chosen.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        self.counts.labeled = chosen.len() as u64;
        let mut x = Vec::with_capacity(chosen.len() * order.len());
        for &(_, _, _, i, _) in &chosen {
            let values = &kept.x[i * width..(i + 1) * width];
            x.extend(index.iter().map(|&j| values[j]));
        }
        let n = chosen.len();
        let x = Array2::from_shape_vec((n, order.len()), x).map_err(|e| {
            Error::with_kind(
                ErrorKind::Internal,
                format!("prediction log: the window's rows: {e}"),
            )
        })?;
        let labels = Array1::from_iter(chosen.iter().map(|c| f32::from(c.4)));
        let times = Array1::from_iter(chosen.iter().map(|c| c.0 as f64 / 1e6));
        let data = Dataset::new(x, order.to_vec())?
            .with_labels(labels, LABEL_COLUMN)?
            .with_order(times, ORDER_COLUMN)?;
        Ok((data, versions))
    }
}

/// `time` (µs since the epoch) as RFC 3339 (UTC, seconds).
fn format_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let hour = hour_name(secs.div_euclid(3_600));
    let rest = secs.rem_euclid(3_600);
    format!("{hour}:{:02}:{:02}Z", rest / 60, rest % 60)
}

/// The feature name a column was written for (`feature.time` → `time`).
fn feature_name(column: &str) -> &str {
    match column.strip_prefix("feature.") {
        Some(rest) if feature_column(rest) == column => rest,
        _ => column,
    }
}

fn batches<R: ChunkReader + 'static>(r: R) -> std::result::Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(r)
        .map_err(|e| format!("not Parquet: {e}"))?
        .build()
        .map_err(|e| format!("not readable: {e}"))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not readable: {e}"))
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> std::result::Result<&'b dyn Array, String> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| format!("no column {name:?}"))
}

fn typed<'b, T>(
    batch: &'b RecordBatch,
    name: &str,
    cast: impl FnOnce(&'b dyn Array) -> Option<&'b T>,
    what: &str,
) -> std::result::Result<&'b T, String> {
    cast(column(batch, name)?).ok_or_else(|| format!("column {name:?} is not {what}"))
}

/// The columns both kinds of file share: request id, row in the request, time.
type Keys<'b> = (
    &'b arrow_array::StringArray,
    &'b arrow_array::PrimitiveArray<UInt32Type>,
    &'b arrow_array::PrimitiveArray<TimestampMicrosecondType>,
);

fn keys(batch: &RecordBatch) -> std::result::Result<Keys<'_>, String> {
    Ok((
        typed(batch, "request_id", |a| a.as_string_opt::<i32>(), "text")?,
        typed(
            batch,
            "row",
            |a| a.as_primitive_opt::<UInt32Type>(),
            "uint32",
        )?,
        typed(
            batch,
            "time",
            |a| a.as_primitive_opt::<TimestampMicrosecondType>(),
            "a timestamp in µs",
        )?,
    ))
}

/// The rows of a prediction file in `[from, to)`; `Err(why)` when it is not one.
fn decode_scored(
    batches: &[RecordBatch],
    from: i64,
    to: i64,
) -> std::result::Result<ScoredFile, String> {
    let fixed: Vec<&str> = PREDICTION_COLUMNS
        .iter()
        .copied()
        .chain([PREDICTION])
        .collect();
    let mut out: Option<ScoredFile> = None;
    for batch in batches {
        let schema = batch.schema();
        let columns: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !fixed.contains(n))
            .collect();
        let features: Vec<String> = columns.iter().map(|c| feature_name(c).to_owned()).collect();
        let file = out.get_or_insert_with(|| ScoredFile {
            features: features.clone(),
            ids: vec![],
            rows: vec![],
            times: vec![],
            versions: vec![],
            x: vec![],
        });
        if file.features != features {
            return Err("its batches have different columns".into());
        }
        let (ids, rows, times) = keys(batch)?;
        let versions = typed(
            batch,
            "version",
            |a| a.as_primitive_opt::<UInt64Type>(),
            "uint64",
        )?;
        let values = columns
            .iter()
            .map(|c| typed(batch, c, |a| a.as_primitive_opt::<Float32Type>(), "float32"))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            if times.is_null(i) || rows.is_null(i) {
                return Err(format!("row {i} has no time or row index"));
            }
            let t = times.value(i);
            if t < from || t >= to {
                continue;
            }
            file.ids
                .push((!ids.is_null(i)).then(|| Arc::from(ids.value(i))));
            file.rows.push(rows.value(i));
            file.times.push(t);
            file.versions
                .push((!versions.is_null(i)).then(|| versions.value(i)));
            file.x.extend(
                values
                    .iter()
                    .map(|v| if v.is_null(i) { f32::NAN } else { v.value(i) }),
            );
        }
    }
    out.ok_or_else(|| "no row groups".to_string())
}

/// One label post of a row: (request id, row in the request, time in µs, label).
type LabelPost = (Arc<str>, u32, i64, u8);

/// The label posts of a label file in `[from, to)`: (request id, row, time, label).
fn decode_labels(
    batches: &[RecordBatch],
    from: i64,
    to: i64,
) -> std::result::Result<Vec<LabelPost>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let (ids, rows, times) = keys(batch)?;
        let labels = typed(
            batch,
            "label",
            |a| a.as_primitive_opt::<UInt8Type>(),
            "uint8",
        )?;
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || rows.is_null(i) || times.is_null(i) || labels.is_null(i) {
                return Err(format!("label row {i} has a missing value"));
            }
            let (t, label) = (times.value(i), labels.value(i));
            if label > 1 {
                return Err(format!("label row {i} holds {label}, not 0 or 1"));
            }
            if t >= from && t < to {
                out.push((Arc::from(ids.value(i)), rows.value(i), t, label));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_feature_columns_read_back_as_their_names() {
        assert_eq!(feature_name("feature.time"), "time");
        assert_eq!(feature_name("feature.Prediction"), "Prediction");
        assert_eq!(feature_name("feature.amount"), "feature.amount");
        assert_eq!(feature_name("amount"), "amount");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_796_457_600_000_000 + 61_500_000),
            "2026-12-05T08:01:01Z"
        );
    }

    #[test]
    fn a_file_that_is_not_parquet_says_so() {
        for bytes in [&b"PAR1 but not really"[..], b""] {
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, bytes).unwrap();
            let e = batches(file).err().unwrap();
            assert!(e.starts_with("not Parquet"), "{e}");
        }
    }
}
