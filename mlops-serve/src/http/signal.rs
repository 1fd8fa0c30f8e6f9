//! The stop signal a server or a client process waits for.

/// Resolves on SIGINT or SIGTERM (SIGINT only off Unix; a SIGTERM handler that cannot be
/// installed leaves SIGINT).
///
/// ```no_run
/// # async fn f() {
/// mlops_serve::http::shutdown().await;
/// println!("stopping");
/// # }
/// ```
pub async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return interrupt.await.unwrap_or(()),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or(());
}
