#!/usr/bin/env bash
# Runs every check of the workspace on a fresh machine, and is what CI runs (.ci/run):
#   1. cargo fmt --check; then cargo clippy -D warnings and the test build, in the background
#      while it sets up what the tests need (a Python venv in .venv with the pinned packages
#      of scripts/requirements-test.txt; Azurite from npm; promtool from Debian's prometheus
#      package),
#   2. waits for the lint and the build (their log is printed),
#   3. every Rust test (unit, integration, property, doc, examples) in one build with the
#      server features, including the tests against real servers that each test starts on a
#      port it picks and stops by PID (process group): the MLflow tracking backend (feature
#      `mlflow`) against `mlflow server` from .venv, and the registry conformance suite on S3
#      (feature `aws`, `moto_server` from .venv) and on Azure Blob (feature `azure`, Azurite
#      from npm, installed into .tools),
#      (the workspace holds tests/host-crate, which runs the host program on the facade alone),
#   4. builds the `mlops` Python wheel (bindings/python, maturin, dev profile) into .venv,
#      in the background while the Rust tests of step 3 run,
#   5. the Python tests (the committed fixtures are what the committed generators write; the
#      wheel against scipy and scikit-learn),
# and stops whatever it started (by PID) on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A test run is one build, not an edit loop: incremental caches would only take disk (CI's
# disk is small; see the dev profile in Cargo.toml).
export CARGO_INCREMENTAL=0

# Process groups this script started (the background build), stopped on the way out.
started_groups=()
cleanup() {
  for pgid in "${started_groups[@]}"; do
    kill -- "-$pgid" 2>/dev/null || true
  done
}
trap cleanup EXIT

start=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "disk free here (the clippy, test and wheel builds leave about 4.3 GiB in target/)"
df -h . | tail -n 1

step "cargo fmt --check"
cargo fmt --all -- --check

# One feature selection for lint and tests, so the workspace is built once: the backends
# tested against real servers (mlflow, aws, azure) and gcp, which has no local server (compiled
# and linted only). Features only add code; nothing is compiled only without them but the
# `cuda` fallbacks, which stay compiled (cuda is never on here). `mlops/http` builds the KServe V2
# server and its example, which the tritonclient test (pytest) runs. The facade's default
# features (onnx, parquet, ...) are on.
features=mlops/http,mlops/grpc,mlops/prometheus,mlops/predlog,mlops/monitor,mlops/mlflow,mlops-registry/aws,mlops-registry/azure,mlops-registry/gcp

# The lint and the test build need no venv, npm or apt: they run while those install (the
# installs wait on the network, the builds on the CPU), and the tests start once both are done.
step "cargo clippy -D warnings, then the test build, in the background (log: target/build.log)"
mkdir -p target
# Its own process group (setsid), so that a failure here stops cargo and every rustc with it.
FEATURES="$features" setsid bash -c '
  set -e
  echo "==> cargo clippy --workspace --all-targets --features $FEATURES -- -D warnings"
  cargo clippy --workspace --all-targets --features "$FEATURES" -- -D warnings
  echo "==> cargo test --workspace --features $FEATURES --no-run"
  cargo test --workspace --features "$FEATURES" --no-run
' > target/build.log 2>&1 &
build_pid=$!
started_groups+=("$build_pid")

step "Python venv (.venv) with scripts/requirements-test.txt"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

step "Azurite (npm) in .tools for the Azure registry tests"
if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
  mkdir -p .tools
  npm install --silent --no-audit --no-fund --prefix .tools azurite@3.37.0
fi
.tools/node_modules/.bin/azurite-blob --version

step "promtool and prometheus (Debian's prometheus package) for the metrics and rollout tests"
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  # The package's service is not started: policy-rc.d forbids it in containers, and the tests
  # start their own prometheus on a port they pick, stopped by PID.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -n 1
prometheus --version 2>&1 | head -n 1

step "waiting for clippy and the test build"
if ! wait "$build_pid"; then
  cat target/build.log
  echo "clippy or the test build failed (above)" >&2
  exit 1
fi
grep -v '^ *\(Compiling\|Checking\)' target/build.log

step "cargo test --workspace --features $features (with mlflow server, moto S3, Azurite), and the wheel meanwhile"
# The wheel (step 4) is built while the Rust tests run: cargo holds its build lock only while
# it builds, so the wheel's cargo starts once `cargo test` has printed its first `Running`
# (its build, a no-op after the test build above, is over) and uses what CPU the tests leave
# idle (they wait on servers and child processes). examples_cli would otherwise rebuild the
# examples and wait for that lock: MLOPS_EXAMPLES_BUILT=1 tells it they are built.
#
# pyo3 is only compiled there: the bindings crate is empty without its `python` feature, so
# the workspace build and tests never touch it. The dev profile (the workspace's code at
# opt-level 1, dependencies at 2, as the tests) reuses the dependencies the test build left in
# target/debug whose features agree (candle, tract, ...): minutes instead of a release build.
# Users build the release wheel (README); the tests check behaviour, not speed. Its own clippy
# builds mlops-serve and the others with the wheel's features (no HTTP server, no batching).
# The job runs at a lower priority (nice 10), so that the tests keep the CPU they need, and it
# gives up if this script is gone (killed without its trap), never waiting for a later run's log.
rm -f target/test.log target/test.done
PARENT=$$ setsid bash -c '
  set -e
  until grep -q "^ *Running " target/test.log 2>/dev/null || [ -e target/test.done ]; do
    kill -0 "$PARENT" 2>/dev/null || exit 1
    sleep 1
  done
  echo "==> cargo clippy -p mlops-python --features python -- -D warnings"
  nice -n 10 cargo clippy -p mlops-python --features python -- -D warnings
  rm -f target/wheels/mlops-*.whl
  echo "==> maturin build --profile dev -m bindings/python/Cargo.toml"
  nice -n 10 .venv/bin/maturin build --profile dev --quiet -m bindings/python/Cargo.toml -o target/wheels
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
    target/wheels/mlops-*-cp39-abi3-*.whl
' > target/wheel.log 2>&1 &
wheel_pid=$!
started_groups+=("$wheel_pid")
# The tracking suite runs against a real mlflow server, the registry suite against a real moto
# S3 server and Azurite; each test starts its server on a port it picks and stops it by PID.
tests_ok=1
MLOPS_MLFLOW="$PWD/.venv/bin/mlflow" MLOPS_MOTO="$PWD/.venv/bin/moto_server" \
  MLOPS_AZURITE="$PWD/.tools/node_modules/.bin/azurite-blob" MLOPS_PYTHON="$PWD/.venv/bin/python" \
  MLOPS_TEST_FEATURES="$features" MLOPS_EXAMPLES_BUILT=1 \
  cargo test --workspace --features "$features" 2>&1 | tee target/test.log || tests_ok=0
touch target/test.done
if [ "$tests_ok" = 0 ]; then
  echo "cargo test failed (above)" >&2
  exit 1
fi

step "waiting for the mlops wheel: bindings/python built by maturin (abi3, dev profile) into .venv"
if ! wait "$wheel_pid"; then
  cat target/wheel.log
  echo "the wheel's clippy or build failed (above)" >&2
  exit 1
fi
grep -v '^ *\(Compiling\|Checking\)' target/wheel.log || true

step "pytest tests/python"
.venv/bin/python -m pytest -q -rs tests/python

printf '\nall checks passed in %ss; target/ holds %s\n' "$(( $(date +%s) - start ))" \
  "$(du -sh target 2>/dev/null | cut -f1)"
