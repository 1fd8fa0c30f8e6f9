//! A real `mlflow server` for tests (shared by mlops-train's tracking suite and the main
//! job's test in the facade).

/// A real `mlflow server` (sqlite backend, artifacts served from a temp folder) on a port
/// this test picks, stopped by PID when dropped.
pub struct MlflowServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
    _dir: tempfile::TempDir,
}

impl MlflowServer {
    /// Starts `mlflow` from `MLOPS_MLFLOW`, or the test command's venv, and waits for it.
    pub fn start() -> Self {
        use std::io::{Read, Write};
        let bin = std::env::var_os("MLOPS_MLFLOW")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                // The workspace root's venv, from a member crate or from the root package.
                let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
                let member = dir.join("../.venv/bin/mlflow");
                if member.exists() {
                    member
                } else {
                    dir.join(".venv/bin/mlflow")
                }
            });
        assert!(
            bin.exists(),
            "mlflow not found at {}: run scripts/test.sh (it installs mlflow into .venv) or set MLOPS_MLFLOW",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        // `setsid`: the server, its workers and MLflow's job consumers get their own process
        // group, so one signal to the group stops everything this test started.
        let child = std::process::Command::new("setsid")
            .arg(&bin)
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        // Ready when /health answers 200 (5 to 20 s here).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                    return server;
                }
            }
            let log =
                std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default();
            assert!(
                std::time::Instant::now() < deadline,
                "mlflow server not ready after 90 s:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // Stop by PID: the process group led by the server's PID (workers and job consumers
        // included), then reap the server.
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .status();
        let _ = self.child.wait();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
    }
}
