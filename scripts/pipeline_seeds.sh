#!/usr/bin/env bash
# Runs the main job (the closed loop on the built-in stream) for seeds 1..N (default 20) and
# prints, for each seed: the change's batch, the detection batch, false alarms before the
# change, the outcome, production at the end, and the post-change ROC AUCs (old model,
# retrained, oracle). Extra arguments go to every run (e.g. --gradual 4, or
# --corrupt-retrain-labels). Exit code 1 when any run fails.
#
#   scripts/pipeline_seeds.sh [N] [-- pipeline args...]
set -euo pipefail
cd "$(dirname "$0")/.."
n=20
if [[ $# -gt 0 && $1 != "--" ]]; then n=$1; shift; fi
[[ ${1:-} == "--" ]] && shift
cargo build --release --quiet --example pipeline
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for seed in $(seq 1 "$n"); do
  ./target/release/examples/pipeline --seed "$seed" --workdir "$out/w$seed" \
    --summary "$out/s$seed.json" "$@" >"$out/log$seed.txt" 2>&1 \
    || { echo "seed $seed failed:"; tail -5 "$out/log$seed.txt"; exit 1; }
done
python3 - "$out" "$n" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
f = lambda v: "-" if v is None else f"{v:.4f}"
print(f"{'seed':>4} {'shift':>5} {'detect':>6} {'false':>5} {'outcome':<12} {'prod':>4} {'old':>7} {'retrain':>7} {'oracle':>7} {'gap':>7} {'secs':>5}")
rows = []
for seed in range(1, n + 1):
    s = json.load(open(f"{out}/s{seed}.json"))
    gap = None if s["auc_after_retrain"] is None or s["auc_oracle"] is None else s["auc_oracle"] - s["auc_after_retrain"]
    rows.append((s, gap))
    print(f"{seed:>4} {s['shift_batch']:>5} {str(s['detected_batch']):>6} {s['false_alarms_before_shift']:>5} "
          f"{s['outcome']:<12} v{s['production_version']:<3} {f(s['auc_after_shift_old_model']):>7} "
          f"{f(s['auc_after_retrain']):>7} {f(s['auc_oracle']):>7} {f(gap):>7} {s['seconds']:>5.1f}")
outcomes = {}
for s, _ in rows:
    outcomes[s["outcome"]] = outcomes.get(s["outcome"], 0) + 1
delays = [s["detection_delay_batches"] for s, _ in rows if s["detection_delay_batches"] is not None]
gaps = [g for _, g in rows if g is not None]
print(f"outcomes {outcomes}; detected {len(delays)}/{n} (delay max {max(delays) if delays else '-'} batches); "
      f"false alarms {sum(s['false_alarms_before_shift'] for s, _ in rows)}; "
      f"oracle - retrained max {f(max(gaps) if gaps else None)}")
PY
