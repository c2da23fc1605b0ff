"""The sweep directory: sweep.json written atomically and read suspiciously, the lock, what a
resume finds in each point's run directory, and `sweep_summary` for `nctui ls`. Run
directories here are made by hand (records as a run writes them); no training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nctui.records import EndRecord, StartRecord, record_to_json
from nctui.store.rundir import RunWriter, write_run_json
from nctui.store.sweepdir import (SWEEP_JSON, SweepBusyError, SweepDirError, SweepLock, create_sweep_dir,
                                  is_locked, read_manifest, write_manifest)
from nctui.sweep import sweep_summary
from nctui.sweep.command import sweep
from nctui.sweep.engine import create, prepare_resume
from nctui.sweep.spec import load_spec, plan
from nctui.sweep.state import KEEP, RESTART, RESUME, START, PointState, inspect_point, last_end_status


def invoke_sweep(*args: str) -> Result:
    return CliRunner().invoke(sweep, list(args), catch_exceptions=False)


def start_line(total_steps: int = 30, resumed_from: int | None = None) -> str:
    return record_to_json(StartRecord(run="r", time=0.0, device="cpu", dataset="synthetic", model="FC",
                                      num_classes=10, layers=["fc1", "fc2"], epochs=3, steps_per_epoch=10,
                                      total_steps=total_steps, train_samples=200, resumed_from=resumed_from))


def end_line(status: str, step: int = 30) -> str:
    return record_to_json(EndRecord(step=step, status=status, reason=f"{status} here", elapsed=1.0))


def fake_run(path: Path, lines: list[str], snapshots: tuple[int, ...] = (), torn: bool = False) -> Path:
    """A run directory as a run leaves it: run.json, metrics.jsonl, snapshot files (their contents
    do not matter to a sweep: only their names)."""
    path.mkdir(parents=True)
    write_run_json(path, {"name": path.name, "config": {}})
    (path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines) + ('{"type": "st' if torn else ""))
    for step in snapshots:
        (path / f"snap-{step:09d}.safetensors").write_bytes(b"x")
    return path


@pytest.fixture()
def made(tmp_path: Path):
    """A new sweep of three points (seeds 0, 1, 2), created and then unlocked."""
    spec = tmp_path / "three.yaml"
    spec.write_text("base: quickstart\nset:\n  train.epochs: 1\nseeds: [0, 1, 2]\n")
    sweep_dir, lock, _ = create(plan(load_spec(spec)), tmp_path / "out")
    lock.release()
    return sweep_dir, read_manifest(sweep_dir)


def test_a_new_sweep_directory_holds_its_manifest_and_base_and_is_locked_while_run(tmp_path: Path) -> None:
    spec = tmp_path / "three.yaml"
    spec.write_text("base: quickstart\nset:\n  train.epochs: 1\nseeds: [0, 1, 2]\n")
    sweep_dir, lock, manifest = create(plan(load_spec(spec)), tmp_path / "out")
    assert sweep_dir.parent == tmp_path / "out" and sweep_dir.name.startswith("three-")
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["base.yaml", "sweep.json", "sweep.lock"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [sweep_dir.name]   # no temporary left
    assert read_manifest(sweep_dir) == {**manifest, "format": "nctui.sweep", "schema": 1,
                                        "updated": read_manifest(sweep_dir)["updated"]}
    assert [(p["name"], p["run_dir"], p["values"], p["overrides"], p["status"]) for p in manifest["points"]] == [
        (f"s{i}", f"s{i}", {"seed": i}, ["train.epochs=1", f"seed={i}"], "pending") for i in range(3)]
    assert manifest["spec"] == {"base": "quickstart", "set": {"train.epochs": 1}, "seeds": [0, 1, 2]}
    assert manifest["varying"] == ["seed"] and manifest["base_file"] == "base.yaml"
    assert is_locked(sweep_dir)
    with pytest.raises(SweepBusyError, match="another nctui process is running this sweep"):
        SweepLock(sweep_dir)
    result = invoke_sweep("--resume", str(sweep_dir))
    assert result.exit_code == 1 and result.stderr.startswith("nctui: error: "), result.stderr
    assert "another nctui process is running this sweep (it holds sweep.lock)" in result.stderr
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["base.yaml", "sweep.json", "sweep.lock"]
    lock.release()
    assert not is_locked(sweep_dir)
    SweepLock(sweep_dir).release()


def test_two_sweeps_in_one_second_get_two_directories(tmp_path: Path) -> None:
    first, lock1 = create_sweep_dir(tmp_path, "s", {"points": []}, {})
    second, lock2 = create_sweep_dir(tmp_path, "s", {"points": []}, {})
    lock1.release()
    lock2.release()
    assert first != second and first.is_dir() and second.is_dir()


CORRUPTIONS = {
    "not JSON": (lambda m: "{\"format\": ", "corrupt (not valid JSON)"),
    "not a sweep": (lambda m: {"config": {}}, "not an nctui sweep manifest"),
    "newer schema": (lambda m: {**m, "schema": 99}, "schema 99 is not one this nctui reads"),
    "no points": (lambda m: {**m, "points": []}, "corrupt: no points"),
    "escaping run_dir": (lambda m: {**m, "points": [{**m["points"][0], "run_dir": "../../etc"}]},
                         "point 0: run_dir '../../etc' is not a plain directory name"),
    "absolute run_dir": (lambda m: {**m, "points": [{**m["points"][0], "run_dir": "/tmp"}]},
                         "run_dir '/tmp' is not a plain directory name"),
    "twice the same run_dir": (lambda m: {**m, "points": [m["points"][0], m["points"][0]]},
                               "point 1: run_dir s0 given twice"),
    "an option as override": (lambda m: {**m, "points": [{**m["points"][0], "overrides": ["--resume"]}]},
                              "point 0: \"overrides\" is not a list of KEY=VALUE strings"),
    "unknown status": (lambda m: {**m, "points": [{**m["points"][0], "status": "great"}]},
                       "point 0: unknown status 'great'"),
    "base outside": (lambda m: {**m, "base_file": "../base.yaml"}, "base_file '../base.yaml' is not a plain file name"),
    "a list": (lambda m: [m], "not an nctui sweep manifest"),
    "deep nesting": (lambda m: "[" * 100000 + "]" * 100000, "corrupt (not valid JSON)"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_a_corrupt_sweep_json_is_named_and_nothing_changes(case: str, made) -> None:
    sweep_dir, manifest = made
    corrupt, message = CORRUPTIONS[case]
    content = corrupt(manifest)
    (sweep_dir / SWEEP_JSON).write_text(content if isinstance(content, str) else json.dumps(content))
    before = sorted(p.name for p in sweep_dir.iterdir())
    with pytest.raises(SweepDirError, match=None) as caught:
        read_manifest(sweep_dir)
    assert str(caught.value).startswith(f"{sweep_dir / SWEEP_JSON}: ") and message in str(caught.value)
    result = invoke_sweep("--resume", str(sweep_dir))
    assert result.exit_code == 2 and result.stderr == f"nctui: error: {caught.value}\n", result.stderr
    assert sorted(p.name for p in sweep_dir.iterdir()) == before


@pytest.mark.parametrize("how, message", [("missing", "sweep.json: missing (is"), ("none", "no such directory"),
                                          ("fifo", "not a regular file"), ("run dir", "sweep.json: missing")])
def test_a_directory_that_is_not_a_sweep_is_refused(how: str, message: str, tmp_path: Path) -> None:
    target = tmp_path / "d"
    if how == "missing":
        target.mkdir()
    elif how == "fifo":
        target.mkdir()
        os.mkfifo(target / SWEEP_JSON)
    elif how == "run dir":
        fake_run(target, [start_line()])
    result = invoke_sweep("--resume", str(target))
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_the_manifest_is_replaced_whole(made) -> None:
    sweep_dir, manifest = made
    manifest["points"][1]["status"] = "completed"
    write_manifest(sweep_dir, manifest)
    assert read_manifest(sweep_dir)["points"][1]["status"] == "completed"
    assert [p.name for p in sweep_dir.iterdir() if p.name.startswith(".")] == []


def test_what_a_resume_finds_in_each_run_directory(tmp_path: Path) -> None:
    def state(name: str):
        return inspect_point(tmp_path, {"run_dir": name})

    assert state("absent") == PointState("pending", START)
    fake_run(tmp_path / "done", [start_line(), end_line("completed")], snapshots=(7, 30))
    assert (state("done").status, state("done").action) == ("completed", KEEP)
    fake_run(tmp_path / "diverged", [start_line(), end_line("diverged", 12)], snapshots=(7,))
    assert (state("diverged").status, state("diverged").action) == ("diverged", KEEP)
    fake_run(tmp_path / "stopped", [start_line(), end_line("stopped", 12)], snapshots=(7, 12))
    assert (state("stopped").status, state("stopped").action) == ("stopped", RESUME)
    fake_run(tmp_path / "killed", [start_line()], snapshots=(7, 14), torn=True)
    assert (state("killed").status, state("killed").action, state("killed").detail) == (
        "killed", RESUME, "resuming from step 14")
    fake_run(tmp_path / "early", [start_line()])
    assert (state("early").status, state("early").action) == ("killed", RESTART)
    (tmp_path / "bare").mkdir()   # killed as `nctui run --run-dir` made it
    assert (state("bare").status, state("bare").action) == ("killed", RESTART)
    fake_run(tmp_path / "all-trained", [start_line()], snapshots=(7, 30))
    assert (state("all-trained").status, state("all-trained").action) == ("completed", KEEP)
    # a resumed run that was stopped again: the newest segment counts
    fake_run(tmp_path / "again", [start_line(), end_line("stopped", 7), start_line(resumed_from=7),
                                  end_line("completed")], snapshots=(7, 30))
    assert (state("again").status, state("again").action) == ("completed", KEEP)
    fake_run(tmp_path / "reopened", [start_line(), end_line("stopped", 7), start_line(resumed_from=7)],
             snapshots=(7,))
    assert (state("reopened").status, state("reopened").action) == ("killed", RESUME)

    os.symlink(tmp_path / "done", tmp_path / "link")
    (tmp_path / "file").write_text("x")
    for name in ("link", "file"):
        with pytest.raises(SweepDirError, match=f"{name}: not a run directory"):
            state(name)
    writer = RunWriter(tmp_path / "early")   # a process still writes it
    try:
        assert (state("early").status, state("early").action) == ("running", KEEP)
    finally:
        writer.close()


def test_resume_refuses_while_a_run_of_the_sweep_is_being_written(made) -> None:
    sweep_dir, manifest = made
    fake_run(sweep_dir / "s1", [start_line()], snapshots=(7,))
    writer = RunWriter(sweep_dir / "s1")
    try:
        with pytest.raises(SweepBusyError, match="s1: another process is writing this run of the sweep"):
            prepare_resume(sweep_dir)
        assert not is_locked(sweep_dir)   # the refused resume let go of the lock
    finally:
        writer.close()
    resumption = prepare_resume(sweep_dir)
    resumption.lock.release()
    assert [(s.status, s.action) for s in resumption.states] == [("pending", START), ("killed", RESUME),
                                                                 ("pending", START)]


def test_resume_dry_run_says_what_it_would_do_and_changes_nothing(made) -> None:
    sweep_dir, manifest = made
    fake_run(sweep_dir / "s0", [start_line(), end_line("completed")], snapshots=(30,))
    fake_run(sweep_dir / "s1", [start_line()])
    before = (sweep_dir / SWEEP_JSON).read_bytes()
    result = invoke_sweep("--resume", str(sweep_dir), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["s0  completed  untouched",
                                          "s1  killed  restart (no snapshot to resume from: starting it again)",
                                          "s2  pending  start"]
    assert (sweep_dir / SWEEP_JSON).read_bytes() == before and (sweep_dir / "s1").is_dir()


def test_resume_of_a_finished_sweep_runs_nothing(made) -> None:
    sweep_dir, manifest = made
    for i in range(3):
        fake_run(sweep_dir / f"s{i}", [start_line(), end_line("completed")], snapshots=(30,))
    result = invoke_sweep("--resume", str(sweep_dir))
    assert result.exit_code == 0, result.stderr
    assert "3 points finished, 0 to run" in result.stderr and "3 completed" in result.stderr
    assert [p["status"] for p in read_manifest(sweep_dir)["points"]] == ["completed"] * 3


def test_print_on_resume_deletes_runs_without_snapshots_and_prints_what_is_left(made) -> None:
    sweep_dir, manifest = made
    fake_run(sweep_dir / "s0", [start_line(), end_line("completed")], snapshots=(30,))
    fake_run(sweep_dir / "s1", [start_line()])
    fake_run(sweep_dir / "s2", [start_line(), end_line("stopped", 12)], snapshots=(7, 12))
    result = invoke_sweep("--resume", str(sweep_dir), "--executor", "print", "--jobs", "2", "--device", "cpu", "--no-pack")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"nctui run {sweep_dir}/base.yaml --headless --run-dir {sweep_dir}/s1 --set train.epochs=1 --set seed=1 "
        f"--set train.threads={max(1, len(os.sched_getaffinity(0)) // 2)} --device cpu",
        f"nctui run --resume {sweep_dir}/s2 --headless --device cpu"]
    assert not (sweep_dir / "s1").exists() and (sweep_dir / "s2").is_dir()
    assert [p["status"] for p in read_manifest(sweep_dir)["points"]] == ["completed", "pending", "stopped"]
    assert not is_locked(sweep_dir)


def test_sweep_summary_counts_finished_points_cheaply(made) -> None:
    sweep_dir, manifest = made
    fake_run(sweep_dir / "s0", [start_line(), end_line("completed")])
    fake_run(sweep_dir / "s1", [start_line(), end_line("diverged", 3)], torn=True)   # torn: the end is not last
    assert last_end_status(sweep_dir / "s0") == "completed" and last_end_status(sweep_dir / "s1") is None
    assert last_end_status(sweep_dir / "s2") is None
    assert sweep_summary(sweep_dir) == (sweep_dir.name, "sweep 1/3 points done", "varying seed")
    lock = SweepLock(sweep_dir)
    try:
        assert sweep_summary(sweep_dir)[1] == "sweep 1/3 points done (running)"
    finally:
        lock.release()
    (sweep_dir / SWEEP_JSON).write_text("nope")
    name, status, why = sweep_summary(sweep_dir)
    assert (name, status) == (sweep_dir.name, "unreadable sweep") and "corrupt (not valid JSON)" in why
    shutil.rmtree(sweep_dir)
