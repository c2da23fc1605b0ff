"""A sweep killed with SIGKILL (its whole process tree) at several moments, or stopped with SIGINT
or SIGTERM, resumes with `nctui sweep --resume` to the records of the same sweep left alone.

Two tiny points of 100 steps each (snapshots every 7 steps); the sweep runs in a session of its
own, so os.killpg reaches the sweep and every run it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from nctui.records import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from nctui.store.rundir import read_records
from nctui.store.sweepdir import SWEEP_JSON, read_manifest
from nctui.sweep.command import sweep
from sweep_fixtures import comparable, start_sweep, tiny_spec

EPOCHS = 10
POINTS = ["wd=0", "wd=1e-3"]


def resume(sweep_dir: Path) -> Result:
    return CliRunner().invoke(sweep, ["--resume", str(sweep_dir), "--jobs", "2", "--no-pack"], catch_exceptions=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("uninterrupted")
    result = CliRunner().invoke(sweep, [str(tiny_spec(base, epochs=EPOCHS)), "--out", str(base / "out"), "--jobs", "2",
                                        "--no-pack"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.stderr
    (sweep_dir,) = (base / "out").iterdir()
    return sweep_dir


def sweep_dir_of(out: Path) -> Path | None:
    """The sweep directory once it exists (never the hidden one it is filled under)."""
    found = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    return found[0] if found else None


def record_types(run_dir: Path) -> list[str]:
    try:
        return [r.type for r in read_records(run_dir)]
    except Exception:   # noqa: BLE001 - not created yet
        return []


def wait_until(process: subprocess.Popen, out: Path, moment: Callable[[Path], bool], timeout: float = 240) -> Path:
    """Poll until `moment(sweep_dir)` holds; fail with the sweep's stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep_dir = sweep_dir_of(out)
        if sweep_dir is not None and moment(sweep_dir):
            return sweep_dir
        assert process.poll() is None, f"the sweep ended first: {process.communicate()[1]}"
        time.sleep(0.01)
    raise AssertionError("the moment never came")


def wait_group_gone(group: int, timeout: float = 60) -> None:
    """Until no live process is left in the process group (zombies hold no locks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
            except (OSError, ValueError):
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(entry.name)
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of group {group} still alive")


# the moment of the SIGKILL, and the jobs the sweep runs with until then
MOMENTS: dict[str, tuple[Callable[[Path], bool], int]] = {
    # the sweep directory has just appeared: its runs are being started, or not yet
    "sweep.json written": (lambda d: (d / SWEEP_JSON).is_file(), 2),
    # a run has written its first snapshot and goes on: it resumes from a snapshot
    "first snapshot": (lambda d: "snapshot" in record_types(d / POINTS[0]), 2),
    # one job at a time: the first run has ended, the second is starting or not started
    "first run ended": (lambda d: "end" in record_types(d / POINTS[0]), 1),
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_sweep_killed_whole_resumes_to_the_uninterrupted_records(moment: str, uninterrupted: Path,
                                                                    tmp_path: Path) -> None:
    reached, jobs = MOMENTS[moment]
    spec = tiny_spec(tmp_path, epochs=EPOCHS)
    process = start_sweep(str(spec), "--out", str(tmp_path / "out"), "--jobs", str(jobs), "--no-pack")   # run by run
    try:
        sweep_dir = wait_until(process, tmp_path / "out", reached)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)
        wait_group_gone(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_statuses = [p["status"] for p in read_manifest(sweep_dir)["points"]]
    assert all(status in ("pending", "running", "completed") for status in killed_statuses)

    result = resume(sweep_dir)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stderr.splitlines()[-1] == f"nctui: sweep {sweep_dir}: 2 completed"
    if moment == "first snapshot":
        assert "nctui: sweep: wd=0 killed: resuming from step " in result.stderr
    if moment == "first run ended":
        assert "1 points finished, 1 to run" in result.stderr
    assert [p["status"] for p in read_manifest(sweep_dir)["points"]] == ["completed", "completed"]
    for name in POINTS:
        resumed, reference = comparable(sweep_dir / name), comparable(uninterrupted / name)
        assert resumed[-2:] == reference[-2:]   # the last evaluation's numbers and the end record
        assert resumed == reference             # and every step and evaluation before them


@pytest.mark.parametrize("signum, code, jobs", [(signal.SIGINT, EXIT_INTERRUPTED, 2), (signal.SIGTERM, EXIT_TERMINATED, 1)])
def test_a_signal_stops_every_run_cleanly_and_the_sweep_resumes(signum: int, code: int, jobs: int,
                                                                 uninterrupted: Path, tmp_path: Path) -> None:
    """SIGINT with both points running; SIGTERM with one running and the other waiting for its turn."""
    process = start_sweep(str(tiny_spec(tmp_path, epochs=EPOCHS)), "--out", str(tmp_path / "out"), "--jobs", str(jobs),
                          "--no-pack")   # run by run: one job leaves the second point waiting
    running = POINTS[:jobs]
    try:
        sweep_dir = wait_until(process, tmp_path / "out",
                               lambda d: all("snapshot" in record_types(d / name) for name in running))
        refused = resume(sweep_dir)   # the sweep still runs: a resume is refused by its lock
        assert refused.exit_code == EXIT_FAILED
        assert refused.stderr == (f"nctui: error: {sweep_dir}: another nctui process is running this sweep "
                                  "(it holds sweep.lock); let it finish or stop it first\n")
        os.kill(process.pid, signum)   # the sweep alone: it passes the signal on to its runs
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, stderr
    assert stderr.splitlines()[-1] == f"nctui: sweep: resume it with: nctui sweep --resume {sweep_dir}"
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    for point in running:   # each run wrote its final snapshot and an end record
        records = read_records(sweep_dir / point)
        end = records[-1]
        assert (end.type, end.status, end.reason) == ("end", "stopped", f"interrupted by {name}")
        assert (records[-2].type, records[-2].reason, records[-2].step) == ("snapshot", "final", end.step)
        assert end.step < 100
    assert not any((sweep_dir / point).exists() for point in POINTS[jobs:])   # no further point started
    assert [p["status"] for p in read_manifest(sweep_dir)["points"]] == ["stopped"] * jobs + ["pending"] * (2 - jobs)

    result = resume(sweep_dir)
    assert result.exit_code == EXIT_OK, result.stderr
    assert "nctui: sweep: wd=0 stopped: resuming from step " in result.stderr
    for point in POINTS:
        assert comparable(sweep_dir / point) == comparable(uninterrupted / point)
