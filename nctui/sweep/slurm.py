"""The Slurm executor: a sweep as one `sbatch --array` job whose task i runs point i.

`nctui sweep SPEC --executor slurm [--slurm KEY=VALUE ...]` writes <sweep>/slurm.sbatch and
prints the `sbatch` command that submits it; nothing is submitted from here. Each KEY=VALUE
becomes `#SBATCH --KEY=VALUE` (partition, time, gpus, gpus-per-task, cpus-per-task, mem,
account, qos, constraint, ...; `_` may stand for `-`), except `nproc_per_run=N`, which runs
every point as N processes on one node (`torchrun --standalone --nproc-per-node=N -m nctui run`).

A task runs `python -m nctui.sweep.slurm SWEEP_DIR $SLURM_ARRAY_TASK_ID`, which looks at its
point's run directory first (sweep/state.py): finished (completed, diverged) -> exit 0 at once;
a snapshot -> `nctui run --resume`; no run yet (or none worth resuming) -> `nctui run --run-dir`.
So submitting the script again runs only what is left, and all state stays in the sweep
directory, on the shared file system: `nctui sweep --resume`, `nctui open` and `nctui ls` work
on it as on any sweep. A task's stderr is appended to logs/<point>.log (stdout, the records
again, is dropped: metrics.jsonl has them); Slurm's own output goes to logs/slurm-<job>_<task>.out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

from nctui.records import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from nctui.store.rundir import RunDirError, atomic_write_bytes
from nctui.store.sweepdir import SweepDirError, read_manifest
from nctui.sweep.executors import LOGS, Task, run_arguments
from nctui.sweep.state import FINISHED, KEEP, RESTART, RESUME, START, inspect_point

SCRIPT = "slurm.sbatch"
NPROC_KEY = "nproc_per_run"
KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
OURS = ("array",)   # sbatch options this executor sets itself


class SlurmError(ValueError):
    """A --slurm setting the user can fix (exit 2)."""


def parse_settings(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--slurm KEY=VALUE items -> {sbatch option (dashes): value}, nproc_per_run included as is."""
    settings: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not KEY.fullmatch(key) or not value.strip():
            raise SlurmError(f"--slurm {item}: expected KEY=VALUE, e.g. --slurm partition=gpu --slurm time=02:00:00")
        if any(c.isspace() or ord(c) < 32 for c in value.strip()):
            raise SlurmError(f"--slurm {key}: the value must be one word (no spaces)")
        option = key if key == NPROC_KEY else key.replace("_", "-")
        if option in OURS:
            raise SlurmError(f"--slurm {key}: the array is the sweep's points; nctui sets --{option} itself")
        settings[option] = value.strip()
    nproc = settings.get(NPROC_KEY, "1")
    if not nproc.isdigit() or int(nproc) < 1:
        raise SlurmError(f"--slurm {NPROC_KEY}={nproc}: must be a whole number of processes, at least 1")
    return settings


def array_ranges(indices: list[int]) -> str:
    """Array indices as sbatch writes them: [0, 1, 2, 5, 7, 8] -> "0-2,5,7-8"."""
    parts: list[str] = []
    for index in sorted(indices):
        if parts and index == int(parts[-1].rpartition("-")[2]) + 1:
            parts[-1] = f"{parts[-1].partition('-')[0]}-{index}"
        else:
            parts.append(str(index))
    return ",".join(parts)


def write_script(sweep_dir: Path, manifest: dict, tasks: list[Task], settings: dict[str, str],
                 device: str | None) -> Path:
    """<sweep>/slurm.sbatch for `tasks` (every point of a new sweep; what is left on --resume)."""
    sweep_dir = sweep_dir.resolve()
    (sweep_dir / LOGS).mkdir(exist_ok=True)   # Slurm cannot create its output file's directory
    options = {"job-name": "nctui-" + re.sub(r"\s", "_", manifest["name"]),
               "output": str(sweep_dir / LOGS / "slurm-%A_%a.out"),
               **{k: v for k, v in settings.items() if k != NPROC_KEY}}
    task = [sys.executable, "-m", "nctui.sweep.slurm", str(sweep_dir), "$SLURM_ARRAY_TASK_ID"]
    if int(settings.get(NPROC_KEY, "1")) > 1:
        task += ["--nproc", settings[NPROC_KEY]]
    if device:
        task += ["--device", device]
    threads = _threads(settings)
    if threads:
        task += ["--threads", str(threads)]
    lines = [
        "#!/bin/bash",
        f"# nctui sweep {manifest['name']}: array task i runs point i of its sweep.json "
        f"({len(manifest['points'])} points).",
        "# Submit it again to finish the sweep: finished points exit at once, killed ones resume.",
        f"#SBATCH --array={array_ranges([t.index for t in tasks])}",
        *(f"#SBATCH --{key}={value}" for key, value in options.items()),
        "",
        "exec " + " ".join(shlex.quote(p) if p != "$SLURM_ARRAY_TASK_ID" else '"$SLURM_ARRAY_TASK_ID"' for p in task),
        "",
    ]
    path = sweep_dir / SCRIPT
    atomic_write_bytes(path, "\n".join(lines).encode())
    path.chmod(0o755)
    return path


def _threads(settings: dict[str, str]) -> int | None:
    """torch CPU threads of each process: the task's cpus-per-task shared by its processes."""
    cpus = settings.get("cpus-per-task", "")
    return max(1, int(cpus) // int(settings.get(NPROC_KEY, "1"))) if cpus.isdigit() else None


def prepare_submission(sweep_dir: Path, manifest: dict, tasks: list[Task], settings: dict[str, str],
                       device: str | None) -> tuple[str, str]:
    """Write slurm.sbatch for the tasks left; (the sbatch command, for stdout, or "" when no task
    is left; one line for the user). SweepDirError if the script cannot be written."""
    if not tasks:
        return "", f"nctui: sweep {sweep_dir}: every point is finished; nothing to submit"
    try:
        script = write_script(sweep_dir, manifest, tasks, settings, device)
    except (OSError, RunDirError) as err:
        raise SweepDirError(f"cannot write {sweep_dir / SCRIPT}: {getattr(err, 'strerror', None) or err}") from None
    return (shlex.join(["sbatch", str(script)]),
            f"nctui: sweep {sweep_dir}: {len(tasks)} array tasks in {script}; submit it with the command above "
            f"(again to finish what is left); follow a point with `nctui open {sweep_dir}/<point>`")


# --- one array task ----------------------------------------------------------------------------


def task_command(sweep_dir: Path, index: int, nproc: int, device: str | None, threads: int | None
                 ) -> tuple[dict, list[str] | None]:
    """(point `index`, the command that finishes it or None when it is finished already); a run
    directory without a snapshot is removed first (it starts again). SlurmError for an index
    the sweep does not have; SweepDirError if the sweep or the point cannot be read, or another
    process is writing the run."""
    manifest = read_manifest(sweep_dir)
    points = manifest["points"]
    if not 0 <= index < len(points):
        raise SlurmError(f"{sweep_dir}: no point {index} (the sweep has points 0-{len(points) - 1})")
    point = points[index]
    state = inspect_point(sweep_dir, point)
    if state.action == KEEP:
        if state.status in FINISHED:
            return point, None
        raise SweepDirError(f"{sweep_dir / point['run_dir']}: {state.detail}")
    if state.action == RESTART:
        shutil.rmtree(sweep_dir / point["run_dir"])
    action = RESUME if state.action == RESUME else START
    arguments = run_arguments(sweep_dir, manifest["base_file"], Task(index, point, action), device, threads)
    if nproc > 1:
        return point, [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                       "-m", "nctui", *arguments]
    return point, [sys.executable, "-m", "nctui", *arguments]


def main(argv: list[str] | None = None) -> int:
    """`python -m nctui.sweep.slurm SWEEP_DIR INDEX [--nproc N] [--device D] [--threads T]`: run one
    point as an array task; replaces this process with the run (so Slurm's signals reach it)."""
    parser = argparse.ArgumentParser(prog="python -m nctui.sweep.slurm", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("index", type=int)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        point, command = task_command(args.sweep_dir, args.index, args.nproc, args.device, args.threads)
        if command is None:
            print(f"nctui: sweep task {args.index}: {point['name']} is finished already; nothing to do",
                  file=sys.stderr)
            return EXIT_OK
        (args.sweep_dir / LOGS).mkdir(exist_ok=True)
        log = os.open(args.sweep_dir / LOGS / f"{point['run_dir']}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o644)
    except SlurmError as err:
        print(f"nctui: error: {err}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (SweepDirError, OSError) as err:
        print(f"nctui: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    os.write(log, f"# {time.strftime('%Y-%m-%d %H:%M:%S')} slurm task {args.index}: {shlex.join(command)}\n".encode())
    print(f"nctui: sweep task {args.index}: {shlex.join(command[1:])} (stderr in {LOGS}/{point['run_dir']}.log)",
          file=sys.stderr, flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    os.execv(command[0], command)
    return EXIT_FAILED   # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
