"""Which points of a sweep train together as one packed model (nctui/train/packed.py), how many
at a time, and the `nctui pack` command line that runs them.

Points pack when their configs are equal but for `name` and the MEMBER_KEYS: the learning rate,
weight decay, momentum, target scale, and the seed when the training data do not depend on it.
The seed draws the synthetic data set and the class-balanced subsets (data.train_size,
data.test_size), so points with different seeds on such data train on different samples and
never share a pack; on a whole real data set (MNIST, Fashion-MNIST, CIFAR-10) the seed only
draws the initialisation, the batch order and the probes, which are per member.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

from nctui.config import build_config, load_config
from nctui.store.snapshot import list_snapshots
from nctui.sweep.state import RESUME

# What members of one pack may differ in; nctui.train.packed.MEMBER_KEYS (a test keeps them equal).
MEMBER_KEYS = ("seed", "train.lr", "train.weight_decay", "train.momentum", "train.target_scale")
MOST_ON_CPU = 8      # a 16-member pack steps no faster per member than an 8-member one (bench/README.md)
MOST_CPU_JOBS = 8    # processes at a time on a CPU: each holds its own copy of the data set
MOST_ON_GPU = 32     # a guess until bench/gpu_check.sh section 5 has measured a pack on a GPU


def data_depends_on_seed(data: dict) -> bool:
    """Whether a config's `data` section draws its samples from the seed (synthetic data, subsets)."""
    return data.get("name") == "synthetic" or data.get("train_size") is not None or data.get("test_size") is not None


def pack_key(config: dict) -> str:
    """What points of one pack share, as text: equal keys pack (a resolved config, as base.yaml holds it)."""
    shared = copy.deepcopy(config)
    shared.pop("name", None)
    keys = [k for k in MEMBER_KEYS if not (k == "seed" and data_depends_on_seed(shared.get("data", {})))]
    for key in keys:
        node = shared
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return json.dumps(shared, sort_keys=True)


def group(tasks: list, configs: list[dict], most: int, resume_steps: list[int | None] | None = None) -> list:
    """The tasks (executors.Task) as they will run: compatible ones gathered into packs of at most
    `most` (the first member's Task with `members`, all of them), the others alone; in the order
    of their first task.

    New points pack with new ones; resumed ones with resumed ones at the same snapshot step
    (`resume_steps[i]`), since a pack's members train in step.
    """
    buckets: dict[tuple, list[int]] = {}
    for i, (task, config) in enumerate(zip(tasks, configs)):
        step = resume_steps[i] if resume_steps is not None and task.action == RESUME else None
        buckets.setdefault((task.action, step, pack_key(config)), []).append(i)
    runs = []
    for members in buckets.values():
        size = math.ceil(len(members) / math.ceil(len(members) / max(most, 1)))   # even packs: 9 by 8 -> 5 + 4
        for start in range(0, len(members), size):
            chunk = [tasks[i] for i in members[start:start + size]]
            runs.append((members[start], chunk[0] if len(chunk) == 1 else
                         dataclasses.replace(chunk[0], members=tuple(chunk))))
    return [task for _, task in sorted(runs, key=lambda item: item[0])]


def cuda_available() -> bool:
    """Whether torch sees a CUDA device, asked of a child interpreter (this package never imports
    torch); at once False where no NVIDIA driver is there to ask (Linux without /dev/nvidiactl, macOS)."""
    if sys.platform == "darwin" or (sys.platform.startswith("linux") and not Path("/dev/nvidiactl").exists()):
        return False
    try:
        done = subprocess.run([sys.executable, "-c", "import torch; print(int(torch.cuda.is_available()))"],
                              capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.stdout.strip() == "1"


def size(device: str, jobs: int | None, most: int | None, count: int) -> tuple[int, int]:
    """(jobs, most points a pack) for `count` points, `jobs` and `most` as the user gave them (None:
    sized here). `most` 1: no packs, one job unless asked for more. On a GPU one job and packs of
    up to MOST_ON_GPU; on a CPU one job a core (at most MOST_CPU_JOBS) with one thread each, packs
    of up to MOST_ON_CPU: a pack's batched matmuls keep one core busy, and one-thread processes
    beat one many-thread process where cores are shared (bench/README.md, "Packed sweeps").
    Either way the points spread evenly over the jobs. `device`: the runs' train.device."""
    if most == 1:
        return jobs or 1, 1
    on_gpu = device == "cuda" or (device == "auto" and cuda_available())
    if jobs is None:
        from nctui.sweep.executors import cpu_count   # executors imports this module

        jobs = 1 if on_gpu else max(1, min(cpu_count(), MOST_CPU_JOBS, count))
    if most is None:
        most = max(1, min(MOST_ON_GPU if on_gpu else MOST_ON_CPU, math.ceil(count / jobs)))
    return jobs, most


def pack_arguments(sweep_dir: Path, task, device: str | None, threads: int | None) -> list[str]:
    """The arguments of `nctui` that run a pack task headless: new points from the sweep's base
    config and their overrides, resumed ones from their run directories."""
    if task.action == RESUME:
        arguments = ["pack", "--resume", *(str(sweep_dir / t.point["run_dir"]) for t in task.members)]
    else:
        arguments = ["pack", str(sweep_dir), "--points", ",".join(str(t.index) for t in task.members)]
        if threads:
            arguments += ["--threads", str(threads)]
    if device:
        arguments += ["--device", device]
    return arguments


def pack_tasks(sweep_dir: Path, manifest: dict, tasks: list, most: int) -> list:
    """The tasks of a local or print executor with compatible points in packs of at most `most`.
    A resumed point's step is its newest snapshot's. Configs are built as `nctui run` builds
    them: base.yaml with the point's overrides."""
    if len(tasks) < 2 or most <= 1:
        return tasks
    raw = load_config(sweep_dir / manifest["base_file"]).to_dict()
    configs = [build_config(raw, str(sweep_dir), task.point["overrides"]).to_dict() for task in tasks]
    steps = [(list_snapshots(sweep_dir / task.point["run_dir"]) or [(None, None)])[-1][0]
             if task.action == RESUME else None for task in tasks]
    return group(tasks, configs, most, steps)
