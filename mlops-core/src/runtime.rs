//! The library's own I/O runtime: every object-store call, HTTP request, file operation and
//! timer of the registry and the tracker runs here, so that their async APIs work on whatever
//! executor the host polls them with — a tokio runtime of any flavor, with or without its time
//! and I/O drivers, or none at all (`futures::executor::block_on`, the blocking APIs) — and
//! never panic on the host's setup.
//!
//! The runtime is a small multi-thread tokio runtime (two worker threads named `mlops-io`, every
//! driver on), started on first use and kept for the life of the process. A host's future only
//! waits on a [`tokio::task::JoinHandle`], which any executor can poll.
//!
//! ```
//! use std::time::Duration;
//!
//! // No runtime here at all: the work and the timer run on the library's.
//! let v = futures::executor::block_on(async {
//!     mlops_core::runtime::sleep(Duration::from_millis(1)).await?;
//!     mlops_core::runtime::spawn(async { 40 + 2 }).await
//! })?;
//! assert_eq!(v, 42);
//! # Ok::<(), mlops_core::Error>(())
//! ```

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The library runtime's handle, started on first use.
pub fn handle() -> Result<Handle> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("mlops-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(|cause| Error::Runtime {
            cause: format!("starting the library's I/O runtime: {cause}"),
        })
}

/// Runs `fut` on the library runtime and waits for it from any executor.
pub async fn spawn<F>(fut: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle()?.spawn(fut).await.map_err(joined)
}

/// Runs blocking `f` (file I/O) on the library runtime's blocking pool.
pub async fn spawn_blocking<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    handle()?.spawn_blocking(f).await.map_err(joined)
}

/// Waits `duration` on the library runtime's timer.
pub async fn sleep(duration: Duration) -> Result<()> {
    // Built inside the task: a tokio timer registers with the runtime it is created on.
    spawn(async move { tokio::time::sleep(duration).await }).await
}

/// Runs `fut` on the library runtime with a deadline: `Ok(None)` when it ran out.
pub async fn with_timeout<F>(duration: Duration, fut: F) -> Result<Option<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn(async move { tokio::time::timeout(duration, fut).await.ok() }).await
}

/// Blocks the calling thread on `fut` (for the blocking APIs). The future's I/O and timers run
/// on the library runtime, so no runtime is needed here; do not call it from async code (it
/// would block that executor's thread).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    futures::executor::block_on(fut)
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::Runtime {
        cause: if e.is_panic() {
            "a task of the library's I/O runtime panicked".to_string()
        } else {
            "a task of the library's I/O runtime was cancelled (the process is shutting down)"
                .to_string()
        },
    }
}
