//! Delivering retrain requests: one thread per monitor takes claimed requests from a bounded
//! queue and posts each to the webhook and/or runs the command, retrying a failed attempt
//! with doubling backoff. Nothing here runs on the request path, and nothing waits for it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::config::{HookConfig, HookTiming};
use super::ledger::RetrainRequest;
use super::metrics::MonitorMetrics;
use crate::Result;

/// The environment variable a hook command finds the request in (JSON), besides its stdin,
/// when the request is at most [`MAX_REQUEST_ENV_BYTES`] long (unset when longer: stdin
/// always has it).
pub const REQUEST_ENV: &str = "MLOPS_RETRAIN_REQUEST";

/// The longest request put in [`REQUEST_ENV`]: Linux refuses to start a program with one
/// variable over 128 KiB (`E2BIG`), and a request names every drifted column.
pub const MAX_REQUEST_ENV_BYTES: usize = 64 * 1024;

/// The queue into the delivery thread.
pub(crate) struct Hook {
    queue: SyncSender<RetrainRequest>,
    stop: Arc<AtomicBool>,
    metrics: MonitorMetrics,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Wakes the thread out of a backoff sleep on close.
    wake: SyncSender<()>,
}

impl Hook {
    pub(crate) fn start(config: &HookConfig, metrics: MonitorMetrics) -> Result<Self> {
        let timing = config.timing()?;
        let (queue, requests) = sync_channel(config.queue);
        let (wake, woken) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let delivery = Delivery {
            config: config.clone(),
            timing,
            metrics: metrics.clone(),
            stop: stop.clone(),
            woken,
        };
        let thread = std::thread::Builder::new()
            .name("mlops-retrain-hook".into())
            .spawn(move || delivery.run(requests))
            .map_err(|e| {
                crate::Error::with_kind(
                    crate::ErrorKind::Internal,
                    format!("cannot start the hook thread: {e}"),
                )
            })?;
        Ok(Hook {
            queue,
            stop,
            metrics,
            thread: Some(thread),
            wake,
        })
    }

    /// Queues `request` for delivery; a full queue drops it (counted, logged: the request
    /// stays in the ledger).
    pub(crate) fn send(&self, request: RetrainRequest) {
        let model = request.model.clone();
        match self.queue.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) | Err(TrySendError::Disconnected(r)) => {
                tracing::error!(model = %r.model, sequence = r.sequence, "retrain hook queue full: request not delivered (it stays in the ledger)");
                self.metrics.hook(&model, "any", "dropped");
            }
        }
    }

    /// Stops after the attempt in progress; requests still queued are counted as dropped.
    pub(crate) fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.close();
    }
}

struct Delivery {
    config: HookConfig,
    timing: HookTiming,
    metrics: MonitorMetrics,
    stop: Arc<AtomicBool>,
    woken: Receiver<()>,
}

impl Delivery {
    fn run(self, requests: Receiver<RetrainRequest>) {
        // Polled, so that a close is seen while no request comes.
        loop {
            let request = match requests.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::SeqCst) => continue,
                Err(_) => break,
            };
            if self.stop.load(Ordering::SeqCst) {
                self.metrics.hook(&request.model, "any", "dropped");
                continue;
            }
            self.deliver(&request);
        }
        while let Ok(r) = requests.try_recv() {
            tracing::warn!(model = %r.model, sequence = r.sequence, "monitor closed before the retrain request was delivered (it stays in the ledger)");
            self.metrics.hook(&r.model, "any", "dropped");
        }
    }

    fn deliver(&self, request: &RetrainRequest) {
        let body = match serde_json::to_vec(request) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "retrain request does not serialize");
                return;
            }
        };
        if let Some(url) = &self.config.webhook {
            self.with_retries(request, "webhook", || post(url, &body, self.timing.timeout));
        }
        if let Some(command) = &self.config.command {
            self.with_retries(request, "command", || {
                run(command, &body, self.timing.timeout, &self.stop)
            });
        }
    }

    fn with_retries(
        &self,
        request: &RetrainRequest,
        hook: &str,
        mut attempt: impl FnMut() -> std::result::Result<(), String>,
    ) {
        let mut backoff = self.timing.backoff;
        for n in 1..=self.config.attempts {
            match attempt() {
                Ok(()) => {
                    tracing::info!(model = %request.model, sequence = request.sequence, hook, attempt = n, "retrain request delivered");
                    self.metrics.hook(&request.model, hook, "delivered");
                    return;
                }
                Err(e) => {
                    tracing::warn!(model = %request.model, sequence = request.sequence, hook, attempt = n, error = %e, "retrain hook failed");
                    self.metrics.hook(&request.model, hook, "attempt_failed");
                }
            }
            if n == self.config.attempts || self.stop.load(Ordering::SeqCst) {
                break;
            }
            // A sleep that a close cuts short.
            if let Ok(()) = self.woken.recv_timeout(backoff) {
                break;
            }
            backoff = backoff.saturating_mul(2);
        }
        tracing::error!(model = %request.model, sequence = request.sequence, hook, "retrain request not delivered (it stays in the ledger)");
        self.metrics.hook(&request.model, hook, "failed");
    }
}

/// One `POST` of `body` to `url`; a 2xx answer is a delivery.
fn post(url: &str, body: &[u8], timeout: Duration) -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime for the webhook: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect is an answer to fix in the configuration, not to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {status}"))
        }
    })
}

/// Runs `command` with `body` on its stdin and (when short enough) in [`REQUEST_ENV`]; exit
/// status 0 is a delivery; past `timeout` it is killed. Its output goes to this process's
/// stderr.
fn run(
    command: &[String],
    body: &[u8],
    timeout: Duration,
    stop: &AtomicBool,
) -> std::result::Result<(), String> {
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let mut command = Command::new(program);
    command
        .args(args)
        // The server's bearer tokens are not the job's business.
        .env_remove("MLOPS_TOKENS")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    // Its own process group: a timeout kills what the command started too (a shell script's
    // retrain job), not only the shell.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if body.len() <= MAX_REQUEST_ENV_BYTES {
        command.env(REQUEST_ENV, String::from_utf8_lossy(body).as_ref());
    } else {
        command.env_remove(REQUEST_ENV);
        tracing::warn!(
            bytes = body.len(),
            "monitor hook: the request is too long for {REQUEST_ENV}; it is on stdin only"
        );
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Written from its own thread: a command that does not read its stdin would block a
        // write past the pipe's buffer (64 KiB), and with it the timeout. The write ends when
        // the command reads it all, closes its stdin, exits or is killed (a broken pipe: not
        // a failure).
        let body = body.to_vec();
        let written = std::thread::Builder::new()
            .name("mlops-hook-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(&body);
            });
        if let Err(e) = written {
            kill_group(&mut child);
            return Err(format!(
                "cannot start the thread writing {program:?}'s stdin: {e}"
            ));
        }
    }
    // Waited for in steps, so that a close (the server stopping) is seen: the command's own
    // process group does not get the terminal's Ctrl-C.
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match child.wait_timeout(left.min(Duration::from_millis(100))) {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program:?} exited with {status}")),
            Ok(None) if stop.load(Ordering::SeqCst) => {
                kill_group(&mut child);
                return Err(format!(
                    "{program:?} stopped with the monitor: killed with its process group"
                ));
            }
            Ok(None) if left.is_zero() => {
                kill_group(&mut child);
                return Err(format!(
                    "{program:?} did not finish within {}s: killed with its process group",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("waiting for {program:?}: {e}"));
            }
        }
    }
}

/// Kills `child` and, on Unix, every process of its group (it leads one: see [`run`]), then
/// reaps it.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(id) = i32::try_from(child.id()) {
        use nix::sys::signal::{killpg, Signal};
        if let Err(e) = killpg(nix::unistd::Pid::from_raw(id), Signal::SIGKILL) {
            tracing::warn!(pid = id, error = %e, "monitor hook: its process group not killed");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_command_that_never_reads_a_long_request_is_still_timed_out() {
        let started = Instant::now();
        let e = run(
            &sh("sleep 30"),
            &vec![b'x'; 1 << 20],
            Duration::from_millis(300),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(e.contains("did not finish within 0.3s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_request_is_on_stdin_and_in_the_environment_when_it_fits() {
        let check = r#"[ "$(cat)" = "$MLOPS_RETRAIN_REQUEST" ]"#;
        let no = AtomicBool::new(false);
        run(
            &sh(check),
            br#"{"model":"fraud"}"#,
            Duration::from_secs(20),
            &no,
        )
        .unwrap();
        // Too long for one environment variable (Linux: 128 KiB): on stdin only.
        let long = vec![b'x'; 200 * 1024];
        let only_stdin = r#"[ -z "${MLOPS_RETRAIN_REQUEST+set}" ] && [ "$(wc -c)" -eq 204800 ]"#;
        run(&sh(only_stdin), &long, Duration::from_secs(20), &no).unwrap();
        assert!(run(&sh("exit 3"), b"{}", Duration::from_secs(20), &no)
            .unwrap_err()
            .contains("exited with"));
    }
}
