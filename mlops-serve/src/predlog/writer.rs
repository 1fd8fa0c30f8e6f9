//! The background writer: one thread that takes recorded rows from the bounded queue,
//! batches them by partition, and writes each batch as one Parquet file when the batch is
//! big enough or old enough, retrying a failed write with backoff a bounded number of times.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlops_core::object_store::path::Path;
use mlops_core::object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::config::Timing;
use super::files::{encode, partition_key, RowKind, Rows};
use super::Shared;

/// How long the writer sleeps between drains of the queue while rows come.
const POLL: Duration = Duration::from_millis(2);

/// Empty drains (about half a second without a message) before the writer blocks.
const IDLE_POLLS: u32 = 250;

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
    /// Rows to write (boxed: the queue's slots, allocated up front, stay one pointer wide).
    Rows(Box<Rows>),
    /// Write everything buffered, then answer.
    Flush(SyncSender<()>),
    /// Write everything buffered, answer and stop.
    Close(SyncSender<()>),
}

/// Rows of one partition waiting for their file.
struct Group {
    kind: RowKind,
    rows: Vec<Rows>,
    n: usize,
}

impl Group {
    fn holds(&self, rows: &Rows) -> bool {
        let first = &self.rows[0];
        self.kind == rows.kind()
            && first.model == rows.model
            && first.hour() == rows.hour()
            && match (first.features(), rows.features()) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            }
    }
}

pub(crate) struct Writer {
    pub(crate) target: Target,
    pub(crate) timing: Timing,
    pub(crate) retries: u32,
    pub(crate) batch_rows: usize,
    pub(crate) shared: Arc<Shared>,
    /// Random per log: file names of two replicas (or two runs) never collide.
    pub(crate) token: u64,
    pub(crate) files: u64,
    groups: Vec<Group>,
    pending: usize,
    oldest: Option<Instant>,
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
        token: u64,
    ) -> Self {
        Writer {
            target,
            timing,
            retries,
            batch_rows,
            shared,
            token,
            files: 0,
            groups: Vec::new(),
            pending: 0,
            oldest: None,
        }
    }

    /// The thread's loop: until `Close` or every sender is gone (then what is buffered is
    /// written first). While rows come, it drains the queue without blocking and sleeps
    /// [`POLL`] between drains, so a recorder's `try_send` never has to wake it (a futex call
    /// and a context switch per request, a quarter of the server's throughput when it did);
    /// after [`IDLE_POLLS`] empty drains it blocks until the next message (the one send that
    /// wakes it) or its oldest batch's age.
    pub(crate) fn run(mut self, queue: Receiver<Message>) {
        let mut empty = 0_u32;
        loop {
            let wait = match self.oldest {
                Some(t) => self.timing.batch_age.saturating_sub(t.elapsed()),
                None => Duration::from_secs(3_600),
            };
            let received = if empty < IDLE_POLLS {
                match queue.try_recv() {
                    Ok(message) => Ok(message),
                    Err(TryRecvError::Empty) => {
                        empty += 1;
                        std::thread::sleep(POLL.min(wait));
                        Err(RecvTimeoutError::Timeout)
                    }
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                queue.recv_timeout(wait)
            };
            if received.is_ok() {
                empty = 0;
            }
            match received {
                Ok(Message::Rows(rows)) => {
                    self.add(*rows);
                    if self.pending >= self.batch_rows || self.too_old() {
                        self.write_all();
                    }
                }
                Ok(Message::Flush(done)) => {
                    self.write_all();
                    let _ = done.send(());
                }
                Ok(Message::Close(done)) => {
                    // What was queued before the close is written too.
                    while let Ok(message) = queue.try_recv() {
                        match message {
                            Message::Rows(rows) => self.add(*rows),
                            Message::Flush(d) | Message::Close(d) => {
                                let _ = d.send(());
                            }
                        }
                    }
                    self.write_all();
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.too_old() {
                        self.write_all();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_all();
                    return;
                }
            }
        }
    }

    /// Whether the oldest row buffered has waited `batch_age` (then every batch is written).
    fn too_old(&self) -> bool {
        self.oldest
            .is_some_and(|t| t.elapsed() >= self.timing.batch_age)
    }

    fn add(&mut self, rows: Rows) {
        self.pending += rows.len();
        self.oldest.get_or_insert_with(Instant::now);
        let n = rows.len();
        match self.groups.iter_mut().find(|g| g.holds(&rows)) {
            Some(g) => {
                g.n += n;
                g.rows.push(rows);
            }
            None => self.groups.push(Group {
                kind: rows.kind(),
                rows: vec![rows],
                n,
            }),
        }
    }

    /// Writes every partition's batch as one file; rows of a file that could not be written
    /// are dropped and counted.
    fn write_all(&mut self) {
        for group in std::mem::take(&mut self.groups) {
            let written = self.write_group(&group);
            let counts = self.shared.counts(group.kind);
            if written {
                counts.rows.add(group.n as u64);
                counts.files.add(1);
            } else {
                counts.store_failed.add(group.n as u64);
            }
            self.shared.release(group.n);
        }
        self.pending = 0;
        self.oldest = None;
    }

    fn write_group(&mut self, group: &Group) -> bool {
        let first = &group.rows[0];
        let bytes = match encode(&group.rows) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, rows = group.n, "prediction log: rows dropped");
                return false;
            }
        };
        self.files += 1;
        let file = format!(
            "part-{}-{:016x}-{:08}.parquet",
            first.time_us, self.token, self.files
        );
        let key = partition_key(group.kind, &first.model, first.hour(), &file);
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
