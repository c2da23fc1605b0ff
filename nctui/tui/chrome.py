"""The frame around the panes: header line, pane tabs and the replay timeline.

Everything here is computed from the records (never the wall clock), so a replay looks the
same every time it is opened.
"""

from __future__ import annotations

import math
from typing import Sequence

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from nctui.tui.format import fmt_duration, fmt_int, fmt_num, num
from nctui.tui.state import RunState, View

STATE_STYLES = {
    "waiting": ("…", "dim"),
    "running": ("●", "#5fafff"),
    "paused": ("❚❚", "bold #ffd700"),
    "stopping": ("■", "bold #ffd700"),
    "completed": ("✔", "bold #5fd75f"),
    "ended": ("■", "#afafaf"),
    "stopped": ("■", "#afafaf"),
    "empty": ("∅", "dim"),
    "diverged": ("✖", "bold #ff5f5f"),
    "failed": ("✖", "bold #ff5f5f"),
}
MODE_STYLES = {"replay": "bold reverse #d75fd7", "following": "bold reverse #5fd7d7"}


def steps_per_second(state: RunState) -> float | None:
    """Optimizer steps per second: samples/s over the batch size, else from the last two step records."""
    steps = state.steps
    if not steps:
        return None
    rate, batch = num(steps[-1].samples_per_s), num(state.config("train", "batch_size"))
    if rate is not None and batch:
        return rate / batch
    if len(steps) >= 2:
        a, b = steps[-2], steps[-1]
        dt = (num(b.elapsed) or 0.0) - (num(a.elapsed) or 0.0)
        return (b.step - a.step) / dt if dt > 0 else None
    return None


def eta(state: RunState) -> float | None:
    """Seconds left at the pace of the steps done so far in this segment."""
    start, step, elapsed = state.start, state.step, state.elapsed
    if start is None or step is None or not elapsed:
        return None
    total, first = num(start.total_steps), num(start.resumed_from) or 0.0
    done = step - first
    if total is None or done <= 0 or step >= total:
        return None
    return elapsed * (total - step) / done


def describe(state: RunState) -> str:
    """dataset · model · WD · device, from the start record."""
    start = state.start
    if start is None:
        return ""
    parts = [start.dataset, start.model]
    wd = num(state.config("train", "weight_decay"))
    if wd is not None:
        parts.append(f"WD {fmt_num(wd)}")
    parts.append(start.device)
    return " · ".join(str(p) for p in parts if p)


def status_text(state: RunState) -> Text:
    """The run state in its colour, with the reason when it went wrong."""
    status = state.status
    glyph, style = STATE_STYLES.get(status, ("?", "dim"))
    text = Text(f"{glyph} {status}", style=style)
    reason = state.end.reason if state.end is not None else state.feed_error
    if status in ("diverged", "failed", "stopped") and reason:
        text.append(f": {reason}", style=style if status != "stopped" else "dim")
    return text


def header_items(state: RunState, mode: str) -> tuple[list[Text], int | None]:
    """The header line's items in reading order, and the index of the one that may be cut
    short to keep them on one line (the description)."""
    items = [Text("nctui", style="bold #5fafff")]
    shrink = None
    if mode in MODE_STYLES:
        items.append(Text(f" {mode} ", style=MODE_STYLES[mode]))
    if state.start is not None:
        items.append(Text(state.start.run, style="bold"))
        shrink = len(items)
        items.append(Text(describe(state), style="dim"))
    items.append(status_text(state))
    if state.start is not None:
        latest = state.latest_step or state.latest_eval
        epoch = num(latest.epoch) if latest is not None else None
        shown = "–" if epoch is None else str(math.floor(epoch))
        items.append(Text.assemble(("ep ", "dim"), f"{shown}/{state.start.epochs}"))
    items.append(Text.assemble(("step ", "dim"), fmt_int(state.step)))
    if state.status == "running":
        items.append(Text.assemble(fmt_num(steps_per_second(state)), (" it/s", "dim")))
    finished = state.end is not None or state.feed_done
    clock = Text(fmt_duration(state.elapsed))
    if not finished and eta(state) is not None:
        clock.append_text(Text.assemble((" / ETA ", "dim"), fmt_duration(eta(state))))
    items.append(clock)
    return items, shrink


class PaneBar(Widget):
    """One line of pane names; the active one highlighted; click to switch."""

    class Selected(Message):
        """The user clicked a pane name."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, titles: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.titles = list(titles)
        self.active = 0

    def select(self, index: int) -> None:
        self.active = index
        self.refresh()

    def _labels(self) -> list[str]:
        return [f" {i + 1} {title} " for i, title in enumerate(self.titles)]

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        for i, label in enumerate(self._labels()):
            out.append(label, style="bold reverse" if i == self.active else "dim")
            out.append(" ")
        return out

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        x = 0
        for i, label in enumerate(self._labels()):
            if offset is not None and x <= offset.x < x + len(label):
                self.post_message(self.Selected(i))
                return
            x += len(label) + 1


def timeline(view: View, mode: str, width: int) -> Text:
    """`eval i/n · step · epoch · elapsed` and a track with a tick per evaluation."""
    evals, index = view.state.evals, view.index
    if index is None:
        return Text("no evaluations yet", style="dim")
    ev = evals[index]
    where = "following newest" if view.cursor is None and mode != "replay" else f"eval {index + 1}/{len(evals)}"
    head = Text.assemble(("◀ ", "dim"), (where, "bold"), (" ▶", "dim"),
                         ("  step ", "dim"), fmt_int(ev.step), (" · ep ", "dim"), fmt_num(ev.epoch),
                         (" · ", "dim"), fmt_duration(ev.elapsed), "  ")
    track_w = width - head.cell_len - 2
    if track_w < 6:
        return head
    first, last = min(e.step for e in evals), max(e.step for e in evals)
    span = (last - first) or 1
    track = ["─"] * track_w
    for e in evals:
        track[round((e.step - first) / span * (track_w - 1))] = "┼"
    pos = round((ev.step - first) / span * (track_w - 1))
    head.append("├", style="dim")
    head.append("".join(track[:pos]), style="dim")
    head.append("●", style="bold #ffd700")
    head.append("".join(track[pos + 1:]), style="dim")
    head.append("┤", style="dim")
    return head


class Timeline(Widget):
    """The replay/scrub line under the header."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: View | None = None
        self.mode = "live"

    def show(self, view: View, mode: str) -> None:
        self.view, self.mode = view, mode
        self.refresh()

    def render(self) -> Text:
        if self.view is None:
            return Text("")
        return timeline(self.view, self.mode, self.content_size.width)
