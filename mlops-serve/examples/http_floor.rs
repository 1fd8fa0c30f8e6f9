//! The HTTP floor: an axum handler that only parses a KServe V2 JSON request body and
//! returns a fixed V2 response, on the same stack as the server (axum, hyper, tokio's
//! multi-thread runtime). What a request costs before any of the server's own work: the
//! ceiling `benches/server_vs_floor.py` measures `examples/serve` against.
//!
//! ```text
//! cargo run --release -p mlops-serve --features http --example http_floor -- --addr 127.0.0.1:8090
//! ```

#[path = "../../benches/support/http_floor_app.rs"]
mod http_floor_app;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = String::from("127.0.0.1:8090");
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(a)) => addr = a,
            _ => {
                eprintln!("usage: http_floor [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    let app = http_floor_app::floor_app();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            // TCP_NODELAY as the server sets it: without it Nagle's algorithm holds small
            // answers for a delayed ACK, and the floor's latency would be the kernel's.
            use axum::serve::ListenerExt;
            let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    eprintln!("http_floor: TCP_NODELAY not set: {e}");
                }
            });
            axum::serve(listener, app).await
        })
}
