#!/bin/sh
# The monitor's command hook: the retrain request (JSON) arrives on stdin. Kept under
# $LOOP_DIR (default /tmp/loop), then, once the window's labels have had $LABEL_WAIT seconds
# (default 3) to come in, examples/retrain runs on the window of the log with its labels and
# leaves a candidate under `canary` (or says why not). Its output goes to
# $LOOP_DIR/retrain.out and its exit code to $LOOP_DIR/retrain.exits. The registry and the
# log are the server's: MLOPS_REGISTRY and MLOPS_LOG (inherited from it). The gate's floor is
# $MIN_AUC (default 0.7) besides "no worse than the champion on the same holdout": the window
# an alarm names is a few thousand rows, half of them from before the change, and its 15%
# holdout's ROC AUC moves by a few hundredths between runs (0.77 to 0.82 seen here).
set -u
dir="${LOOP_DIR:-/tmp/loop}"
mkdir -p "$dir"
request="$dir/request-$(date +%s%N).json"
cat > "$request"
sleep "${LABEL_WAIT:-3}"
"${RETRAIN:-target/release/examples/retrain}" --registry "$MLOPS_REGISTRY" --log "$MLOPS_LOG" \
    --request "$request" --min-auc "${MIN_AUC:-0.7}" >> "$dir/retrain.out" 2>&1
code=$?
echo "$code" >> "$dir/retrain.exits"
exit "$code"
