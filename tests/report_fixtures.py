"""Recorded runs for the verify, export and plot tests: run directories written with the real
RunWriter from hand-made EvalRecords whose final numbers the test chooses, and sweep
directories of them (sweep.json as `nctui sweep` writes it). No randomness, no clocks.

A run has 9 evaluations at steps 0, 100, ..., 800 (t = index / 8), C = 10, three hidden layers of
width 64 and a classifier. Between t = 0 and t = 1 each quantity moves geometrically (or linearly
for ranks) from its start to the final value the test asks for:

  NC1            0.5 -> nc1                      NC4 0.3 -> 0
  hidden ranks   64 -> rank (all three layers)   classifier rank 10
  drift          1e-3 constant, or 1e-3 (1 - 0.95 t) when decaying (none at t = 0)
  gap bound      2^10 -> gap_bound (dense)       gap 0.2 -> gap
  rank ceiling   rank_ceiling (hidden layers; 1e6 for the classifier)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nctui.records import EndRecord, EvalRecord, Record, StartRecord, StepRecord
from nctui.store.rundir import RunWriter, write_run_json
from nctui.store.sweepdir import write_manifest

C = 10
WIDTH = 64
HIDDEN = ("fc1", "fc2", "fc3")
STEPS = [100 * i for i in range(9)]
BASE_CONFIG = {
    "name": "fake", "seed": 0,
    "data": {"name": "synthetic"},
    "model": {"kind": "fc", "width": WIDTH, "depth": 4, "weight_norm": True},
    "train": {"epochs": 8, "batch_size": 32, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2,
              "milestones": [], "lr_decay": 0.1},
    "monitor": {"rank_tol": 1e-3},
}


@dataclass(frozen=True)
class Finals:
    """Where a run ends (see the module docstring)."""

    nc1: float = 0.01
    rank: float = 10
    decaying_drift: bool = False
    gap_bound: float = 0.5
    gap: float = 0.05
    rank_ceiling: float = 1e6


def config(values: dict[str, Any]) -> dict:
    """BASE_CONFIG with dotted-key values set (seed included)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    for key, value in values.items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def evaluation(index: int, finals: Finals) -> EvalRecord:
    t = index / (len(STEPS) - 1)
    rank = round(WIDTH + (finals.rank - WIDTH) * t)
    drift = None if index == 0 else 1e-3 * ((1 - 0.95 * t) if finals.decaying_drift else 1.0)
    layers = [{"name": name, "rank": rank, "stable_rank": rank / 4, "sv": [1 / WIDTH ** 0.5] * WIDTH,
               "drift": drift, "rank_ceiling": finals.rank_ceiling} for name in HIDDEN]
    layers.append({"name": "classifier", "rank": C, "stable_rank": 2.0, "sv": [C ** -0.5] * C, "drift": drift,
                   "rank_ceiling": 1e6})
    gap_bound = 2 ** 10 * (finals.gap_bound / 2 ** 10) ** t
    gap = 0.2 + (finals.gap - 0.2) * t
    return EvalRecord(step=STEPS[index], epoch=STEPS[index] / 100, elapsed=float(index),
                      geometry={"nc1": 0.5 * (finals.nc1 / 0.5) ** t, "nc4": 0.3 * (1 - t)},
                      layers=layers, test={"acc": 0.9 - gap}, train={"acc": 0.9},
                      bounds={"gap_bound_dense": gap_bound, "gap_bound_local": None, "gap": gap,
                              "test_error": 0.1 + gap, "train_error": 0.1})


def records(cfg: dict, finals: Finals, name: str) -> list[Record]:
    start = StartRecord(run=name, time=0.0, device="cpu", dataset="synthetic", model="FC", num_classes=C,
                        layers=[*HIDDEN, "classifier"], epochs=8, steps_per_epoch=100, total_steps=STEPS[-1],
                        train_samples=3200, config=cfg)
    body: list[Record] = [start]
    for index, step in enumerate(STEPS):
        if step:
            body.append(StepRecord(step=step, epoch=step / 100, loss=0.1 / step, lr=cfg["train"]["lr"],
                                   samples_per_s=1000.0, elapsed=float(step)))
        body.append(evaluation(index, finals))
    body.append(EndRecord(step=STEPS[-1], status="completed", reason="done", elapsed=9.0))
    return body


def write_run(run_dir: Path, values: dict[str, Any] | None = None, finals: Finals = Finals()) -> Path:
    """A run directory as `nctui run` leaves it: run.json, then metrics.jsonl through RunWriter."""
    cfg = config(values or {})
    run_dir.mkdir(parents=True)
    write_run_json(run_dir, {"name": run_dir.name, "config": cfg})
    writer = RunWriter(run_dir)
    for record in records(cfg, finals, run_dir.name):
        writer.record(record)
    writer.close()
    return run_dir


def write_sweep(directory: Path, points: list[tuple[dict[str, Any], Finals]], name: str = "sweep") -> Path:
    """A sweep directory of the points (values with seed, and where each run ends), all completed."""
    sweep_dir = directory / name
    sweep_dir.mkdir(parents=True)
    manifest_points = []
    varying = list(dict.fromkeys(key for values, _ in points for key in values))
    for index, (values, finals) in enumerate(points):
        point = "_".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in values.items()) or f"p{index}"
        write_run(sweep_dir / point, values, finals)
        manifest_points.append({"index": index, "name": point, "run_dir": point, "values": values,
                                "overrides": [f"{k}={v}" for k, v in values.items()], "status": "completed"})
    write_manifest(sweep_dir, {"name": name, "created": 0.0, "spec": {"name": name}, "base": "quickstart",
                               "base_file": "base.yaml", "varying": varying, "points": manifest_points})
    return sweep_dir
