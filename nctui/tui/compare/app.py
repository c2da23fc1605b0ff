"""Compare mode's app: the monitor app (NctuiApp) with the compare screen on top.

The runs come loaded (analysis.runs.load_runs, in the caller's thread). The app's feed is the
poller: a thread worker that reads what every run appended (a RunReader each, from its byte
offset) once a second and posts one RunsPolled message; it owns the readers and never touches
the UI's state. The handler applies the records to the UI's copies of the runs (CompareState)
and redraws. The poller returns once every run has an end record (and no sweep point is still
pending), or when the app stops.

`enter` on a run opens it in the ordinary monitor underneath (the five panes, scrubbed to the
compare screen's step); `c` or `esc` there comes back. While a run is shown there, its new
records go to the monitor's RunState too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from textual.binding import Binding

from nctui.analysis.runs import PENDING, RunData, RunDirError
from nctui.records import END_STATUSES, Record
from nctui.tui.app import NctuiApp
from nctui.tui.compare.screen import CompareScreen
from nctui.tui.compare.state import CompareState, eval_at
from nctui.tui.messages import RunsPolled, RunUpdate
from nctui.tui.state import RunState

POLL_SECONDS = 1.0
TCSS = [Path(__file__).resolve().parent.parent / "app.tcss", Path(__file__).resolve().parent / "compare.tcss"]


def finished(runs: Sequence[RunData]) -> bool:
    """Every run has an end record: nothing more will be appended (a resume starts a new `open`)."""
    return all(run.status in END_STATUSES for run in runs)


class CompareApp(NctuiApp):
    """The monitor, opened on several runs: compare mode first, one run's panes on `enter`."""

    CSS_PATH = TCSS
    BINDINGS = [Binding("c,escape", "compare", "compare runs", key_display="c")]

    def __init__(self, runs: list[RunData], title: str = "", notices: Sequence[str] = (),
                 poll_seconds: float = POLL_SECONDS) -> None:
        """`title`: the sweep's name, or "" for runs opened one by one."""
        self._followed = runs     # the poller's: it alone reads and changes these
        self.compare = CompareState([run.detached() for run in runs])
        self.poll_seconds = poll_seconds
        self._monitored: int | None = None   # the run the monitor underneath shows
        super().__init__(self._poll_runs, mode="replay" if finished(runs) else "following",
                         title=title or "nctui compare", notices=notices)
        self.compare_title = title

    def on_mount(self) -> None:
        """Compare mode on top (NctuiApp's own on_mount then starts the poller as its feed)."""
        self.install_screen(CompareScreen(self.compare, self.compare_title), name="compare")
        self.push_screen("compare")

    # --- the poller (worker thread) -----------------------------------------------------------

    def _poll_runs(self, _show: Callable[[Record], None]) -> None:
        runs = self._followed
        unreadable: set[int] = set()
        while not finished(runs):
            deadline = time.monotonic() + self.poll_seconds
            while time.monotonic() < deadline:
                if not self.is_running:
                    return
                time.sleep(0.05)
            updates = []
            for index, run in enumerate(runs):
                status, was_pending = run.status, run.reader is None
                try:
                    records = run.poll()
                except RunDirError as err:   # say it once; the other runs go on
                    if index not in unreadable:
                        unreadable.add(index)
                        self.notify(str(err), severity="warning", timeout=30)
                    continue
                started = was_pending and run.reader is not None
                if records or started or run.status != status:
                    updates.append(RunUpdate(index, records, run.status if run.reader else PENDING,
                                             run.config if started else None))
            if updates:
                self.post_message(RunsPolled(updates))

    # --- handlers (UI thread) ---------------------------------------------------------------

    def on_runs_polled(self, message: RunsPolled) -> None:
        for update in message.updates:
            self.compare.update(update.index, update.records, update.status, update.config)
            if update.index == self._monitored:
                for record in update.records:
                    self.state.add(record)
        if isinstance(self.screen, CompareScreen):
            self.screen.redraw()

    # --- switching between compare mode and one run ---------------------------------------------

    def open_run(self, index: int) -> None:
        """Show run `index` in the monitor's panes, at the compare screen's scrubbed step."""
        run = self.compare.runs[index]
        state = RunState()
        for record in run.records:
            state.add(record)
        self.state, self.title, self._monitored = state, run.name, index
        self.mode = "replay" if run.status in END_STATUSES else "following"
        self._cursor = eval_at(state.evals, self.compare.scrub)   # NctuiApp's selected evaluation
        self._drawn = None                                         # draw the new run at once
        self.pop_screen()
        self.redraw()

    def action_compare(self) -> None:
        if not isinstance(self.screen, CompareScreen):
            self._monitored = None
            self.push_screen("compare")

    def action_pane(self, index: int) -> None:
        if not isinstance(self.screen, CompareScreen):   # the panes' tabs exist on the monitor only
            super().action_pane(index)
