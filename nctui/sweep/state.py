"""Where each point of a sweep stands, read from its run directory (the manifest's status is only
the last one the sweep saw), and what a resume does with it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nctui.records import RecordError, record_from_json
from nctui.store.reader import RunReader
from nctui.store.rundir import METRICS, RunDirError, being_written
from nctui.store.snapshot import list_snapshots
from nctui.store.sweepdir import SWEEP_JSON, SweepDirError, is_locked, read_manifest

FINISHED = ("completed", "diverged")   # a resume leaves these alone: a diverged run would diverge again
TAIL_BYTES = 64 * 1024

# what a resume does with a point
START, RESUME, RESTART, KEEP = "start", "resume", "restart", "keep"


@dataclass(frozen=True)
class PointState:
    """A point's run as found on disk."""

    status: str        # pending | running | completed | stopped | diverged | failed | killed
    action: str        # START (no run yet) | RESUME (from its newest snapshot) | RESTART (no snapshot:
                       # delete, start again) | KEEP (finished, or being written by another process)
    detail: str = ""   # one phrase for the user


def inspect_point(sweep_dir: Path, point: dict) -> PointState:
    """The state of `point`'s run directory; SweepDirError if its path is not a plain directory
    (a resume would otherwise delete or write through a link)."""
    path = sweep_dir / point["run_dir"]
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise SweepDirError(f"{path}: not a run directory (a sweep's points are plain directories); "
                            "move it away to resume the sweep")
    if not path.exists():
        return PointState("pending", START)
    if being_written(path):
        return PointState("running", KEEP, "another process is writing this run")
    try:
        reader = RunReader(path).read()
    except RunDirError:   # killed while its directory was being created
        reader = None
    end = reader.end if reader is not None else None
    if end is not None and end.status in FINISHED:
        return PointState(end.status, KEEP)
    status = end.status if end is not None else "killed"
    snapshots = list_snapshots(path)
    if not snapshots:
        return PointState(status, RESTART, "no snapshot to resume from: starting it again")
    total = reader.start.total_steps if reader is not None and reader.start is not None else None
    if isinstance(total, int) and snapshots[-1][0] >= total:
        return PointState("completed", KEEP, "all steps trained and snapshotted; killed before its end record")
    return PointState(status, RESUME, f"resuming from step {snapshots[-1][0]}")


def last_end_status(run_dir: Path) -> str | None:
    """The status of the end record that closes metrics.jsonl, if one does (a tail read: cheap for `ls`)."""
    try:
        with open(run_dir / METRICS, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return None
    if not tail.endswith(b"\n"):
        return None   # torn: a killed run
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = record_from_json(last.decode("utf-8", errors="replace"))
    except (RecordError, TypeError, ValueError):
        return None
    return record.status if record.type == "end" else None


def sweep_summary(sweep_dir: str | Path) -> tuple[str, ...]:
    """(name, points done of total, varying keys) of a sweep directory, for `nctui ls`; its name
    and why when it cannot be read. Done: completed or diverged."""
    sweep_dir = Path(sweep_dir)
    try:
        manifest = read_manifest(sweep_dir)
    except SweepDirError as err:
        return (sweep_dir.name, "unreadable sweep", str(err))
    points = manifest["points"]
    done = sum(last_end_status(sweep_dir / p["run_dir"]) in FINISHED for p in points)
    running = " (running)" if is_locked(sweep_dir) else ""
    varying = ", ".join(str(k) for k in manifest["varying"]) or "nothing"
    return (sweep_dir.name, f"sweep {done}/{len(points)} points done{running}", f"varying {varying}")



def is_sweep_dir(path: str | Path) -> bool:
    """Whether `path` looks like a sweep directory (it holds sweep.json): for `nctui ls`."""
    return (Path(path) / SWEEP_JSON).is_file()
