#!/usr/bin/env bash
# The GPU checks of issue 6, as one device run (about 5 minutes on one H200; nothing is fetched).
#
#   run(command="bash bench/gpu_check.sh", timeout_s=540)
#
# 1. tests/test_fast_step.py and tests/test_eval_cost.py with CUDA: the captured step against the
#    eager one (same weights, lr change, fallback), the evaluation on the GPU;
# 2. bench/throughput.py on cuda for mnist_fc and mnist_conv (MNIST-shaped synthetic data):
#    plain eager loop vs nctui (CUDA graph) vs monitored (vs the TUI when textual is there);
# 3. bench/eval_cost.py on cuda: mnist_fc at its preset probe and over all 60k samples, mnist_conv.
# Everything goes to $OUT/gpu_check.log, each JSON object also to $OUT/<name>.json.
#
# The image has torch but not textual: to include the TUI variant, put its wheels in .wheels/
# first (here: pip download --no-deps -d .wheels textual mdit-py-plugins platformdirs) and
# delete .wheels/ afterwards; without them the TUI variant is skipped and says so.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
if ! python3 -c "import textual" 2>/dev/null && [ -d .wheels ]; then
    python3 -m pip install -q --no-index --find-links .wheels textual
fi
VARIANTS=plain,nctui,monitored,tui
python3 -c "import textual" 2>/dev/null || { VARIANTS=plain,nctui,monitored; echo "no textual: TUI variant skipped"; }

check() {   # check NAME SECONDS COMMAND...: run with a time limit, keep stdout as NAME.json
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.json"
    echo "== $name: exit $?"
    cat "$OUT/$name.json"
}

echo "== tests"
timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_fast_step.py tests/test_eval_cost.py
check fc_throughput 150 python3 bench/throughput.py --preset mnist_fc --synthetic-mnist --device cuda --rounds 3 \
    --variants "$VARIANTS"
check conv_throughput 200 python3 bench/throughput.py --preset mnist_conv --synthetic-mnist --device cuda --rounds 3 \
    --steps 5000 --variants "$VARIANTS"
check fc_eval 60 python3 bench/eval_cost.py --preset mnist_fc --synthetic-mnist --device cuda
check conv_eval 90 python3 bench/eval_cost.py --preset mnist_conv --synthetic-mnist --device cuda
check fc_eval_60k 60 python3 bench/eval_cost.py --preset mnist_fc --synthetic-mnist --device cuda \
    --set monitor.probe_per_class=6000
check quickstart_throughput 90 python3 bench/throughput.py --preset quickstart --device cuda --rounds 3 \
    --variants plain,nctui,monitored
