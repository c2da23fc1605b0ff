"""Recorded runs for the analysis and compare-mode tests: fake run directories written with the
real RunWriter, and a 2 x 2-seed sweep (weight decay 0 and 1e-2, seeds 0 and 1) with its
sweep.json, all numbers fixed (no randomness, no clocks).

The runs follow tui_fixtures' run (4 layers, C = 10, evaluations every 50 steps to 400), with
the quantities compare mode plots made to depend on weight decay and seed in closed form:

  NC1                = 10^(1 - k t) (1 + 0.2 seed),        k = 3 with weight decay, 1 without
  hidden rank (fc1-3)= 32 - round(t (22 - seed)) - layer   with weight decay; 32 - layer without
  test accuracy      = 0.1 + 0.8 t + 0.05 [wd > 0] - 0.01 seed
  train loss         = 0.09 10^(-1.5 t) (1 + 0.1 seed)
  drift (per layer)  = 2e-4 (1 + 0.1 seed)                 with weight decay; 2e-4 (1 - 0.9 t) without
  gap bound          = 2^(9.6 - 10 t) with weight decay, 2^(9.6 - 4 t) without; gap = 0.1 (1 - t) + 0.02

where t = index / 8 runs over the 9 evaluations. A run with a learning rate other than the
default 0.05 (`write_grid`: three learning rates x two weight decays, one seed) has its NC1
multiplied by (0.05 / lr)^(t / 2): the larger the step, the faster the collapse.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from nctui.records import EndRecord, EvalRecord, Record, StartRecord
from nctui.store.rundir import RunWriter, write_run_json
from nctui.store.sweepdir import write_manifest
from tui_fixtures import EVAL_STEPS, LAYERS, eval_record, final_records, start_record, step_record

WEIGHT_DECAYS = (0.0, 1e-2)
SEEDS = (0, 1)
LEARNING_RATES = (1e-3, 1e-2, 1e-1)
DEFAULT_LR = 0.05


def config(weight_decay: float, seed: int, **train: Any) -> dict:
    """A resolved config as run.json holds it (the parts compare mode reads, and some bookkeeping)."""
    return {"name": "wd", "seed": seed,
            "data": {"name": "synthetic", "root": None},
            "model": {"kind": "fc", "width": 32, "depth": 4},
            "train": {"epochs": 8, "batch_size": 40, "lr": DEFAULT_LR, "weight_decay": weight_decay,
                      "device": "cpu", "threads": 1, **train},
            "monitor": {"eval_every": 50, "rank_tol": 1e-3, "bounds": {"gamma": 1.0, "delta": 1e-3}}}


def nc1(weight_decay: float, seed: int, t: float, lr: float = DEFAULT_LR) -> float:
    return 10 ** (1 - (3 if weight_decay else 1) * t) * (1 + 0.2 * seed) * (DEFAULT_LR / lr) ** (t / 2)


def rank(weight_decay: float, seed: int, t: float, k: int) -> int:
    return 32 - (round(t * (22 - seed)) if weight_decay else 0) - k


def accuracy(weight_decay: float, seed: int, t: float) -> float:
    return 0.1 + 0.8 * t + (0.05 if weight_decay else 0.0) - 0.01 * seed


def gap_bound(weight_decay: float, t: float) -> float:
    return 2 ** (9.6 - (10 if weight_decay else 4) * t)


def eval_for(index: int, weight_decay: float, seed: int, lr: float = DEFAULT_LR) -> EvalRecord:
    """tui_fixtures' evaluation `index`, with the compared quantities as the module docstring says."""
    record = eval_record(index)
    t = index / (len(EVAL_STEPS) - 1)
    layers = []
    for k, layer in enumerate(record.layers):
        hidden = k < len(LAYERS) - 1
        drift = 2e-4 * (1 + 0.1 * seed) if weight_decay else 2e-4 * (1 - 0.9 * t)
        layers.append({**layer, "rank": rank(weight_decay, seed, t, k) if hidden else 9,
                       "drift": None if index == 0 else drift})
    return dataclasses.replace(
        record, layers=layers,
        geometry={**record.geometry, "nc1": nc1(weight_decay, seed, t, lr)},
        test={"loss": record.test["loss"], "acc": accuracy(weight_decay, seed, t)},
        train={"loss": 0.09 * 10 ** (-1.5 * t) * (1 + 0.1 * seed), "acc": record.train["acc"]},
        bounds={**record.bounds, "gap_bound_dense": gap_bound(weight_decay, t), "gap": 0.1 * (1 - t) + 0.02},
    )


def run_records(weight_decay: float, seed: int, upto: int = EVAL_STEPS[-1], ended: bool = True,
                lr: float = DEFAULT_LR) -> list[Record]:
    """start, steps and evaluations interleaved up to step `upto`, then (if `ended`) the end."""
    cfg = config(weight_decay, seed, lr=lr)
    start = dataclasses.replace(start_record(), run=point_name(weight_decay, seed), config=cfg)
    body: list[tuple[int, int, Record]] = [(s, 0, step_record(s)) for s in range(20, upto + 1, 20)]
    body += [(s, 1, eval_for(i, weight_decay, seed, lr)) for i, s in enumerate(EVAL_STEPS) if s <= upto]
    body.sort(key=lambda item: item[:2])
    return [start, *(r for *_, r in body), *(final_records(step=upto) if ended else [])]


def write_run(run_dir: Path, cfg: dict, records: list[Record]) -> Path:
    """A run directory as `nctui run` leaves it: run.json, then the records through RunWriter."""
    run_dir.mkdir(parents=True)
    write_run_json(run_dir, {"name": run_dir.name, "config": cfg})
    (run_dir / "metrics.jsonl").touch()
    append(run_dir, records)
    return run_dir


def append(run_dir: Path, records: list[Record]) -> None:
    writer = RunWriter(run_dir)
    for record in records:
        writer.record(record)
    writer.close()


def point_name(weight_decay: float, seed: int) -> str:
    return f"wd={'1e-2' if weight_decay else '0'}_s{seed}"


def write_sweep(directory: Path, started: int = 4, ended: bool = True, upto: int = EVAL_STEPS[-1]) -> Path:
    """The 2 x 2-seed sweep in `directory`/wd-sweep: its first `started` points have run
    directories (written up to step `upto`, with end records if `ended`), the rest are pending."""
    sweep_dir = directory / "wd-sweep"
    sweep_dir.mkdir(parents=True)
    points = []
    for index, (weight_decay, seed) in enumerate((wd, s) for wd in WEIGHT_DECAYS for s in SEEDS):
        name = point_name(weight_decay, seed)
        if index < started:
            write_run(sweep_dir / name, config(weight_decay, seed), run_records(weight_decay, seed, upto, ended))
        points.append({"index": index, "name": name, "run_dir": name,
                       "values": {"train.weight_decay": weight_decay, "seed": seed},
                       "overrides": [f"train.weight_decay={weight_decay}", f"seed={seed}"],
                       "status": "completed" if index < started and ended else "pending"})
    write_manifest(sweep_dir, {"name": "wd-sweep", "created": 1735689600.0, "spec": {"name": "wd-sweep"},
                               "base": "quickstart", "base_file": "base.yaml",
                               "varying": ["train.weight_decay", "seed"], "points": points})
    return sweep_dir


def write_grid(directory: Path) -> list[Path]:
    """Six finished runs, learning rates x weight decays (seed 0), as loose run directories."""
    return [write_run(directory / f"lr={lr}_wd={weight_decay}", config(weight_decay, 0, lr=lr),
                      run_records(weight_decay, 0, lr=lr)) for weight_decay in WEIGHT_DECAYS for lr in LEARNING_RATES]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation, written out (the expected side of aggregation tests)."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def end_record(step: int = EVAL_STEPS[-1]) -> EndRecord:
    return EndRecord(step=step, status="completed", reason="done", elapsed=1.0)


def resumed_start(weight_decay: float, seed: int, step: int) -> StartRecord:
    return dataclasses.replace(start_record(), run="resumed", config=config(weight_decay, seed), resumed_from=step)
