"""Both executors on two tiny points: `local` runs them as child processes, and the lines `print`
prints, run as they are by a shell, make the very same runs. Plus the live table's rendering."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from nctui.records import EXIT_OK
from nctui.store.rundir import read_records, read_run_json
from nctui.store.sweepdir import is_locked, read_manifest
from nctui.sweep.command import sweep
from nctui.sweep.progress import LiveDisplay, Row
from sweep_fixtures import SUBPROCESS_ENV, comparable, only_dir, tiny_spec

POINTS = ["wd=0", "wd=1e-3"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny sweep run by the local executor, two jobs at a time: (sweep directory, stderr)."""
    base = tmp_path_factory.mktemp("local")
    result = CliRunner().invoke(sweep, [str(tiny_spec(base)), "--out", str(base / "out"), "--jobs", "2", "--no-pack"],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.stdout == ""
    return only_dir(base / "out"), result.stderr


def test_local_runs_every_point_in_its_own_run_directory(local: tuple[Path, str]) -> None:
    sweep_dir, stderr = local
    assert sweep_dir.name.startswith("tiny-")
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["base.yaml", "logs", "sweep.json", "sweep.lock", *POINTS]
    manifest = read_manifest(sweep_dir)
    assert [(p["run_dir"], p["status"]) for p in manifest["points"]] == [(name, "completed") for name in POINTS]
    assert not is_locked(sweep_dir)
    for name, weight_decay in zip(POINTS, (0.0, 1e-3)):
        info = read_run_json(sweep_dir / name)
        assert info["name"] == name
        config = info["config"]
        assert (config["train"]["weight_decay"], config["seed"], config["train"]["threads"],
                config["model"]["width"], config["train"]["epochs"]) == (weight_decay, 3, 1, 32, 3)
        records = read_records(sweep_dir / name)
        assert records[-1].type == "end" and records[-1].status == "completed" and records[-1].step == 30
        evals = [r for r in records if r.type == "eval"]
        assert [e.step for e in evals] == [0, 10, 20, 30]
        log = (sweep_dir / "logs" / f"{name}.log").read_text()
        assert log.startswith("# ") and f"--run-dir {sweep_dir}/{name}" in log.splitlines()[0]
        assert f"nctui: completed: trained 3 epochs (step 30); run directory {sweep_dir}/{name}" in log
        last = evals[-1]
        hidden_rank = sum(layer["rank"] for layer in last.layers[:-1]) / (len(last.layers) - 1)
        assert (f"nctui: sweep: {name} completed (step 30/30, nc1 {last.geometry['nc1']:.3g}, rank {hidden_rank:.3g}, "
                f"test acc {last.test['acc']:.3f}; ") in stderr
    lines = stderr.splitlines()
    assert lines[0] == f"nctui: sweep {sweep_dir}: 2 points, varying train.weight_decay"
    assert "nctui: sweep: starting wd=0 (point 1 of 2)" in lines and "nctui: sweep: starting wd=1e-3 (point 2 of 2)" in lines
    assert lines[-1] == f"nctui: sweep {sweep_dir}: 2 completed"
    # weight decay made a difference the runs recorded
    assert comparable(sweep_dir / POINTS[0]) != comparable(sweep_dir / POINTS[1])


def test_print_lines_run_as_they_are_make_the_same_runs(local: tuple[Path, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(sweep, [str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--executor",
                                        "print", "--jobs", "2", "--no-pack"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    printed = only_dir(tmp_path / "out")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"nctui run {printed}/base.yaml --headless --run-dir ")
                                   for line in lines)
    assert f"2 commands printed; afterwards `nctui sweep --resume {printed}`" in result.stderr
    assert sorted(p.name for p in printed.iterdir()) == ["base.yaml", "sweep.json", "sweep.lock"]
    children = [subprocess.Popen(line, shell=True, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for line in lines]
    for child in children:
        assert child.wait(timeout=300) == 0, child.stderr.read()
        child.stderr.close()
    reference, _ = local
    for name in POINTS:
        assert comparable(printed / name) == comparable(reference / name)
    resumed = CliRunner().invoke(sweep, ["--resume", str(printed)], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.stderr
    assert "2 points finished, 0 to run" in resumed.stderr and resumed.stderr.endswith("2 completed\n")
    assert [p["status"] for p in read_manifest(printed)["points"]] == ["completed", "completed"]


def test_the_live_table_shows_running_points_first_and_what_did_not_fit() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, height=12, color_system=None)
    display = LiveDisplay(console, "wd_rank")
    rows = [Row(index=i, name=f"wd={i}", status="pending") for i in range(8)]
    rows[6] = Row(index=6, name="wd=6", status="running", step=120, total=300, nc1=0.0351, rank=12.33, test_acc=0.998)
    rows[0] = Row(index=0, name="wd=0", status="failed", detail="out of memory")
    display.close(rows)
    text = screen.getvalue()
    last = text[text.rindex("wd_rank · "):]   # the final frame
    assert last.startswith("wd_rank · 1 running, 1 failed, 6 pending · 0m00s")
    assert "… and 4 more" in last            # 12 lines leave room for 4 rows: the running one among them
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in last.splitlines() if "│" in line]
    assert cells == [["1", "wd=0", "failed", "0/?", "-", "-", "-"], ["2", "wd=1", "pending", "0/?", "-", "-", "-"],
                     ["3", "wd=2", "pending", "0/?", "-", "-", "-"],
                     ["7", "wd=6", "running", "120/300", "0.0351", "12.3", "0.998"]]
    assert last.rstrip().splitlines()[-1].endswith("nctui: sweep: wd=0 failed: out of memory")
