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
#
# SECTIONS picks which run (default all: "1 4 5"; 1 stands for 1-3): SECTIONS=5 bash bench/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check}
SECTIONS=${SECTIONS:-1 4 5}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
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

if want 1; then
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
fi

# --- 4. Issue 15, torchrun: world size 1 with nccl gives the plain run's records ------------------
# The shrunk quickstart of tests/distributed_fixtures.py on cuda, three ways: plain with eager steps,
# plain with the CUDA graph (auto), and `torchrun --nproc-per-node=1` (nccl, eager AllReduceStep).
# Expected: nccl-1 equals plain-eager to float rounding (max relative difference printed per field;
# the sums are the same, so ~0); and with 2+ GPUs, nccl-2 within ~1e-5 of plain-eager. About a
# minute. Alone: SECTIONS=4 bash bench/gpu_check.sh
if want 4; then
DIST="$OUT/distributed"
rm -rf "$DIST" && mkdir -p "$DIST"
SHRUNK=(--set data.synthetic.train_per_class=20 --set data.synthetic.test_per_class=10 --set model.width=32
        --set model.depth=3 --set train.batch_size=20 --set train.epochs=20 --set monitor.log_every=10
        --set monitor.eval_every=50 --set monitor.early_evals=false --set monitor.snapshot_every=30
        --set monitor.noise_batches=2 --set monitor.probe_per_class=10 --set monitor.margin_samples=55)
dist_run() {   # dist_run NAME COMMAND...: one run into $DIST/NAME, its stderr kept
    local name=$1
    shift
    echo "== distributed $name: $*"
    timeout 180 "$@" quickstart --headless --device cuda --run-dir "$DIST/$name" "${SHRUNK[@]}" \
        > /dev/null 2> "$DIST/$name.stderr"
    echo "== distributed $name: exit $?"
    tail -2 "$DIST/$name.stderr"
}
dist_run plain_eager python3 -m nctui run --set 'train.cuda_graph="off"'
dist_run plain_graph python3 -m nctui run
dist_run nccl1 python3 -m torch.distributed.run --standalone --nproc-per-node=1 -m nctui run
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$GPUS" -ge 2 ] && dist_run nccl2 python3 -m torch.distributed.run --standalone --nproc-per-node=2 -m nctui run
python3 - "$DIST" <<'PY' | tee "$OUT/distributed.json"
import json, math, pathlib, sys
base = pathlib.Path(sys.argv[1])
clock = {"time", "elapsed", "eval_seconds", "samples_per_s", "run", "world_size", "backend", "device"}
def records(name):
    path = base / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else None
def walk(a, b, where, worst):
    if isinstance(a, dict):
        for key in a:
            if key not in clock:
                walk(a[key], b.get(key) if isinstance(b, dict) else None, f"{where}.{key}", worst)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for x, y in zip(a, b):
            walk(x, y, where, worst)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        rel = abs(a - b) / max(abs(a), abs(b), 1e-30)
        worst[where] = max(worst.get(where, 0.0), rel)
    elif a != b:
        worst[where] = math.inf
reference = records("plain_eager")
report = {"start": {n: {k: (records(n) or [{}])[0].get(k) for k in ("world_size", "backend", "device")}
                    for n in ("plain_eager", "nccl1", "nccl2")}}
for name in ("plain_graph", "nccl1", "nccl2"):
    other = records(name)
    if other is None or reference is None:
        report[name] = "missing"
        continue
    same_shape = [(r["type"], r.get("step")) for r in reference] == [(r["type"], r.get("step")) for r in other]
    worst = {}
    for a, b in zip(reference, other):
        if a["type"] != "start":   # the start records differ in config (cuda_graph), world size, backend
            walk(a, b, a["type"], worst)
    top = [kv for kv in sorted(worst.items(), key=lambda kv: -kv[1])[:8] if kv[1] > 0]
    report[name] = {"same_records": same_shape, "max_rel": max(worst.values(), default=0.0), "worst": top}
print(json.dumps(report, indent=1, default=str))
PY
fi

# --- 5. Issue 16, packed sweeps: 8 mnist_fc runs packed against one run (goal: at most 1.5x) ------
# tests/test_packed.py -k gpu: a pack of 4 (lr, weight decay, momentum/target scale, seed) on cuda,
# captured and eager, against each member alone (loss at steps 10 and 100, NC1 at step 100).
# Then bench/sweep_pack.py with mnist_fc on MNIST-shaped synthetic data, 20 epochs, 8 weight
# decays: `nctui run` once against `nctui sweep --pack 8` (each timed from launch to exit), with the
# preset's monitoring (every member is evaluated on its own: 8 evaluations for one) and without it
# (the training alone). Read ratio_packed_to_one in pack_fc.json and pack_fc_train.json. About
# 3 minutes. Alone: SECTIONS=5 bash bench/gpu_check.sh
if want 5; then
echo "== packed tests"
timeout 240 python3 -m pytest -q -rs -p no:cacheprovider tests/test_packed.py -k gpu
PACK=(--preset mnist_fc --device cuda --runs 8 --rounds 1 --variants one,packed --set data.name=synthetic
      --set data.synthetic.train_per_class=6000 --set data.synthetic.test_per_class=1000 --set train.epochs=20)
check pack_fc 300 python3 bench/sweep_pack.py "${PACK[@]}"
check pack_fc_train 240 python3 bench/sweep_pack.py "${PACK[@]}" --set monitor.enabled=false
fi
