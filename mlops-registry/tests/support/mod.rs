//! Shared by the registry's integration tests: the conformance suite every backend runs, a
//! store wrapper that injects faults, and helpers for local servers.

#![allow(dead_code)]

pub mod faulty;
pub mod suite;

use std::sync::Arc;

use mlops_registry::{Registry, RegistryConfig};
use object_store::ObjectStore;

/// A backend under test: a raw store and a fresh prefix per case.
#[derive(Clone)]
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn ObjectStore>,
    counter: Arc<std::sync::atomic::AtomicUsize>,
}

impl Backend {
    pub fn new(name: &'static str, store: Arc<dyn ObjectStore>) -> Self {
        Backend {
            name,
            store,
            counter: Arc::default(),
        }
    }

    /// A prefix no other case of this run uses.
    pub fn fresh_prefix(&self, case: &str) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("conformance-{}-{n}-{case}", std::process::id())
    }

    /// A registry under a fresh prefix.
    pub async fn registry(&self, case: &str) -> (Registry, String) {
        let prefix = self.fresh_prefix(case);
        let config = RegistryConfig {
            actor: Some("conformance".into()),
            ..RegistryConfig::default()
        };
        let registry = Registry::with_store(self.store.clone(), &prefix, &config)
            .await
            .unwrap_or_else(|e| panic!("{}: opening the registry: {e}", self.name));
        (registry, prefix)
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port` (or panics after `secs`).
pub fn wait_for_port(port: u16, secs: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within {secs} s");
}

/// A child process in its own process group, killed (group and all) on drop.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `program args` under `setsid`, logging to `<dir>/server.log`.
    pub fn start(program: &std::path::Path, args: &[String], port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = std::process::Command::new("setsid")
            .arg(program)
            .args(args)
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Server { child, port, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The child is the group leader (setsid): signal the whole group, then reap.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
