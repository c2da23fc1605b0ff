"""What the torchrun tests share: a shrunk quickstart, the torchrun command, and record comparison
to a tolerance (two ranks sum in another order than one process, so records agree to rounding).

The shrunk quickstart: an FC 784-32-32-10 on 200 synthetic samples, global batch 20 (10 steps an
epoch), 20 epochs = 200 steps; a step record every epoch, evaluations at 0, 50, 100, 150, 200 on
a 100-sample probe, err_gamma on 55 training samples (an odd count: shards of 27 and 28), a
snapshot every 30 steps. A few seconds a run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from nctui.records import Record, splice
from nctui.store.rundir import read_records
from run_fixtures import CLOCK_FIELDS

SHRUNK = {
    "data.synthetic.train_per_class": 20, "data.synthetic.test_per_class": 10, "model.width": 32,
    "model.depth": 3, "train.batch_size": 20, "train.epochs": 20, "train.device": "cpu",
    "monitor.log_every": 10, "monitor.eval_every": 50, "monitor.early_evals": False,
    "monitor.snapshot_every": 30, "monitor.noise_batches": 2, "monitor.probe_per_class": 10,
    "monitor.margin_samples": 55,
}
STEPS_PER_EPOCH = 10


def shrunk(**changes: object) -> list[str]:
    """--set arguments for the shrunk quickstart, with `changes` (keys with __ for dots)."""
    values = {**SHRUNK, **{key.replace("__", "."): value for key, value in changes.items()}}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def torchrun(*args: str, nproc: int = 2, script: Path | None = None) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node=N -m nctui ARGS` (or SCRIPT ARGS)."""
    target = [str(script)] if script is not None else ["-m", "nctui"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--monitor-interval=0.1", *target, *args]


def run_records(run_dir: Path) -> list[Record]:
    """The run's records with resumed segments spliced, as every reader sees it."""
    return splice(read_records(run_dir))


def plain(record: Record) -> dict:
    """A record as a dict without its clock readings."""
    return {k: v for k, v in dataclasses.asdict(record).items() if k not in CLOCK_FIELDS}


def differences(a: object, b: object, rtol: float, atol: float, where: str = "") -> list[str]:
    """Where two JSON-like values differ: numbers by more than atol + rtol * max(|a|, |b|), anything
    else (keys, lengths, strings, None against a number) at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for key in a for d in differences(a[key], b[key], rtol, atol, f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, rtol, atol, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isclose(a, b, rel_tol=rtol, abs_tol=atol):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def records_differences(ours: list[Record], theirs: list[Record], rtol: float, atol: float) -> list[str]:
    """differences() over two runs' records, start records left out (run names, world sizes)."""
    mine = [plain(r) for r in ours if r.type != "start"]
    other = [plain(r) for r in theirs if r.type != "start"]
    if [(r["type"], r.get("step")) for r in mine] != [(r["type"], r.get("step")) for r in other]:
        return [f"different records: {[(r['type'], r.get('step')) for r in mine]} != "
                f"{[(r['type'], r.get('step')) for r in other]}"]
    return [d for r, s in zip(mine, other) for d in differences(r, s, rtol, atol, f"{r['type']} {r.get('step')}")]
