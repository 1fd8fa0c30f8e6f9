"""Fairness on live traffic through the V2 server (`examples/serve.rs --monitor`), driven with
Triton's Python client: each request's sensitive group as `parameters.group`, labels posted
back, and `/metrics` showing each group's live rates and the live disparity (NaN while a group
is too small); a group a label value could not hold is a 400 `{"error"}` naming
`parameters.group`; a `--router-config` naming an input the model lacks is refused at start
(exit 2).

Servers listen on 127.0.0.1 on ports picked here and are stopped by PID (SIGTERM)."""
import json
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import tritonclient.http as httpclient

from serving import EXAMPLES, free_port, start_serve

from test_experiment_server import post_label, stop


def metrics(url):
    return urllib.request.urlopen(f"http://{url}/metrics", timeout=10).read().decode()


def value(text, prefix):
    line = next((l for l in text.splitlines() if l.startswith(prefix)), None)
    return None if line is None else float(line.rsplit(" ", 1)[1])


def test_live_group_rates_and_disparity_from_request_groups(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text("label_step_rows = 50\nfairness_min_group_size = 30\n")
    proc, url = start_serve(tmp_path, "--monitor", "--monitor-config", config)
    try:
        client = httpclient.InferenceServerClient(url=url)
        rng = np.random.default_rng(3)
        for i in range(200):
            x = rng.normal(size=(1, 30)).astype(np.float32)
            tensor = httpclient.InferInput("input", [1, 30], "FP32")
            tensor.set_data_from_numpy(x, binary_data=False)
            group = "north" if i % 4 else "south"
            client.infer("fraud", [tensor], request_id=f"r{i}", parameters={"group": group})
            assert post_label(url, f"r{i}", float(rng.random() < 0.5))["joined"]
        base = 'model="fraud",version="1"'
        deadline = time.time() + 30
        while True:
            text = metrics(url)
            north = value(text, f'mlops_monitor_group_rows{{{base},group="north"}}')
            south = value(text, f'mlops_monitor_group_rows{{{base},group="south"}}')
            if north is not None and south is not None and north + south == 200:
                break
            assert time.time() < deadline, text
            time.sleep(0.2)
        assert (north, south) == (150, 50)
        for group in ["north", "south"]:
            rate = value(text, f'mlops_monitor_group_metric{{{base},group="{group}",metric="selection_rate"}}')
            assert 0.0 <= rate <= 1.0, text
        dp = value(text, f'mlops_monitor_fairness{{{base},metric="demographic_parity_difference"}}')
        assert dp is not None and 0.0 <= dp <= 1.0, text
        # A group name that would break the exposition is refused, naming the parameter.
        body = json.dumps({"id": "bad", "parameters": {"group": "a\"b"},
                           "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]})
        request = urllib.request.Request(f"http://{url}/v2/models/fraud/infer", data=body.encode(),
                                         headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("a quote in the group was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400
            assert "parameters.group" in json.loads(e.read())["error"]
    finally:
        stop(proc)


def test_a_router_config_naming_an_input_the_model_lacks_is_refused(tmp_path):
    config = tmp_path / "router.toml"
    config.write_text('[stats]\ngroup_feature = "zip_code"\n')
    # The registry and model from a server that starts, then the refused one on it.
    proc, _ = start_serve(tmp_path)
    stop(proc)
    out = subprocess.run(
        [str(EXAMPLES / "serve"), "--registry", str(tmp_path / "reg"), "--model", "fraud",
         "--addr", f"127.0.0.1:{free_port()}", "--router-config", str(config)],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "group_feature" in out.stderr and "zip_code" in out.stderr, out.stderr
