//! The accept loop and each connection's life ([`serve_with`]): at most
//! [`ServerConfig::max_connections`] open (past it the oldest idle one is shed), each closed
//! once it has had no request for [`ServerConfig::header_timeout_seconds`] (an idle
//! keep-alive connection, or a client sending its headers slowly), and on shutdown the idle
//! ones closed and the requests in flight answered.
//!
//! Architecture Invariant: a request costs the connection loop no timer and no lock. A
//! connection has one timer, its idle watchdog, set when it opens and moved on only when it
//! fires; a request marks its connection busy (an atomic count, from its head read until its
//! answer's body is written) and, when it ends, stamps the time the connection went idle.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use mlops_core::duration::seconds;

#[cfg(doc)]
use super::server::ServerConfig;
use super::server::{CheckedServerConfig, DRAIN_MARGIN, HEADER_TIMEOUT_RANGE, TIMEOUT_RANGE};

/// Serves `app` on `listener` until `shutdown` completes; requests in flight then finish.
/// The connection bounds are [`ServerConfig::default`]'s: see [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, &CheckedServerConfig::default(), shutdown).await
}

/// Why a connection is told to close.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// Shed for a new connection: closed at once.
    Shed,
    /// The server is shutting down: closed once its request in flight (if any) is answered.
    Drain,
}

/// What a connection's requests and its task share.
struct Activity {
    /// Requests of this connection being handled now, from the head read to the answer's
    /// body written (0: idle, or still sending its headers).
    busy: AtomicUsize,
    /// When the connection last went idle (opened, or its last request ended), in
    /// nanoseconds since the server started.
    idle_since_ns: AtomicU64,
    /// When the server started.
    epoch: Instant,
}

impl Activity {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// When the idle watchdog should next look, and whether the connection has been idle for
    /// `limit` already (then it is closed).
    fn watch(&self, limit: Duration) -> (bool, tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        if self.busy.load(Ordering::SeqCst) > 0 {
            return (false, now + limit);
        }
        let idle = Duration::from_nanos(
            self.now_ns()
                .saturating_sub(self.idle_since_ns.load(Ordering::SeqCst)),
        );
        match limit.checked_sub(idle) {
            Some(left) if !left.is_zero() => (false, now + left),
            _ => (true, now),
        }
    }
}

/// One open connection, as the accept loop sees it.
struct Connection {
    activity: Arc<Activity>,
    /// Tells the connection's task to close.
    signal: tokio::sync::oneshot::Sender<Signal>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Connection>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Connection>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the oldest connection with no request being handled; `false` when every one is
    /// busy.
    fn shed_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let Some(id) = open
            .iter()
            .find(|(_, c)| c.activity.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(c) = open.remove(&id) {
            // A task that already ended dropped its receiver: nothing to tell.
            let _ = c.signal.send(Signal::Shed);
        }
        true
    }

    /// Tells every open connection to close once its request in flight is answered.
    fn drain(&self) {
        for (_, c) in std::mem::take(&mut *self.lock()) {
            let _ = c.signal.send(Signal::Drain);
        }
    }
}

/// Counts a request of a connection as being handled while alive; the last one to end
/// stamps when the connection went idle.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::SeqCst);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0
                .idle_since_ns
                .store(self.0.now_ns(), Ordering::SeqCst);
        }
    }
}

/// An answer's body, holding its request's [`Busy`] until hyper has written it (and drops
/// it): a connection still writing an answer is not idle.
struct CountedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for CountedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a connection past [`ServerConfig::max_connections`] while every open one is
/// busy.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 50\r\nretry-after: 1\r\nconnection: close\r\n\r\n{\"error\":\"server busy: too many open connections\"}";

/// Serves `app` on `listener` until `shutdown` completes, with `config`'s connection bounds:
/// a connection with no request for [`ServerConfig::header_timeout_seconds`] — idle between
/// requests, or sending its headers slowly — is closed (a request being handled, its body
/// being read or its answer written, keeps it open: [`ServerConfig::timeout_seconds`] bounds
/// that); at most [`ServerConfig::max_connections`] stay open — past it, or when the process
/// is out of file descriptors, the oldest connection with no request being handled is shed,
/// so a flood of slow or idle connections cannot keep a health check (or anyone) out. On
/// `shutdown` the listener closes, idle connections close, and the requests in flight are
/// answered before this returns.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &CheckedServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    fn invalid(e: impl std::fmt::Display) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    }
    let header_timeout = seconds(
        "ServerConfig.header_timeout_seconds",
        config.header_timeout_seconds,
        HEADER_TIMEOUT_RANGE,
    )
    .map_err(invalid)?;
    let request_timeout = seconds(
        "ServerConfig.timeout_seconds",
        config.timeout_seconds,
        TIMEOUT_RANGE,
    )
    .map_err(invalid)?;
    let mut http = hyper::server::conn::http1::Builder::new();
    // The idle watchdog below bounds header reads (hyper's own timeout would start a timer
    // for every request).
    http.header_read_timeout(None)
        // Above the configured header bound, so that bound answers (431 JSON) first.
        .max_buf_size((4 * config.max_header_bytes).max(64 << 10));
    let epoch = Instant::now();
    let connections = Arc::new(Connections::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                // Answers go out as written: Nagle's algorithm would hold a response's last
                // segment until the client acknowledged the one before (milliseconds of
                // delayed acknowledgement on a keep-alive connection).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set on a connection");
                }
                stream
            }
            Err(e) => {
                // Out of file descriptors (or a connection reset before it was accepted):
                // free one by shedding an idle connection, then try again.
                tracing::warn!(error = %e, "accepting a connection failed");
                connections.shed_oldest_idle();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if connections.lock().len() >= config.max_connections && !connections.shed_oldest_idle() {
            tracing::warn!(
                max = config.max_connections,
                "connection refused: every one busy"
            );
            let _ = stream.try_write(BUSY_RESPONSE);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since_ns: AtomicU64::new(0),
            epoch,
        });
        activity
            .idle_since_ns
            .store(activity.now_ns(), Ordering::SeqCst);
        let (signal, mut signalled) = tokio::sync::oneshot::channel();
        connections.lock().insert(
            id,
            Connection {
                activity: activity.clone(),
                signal,
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let counting = activity.clone();
        let service = hyper::service::service_fn(move |request| {
            let busy = Busy::new(&counting);
            let call = hyper::service::Service::call(&service, request);
            async move {
                let response = call.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| CountedBody { body, _busy: busy }),
                )
            }
        });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connections = connections.clone();
        tasks.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let watchdog = tokio::time::sleep(header_timeout);
            let mut watchdog = std::pin::pin!(watchdog);
            let done = loop {
                tokio::select! {
                    biased;
                    r = connection.as_mut() => break Some(r),
                    signal = &mut signalled => match signal {
                        Ok(Signal::Drain) => {
                            connection.as_mut().graceful_shutdown();
                            break Some(connection.as_mut().await);
                        }
                        // Shed (or the server is gone).
                        Ok(Signal::Shed) | Err(_) => break None,
                    },
                    () = watchdog.as_mut() => {
                        let (expired, next) = activity.watch(header_timeout);
                        if expired {
                            tracing::debug!(
                                seconds = header_timeout.as_secs_f64(),
                                "connection closed: no request within the header timeout"
                            );
                            break None;
                        }
                        watchdog.as_mut().reset(next);
                    }
                }
            };
            if let Some(Err(e)) = done {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            connections.lock().remove(&id);
        });
    }
    drop(listener);
    connections.drain();
    // A client that never reads its answer would hold its connection (and so the shutdown)
    // for ever: past the request timeout and a margin, the connections left are closed.
    let deadline = request_timeout + DRAIN_MARGIN;
    let drained = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            seconds = deadline.as_secs_f64(),
            "connections still open past the drain deadline: closed"
        );
        tasks.shutdown().await;
    }
    Ok(())
}
