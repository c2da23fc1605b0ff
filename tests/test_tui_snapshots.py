"""Pictures of the panes of the fixed recorded run, compared with the accepted SVGs.

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the pictures before committing them.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import pytest
from textual.pilot import Pilot

from nctui.tui import NctuiApp
from tui_fixtures import full_run, press, replay_feed, settle


def replay_then(*keys: str) -> tuple[NctuiApp, Callable[[Pilot], Awaitable[None]]]:
    """A replay of the fixed run, and a `run_before` that loads it all and presses keys."""
    app = NctuiApp(replay_feed(full_run()), mode="replay")

    async def run_before(pilot: Pilot) -> None:
        await settle(app, pilot)
        await press(pilot, *keys)

    return app, run_before


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5"])
def test_pane_snapshot(snap_compare, key: str) -> None:
    app, run_before = replay_then(key)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_scrubbed_geometry_at_80x24(snap_compare) -> None:
    app, run_before = replay_then("2", "left_square_bracket", "left_square_bracket", "left_square_bracket")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
