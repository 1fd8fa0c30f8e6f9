"""One hyperparameter study run by many processes through a journal on a real moto S3 server,
with `examples/study` as an operator runs it: four workers share 40 trial numbers once each
and draw what one process draws; a worker killed mid-trial leaves a trial the others fail after
the timeout and retry; a shell loop drives the study with ask / tell / enqueue; and Optuna's
own `load_study` over `JournalFileBackend` reads the exported journal."""
import json
import math
import signal
import subprocess
import time

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from serving import EXAMPLES, moto_s3

STUDY = EXAMPLES / "study"
FAST = ["--heartbeat-seconds", "0.5", "--stale-after-seconds", "3"]
# Four processes contending for one moto server on two cores can hold a worker's append back
# for seconds; a trial is presumed dead only after this long.
PATIENT = ["--heartbeat-seconds", "2", "--stale-after-seconds", "60"]


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def cli(*args, check=True):
    out = subprocess.run([str(STUDY), *[str(a) for a in args]], capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out


def workers(n, journal, *args, timing=FAST):
    procs = [subprocess.Popen([str(STUDY), "worker", "--journal", journal, *timing, *[str(a) for a in args]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    return outs


def optuna_study(journal, tmp_path, name="branin", *args):
    log = tmp_path / f"export-{time.monotonic_ns()}.log"
    cli("export", "--journal", journal, *FAST, *args, "--out", log)
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(log))))


def test_four_processes_on_s3_take_forty_numbers_once_each_and_draw_as_one_process(tmp_path, monkeypatch):
    args = ["--sampler", "random", "--seed", "3", "--trials", "40"]
    with moto_s3(monkeypatch, "studies"):
        started = time.monotonic()
        outs = workers(4, "s3://studies/branin", *args, timing=PATIENT)
        print(f"4 workers, 40 trials on moto S3: {time.monotonic() - started:.1f} s")
        told = sorted(n for o in outs for n in o["told"])
        assert told == list(range(40))
        assert all(o["stop"] == "max_trials" for o in outs)
        study = optuna_study("s3://studies/branin", tmp_path, "branin", *args)
    trials = study.trials
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert -5 <= t.params["x1"] <= 10 and 0 <= t.params["x2"] <= 15
        assert t.value == pytest.approx(branin(t.params["x1"], t.params["x2"]), rel=1e-12)
        assert t.distributions["x1"] == optuna.distributions.FloatDistribution(-5, 10)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    # One process on a local folder, same seed: trial n draws from the seed's stream n, so
    # every trial and the best agree exactly.
    alone = workers(1, str(tmp_path / "alone"), *args, timing=PATIENT)[0]
    local = optuna_study(str(tmp_path / "alone"), tmp_path, "branin", *args)
    assert [t.params for t in local.trials] == [t.params for t in trials]
    assert alone["best_value"] == study.best_value
    assert alone["best_params"] == study.best_params


def test_a_worker_killed_mid_trial_leaves_a_trial_the_others_fail_and_retry(tmp_path, monkeypatch):
    args = ["--sampler", "tpe", "--seed", "5", "--trials", "12"]
    with moto_s3(monkeypatch, "studies"):
        journal = "s3://studies/killed"
        victim = subprocess.Popen([str(STUDY), "worker", "--journal", journal, *FAST, *args, "--trial-seconds", "600"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while "running: trial 0" not in cli("show", "--journal", journal, *FAST, *args).stderr:
                assert time.monotonic() < deadline and victim.poll() is None, "the victim never started trial 0"
                time.sleep(0.2)
            time.sleep(1.2)  # a heartbeat or two land
        finally:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        started = time.monotonic()
        # The survivors beat every second and wait 10 s before presuming a trial dead (moto
        # contention can hold a live worker's append back for seconds).
        outs = workers(3, journal, *args, timing=["--heartbeat-seconds", "1", "--stale-after-seconds", "10"])
        waited = time.monotonic() - started
        study = optuna_study(journal, tmp_path, "branin", *args)
        # The dead worker's result is refused, naming why.
        late = cli("tell", "--journal", journal, *FAST, *args, "--number", 0, "--value", 1.0, check=False)
    assert late.returncode == 1 and "trial 0 is failed" in late.stderr and "not recorded" in late.stderr, late.stderr
    # The others waited out the timeout (10 s after the last heartbeat), not forever (the
    # workers' communicate() has a deadline); how long is printed, not asserted.
    print(f"the survivors finished {waited:.1f} s after the kill")
    trials = study.trials
    assert [t.number for t in trials] == list(range(13))
    dead = trials[0]
    assert dead.state == TrialState.FAIL
    assert "no heartbeat" in dead.system_attrs["fail_reason"]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 12
    assert sorted(n for o in outs for n in o["told"]) == [t.number for t in trials if t.state == TrialState.COMPLETE]


def test_a_shell_loop_drives_the_study_with_ask_tell_and_enqueue(tmp_path):
    journal = str(tmp_path / "study")
    args = ["--journal", journal, *FAST, "--sampler", "random", "--trials", "4"]
    assert "Exit codes" in cli("--help").stdout
    assert cli("enqueue", *args, "--params", '{"x1": 9.42478, "x2": 2.475}').stdout.strip() == "0"
    bad = cli("enqueue", *args, "--params", '{"x1": 11, "x2": 2.475}', check=False)
    assert bad.returncode == 1 and "`x1`" in bad.stderr, bad.stderr
    other = cli("ask", "--journal", journal, *FAST, "--sampler", "tpe", check=False)
    assert other.returncode == 1 and "belongs to another study" in other.stderr, other.stderr
    while True:
        asked = json.loads(cli("ask", *args).stdout)
        if "stop" in asked:
            assert asked["stop"] == "max_trials"
            break
        p = asked["params"]
        cli("heartbeat", *args, "--number", asked["number"])
        if asked["number"] == 1:
            cli("tell", *args, "--number", 1, "--failed", "CUDA out of memory")
        else:
            cli("tell", *args, "--number", asked["number"], "--value", branin(p["x1"], p["x2"]))
    study = optuna_study(journal, tmp_path, "branin", "--sampler", "random", "--trials", "4")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert study.trials[0].params == {"x1": 9.42478, "x2": 2.475}
    assert study.trials[0].system_attrs["fixed_params"] == {"x1": 9.42478, "x2": 2.475}
    assert study.trials[1].system_attrs["fail_reason"] == "CUDA out of memory"
    assert study.best_trial.number == 0 and study.best_value == pytest.approx(0.397887, abs=1e-5)
