"""The Slurm executor (nctui/sweep/slurm.py): `nctui sweep SPEC --executor slurm` writes an sbatch
array script; each array task, run here as Slurm would run it (bash, SLURM_ARRAY_TASK_ID set),
finishes its point: started, resumed from its snapshot, or left alone when finished."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from faults.helpers import assert_one_line_error
from nctui.store.snapshot import list_snapshots
from nctui.sweep.command import sweep
from nctui.sweep.slurm import SlurmError, task_command
from sweep_fixtures import SUBPROCESS_ENV, comparable, only_dir, tiny_spec


def invoke_sweep(*args: str):
    return CliRunner().invoke(sweep, list(args), catch_exceptions=False)


def array_task(script: Path, index: int) -> subprocess.Popen:
    """One array task of the script, as Slurm starts it."""
    return subprocess.Popen(["bash", str(script)], env={**SUBPROCESS_ENV, "SLURM_ARRAY_TASK_ID": str(index)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_array_script_runs_each_point_once_and_resumes_a_killed_one(tmp_path: Path) -> None:
    result = invoke_sweep(str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--executor", "slurm",
                          "--slurm", "partition=debug", "--slurm", "time=00:10:00", "--slurm", "cpus_per_task=2")
    assert result.exit_code == 0, result.stderr
    sweep_dir = only_dir(tmp_path / "out").resolve()
    script = sweep_dir / "slurm.sbatch"
    assert result.stdout == f"sbatch {script}\n"
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --array=0-1", "#SBATCH --job-name=nctui-tiny", f"#SBATCH --output={sweep_dir}/logs/slurm-%A_%a.out",
        "#SBATCH --partition=debug", "#SBATCH --time=00:10:00", "#SBATCH --cpus-per-task=2"]
    assert lines[-1] == f'exec {sys.executable} -m nctui.sweep.slurm {sweep_dir} "$SLURM_ARRAY_TASK_ID" --threads 2'
    assert (sweep_dir / "logs").is_dir()   # Slurm would not create it for its output file

    tasks = [array_task(script, i) for i in (0, 1)]
    for task in tasks:
        _, stderr = task.communicate(timeout=300)
        assert task.returncode == 0, stderr
    points = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != "logs")
    finished = {}
    for point in points:
        finished[point.name] = comparable(point)
        assert finished[point.name][-1]["type"] == "end" and finished[point.name][-1]["status"] == "completed"
        log = (sweep_dir / "logs" / f"{point.name}.log").read_text()
        assert "slurm task" in log and "nctui: completed: trained 3 epochs" in log

    # submitted again: a finished point's task exits at once and touches nothing
    before = (points[0] / "metrics.jsonl").read_bytes()
    again = array_task(script, 0)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0 and "is finished already; nothing to do" in stderr, stderr
    assert (points[0] / "metrics.jsonl").read_bytes() == before

    # a point killed after its snapshot at step 21 (no end record, later snapshots gone) resumes
    killed = points[1]
    for step, path in list_snapshots(killed):
        if step > 21:
            path.unlink()
    lines = (killed / "metrics.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"type": "snapshot"' in line and '"step": 21' in line)
    (killed / "metrics.jsonl").write_text("".join(lines[:cut + 1]))
    resumed = array_task(script, 1)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "run --resume" in stderr
    assert comparable(killed) == finished[killed.name]

    # and the sweep, resumed, has nothing left to do
    dry = invoke_sweep("--resume", str(sweep_dir), "--dry-run")
    assert dry.exit_code == 0 and [line.split()[1:] for line in dry.stdout.splitlines()] == [
        ["completed", "untouched"]] * 2, dry.stdout
    left = invoke_sweep("--resume", str(sweep_dir), "--executor", "slurm")
    assert left.exit_code == 0 and left.stdout == "" and "nothing to submit" in left.stderr, left.stderr


def test_an_array_task_starts_resumes_or_restarts_its_point(tmp_path: Path) -> None:
    """task_command, for each state of a point's run directory (sweep/state.py)."""
    result = invoke_sweep(str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--executor", "slurm",
                          "--slurm", "nproc_per_run=2")
    assert result.exit_code == 0, result.stderr
    sweep_dir = only_dir(tmp_path / "out")
    assert (sweep_dir / "slurm.sbatch").read_text().splitlines()[-1].endswith('"$SLURM_ARRAY_TASK_ID" --nproc 2')
    point, command = task_command(sweep_dir, 1, nproc=2, device="cpu", threads=None)
    run_dir = str(sweep_dir / point["run_dir"])
    assert command[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "nctui"]
    assert command[7:12] == ["run", str(sweep_dir / "base.yaml"), "--headless", "--run-dir", run_dir]
    assert "train.weight_decay=0.001" in command and command[-2:] == ["--device", "cpu"]
    # a run killed before its first snapshot starts again from nothing
    (sweep_dir / point["run_dir"]).mkdir()
    (sweep_dir / point["run_dir"] / "run.json").write_text("{}")
    _, command = task_command(sweep_dir, 1, nproc=1, device=None, threads=None)
    assert command[:6] == [sys.executable, "-m", "nctui", "run", str(sweep_dir / "base.yaml"), "--headless"]
    assert not (sweep_dir / point["run_dir"]).exists()
    with pytest.raises(SlurmError, match="no point 2 .the sweep has points 0-1."):
        task_command(sweep_dir, 2, nproc=1, device=None, threads=None)


@pytest.mark.parametrize(("args", "message"), [
    (["--slurm", "partition"], "--slurm partition: expected KEY=VALUE"),
    (["--slurm", "nproc_per_run=0"], "--slurm nproc_per_run=0: must be a whole number of processes, at least 1"),
    (["--slurm", "array=0-3"], "--slurm array: the array is the sweep's points; nctui sets --array itself"),
    (["--slurm", "constraint=a b"], "--slurm constraint: the value must be one word"),
])
def test_bad_slurm_settings_are_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke_sweep(str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--executor", "slurm", *args)
    assert_one_line_error(result, 2, message)
    assert not (tmp_path / "out").exists()


def test_slurm_settings_need_the_slurm_executor(tmp_path: Path) -> None:
    result = invoke_sweep(str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--slurm", "partition=gpu")
    assert_one_line_error(result, 2, "--slurm applies to --executor slurm only")
