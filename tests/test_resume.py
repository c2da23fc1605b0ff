"""Resume: a run killed with SIGKILL continues from its newest readable snapshot, and its records
equal those of the same run left alone (apart from clock readings and start records).

The run is 10 epochs (100 steps) so that the kill, sent when the snapshot at step 14 is
reported, lands well before the end even on a busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from nctui.viewer import open_feed
from nctui.records import splice
from nctui.store.rundir import read_records, read_run_json
from nctui.store.snapshot import list_snapshots, read_header, read_snapshot, snapshot_name
from run_fixtures import (SUBPROCESS_ENV, comparable, invoke, nctui_command, one_thread,  # noqa: F401 - autouse
                          settings, tiny_run)


EPOCHS = 10


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("uninterrupted"), train__epochs=EPOCHS)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run in a subprocess, SIGKILLed as soon as it reports its snapshot at step 14."""
    out = tmp_path_factory.mktemp("killed")
    process = subprocess.Popen(nctui_command("run", "quickstart", "--headless", "--out", str(out),
                                             *settings(train__epochs=EPOCHS)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    for line in process.stdout:
        record = json.loads(line)
        if record["type"] == "snapshot" and record["step"] >= 14:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    (run_dir,) = out.iterdir()
    return run_dir


def resumable_copy(killed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(killed, tmp_path / killed.name))


def test_a_killed_run_leaves_a_directory_open_and_resume_accept(killed: Path) -> None:
    records = read_records(killed)
    assert records[0].type == "start" and not any(r.type == "end" for r in records)
    snapshots = list_snapshots(killed)
    assert [s for s, _ in snapshots][:2] == [7, 14]
    for _, path in snapshots:   # every file under a real snapshot name is whole
        assert read_snapshot(path).step == read_header(path).step
    leftovers = [p.name for p in killed.iterdir() if p.name not in ("run.json", "metrics.jsonl")
                 and (p.name, p) not in [(q.name, q) for _, q in snapshots]]
    assert all(name.startswith(".snap-") and ".tmp-" in name for name in leftovers), leftovers
    mode, feed, warnings = open_feed(killed, lambda: True)
    seen: list = []
    feed(seen.append)
    assert mode == "following" and warnings == [] and len(seen) == len(records)


def test_resumed_records_equal_the_uninterrupted_run(killed: Path, uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = resumable_copy(killed, tmp_path)
    newest = list_snapshots(run_dir)[-1][0]
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 0, result.stderr
    assert f"resuming {run_dir} from {snapshot_name(newest)} (step {newest} of 100)" in result.stderr
    records = read_records(run_dir)
    starts = [r for r in records if r.type == "start"]
    assert [s.resumed_from for s in starts] == [None, newest]
    assert comparable(splice(records)) == comparable(read_records(uninterrupted))
    assert [r["step"] for r in read_run_json(run_dir)["resumes"]] == [newest]


def test_resume_falls_back_to_an_older_snapshot_and_says_so(killed: Path, uninterrupted: Path,
                                                            tmp_path: Path) -> None:
    """Also after a kill mid-line: the torn line stays one skipped line, the resumed start record is whole."""
    run_dir = resumable_copy(killed, tmp_path)
    (_, older), (_, newest) = list_snapshots(run_dir)[-2:]
    newest.write_bytes(newest.read_bytes()[:1000])
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"type": "step", "st')
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 0, result.stderr
    assert f"nctui: warning: {newest}: corrupt or truncated" in result.stderr
    assert f"from {older.name}" in result.stderr
    assert comparable(splice(read_records(run_dir))) == comparable(read_records(uninterrupted))


def test_a_finished_run_is_extended_only_when_asked(uninterrupted: Path, tmp_path: Path) -> None:
    run_dir = resumable_copy(uninterrupted, tmp_path)
    refused = invoke("run", "--resume", str(run_dir), "--headless")
    assert refused.exit_code == 2
    assert "already trained all 100 steps of 10 epochs; extend it with --set train.epochs=N" in refused.stderr
    extended = invoke("run", "--resume", str(run_dir), "--headless", "--set", "train.epochs=11")
    assert extended.exit_code == 0, extended.stderr
    records = splice(read_records(run_dir))
    assert [r.status for r in records if r.type == "end"] == ["completed"]
    assert records[-1].step == 110 and [r.step for r in records if r.type == "eval"][-2:] == [100, 110]
    again = invoke("run", "--resume", str(run_dir), "--headless")   # the extension is remembered
    assert "already trained all 110 steps of 11 epochs" in again.stderr


def test_a_run_killed_after_its_final_snapshot_gets_its_end_record_on_resume(uninterrupted: Path,
                                                                             tmp_path: Path) -> None:
    """Killed between the final snapshot and the end record (its last line torn): every step and the
    final evaluation are recorded, so --resume writes the end record instead of refusing."""
    run_dir = resumable_copy(uninterrupted, tmp_path)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "end"
    metrics.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])   # the end record torn mid-write
    before = [r for r in read_records(run_dir)]
    resumed = invoke("run", "--resume", str(run_dir), "--headless")
    assert resumed.exit_code == 0, resumed.stderr
    assert "killed before its end record; wrote it (completed)" in resumed.stderr
    after = read_records(run_dir)
    assert after[:-1] == before and after[-1].type == "end" and after[-1].status == "completed"
    assert after[-1].step == 100 and "killed after its final snapshot" in after[-1].reason
    assert after[-1].elapsed == before[-1].elapsed
    again = invoke("run", "--resume", str(run_dir), "--headless")   # now it has ended: nothing more to do
    assert again.exit_code == 2 and "already trained all 100 steps" in again.stderr


def test_open_following_a_killed_then_resumed_run_shows_the_uninterrupted_evaluations(
        uninterrupted: Path, tmp_path: Path) -> None:
    """`nctui open` follows a headless run that is SIGKILLed past its newest snapshot and then
    resumed: the evaluations it ends up showing are exactly those of the uninterrupted run (the
    superseded ones, written after the snapshot the resume starts from, are gone)."""
    import threading

    from nctui.tui.state import RunState

    out = tmp_path / "runs"
    process = subprocess.Popen(nctui_command("run", "quickstart", "--headless", "--out", str(out),
                                             *settings(train__epochs=EPOCHS)),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=SUBPROCESS_ENV)
    snapshot_step = None
    for line in process.stdout:
        record = json.loads(line)
        if record["type"] == "snapshot":
            snapshot_step = record["step"]
        elif record["type"] == "eval" and snapshot_step is not None and record["step"] > snapshot_step:
            os.kill(process.pid, signal.SIGKILL)   # an evaluation the resume will supersede
            break
    process.wait(timeout=60)
    (run_dir,) = out.iterdir()

    state, stop = RunState(), threading.Event()
    mode, feed, _ = open_feed(run_dir, stop.is_set)
    follower = threading.Thread(target=feed, args=(state.add,))
    follower.start()
    assert mode == "following"
    resumed = invoke("run", "--resume", str(run_dir), "--headless")
    follower.join(timeout=60)
    stop.set()
    assert resumed.exit_code == 0 and not follower.is_alive()

    raw = read_records(run_dir)
    restart = next(r for r in raw if r.type == "start" and r.resumed_from is not None)
    assert any(r.type == "eval" and r.step > restart.resumed_from for r in raw[:raw.index(restart)])
    reference = [r for r in read_records(uninterrupted) if r.type == "eval"]
    assert comparable(state.evals) == comparable(reference)
    assert state.end is not None and state.end.status == "completed"
