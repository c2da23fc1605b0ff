"""Divergence: a learning rate that makes the loss non-finite ends the run `diverged` with exit 3,
keeps the last finite snapshot (never writes a poisoned one), and the TUI shows the state and why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import Result

from nctui.viewer import open_app
from nctui.store.rundir import read_records
from nctui.store.snapshot import list_snapshots, read_snapshot, snapshot_name
from run_fixtures import invoke, settings
from tui_fixtures import settle

LR_SLOW, LR_AT_ONCE = 20, 1e8   # diverges after a few steps (a finite snapshot at 2, not one at 4); at the first one


def diverge(out: Path, lr: float) -> tuple[Result, Path]:
    """The tiny run with a snapshot every 2 steps of which only the newest 2 are kept."""
    result = invoke("run", "quickstart", "--headless", "--out", str(out),
                    *settings(train__lr=lr, monitor__snapshot_every=2, monitor__keep_snapshots=2))
    (run_dir,) = out.iterdir()
    return result, run_dir


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    return diverge(tmp_path_factory.mktemp("diverged"), LR_SLOW)


def test_divergence_ends_diverged_with_exit_3_and_keeps_the_last_finite_snapshot(
        diverged: tuple[Result, Path]) -> None:
    result, run_dir = diverged
    assert result.exit_code == 3, result.stderr
    end = read_records(run_dir)[-1]
    assert end.type == "end" and end.status == "diverged"
    # found when the snapshot due at that step checks the weights (here), or at a step record
    assert end.reason in (f"non-finite weights or loss at step {end.step}; not snapshotted",
                          f"non-finite loss (nan) at step {end.step}", f"non-finite loss (inf) at step {end.step}")
    assert result.stderr.splitlines()[-1] == f"nctui: diverged: {end.reason} (step {end.step}); run directory {run_dir}"
    assert result.stdout.splitlines()[-1].startswith('{"type": "end", "step": %d, "status": "diverged"' % end.step)
    steps = [step for step, _ in list_snapshots(run_dir)]
    assert steps and steps == list(range(2, end.step, 2))[-2:]   # keep_snapshots=2 kept the newest finite ones
    for _, path in list_snapshots(run_dir):
        tensors = read_snapshot(path).tensors
        assert all(torch.isfinite(t).all() for name, t in tensors.items() if name.startswith(("model.", "optim.")))


def test_at_once_divergence_writes_no_snapshot(tmp_path: Path) -> None:
    result, run_dir = diverge(tmp_path, LR_AT_ONCE)
    assert result.exit_code == 3 and "nctui: diverged: non-finite" in result.stderr
    assert list_snapshots(run_dir) == []


def test_resume_of_a_diverged_run_starts_from_the_last_finite_snapshot(
        diverged: tuple[Result, Path], tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(diverged[1], tmp_path / diverged[1].name))
    newest = list_snapshots(run_dir)[-1][0]
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 3   # deterministic: it diverges again at the same step
    assert f"from {snapshot_name(newest)} (step {newest} of 30)" in result.stderr
    assert read_records(run_dir)[-1].status == "diverged"


@pytest.mark.parametrize("size", [(120, 40), (20, 10)])
async def test_the_tui_shows_diverged_and_why(diverged: tuple[Result, Path], size: tuple[int, int]) -> None:
    _, run_dir = diverged
    end = read_records(run_dir)[-1]
    app, warnings = open_app(run_dir)
    assert warnings == []
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        assert app.state.status == "diverged" and app.state.end.reason == end.reason
        header = app.query_one("#header").render().plain
        assert "✖ diverged" in header
        if size[0] >= 120:
            assert f"diverged: {end.reason}" in header
