//! Every integration test of this crate in one test binary (one link instead of one per
//! file): each `tests/<name>.rs` is the module `<name>` here, run as
//! `cargo test --test integration <name>::`. A file that must be its own process is its own
//! `[[test]]` target in Cargo.toml (`autotests = false` there); the workspace's
//! `integration::test_files_are_all_compiled` (tests/integration.rs at the root) checks that
//! every `tests/*.rs` is one or the other.

mod deploy;
mod examples_cli;
mod host_runtimes;
#[cfg(all(feature = "lifecycle", feature = "sim"))]
mod lifecycle;
#[cfg(not(all(feature = "lifecycle", feature = "sim")))]
#[test]
#[ignore = "left out: needs the `lifecycle` and `sim` features (both default); run: cargo test --features lifecycle,sim --test integration lifecycle::"]
fn lifecycle() {}
mod serialized_names;
mod train_export_serve;

/// Every `tests/*.rs` of a workspace package built with `autotests = false` is compiled: a
/// module of that package's `tests/integration.rs` or a `[[test]]` target of its own (its
/// `path` in Cargo.toml). Without this a new test file would sit beside the others and never
/// run.
#[test]
fn test_files_are_all_compiled() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut packages = vec![root.to_path_buf()];
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() && dir.join("tests").is_dir() {
            packages.push(dir);
        }
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for package in &packages {
        let manifest = std::fs::read_to_string(package.join("Cargo.toml")).unwrap();
        if !manifest.contains("\nautotests = false\n") {
            continue;
        }
        let integration =
            std::fs::read_to_string(package.join("tests/integration.rs")).unwrap_or_default();
        for entry in std::fs::read_dir(package.join("tests")).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".rs"))
            else {
                continue;
            };
            let declared = integration.lines().any(|l| l == format!("mod {name};"));
            let target = manifest.contains(&format!("path = \"tests/{name}.rs\""));
            if !declared && !target {
                missing.push(path.display().to_string());
            }
            checked += 1;
        }
    }
    assert!(
        missing.is_empty(),
        "test files compiled by no target (declare them in tests/integration.rs): {missing:?}"
    );
    // The root and mlops-core, -drift, -train and -serve: 60-odd files.
    assert!(checked > 50, "only {checked} test files were found");
}
