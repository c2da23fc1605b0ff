"""Pictures of compare mode on the recorded 2 x 2-seed sweep and on the 3 x 2 learning-rate by
weight-decay grid (compare_fixtures), compared with the accepted SVGs.

Regenerate after an intended change with `pytest tests/test_compare_snapshots.py --snapshot-update`
and look at the pictures before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable

import pytest
from textual.pilot import Pilot

from compare_fixtures import write_grid, write_sweep
from nctui.tui.compare.app import CompareApp
from nctui.tui.compare.screen import CompareScreen
from nctui.viewer import open_viewer


def compare_then(paths: list[Path], *keys: str) -> tuple[CompareApp, Callable[[Pilot], Awaitable[None]]]:
    """Compare mode on `paths`, and a `run_before` that waits for its screen and presses keys."""
    app, _ = open_viewer(paths)
    assert isinstance(app, CompareApp)

    async def run_before(pilot: Pilot) -> None:
        for _ in range(500):
            if isinstance(app.screen, CompareScreen) and app.state.feed_done:
                break
            await pilot.pause(0.01)
        await pilot.press(*keys)
        await pilot.pause()

    return app, run_before


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_sweep_nc1_mean_and_band(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """NC1 of the two weight decays, each the mean of two seeds with its band."""
    app, run_before = compare_then([write_sweep(tmp_path)])
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_sweep_gap_bound_vs_gap_seeds_scrubbed_at_80x24(snap_compare, tmp_path: Path) -> None:
    """Gap bound (solid) and gap (dotted) of every seed, all runs scrubbed to step 300."""
    app, run_before = compare_then([write_sweep(tmp_path)], "6", "s", "left_square_bracket", "left_square_bracket")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_sweep_rank_vs_weight_decay_filtered_at_120x40(snap_compare, tmp_path: Path) -> None:
    """The vs-parameter view of the hidden rank, seeds as dots, one run hidden and one pinned."""
    app, run_before = compare_then([write_sweep(tmp_path)], "2", "v", "s", "down", "space", "down", "p")
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_grid_two_keys_colour_and_line_style_at_120x40(snap_compare, tmp_path: Path) -> None:
    """Six loose runs: learning rate as colour, weight decay as line style."""
    app, run_before = compare_then(write_grid(tmp_path))
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_grid_nc1_vs_learning_rate_log_x_at_80x24(snap_compare, tmp_path: Path) -> None:
    """NC1 against the log-spaced learning rate, one line per weight decay."""
    app, run_before = compare_then(write_grid(tmp_path), "v")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
