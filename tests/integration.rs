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

/// Every test file of every workspace package runs: `tests/<name>.rs` (and
/// `tests/<name>/main.rs`) is either a test target of its own, with no `required-features`
/// (which would drop it silently when they are off), or a module of the package's `integration`
/// target, declared at the start of a line; a module behind `#[cfg(...)]` is followed by a
/// `left out:` stub for the opposite condition, so that leaving it out shows as an ignored
/// test. Targets
/// come from `cargo metadata`, as cargo sees them.
#[test]
fn test_files_are_all_compiled() {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut problems = Vec::new();
    let mut files = 0;
    for package in metadata["packages"].as_array().unwrap() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
        let tests = manifest.parent().unwrap().join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        let targets: Vec<&serde_json::Value> = package["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"][0] == "test")
            .collect();
        for t in &targets {
            if t["required-features"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
            {
                problems.push(format!("{} has required-features", t["src_path"]));
            }
        }
        let target_paths: Vec<PathBuf> = targets
            .iter()
            .map(|t| PathBuf::from(t["src_path"].as_str().unwrap()))
            .collect();
        let integration = tests.join("integration.rs");
        let declared = if target_paths.contains(&integration) {
            std::fs::read_to_string(&integration).unwrap()
        } else {
            String::new()
        };
        let lines: Vec<&str> = declared.lines().collect();
        for entry in entries {
            let path = entry.unwrap().path();
            let (name, file) = match path.extension() {
                Some(e) if e == "rs" => (path.file_stem().unwrap(), path.clone()),
                None if path.join("main.rs").is_file() => {
                    (path.file_name().unwrap(), path.join("main.rs"))
                }
                _ => continue,
            };
            files += 1;
            if target_paths.contains(&file) {
                continue;
            }
            let name = name.to_str().unwrap();
            let Some(at) = lines.iter().position(|l| *l == format!("mod {name};")) else {
                problems.push(format!("{} is compiled by no target", file.display()));
                continue;
            };
            if let Some(cond) = at
                .checked_sub(1)
                .and_then(|i| lines[i].strip_prefix("#[cfg("))
                .and_then(|c| c.strip_suffix(")]"))
            {
                // The stub follows its module: `#[cfg(not(..))]`, `#[test]`, `#[ignore = ..]`.
                let stub = format!("#[cfg(not({cond}))]");
                let stubbed = lines.get(at + 1) == Some(&stub.as_str())
                    && lines
                        .get(at + 3)
                        .is_some_and(|l| l.starts_with("#[ignore = \"left out:"));
                if !stubbed {
                    problems.push(format!(
                        "mod {name} has no `left out:` stub for not({cond})"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The root, mlops-core, -drift, -train, -serve and -registry, and tests/host-crate: 70-odd.
    assert!(files > 60, "only {files} test files were found");
}
