"""A rank SIGKILLed under torchrun: the job ends, rank 0 writes an end record saying which rank
died, the run directory keeps its newest snapshot, and --resume continues it; and a run goes on
exactly (to float rounding) across world sizes: one process -> two ranks -> one process.

One torchrun job does it all: the shrunk quickstart trained by this process to the end, copied
with the snapshots after step 90 removed (as if it had been killed there), resumed by two gloo
ranks, whose rank 1 hangs in its 35th step (step 125, after the snapshot at 120) and is killed.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from distributed_fixtures import records_differences, run_records, shrunk, torchrun
from nctui.store.snapshot import list_snapshots, read_snapshot
from run_fixtures import SUBPROCESS_ENV, invoke

HANGING_ENTRY = Path(__file__).with_name("hanging_rank_entry.py")


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("rank-kill")
    done = invoke("run", "quickstart", "--headless", "--run-dir", str(base / "uninterrupted"), *shrunk())
    assert done.exit_code == 0, done.stderr
    run_dir = Path(shutil.copytree(base / "uninterrupted", base / "run"))
    for step, path in list_snapshots(run_dir):
        if step > 90:
            path.unlink()
    env = {**SUBPROCESS_ENV, "NCTUI_TEST_HANG_RANK": "1", "NCTUI_TEST_HANG_STEP": "35"}
    with open(base / "stdout", "wb") as stdout, open(base / "stderr", "wb") as stderr:
        job = subprocess.Popen(torchrun("run", "--resume", str(run_dir), "--headless", script=HANGING_ENTRY),
                               stdout=stdout, stderr=stderr, env=env)
        try:
            hung = _wait_for(base / "stderr", rb"nctui-test: rank 1 pid (\d+) hangs at step 35", job)
            subprocess.run(["kill", "-KILL", hung.group(1).decode()], check=True)
            code = job.wait(timeout=120)
        finally:
            if job.poll() is None:
                job.send_signal(signal.SIGTERM)
                job.wait(timeout=60)
    return {"uninterrupted": base / "uninterrupted", "run": run_dir, "code": code,
            "stderr": (base / "stderr").read_text(errors="replace")}


def _wait_for(path: Path, pattern: bytes, job: subprocess.Popen, timeout: float = 240) -> re.Match:
    deadline = time.monotonic() + timeout
    while (found := re.search(pattern, path.read_bytes())) is None:
        assert job.poll() is None and time.monotonic() < deadline, path.read_text(errors="replace")[-3000:]
        time.sleep(0.05)
    return found


def test_a_killed_rank_ends_the_job_and_rank_0_says_so(killed: dict) -> None:
    assert killed["code"] != 0, killed["stderr"]
    run_dir = killed["run"]
    end = run_records(run_dir)[-1]
    assert (end.type, end.status, end.step) == ("end", "failed", 124), killed["stderr"]
    assert end.reason.startswith("CollectiveError: rank 1 died; the all-reduce of the gradients failed: "), end.reason
    assert [step for step, _ in list_snapshots(run_dir)] == [30, 60, 90, 120]
    assert read_snapshot(run_dir / "snap-000000120.safetensors").step == 120
    listed = invoke("ls", str(run_dir))
    assert listed.exit_code == 0 and listed.stdout.split()[1:3] == ["failed", "124/200"], listed.stdout


def test_a_one_process_run_resumed_by_two_ranks_goes_on_as_before(killed: dict) -> None:
    records = run_records(killed["run"])
    start = [r for r in records if r.type == "start"][-1]
    assert (start.resumed_from, start.world_size, start.backend) == (90, 2, "gloo")
    resumes = json.loads((killed["run"] / "run.json").read_text())["resumes"]
    assert [(r["step"], r["world_size"], r["backend"]) for r in resumes] == [(90, 2, "gloo")]
    before = [r for r in run_records(killed["uninterrupted"]) if getattr(r, "step", 0) <= 120 and r.type != "end"]
    assert records_differences(records[:-1], before, rtol=1e-4, atol=1e-6) == []
    assert [(r.type, r.step) for r in records if r.type != "start" and r.step > 90] == [
        ("step", 100), ("eval", 100), ("step", 110), ("step", 120), ("snapshot", 120), ("end", 124)]


def test_the_killed_run_resumed_by_one_process_ends_as_the_uninterrupted_run(killed: dict, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(killed["run"], tmp_path / "run"))
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 0, result.stderr
    assert "resuming" in result.stderr and "from snap-000000120.safetensors (step 120 of 200)" in result.stderr
    records, uninterrupted = run_records(run_dir), run_records(killed["uninterrupted"])
    start = [r for r in records if r.type == "start"][-1]
    assert (start.resumed_from, start.world_size, start.backend) == (120, 1, None)
    assert records_differences(records, uninterrupted, rtol=1e-4, atol=1e-6) == []
    assert records[-1].status == "completed" and records[-1].step == 200
    final = [r for r in records if r.type == "eval"][-1]
    reference = [r for r in uninterrupted if r.type == "eval"][-1]
    assert final.step == 200 and abs(final.geometry["nc1"] / reference.geometry["nc1"] - 1) < 1e-3
