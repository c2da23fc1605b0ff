"""Pictures of the Overview's four claims (and the bounds audit) on the fixed recorded run.

Regenerate after an intended change with
`pytest tests/test_tui_claims_snapshots.py --snapshot-update` and look at the pictures before
committing them.
"""

from __future__ import annotations

import pytest

from test_tui_snapshots import replay_then


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_overview_shows_four_verdicts(snap_compare, size: tuple[int, int]) -> None:
    """The finished run: every claim holds."""
    app, run_before = replay_then("1")
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_overview_early_in_the_run_at_80x24(snap_compare) -> None:
    """The third evaluation: three claims fail, the noise claim waits for evaluations."""
    app, run_before = replay_then("1", *["left_square_bracket"] * 6)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_bounds_audit_at_120x40(snap_compare) -> None:
    app, run_before = replay_then("5", "a")
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
