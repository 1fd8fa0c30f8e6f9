//! The host program, built in a crate whose only dependencies are `mlops` and tokio, runs the
//! whole embedded loop (validate → train → track → gate → register → promote → score) in a
//! scratch folder and exits 0.

#[test]
fn the_host_program_runs_on_the_facade_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("production = v1"), "{stdout}");
    // What it wrote: the registry's model and the tracker's run.
    assert!(dir.path().join("registry").is_dir());
}
