"""A plain `cargo test --workspace` compiles feature-gated test suites out; it must say so.

Every Rust test file that gates a test or a test module on `feature = "X"` must also carry,
under `cfg(not(feature = "X"))`, an ignored stub whose reason starts with "left out:" and
names `--features X`, so that the plain run lists `... ignored, left out: ...` with the command
that runs the suite. This check reads the sources, so it fails when a new gated suite arrives
without its stub (or a stub is deleted)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]

GATED = re.compile(
    r'#\[cfg\(feature = "([a-z0-9_-]+)"\)\]\s*(?:#\[[^\]]*\]\s*)*(?:#\[(?:tokio::)?test\b|mod \w+\s*\{)'
)
# In library sources a feature-gated module is code, not a suite: only gated tests and test
# modules count there.
GATED_IN_SRC = re.compile(
    r'#\[cfg\(feature = "([a-z0-9_-]+)"\)\]\s*(?:#\[[^\]]*\]\s*)*(?:#\[(?:tokio::)?test\b|mod \w*tests?\w*\s*\{)'
)
STUB = re.compile(
    r'#\[cfg\(not\(feature = "([a-z0-9_-]+)"\)\)\]\s*#\[test\]\s*#\[ignore = "left out: ([^"]*)"\]\s*fn \w+\(\)'
)


def rust_test_files():
    for crate in sorted(ROOT.glob("mlops-*")) + [ROOT]:
        yield from sorted((crate / "tests").glob("*.rs"))
        yield from sorted((crate / "src").rglob("*.rs")) if crate != ROOT else ()


def gated_and_stubbed(text, in_src=False):
    gated = set((GATED_IN_SRC if in_src else GATED).findall(text))
    stubs = {feature: why for feature, why in STUB.findall(text)}
    return gated, stubs


def test_every_gated_suite_has_a_left_out_stub_naming_its_command():
    missing = []
    checked = 0
    for path in rust_test_files():
        gated, stubs = gated_and_stubbed(path.read_text(), in_src="src" in path.relative_to(ROOT).parts)
        for feature in sorted(gated):
            checked += 1
            why = stubs.get(feature)
            if why is None:
                missing.append(f"{path.relative_to(ROOT)}: feature {feature} has no ignored 'left out:' stub")
            elif f"--features {feature}" not in why:
                missing.append(f"{path.relative_to(ROOT)}: the stub for {feature} does not name --features {feature}")
    assert checked >= 3, "the gated suites (aws, azure, mlflow) were not found: is the pattern stale?"
    assert not missing, "\n".join(missing)


def test_the_pattern_catches_a_gated_suite_without_a_stub():
    text = '#[cfg(feature = "aws")]\nmod s3 {\n}\n'
    assert gated_and_stubbed(text) == ({"aws"}, {})
    text += (
        '#[cfg(not(feature = "aws"))]\n#[test]\n'
        '#[ignore = "left out: the suite on moto; run with --features aws"]\nfn s3() {}\n'
    )
    assert gated_and_stubbed(text) == ({"aws"}, {"aws": "the suite on moto; run with --features aws"})
    gated_fn = '#[cfg(feature = "mlflow")]\n#[tokio::test(flavor = "multi_thread")]\nasync fn t() {}\n'
    assert gated_and_stubbed(gated_fn)[0] == {"mlflow"}
    # A gated library module is code; a gated test module in a library is a suite.
    assert gated_and_stubbed('#[cfg(feature = "registry")]\nmod registry {\n}\n', in_src=True)[0] == set()
    assert gated_and_stubbed('#[cfg(feature = "gpu")]\nmod tests {\n}\n', in_src=True)[0] == {"gpu"}
