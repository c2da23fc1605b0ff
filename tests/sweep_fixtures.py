"""What the sweep tests share: a spec of tiny runs (a second or two of training each), the sweep
command as a subprocess, and the records two runs must agree on."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from nctui.records import splice
from nctui.store.rundir import read_records

# An FC 784-32-32-10 on 200 synthetic samples, batch 20 (10 steps an epoch), a step record every 3
# steps, an evaluation every 10 and a snapshot every 7, on the CPU with one thread, where a
# resumed run repeats an uninterrupted one exactly.
TINY_SET = {
    "data.synthetic.train_per_class": 20, "data.synthetic.test_per_class": 10, "model.width": 32,
    "model.depth": 3, "train.batch_size": 20, "train.epochs": 3, "train.device": "cpu", "train.threads": 1,
    "monitor.log_every": 3, "monitor.eval_every": 10, "monitor.early_evals": "false",
    "monitor.snapshot_every": 7, "monitor.noise_batches": 2,
}
CLOCK_FIELDS = ("time", "elapsed", "eval_seconds", "samples_per_s")
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_spec(directory: Path, name: str = "tiny", epochs: int = 3, extra: str = "") -> Path:
    """Two points (weight decay 0 and 1e-3, seed 3) of the tiny run."""
    settings = "".join(f"  {key}: {value}\n" for key, value in {**TINY_SET, "train.epochs": epochs}.items())
    path = directory / f"{name}.yaml"
    path.write_text(f"name: {name}\nbase: quickstart\nset:\n{settings}grid:\n  train.weight_decay: [0, 1.0e-3]\n"
                    f"seeds: [3]\n{extra}")
    return path


def sweep_command(*args: str) -> list[str]:
    """`nctui sweep ARGS` for a subprocess (env=SUBPROCESS_ENV)."""
    return [sys.executable, "-c", "from nctui.sweep.command import sweep; sweep(prog_name='nctui sweep')", *args]


def start_sweep(*args: str) -> subprocess.Popen:
    """The sweep in a session (and process group) of its own, so os.killpg reaches every run it starts."""
    return subprocess.Popen(sweep_command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV, start_new_session=True)


def comparable(run_dir: Path) -> list[dict]:
    """A run's records as it continued (resumed segments spliced), without start and snapshot
    records (a kill between a snapshot's rename and its record leaves that record out) and
    without clock readings."""
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in CLOCK_FIELDS}
            for r in splice(read_records(run_dir)) if r.type not in ("start", "snapshot")]


def only_dir(parent: Path) -> Path:
    (child,) = [p for p in parent.iterdir() if p.is_dir()]
    return child
