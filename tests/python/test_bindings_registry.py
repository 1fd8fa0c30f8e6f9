"""The wheel's registry (a folder, memory://, and S3 on a real moto server on 127.0.0.1) and
the promotion-policy simulation."""

import pathlib

import numpy as np
import pytest

from mlops.drift import ReferenceProfile
from mlops.registry import Registry
from mlops.serve import simulate_rollout
from mlops.train import fit
from serving import moto_s3

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24_000, 4))
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=24_000) > 0).astype(int)
    good = fit(x[:4000], y[:4000], hidden=(16,), epochs=10, seed=1)
    noise = fit(x[:4000], rng.integers(0, 2, 4000), hidden=(16,), epochs=2, seed=2)
    return x, y, good, noise


def roundtrip(registry, world):
    x, y, good, noise = world
    profile = ReferenceProfile.fit(x[:4000])
    v1 = registry.register("fraud", good, profile=profile, metrics={"roc_auc": 0.95}, params={"hidden": "16"}, tags={"team": "risk"})
    v2 = registry.register("fraud", noise)
    assert (v1, v2) == (1, 2)
    registry.set_alias("fraud", "production", v1)
    with pytest.raises(ValueError, match="production"):
        registry.set_alias("fraud", "production", v2, expected=None)  # it is 1 now: CAS refuses
    registry.set_alias("fraud", "production", v2, expected=v1)
    assert registry.alias("fraud", "production") == v2
    assert registry.alias("fraud", "canary") is None
    loaded = registry.load("fraud", 1)
    np.testing.assert_array_equal(loaded.predict_proba(x[:100]), good.predict_proba(x[:100]))
    np.testing.assert_array_equal(registry.load("fraud").predict_proba(x[:100]), noise.predict_proba(x[:100]))
    assert registry.profile("fraud", 1).to_json() == profile.to_json()
    assert registry.profile("fraud", "@production") is None
    versions = registry.versions("fraud")
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["metrics"] == {"roc_auc": 0.95} and versions[1]["aliases"] == ["production"]
    # One version a page: the same versions, then no next page.
    first = registry.versions_page("fraud", limit=1)
    assert (first["versions"], first["next_after"], first["last_version"]) == (versions[:1], 1, 2)
    second = registry.versions_page("fraud", after=first["next_after"], limit=1)
    assert (second["versions"], second["next_after"], second["unreadable"]) == (versions[1:], None, [])
    with pytest.raises(ValueError, match="page limit"):
        registry.versions_page("fraud", limit=0)
    for bad in [dict(after=-1), dict(limit=-5)]:
        with pytest.raises(ValueError, match="version number"):
            registry.versions_page("fraud", **bad)
    with pytest.raises(ValueError, match="reference"):
        registry.load("fraud", "latest!")
    with pytest.raises(ValueError):
        registry.load("fraud", 9)


def test_a_folder_and_memory_registry(tmp_path, world):
    roundtrip(Registry(tmp_path / "registry"), world)
    roundtrip(Registry("memory://"), world)


@pytest.fixture()
def moto(monkeypatch):
    with moto_s3(monkeypatch, "models") as port:
        yield port


def test_an_s3_registry_on_moto(moto, world):
    roundtrip(Registry("s3://models/registry"), world)


def test_a_simulated_rollout_promotes_a_better_model_and_rolls_back_a_worse_one(world):
    x, y, good, noise = world
    # The replay sends each row once: 20,000 rows are 400 simulated seconds at 50 a second,
    # before the first analysis. It stops there, undecided, and says so.
    short = simulate_rollout(noise, good, x[4000:], y[4000:])
    assert short["rows_ran_out"] and short["requests"] == 20_000, {k: short[k] for k in ("requests", "rows_ran_out")}
    assert short["rollout"]["phase"] not in ("promoted", "rolled_back")
    # Fresh rows from the same world for every request.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300_000, 4))
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=300_000) > 0).astype(int)
    better = simulate_rollout(noise, good, x, y)
    assert not better["rows_ran_out"] and better["row_passes"] < 1
    assert better["rollout"]["phase"] == "promoted", better["rollout"]["decisions"][-1]
    steps = [d["to_percent"] for d in better["rollout"]["decisions"] if d["kind"] in ("start", "advance", "promote")]
    assert steps == [10, 25, 50, 75, 100]
    worse = simulate_rollout(good, noise, x, y)
    assert worse["rollout"]["phase"] == "rolled_back"
    assert "roc_auc" in worse["rollout"]["decisions"][-1]["reason"]
    policy = {"steps": [50, 100], "bake_time_seconds": 300, "checks": [{"kind": "error_rate"}], "min_requests": 50}
    quick = simulate_rollout(good, noise, x, y, policy=policy)
    assert quick["rollout"]["phase"] == "promoted"  # error rate alone cannot see a worse model
    with pytest.raises(ValueError, match="steps"):
        simulate_rollout(good, noise, x[4000:], y[4000:], policy={"steps": [50, 20, 100]})
