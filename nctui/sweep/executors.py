"""Executors: how a sweep's points run. `local` keeps up to N `nctui run` children going on this
machine; `print` prints one `nctui run` command line per point, for xargs, GNU parallel or a
batch queue. Either way each point is an ordinary run directory inside the sweep directory.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from nctui.records import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from nctui.store.sweepdir import SweepDirError, write_manifest
from nctui.sweep.packing import pack_arguments
from nctui.sweep.progress import Follower, Row
from nctui.sweep.state import FINISHED, RESUME

LOGS = "logs"     # <sweep>/logs/<point>.log: each child's stderr (its stdout is metrics.jsonl again)
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Task:
    """A point to run: START a new run in its directory, or RESUME the one there."""

    index: int         # the point's index in the manifest
    point: dict        # the manifest's point
    action: str        # START | RESUME
    members: tuple = ()   # a pack (sweep/packing.py): every member's Task, this one first; () alone


class Display(Protocol):
    def started(self, row: Row, verb: str, total: int) -> None: ...
    def ended(self, row: Row, seconds: float) -> None: ...
    def tick(self, rows: list[Row]) -> None: ...
    def close(self, rows: list[Row]) -> None: ...


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def run_arguments(sweep_dir: Path, base_file: str, task: Task, device: str | None, threads: int | None) -> list[str]:
    """The arguments of `nctui` that run one task headless in its run directory.

    `threads` (torch CPU threads) is added to a new run whose overrides do not choose their own;
    a resumed run keeps the threads it started with.
    """
    if task.members:
        return pack_arguments(sweep_dir, task, device, threads)
    run_dir = str(sweep_dir / task.point["run_dir"])
    if task.action == RESUME:
        arguments = ["run", "--resume", run_dir, "--headless"]
    else:
        arguments = ["run", str(sweep_dir / base_file), "--headless", "--run-dir", run_dir]
        for item in task.point["overrides"]:
            arguments += ["--set", item]
        if threads and not any(item.startswith("train.threads=") for item in task.point["overrides"]):
            arguments += ["--set", f"train.threads={threads}"]
    if device:
        arguments += ["--device", device]
    return arguments


def print_commands(sweep_dir: Path, manifest: dict, tasks: list[Task], device: str | None, threads: int | None,
                   stream: TextIO) -> None:
    """One shell line per task, ready for `xargs -P N -I{} sh -c {}` or `parallel -j N`."""
    for task in tasks:
        arguments = run_arguments(sweep_dir, manifest["base_file"], task, device, threads)
        print(shlex.join(["nctui", *arguments]), file=stream, flush=True)


@dataclass
class _Child:
    task: Task
    process: subprocess.Popen
    started: float


def run_local(sweep_dir: Path, manifest: dict, tasks: list[Task], jobs: int, device: str | None,
              threads: int | None, display: Display) -> int:
    """Run the tasks as up to `jobs` child processes; returns the sweep's exit code.

    SIGINT and SIGTERM are passed on to every child (each writes its final snapshot and end
    record) and no further point starts; the sweep then exits 130 or 143 and can be resumed.
    Otherwise 0 when every point completed or diverged, else 1. The manifest's statuses follow
    each start and end.
    """
    points = manifest["points"]
    rows = [Row(index=i, name=p["name"], status=p["status"]) for i, p in enumerate(points)]
    for index, point in enumerate(points):   # the numbers of points finished earlier, read once
        if point["status"] != "pending":
            Follower(sweep_dir / point["run_dir"]).update(rows[index])
    try:
        (sweep_dir / LOGS).mkdir(exist_ok=True)
    except OSError as err:
        raise SweepDirError(f"cannot create {sweep_dir / LOGS}: {err.strerror}") from None
    queue = collections.deque(tasks)
    running: dict[int, _Child] = {}
    followers: dict[int, Follower] = {}
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    forwarded = packs = 0
    try:
        while running or (queue and not received):
            while queue and len(running) < jobs and not received:
                task = queue.popleft()
                running[task.index] = _launch(sweep_dir, manifest, task, device, threads)
                packs += bool(task.members)
                for member in task.members or (task,):   # a pack: one child, every member's row
                    index = member.index
                    rows[index].pack = str(packs) if task.members else ""
                    followers[index] = Follower(sweep_dir / member.point["run_dir"])
                    _set_status(sweep_dir, manifest, rows, index, "running")
                    display.started(rows[index], "resuming" if task.action == RESUME else "starting", len(points))
            for signum in received[forwarded:]:
                for child in running.values():
                    _send(child.process, signum)
            forwarded = len(received)
            for first, child in list(running.items()):
                members = [member.index for member in child.task.members or (child.task,)]
                for index in members:
                    followers[index].update(rows[index])
                if child.process.poll() is not None:
                    del running[first]
                    for index in members:
                        _finish(sweep_dir, manifest, rows, index, child, followers[index])
                        display.ended(rows[index], time.monotonic() - child.started)
            display.tick(rows)
            if running:
                time.sleep(TICK_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for child in running.values():   # only after an error of the sweep itself: stop, then wait
            _send(child.process, signal.SIGTERM)
            child.process.wait()
        display.close(rows)
    if received:
        return EXIT_INTERRUPTED if received[0] == signal.SIGINT else EXIT_TERMINATED
    return EXIT_OK if all(row.status in FINISHED for row in rows) else EXIT_FAILED


def _launch(sweep_dir: Path, manifest: dict, task: Task, device: str | None, threads: int | None) -> _Child:
    """Start `python -m nctui run ...` with stdout to /dev/null (metrics.jsonl has it all) and
    stderr appended to logs/<point>.log. The child stays in the sweep's process group, so that
    killing the group kills every run."""
    arguments = run_arguments(sweep_dir, manifest["base_file"], task, device, threads)
    # a pack's child: the `nctui pack` command's own module, whatever cli.py registers
    arguments = ([sys.executable, "-m", "nctui.pack_command", *arguments[1:]] if task.members
                 else [sys.executable, "-m", "nctui", *arguments])
    path = sweep_dir / LOGS / f"{task.point['run_dir']}.log"
    try:
        with open(path, "ab") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(arguments)}\n".encode())
            log.flush()
            process = subprocess.Popen(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    except OSError as err:
        raise SweepDirError(f"cannot start {task.point['name']} (log {path}): {err.strerror or err}") from None
    return _Child(task=task, process=process, started=time.monotonic())


def _send(process: subprocess.Popen, signum: int) -> None:
    try:
        process.send_signal(signum)
    except OSError:   # already gone
        pass


def _finish(sweep_dir: Path, manifest: dict, rows: list[Row], index: int, child: _Child,
            follower: Follower) -> None:
    """Record how a child's run ended: its end record, else its exit code and last error line."""
    follower.update(rows[index])
    reader = follower.reader
    end = reader.end if reader is not None else None
    code = child.process.returncode
    if end is not None:
        status = end.status
        rows[index].detail = "" if status == "completed" else end.reason
    else:
        status = "killed" if code < 0 else "failed"
        rows[index].detail = _last_error(sweep_dir / LOGS / f"{child.task.point['run_dir']}.log") or f"exit code {code}"
    _set_status(sweep_dir, manifest, rows, index, status)


def _last_error(log: Path) -> str:
    """The child's last `nctui: error:` line, if its log has one."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 8192))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("nctui: error:")]
    return errors[-1].removeprefix("nctui: error:").strip() if errors else ""


def _set_status(sweep_dir: Path, manifest: dict, rows: list[Row], index: int, status: str) -> None:
    rows[index].status = status
    manifest["points"][index]["status"] = status
    write_manifest(sweep_dir, manifest)
