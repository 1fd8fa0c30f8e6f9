//! Every integration test of this crate in one test binary (one link instead of one per
//! file): each `tests/<name>.rs` is the module `<name>` here, run as
//! `cargo test --test integration <name>::`. A file that must be its own process is its own
//! `[[test]]` target in Cargo.toml (`autotests = false` there); the workspace's
//! `integration::test_files_are_all_compiled` (tests/integration.rs at the root) checks that
//! every `tests/*.rs` is one or the other.

mod compact_profile;
mod nebraska;
mod performance_policy;
mod policy;
mod report;
mod river;
mod scipy_stats;
#[cfg(feature = "sketch")]
mod sketch_interop;
#[cfg(not(feature = "sketch"))]
#[test]
#[ignore = "left out: needs the `sketch` feature; run: cargo test -p mlops-drift --features sketch --test integration sketch_interop::"]
fn sketch_interop() {}
#[cfg(feature = "sketch")]
mod sketch_online;
#[cfg(not(feature = "sketch"))]
#[test]
#[ignore = "left out: needs the `sketch` feature; run: cargo test -p mlops-drift --features sketch --test integration sketch_online::"]
fn sketch_online() {}
mod statsmodels;
mod stream;
