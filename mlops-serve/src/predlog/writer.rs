//! The background writer: one thread that takes scored rows from the log's tap
//! ([`crate::tap`]) and label posts from the bounded queue, batches them by partition, and
//! writes each batch as one Parquet file when the batch is big enough or old enough, retrying
//! a failed write with backoff a bounded number of times.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_core::object_store::path::Path;
use mlops_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::config::Timing;
use super::files::{encode_labels, hour_of, partition_key, RowKind, Rows, ScoredColumns};
use super::Shared;
use crate::tap::{Entry, Taken, Tap};

/// How long the writer sleeps between drains of the tap and the queue while rows come.
const POLL: Duration = Duration::from_millis(2);

/// How long the writer polls with nothing coming before it blocks.
const IDLE: Duration = Duration::from_millis(500);

/// Where the files go.
pub(crate) enum Target {
    /// A local folder, written by this module: a hidden temporary file (`.part-….tmp`, which
    /// neither pyarrow's dataset discovery nor a `*.parquet` glob reads), synced, then renamed
    /// into place, so a killed process never leaves a partial `.parquet` file.
    Local(PathBuf),
    /// Any other store: one `put` of the whole file (an object appears whole or not at all).
    Store {
        store: Arc<dyn ObjectStore>,
        prefix: Path,
    },
}

/// What the queue carries.
pub(crate) enum Message {
    /// Label rows to write (boxed: the queue's slots, allocated up front, stay one pointer
    /// wide). Scored rows come through the tap.
    Rows(Box<Rows>),
    /// A recorder appended to the tap while the writer was blocked.
    Wake,
    /// Write everything buffered, then answer.
    Flush(SyncSender<()>),
    /// Write everything buffered, answer and stop.
    Close(SyncSender<()>),
}

/// Rows of one partition (kind, model, hour; for scored rows, feature names) waiting for
/// their file.
struct Group {
    kind: RowKind,
    model: Arc<str>,
    hour: i64,
    /// Its first row's time (the file's name starts with it).
    first_us: i64,
    n: usize,
    rows: GroupRows,
}

enum GroupRows {
    Scored(Box<ScoredColumns>),
    Labels(Vec<Rows>),
}

impl Group {
    fn is(&self, kind: RowKind, model: &Arc<str>, hour: i64) -> bool {
        self.kind == kind
            && self.hour == hour
            && (Arc::ptr_eq(&self.model, model) || self.model == *model)
    }
}

pub(crate) struct Writer {
    pub(crate) target: Target,
    pub(crate) timing: Timing,
    pub(crate) retries: u32,
    pub(crate) batch_rows: usize,
    pub(crate) shared: Arc<Shared>,
    tap: Arc<Tap>,
    /// Storage drained shards swap in.
    free: Vec<Taken>,
    /// Random per log: file names of two replicas (or two runs) never collide.
    pub(crate) token: u64,
    pub(crate) files: u64,
    groups: Vec<Group>,
    pending: usize,
    oldest: Option<Instant>,
    /// When the tap was last drained: a stream of label posts keeps the queue busy, and the
    /// tap is drained between them once this is [`POLL`] old.
    drained: Instant,
}

/// The longest wait between two retries of one file.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Writer {
    pub(crate) fn new(
        target: Target,
        timing: Timing,
        retries: u32,
        batch_rows: usize,
        shared: Arc<Shared>,
        tap: Arc<Tap>,
        token: u64,
    ) -> Self {
        Writer {
            target,
            timing,
            retries,
            batch_rows,
            shared,
            tap,
            free: Vec::new(),
            token,
            files: 0,
            groups: Vec::new(),
            pending: 0,
            oldest: None,
            drained: Instant::now(),
        }
    }

    /// The thread's loop: until `Close` or every sender is gone (then what is buffered is
    /// written first). While rows come, it drains the tap and the queue without blocking and
    /// sleeps [`POLL`] between drains, so a recorder never has to wake it (a futex call and a
    /// context switch per request, a quarter of the server's throughput when it did); after
    /// [`IDLE`] with nothing coming it blocks until the next message (a label post, or the one
    /// recorder that finds it asleep) or its oldest batch's age.
    pub(crate) fn run(mut self, queue: Receiver<Message>) {
        let mut active = Instant::now();
        loop {
            let wait = match self.oldest {
                Some(t) => self.timing.batch_age.saturating_sub(t.elapsed()),
                None => Duration::from_secs(3_600),
            };
            let received = if active.elapsed() < IDLE {
                match queue.try_recv() {
                    Ok(message) => Ok(message),
                    Err(TryRecvError::Empty) => {
                        if self.take_tap() > 0 {
                            active = Instant::now();
                            self.write_if_due();
                        }
                        std::thread::sleep(POLL.min(wait));
                        Err(RecvTimeoutError::Timeout)
                    }
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                // Rows appended before the flag is set are read here; any after, wake it.
                self.tap.sleeping();
                if self.take_tap() > 0 {
                    self.tap.awake();
                    active = Instant::now();
                    self.write_if_due();
                    continue;
                }
                let received = queue.recv_timeout(wait);
                self.tap.awake();
                received
            };
            if received.is_ok() {
                active = Instant::now();
            }
            match received {
                Ok(Message::Rows(rows)) => {
                    // A stream of label posts does not hold back the tap: with small batches
                    // each post can be a file written and synced, so the tap is drained by
                    // time, not by a count of posts.
                    if self.drained.elapsed() >= POLL {
                        self.take_tap();
                    }
                    self.add(*rows);
                    self.write_if_due();
                }
                Ok(Message::Wake) => {
                    self.take_tap();
                    self.write_if_due();
                }
                Ok(Message::Flush(done)) => {
                    self.take_tap();
                    self.write_all();
                    let _ = done.send(());
                }
                Ok(Message::Close(done)) => {
                    // What was recorded before the close is written too, and a flush queued
                    // behind the close is answered once it is.
                    self.take_tap();
                    let mut waiting = vec![done];
                    while let Ok(message) = queue.try_recv() {
                        match message {
                            Message::Rows(rows) => self.add(*rows),
                            Message::Wake => {}
                            Message::Flush(d) | Message::Close(d) => waiting.push(d),
                        }
                    }
                    self.write_all();
                    for done in waiting {
                        let _ = done.send(());
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.too_old() {
                        self.write_all();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.take_tap();
                    self.write_all();
                    return;
                }
            }
        }
    }

    /// Moves the tap's scored rows into the partitions' batches (writing them whenever they
    /// reach `batch_rows`, so one drain after a stall still makes files of that size); returns
    /// how many rows were drained. Rows a shard lost to a recorder's panic are counted
    /// `store_failed`.
    fn take_tap(&mut self) -> usize {
        self.drained = Instant::now();
        let tap = self.tap.clone();
        let mut filled = Vec::new();
        let rows = tap.drain_all(&mut self.free, &mut filled);
        for mut taken in filled {
            let mut read = 0;
            for e in taken.entries() {
                read += e.predictions.len();
                self.add_scored(&e);
                if self.pending >= self.batch_rows {
                    self.write_all();
                }
            }
            let lost = taken.rows().saturating_sub(read);
            if lost > 0 {
                tracing::error!(
                    rows = lost,
                    "prediction log: rows of a damaged shard dropped"
                );
                self.shared.predictions.store_failed.add(lost as u64);
                self.shared.release(lost);
            }
            taken.clear();
            self.free.push(taken);
        }
        rows
    }

    /// Writes every batch when they hold `batch_rows` rows or the oldest is `batch_age` old.
    fn write_if_due(&mut self) {
        if self.pending >= self.batch_rows || self.too_old() {
            self.write_all();
        }
    }

    /// Whether the oldest row buffered has waited `batch_age` (then every batch is written).
    fn too_old(&self) -> bool {
        self.oldest
            .is_some_and(|t| t.elapsed() >= self.timing.batch_age)
    }

    /// Notes `n` rows buffered (the batch's size and age).
    fn buffered(&mut self, n: usize) {
        self.pending += n;
        self.oldest.get_or_insert_with(Instant::now);
    }

    fn add_scored(&mut self, e: &Entry<'_>) {
        let n = e.predictions.len();
        let (model, hour) = (&e.run.model, hour_of(e.time_us));
        let found = self.groups.iter_mut().position(|g| {
            g.is(RowKind::Predictions, model, hour)
                && matches!(&g.rows, GroupRows::Scored(c) if c.holds(&e.run.features))
        });
        let pushed = match found.and_then(|at| self.groups.get_mut(at)) {
            Some(Group {
                n: held,
                rows: GroupRows::Scored(columns),
                ..
            }) => columns.push(e).map(|()| *held += n),
            _ => {
                let mut columns = Box::new(ScoredColumns::new(e.run.features.clone()));
                columns.push(e).map(|()| {
                    self.groups.push(Group {
                        kind: RowKind::Predictions,
                        model: model.clone(),
                        hour,
                        first_us: e.time_us,
                        n,
                        rows: GroupRows::Scored(columns),
                    })
                })
            }
        };
        match pushed {
            Ok(()) => self.buffered(n),
            Err(error) => {
                // The tap took rows of the request's own width: not reached.
                tracing::error!(%error, rows = n, "prediction log: rows dropped");
                self.shared.predictions.store_failed.add(n as u64);
                self.shared.release(n);
            }
        }
    }

    fn add(&mut self, rows: Rows) {
        let n = rows.len();
        self.buffered(n);
        let hour = hour_of(rows.time_us);
        match self
            .groups
            .iter_mut()
            .find(|g| g.is(RowKind::Labels, &rows.model, hour))
        {
            Some(Group {
                n: held,
                rows: GroupRows::Labels(posts),
                ..
            }) => {
                *held += n;
                posts.push(rows);
            }
            _ => self.groups.push(Group {
                kind: RowKind::Labels,
                model: rows.model.clone(),
                hour,
                first_us: rows.time_us,
                n,
                rows: GroupRows::Labels(vec![rows]),
            }),
        }
    }

    /// Writes every partition's batch as one file; rows of a file that could not be written
    /// are dropped and counted.
    fn write_all(&mut self) {
        for group in std::mem::take(&mut self.groups) {
            let (kind, n) = (group.kind, group.n);
            let written = self.write_group(group);
            let counts = self.shared.counts(kind);
            if written {
                counts.rows.add(n as u64);
                counts.files.add(1);
            } else {
                counts.store_failed.add(n as u64);
            }
            self.shared.release(n);
        }
        self.pending = 0;
        self.oldest = None;
    }

    fn write_group(&mut self, group: Group) -> bool {
        let encoded = match group.rows {
            GroupRows::Scored(columns) => (*columns).encode(),
            GroupRows::Labels(posts) => encode_labels(&posts),
        };
        let bytes = match encoded {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, rows = group.n, "prediction log: rows dropped");
                return false;
            }
        };
        self.files += 1;
        let file = format!(
            "part-{}-{:016x}-{:08}.parquet",
            group.first_us, self.token, self.files
        );
        let key = partition_key(group.kind, &group.model, group.hour, &file);
        let mut backoff = self.timing.backoff;
        for attempt in 0..=self.retries {
            match self.put(&key, &bytes) {
                Ok(()) => {
                    tracing::debug!(%key, rows = group.n, bytes = bytes.len(), "prediction log: file written");
                    return true;
                }
                Err(e) if attempt < self.retries => {
                    tracing::warn!(%key, attempt, error = %e, "prediction log: write failed, retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(
                        %key,
                        rows = group.n,
                        attempts = attempt + 1,
                        error = %e,
                        "prediction log: write failed, rows dropped"
                    );
                }
            }
        }
        false
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        match &self.target {
            Target::Local(dir) => write_local(dir, key, bytes).map_err(|e| e.to_string()),
            Target::Store { store, prefix } => {
                let full = if prefix.as_ref().is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}/{key}")
                };
                let path = Path::parse(&full).map_err(|e| e.to_string())?;
                let store = store.clone();
                let payload = PutPayload::from(bytes.to_vec());
                let handle = mlops_core::runtime::handle().map_err(|e| e.to_string())?;
                let put = async move { store.put(&path, payload).await };
                match handle.block_on(mlops_core::runtime::with_timeout(self.timing.timeout, put)) {
                    Ok(Some(Ok(_))) => Ok(()),
                    Ok(Some(Err(e))) => Err(e.to_string()),
                    Ok(None) => Err(format!(
                        "no answer within {:?} (PredictionLogConfig.timeout_seconds)",
                        self.timing.timeout
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

/// Writes `bytes` at `dir/key` through a hidden temporary file in the same folder, synced and
/// renamed into place (then the folder synced), so the file is there whole or not at all.
fn write_local(dir: &FsPath, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(key);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other(format!("no file name in {key:?}")));
    };
    std::fs::create_dir_all(parent)?;
    let temporary = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        if let Ok(folder) = std::fs::File::open(parent) {
            // Makes the rename durable; a folder that cannot be synced (some platforms)
            // still holds the whole file.
            let _ = folder.sync_all();
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
