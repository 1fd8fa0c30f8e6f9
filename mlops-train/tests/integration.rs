//! Every integration test of this crate in one test binary (one link instead of one per
//! file): each `tests/<name>.rs` is the module `<name>` here, run as
//! `cargo test --test integration <name>::`. A file that must be its own process is its own
//! `[[test]]` target in Cargo.toml (`autotests = false` there); the workspace's
//! `integration::test_files_are_all_compiled` (tests/integration.rs at the root) checks that
//! every `tests/*.rs` is one or the other.

mod hpo;
mod hpo_shared;
mod tracking;
mod trainer;
