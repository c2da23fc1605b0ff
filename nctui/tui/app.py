"""The nctui Textual app: records in, five panes out, a few commands back to the trainer.

Contract for the caller (the CLI):
- `NctuiApp(feed, control, mode).run()` returns 0 after `q`, 130 after ctrl+c or SIGINT, 143
  after SIGTERM (also the app's `return_code`); a signal quits as the key does, so a live
  run still gets its final snapshot and end record (the stop reason names the signal). The
  caller maps the run's own outcome from `app.state.end` (the EndRecord, or None) and
  `app.feed_error` (what the feed raised, or None; the app shows it as "failed" and does not
  re-raise).
- `feed(record)` runs in a thread worker; it may be the training loop itself (live: the
  runner tees the trainer's sink into `record`), read a run directory and return (replay),
  or keep tailing one (following). `record(r)` is thread-safe and never blocks. `app.notify(...)` is thread-safe too, for notices from the feed.
- With a `control`, quitting while the feed runs calls `control.request_stop()` and waits
  for the feed to return (the trainer writes its final snapshot and end record, which are
  shown), then exits; a second press leaves at once. Without one, quitting leaves at once.
  Either way `run()` returns only once the feed's thread has returned (asyncio waits for
  its executor), so a following feed must watch `control.stop_requested`.
- `p` and `s` act only in live mode with a control; the other modes say they are not available.
- `notices` (e.g. the unreadable files `nctui open` skipped) are shown as warnings at start.

Threading (DESIGN.md): `record` only posts a message (tui/messages.py). Step records are coalesced: they go
into a deque, announced by a message only when no announcement is pending, so a flood of
steps costs the UI one handler call per burst and the trainer a deque append per step, and
none is lost; every other record is its own message and is never dropped. A timer draws at most FRAME_HZ frames a second, only when
something changed, and only the visible pane.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from typing import Callable, Sequence

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import ContentSwitcher, Footer

from nctui.control import Control
from nctui.records import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EndRecord, Record, SnapshotRecord, StepRecord
from nctui.tui.chrome import PaneBar, Timeline, header_items
from nctui.tui.help import HelpScreen
from nctui.tui.messages import FeedDone, RecordArrived, StepsArrived
from nctui.tui.panes.base import Pane
from nctui.tui.panes.bounds import BoundsPane
from nctui.tui.panes.geometry import GeometryPane
from nctui.tui.panes.noise import NoisePane
from nctui.tui.panes.overview import OverviewPane
from nctui.tui.panes.spectra import SpectraPane
from nctui.tui.state import RunState, View
from nctui.tui.widgets.item_row import ItemRow

Feed = Callable[[Callable[[Record], None]], object]
MODES = ("live", "replay", "following")
PANES: tuple[type[Pane], ...] = (OverviewPane, GeometryPane, SpectraPane, NoisePane, BoundsPane)
FRAME_HZ = 8
STEP_REDRAW_HZ = 1  # pane redraws a second for new step records alone
SIGNALS = ((signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED))


def pane_id(index: int) -> str:
    """DOM id of the pane at `index`."""
    return PANES[index].TITLE.lower()


class NctuiApp(App[int]):
    """The monitor. `run()` returns 0 (q), 130 (ctrl+c, SIGINT) or 143 (SIGTERM); see the module docstring."""

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-tiny"), (22, "-short"), (34, "-tall")]
    BINDINGS = [
        *(Binding(str(i + 1), f"pane({i})", "panes", key_display="1-5", show=i == 0) for i in range(len(PANES))),
        Binding("tab", "cycle_pane(1)", show=False, priority=True),
        Binding("shift+tab", "cycle_pane(-1)", show=False, priority=True),
        Binding("p", "pause", "pause"),
        Binding("s", "snapshot", "snapshot"),
        Binding("l", "layer(1)", "layer"),
        Binding("L", "layer(-1)", show=False),
        Binding("left_square_bracket", "scrub(-1)", "scrub", key_display="[ ]"),
        Binding("right_square_bracket", "scrub(1)", show=False),
        Binding("home", "scrub_to(0)", show=False),
        Binding("end", "scrub_to(-1)", show=False),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", f"quit_run({EXIT_OK})", "quit"),
        Binding("ctrl+c", f"quit_run({EXIT_INTERRUPTED})", show=False, priority=True),
        Binding("ctrl+q", f"quit_run({EXIT_OK})", show=False, priority=True),
    ]

    def __init__(self, feed: Feed, control: Control | None = None, mode: str = "live",
                 title: str = "nctui", notices: Sequence[str] = ()) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        super().__init__()
        self.title = title
        self.feed = feed
        self.control = control
        self.mode = mode
        self.notices = tuple(notices)
        self.state = RunState()
        self.feed_error: BaseException | None = None   # what the feed raised, for the caller
        self._pending_steps: deque[StepRecord] = deque()
        self._steps_announced = False   # a StepsArrived is on its way to the handler
        self._cursor: int | None = None   # selected evaluation; None follows the newest
        self._layer = 0
        self._pane = 0
        self._exit_code: int | None = None   # set while waiting for the feed to finish
        self._drawn: tuple | None = None
        self._drawn_pane: tuple | None = None
        self._pane_drawn_at = 0.0

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield ItemRow(id="header")
        yield PaneBar([pane.TITLE for pane in PANES], id="panebar")
        yield Timeline(id="timeline")
        with ContentSwitcher(initial=pane_id(0), id="panes"):
            for i, pane in enumerate(PANES):
                yield pane(id=pane_id(i))
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._handle_signals(True)   # before the feed starts: no moment where SIGTERM skips the final snapshot
        self.set_interval(1 / FRAME_HZ, self.redraw)
        self.run_worker(self._run_feed, name="feed", thread=True, exit_on_error=False)
        for notice in self.notices:
            self.notify(notice, severity="warning", timeout=30)
        self.redraw()

    def on_unmount(self) -> None:
        self._handle_signals(False)

    def _handle_signals(self, install: bool) -> None:
        """SIGINT and SIGTERM quit like the keys (asyncio would otherwise swallow SIGINT and
        SIGTERM would kill the process before the trainer's final snapshot)."""
        loop = asyncio.get_running_loop()
        for signum, code in SIGNALS:
            try:
                if install:
                    loop.add_signal_handler(signum, self.action_quit_run, code, f"interrupted by {signum.name}")
                else:
                    loop.remove_signal_handler(signum)
            except (RuntimeError, NotImplementedError, ValueError):   # not the main thread, or no signals here
                return

    # --- the feed (worker thread) ---------------------------------------------------------

    def _run_feed(self) -> None:
        try:
            self.feed(self.record)
        except Exception as error:  # the feed's failure is shown, not a crash of the UI
            self.post_message(FeedDone(error))
        else:
            self.post_message(FeedDone(None))

    def record(self, record: Record) -> None:
        """Hand one record to the UI; thread-safe, never blocks, never drops a record."""
        if isinstance(record, StepRecord):
            self._pending_steps.append(record)
            if not self._steps_announced:
                self._steps_announced = True
                self.post_message(StepsArrived())
        else:
            self.post_message(RecordArrived(record))

    # --- handlers (UI thread): they own the state -----------------------------------------

    def _drain_steps(self) -> None:
        while self._pending_steps:
            self.state.add(self._pending_steps.popleft())

    def on_steps_arrived(self, message: StepsArrived) -> None:
        self._steps_announced = False  # before draining: a step appended meanwhile is drained or re-announced
        self._drain_steps()

    def on_record_arrived(self, message: RecordArrived) -> None:
        record = message.record
        self._drain_steps()
        self.state.add(record)
        if self.mode != "live":
            return
        if isinstance(record, SnapshotRecord) and record.reason == "user":
            self.notify(f"snapshot written: {record.path}")
        elif isinstance(record, EndRecord) and record.status in ("diverged", "failed"):
            self.notify(f"{record.status}: {record.reason}", severity="error", timeout=10)

    def on_feed_done(self, message: FeedDone) -> None:
        self._drain_steps()
        self.state.feed_done = True
        self.state.stopping = False
        if message.error is not None:
            self.feed_error = message.error
            self.state.feed_error = f"{type(message.error).__name__}: {message.error}"
            self.notify(self.state.feed_error, severity="error", timeout=10)
        self.state.touch()
        if self._exit_code is not None:
            self.exit(self._exit_code, return_code=self._exit_code)

    def on_pane_bar_selected(self, message: PaneBar.Selected) -> None:
        self.action_pane(message.index)

    # --- drawing --------------------------------------------------------------------------

    @property
    def view(self) -> View:
        """The state as the user has chosen to look at it."""
        return View(self.state, self._cursor, self._layer)

    def redraw(self) -> None:
        """Draw the header, the timeline and the visible pane, if anything changed.

        New step records alone redraw the pane at most STEP_REDRAW_HZ times a second: the
        header keeps the frame rate, and the GIL stays with the trainer (on 2 cores a pane
        redrawn at every frame cost the trainer half its steps).
        """
        key = (self.state.version, self._cursor, self._layer, self._pane)
        if key == self._drawn:
            return
        pane_key = (self.state.records_version, self._cursor, self._layer, self._pane)
        now = time.monotonic()
        try:
            header = self.query_one("#header", ItemRow)
        except NoMatches:   # a timer or message while the app shuts down: nothing left to draw on
            return
        steps_only = self._drawn is not None and pane_key == self._drawn_pane
        if steps_only and now - self._pane_drawn_at < 1 / STEP_REDRAW_HZ:
            header.show(*header_items(self.state, self.mode))
            return
        self._drawn, self._drawn_pane, self._pane_drawn_at = key, pane_key, now
        view = self.view
        header.show(*header_items(self.state, self.mode))
        timeline = self.query_one(Timeline)
        timeline.display = self.mode != "live" or self._cursor is not None
        if timeline.display:
            timeline.show(view, self.mode)
        self.query_one(f"#{pane_id(self._pane)}", Pane).show(view)

    # --- actions --------------------------------------------------------------------------

    def action_pane(self, index: int) -> None:
        """Show pane `index` (0-based)."""
        self._pane = index % len(PANES)
        self.query_one("#panes", ContentSwitcher).current = pane_id(self._pane)
        self.query_one(PaneBar).select(self._pane)
        self.redraw()

    def action_cycle_pane(self, step: int) -> None:
        self.action_pane(self._pane + step)

    def action_layer(self, step: int) -> None:
        """Select the next/previous layer (Spectra pane)."""
        count = self.view.layer_count()
        self._layer = (self._layer + step) % count if count else 0

    def action_scrub(self, step: int) -> None:
        """Select the previous/next evaluation; moving past the newest follows it again."""
        count = len(self.state.evals)
        if count == 0:
            return
        index = (count - 1 if self._cursor is None else self._cursor) + step
        self._cursor = None if index >= count - 1 and step > 0 else min(max(index, 0), count - 1)

    def action_scrub_to(self, index: int) -> None:
        """Jump to the first evaluation (0) or back to following the newest (-1)."""
        self._cursor = None if index < 0 or not self.state.evals else index

    def _live_control(self, what: str) -> Control | None:
        """The control, when `what` can be done now; otherwise say why not."""
        if self.mode != "live" or self.control is None:
            self.notify(f"{what} is not available in {self.mode} mode" if self.mode != "live"
                        else f"{what} needs a trainer to talk to", severity="warning")
            return None
        if self.state.stopping or self.state.end is not None or self.state.feed_done:
            self.notify(f"{what}: the run is {self.state.status}", severity="warning")
            return None
        return self.control

    def action_pause(self) -> None:
        control = self._live_control("pause")
        if control is not None:
            self.state.paused = control.toggle_pause()
            self.state.touch()

    def action_snapshot(self) -> None:
        control = self._live_control("snapshot")
        if control is not None:
            control.request_snapshot()
            self.notify("snapshot requested")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(PANES))

    def action_quit_run(self, code: int, reason: str = "stopped by the user") -> None:
        """Stop the trainer and wait for its end record; leave at once if nothing is running."""
        if self.control is None or self.state.feed_done or self._exit_code is not None:
            self.exit(code, return_code=code)
            return
        self._exit_code = code
        self.control.request_stop(reason)
        self.state.stopping = True
        self.state.paused = False
        self.state.touch()
        waiting_for = "the trainer's final snapshot" if self.mode == "live" else "the feed to end"
        self.notify(f"stopping: waiting for {waiting_for}… (press again to leave now)")
