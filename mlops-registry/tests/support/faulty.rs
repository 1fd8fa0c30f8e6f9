//! An object store wrapper that injects faults: uploads failing after a number of blob
//! writes, or conditional creates silently turned into overwrites (a store that ignores the
//! header).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    /// Blob writes allowed before every further one fails (usize::MAX: never).
    blob_puts_left: AtomicUsize,
    /// Whether `PutMode::Create` is ignored.
    ignore_create: bool,
    /// Whether every write and delete is refused (read-only credentials).
    read_only: bool,
    /// After the first blob write: signal `.0`, then wait for `.1`.
    pause_after_blob: Option<(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>,
    /// Every call made through this store (reads, writes, lists, deletes).
    pub calls: AtomicUsize,
    /// Objects returned by recursive listings (what grows with a log's length).
    pub listed: Arc<AtomicUsize>,
    /// Up to this many microseconds of delay before each call (0: none), drawn per call.
    max_delay_us: u64,
    /// Conditional creates refused because the object existed (the races that happened).
    pub conflicts: AtomicUsize,
    /// Version-record creates that fail (after the blobs were written) before any succeeds.
    record_creates_failing: AtomicUsize,
}

impl FaultyStore {
    /// Fails every blob write after the first `n`.
    pub fn failing_blob_puts_after(inner: Arc<dyn ObjectStore>, n: usize) -> Self {
        FaultyStore {
            inner,
            blob_puts_left: AtomicUsize::new(n),
            ignore_create: false,
            read_only: false,
            pause_after_blob: None,
            calls: AtomicUsize::new(0),
            listed: Arc::default(),
            max_delay_us: 0,
            conflicts: AtomicUsize::new(0),
            record_creates_failing: AtomicUsize::new(0),
        }
    }

    /// Delays every call by up to `max_us` microseconds (drawn per call), so concurrent
    /// writers interleave differently on every run; counts conditional-create conflicts.
    pub fn delaying(inner: Arc<dyn ObjectStore>, max_us: u64) -> Self {
        FaultyStore {
            max_delay_us: max_us,
            ..Self::failing_blob_puts_after(inner, usize::MAX)
        }
    }

    /// Fails the first `n` version-record creates, after the blobs are written: the fault
    /// between a registration's blobs and its record.
    pub fn failing_record_creates(inner: Arc<dyn ObjectStore>, n: usize) -> Self {
        FaultyStore {
            record_creates_failing: AtomicUsize::new(n),
            ..Self::failing_blob_puts_after(inner, usize::MAX)
        }
    }

    async fn delay(&self) {
        if self.max_delay_us > 0 {
            let us = rand::random::<u64>() % (self.max_delay_us + 1);
            tokio::time::sleep(std::time::Duration::from_micros(us)).await;
        }
    }

    /// Refuses every write and delete, as read-only credentials or a read-only mount do.
    pub fn read_only(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            read_only: true,
            ..Self::failing_blob_puts_after(inner, usize::MAX)
        }
    }

    /// After its first blob write, notifies `reached` and waits for `resume`.
    pub fn pausing_after_first_blob(
        inner: Arc<dyn ObjectStore>,
        reached: Arc<tokio::sync::Notify>,
        resume: Arc<tokio::sync::Notify>,
    ) -> Self {
        FaultyStore {
            pause_after_blob: Some((reached, resume)),
            ..Self::failing_blob_puts_after(inner, usize::MAX)
        }
    }

    /// Overwrites where a conditional create was asked for.
    pub fn ignoring_create(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            ignore_create: true,
            ..Self::failing_blob_puts_after(inner, usize::MAX)
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if location.as_ref().contains("blobs/sha256/") {
            let allowed = self
                .blob_puts_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                    0 => None,
                    usize::MAX => Some(n),
                    n => Some(n - 1),
                })
                .is_ok();
            if !allowed {
                return Err(object_store::Error::Generic {
                    store: "faulty",
                    source: "connection reset while uploading (injected)".into(),
                });
            }
        }
        if self.read_only {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "read-only credentials (injected)".into(),
            });
        }
        if self.ignore_create && opts.mode == PutMode::Create {
            opts.mode = PutMode::Overwrite;
        }
        self.delay().await;
        if opts.mode == PutMode::Create
            && location.as_ref().contains("/versions/")
            && self
                .record_creates_failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: "connection reset while writing the version record (injected)".into(),
            });
        }
        let is_blob = location.as_ref().contains("blobs/sha256/");
        let is_create = opts.mode == PutMode::Create;
        let result = self.inner.put_opts(location, payload, opts).await;
        if is_create && matches!(result, Err(object_store::Error::AlreadyExists { .. })) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        if let (true, Some((reached, resume))) = (is_blob, &self.pause_after_blob) {
            reached.notify_one();
            resume.notified().await;
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.delay().await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.read_only {
            return locations
                .map(|p| {
                    Err(object_store::Error::PermissionDenied {
                        path: p.map(|p| p.to_string()).unwrap_or_default(),
                        source: "read-only credentials (injected)".into(),
                    })
                })
                .boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let listed = self.listed.clone();
        self.inner
            .list(prefix)
            .inspect(move |_| {
                listed.fetch_add(1, Ordering::SeqCst);
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.delay().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
