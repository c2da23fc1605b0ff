"""The runs sidebar: one line a run, in its colour and line style, with its point, seed and
status; the cursor selects one (enter opens it), space hides it from the plots, p pins it
(listed first, never filtered out); the border says the filter."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from nctui.analysis.runs import PENDING, RunData, format_value
from nctui.tui.chrome import STATE_STYLES
from nctui.tui.compare.plot import STYLE_MARKS
from nctui.tui.compare.state import CompareState

SELECTED = "on #3a3a3a"
STATUS_MARKS = {**{status: glyph for status, (glyph, _) in STATE_STYLES.items()}, PENDING: "…", "unfinished": "?"}
STATUS_COLORS = {**{status: style for status, (_, style) in STATE_STYLES.items()}, PENDING: "dim",
                 "unfinished": "#ffd700"}


def status_mark(status: str) -> Text:
    return Text(STATUS_MARKS.get(status, "?"), style=STATUS_COLORS.get(status, "dim"))


def run_line(state: CompareState, index: int, selected: bool, width: int) -> Text:
    """`▸◆■━ λ=1e-2 s1 ✔`: cursor, pin, colour (□ when hidden), style, point, seed, status."""
    run: RunData = state.runs[index]
    hidden = index in state.hidden
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("▸" if selected else " ", style="bold")
    line.append("◆" if index in state.pinned else " ", style="#ffd700")
    line.append("□" if hidden else "■", style=state.colour(run))
    if state.style_key is not None:
        line.append(STYLE_MARKS[state.style(run)], style="dim" if hidden else "")
    tail = Text.assemble(" ", status_mark(run.status))
    if len(state.seeds) > 1:
        tail = Text.assemble((f" s{format_value(run.seed)}", "dim"), tail)
    point = Text(" " + state.point_label(run), style="dim" if hidden else "bold" if selected else "")
    point.truncate(max(width - line.cell_len - tail.cell_len, 1), overflow="ellipsis")
    line.append_text(point)
    line.append(" " * max(width - line.cell_len - tail.cell_len, 0))
    line.append_text(tail)
    if selected:
        line.stylize(SELECTED)
    return line


class RunsSidebar(Widget):
    """The list of runs; it scrolls with the cursor when they do not fit."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: CompareState | None = None
        self.border_title = "runs"

    def show(self, state: CompareState) -> None:
        self.state = state
        self.border_subtitle = f"filter: {state.filter_text}" if state.filter_text else "/ filter"
        self.refresh()

    def render(self) -> Text:
        state = self.state
        if state is None:
            return Text("")
        rows = state.rows()
        if not rows:
            return Text("no run matches the filter", style="dim italic")
        width, height = self.content_size.width, max(self.content_size.height, 1)
        cursor = min(max(state.cursor, 0), len(rows) - 1)
        first = min(max(cursor - height // 2, 0), max(len(rows) - height, 0))
        shown = rows[first:first + height]
        lines = (run_line(state, i, first + k == cursor, width) for k, i in enumerate(shown))
        return Text("\n", no_wrap=True).join(lines)
