"""A promotion policy's operating characteristics from Python (mlops.serve.
operating_characteristics): an identical candidate at 50 requests/s is promoted far more often
under the always-valid default than under the per-window policy; a much worse one never; the same
report for a seed; bad scenarios, policies and counts refused by name."""
import pytest

from mlops.serve import operating_characteristics

LOW = {"requests_per_second": 50.0, "positive_rate": 0.5, "label_delay_seconds": 10.0}


def test_the_always_valid_policy_promotes_an_identical_candidate_and_not_a_worse_one():
    # The default policy is the always-valid one; `sequential: False` is the per-window one.
    per_window = operating_characteristics(scenario=LOW, policy={"sequential": False}, runs=100, seed=3)
    sequential = operating_characteristics(scenario=LOW, policy={"sequential": {}}, runs=100, seed=3)
    default = operating_characteristics(scenario=LOW, runs=100, seed=3)
    assert default == sequential
    assert per_window["runs"] == sequential["runs"] == 100
    assert sequential["promoted"] >= 95, sequential
    assert sequential["promoted"] > per_window["promoted"], (per_window, sequential)
    low, high = sequential["promoted_share"]["low"], sequential["promoted_share"]["high"]
    assert low <= sequential["promoted_share"]["share"] <= high
    worse = operating_characteristics(scenario={**LOW, "auc_delta": -0.08}, policy={"sequential": {}}, runs=50, seed=3)
    assert worse["promoted"] == 0 and worse["rolled_back"] + worse["undecided"] == 50, worse
    again = operating_characteristics(scenario=LOW, policy={"sequential": {}}, runs=100, seed=3)
    assert again == sequential


def test_bad_scenarios_policies_and_counts_are_refused_by_name():
    with pytest.raises(ValueError, match="positive_rate"):
        operating_characteristics(scenario={"positive_rate": 0.0}, runs=1)
    with pytest.raises(ValueError, match="unknown field"):
        operating_characteristics(scenario={"rps": 50.0}, runs=1)
    with pytest.raises(ValueError, match="sequential.alpha"):
        operating_characteristics(policy={"sequential": {"alpha": 0.9}}, runs=1)
    with pytest.raises(ValueError, match="labeled_capacity"):
        operating_characteristics(stats={"labeled_capacity": 0}, runs=1)
    with pytest.raises(ValueError, match="runs"):
        operating_characteristics(runs=0)
    with pytest.raises(TypeError, match="runs"):
        operating_characteristics(runs=2.5)
