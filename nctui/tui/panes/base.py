"""What every pane shares: a body of plots over a summary strip, drawn from a `View`.

A pane never reads records itself; the app hands it a View when the state or the selection
changed and the pane is the visible one.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Vertical

from nctui.tui.format import fmt_int, fmt_num
from nctui.tui.state import View
from nctui.tui.widgets.plot import Line, PlotData, Series, layer_color
from nctui.tui.widgets.item_row import ItemRow


class Pane(Vertical):
    """A tab of the monitor. Subclasses give the body, the drawing and the summary items."""

    TITLE: ClassVar[str] = ""
    HELP: ClassVar[tuple[tuple[str, str], ...]] = ()   # (quantity, what it means), for `?`
    PLOTS_STEPS: ClassVar[bool] = False   # redraw for every step record, not only evaluations

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        with Grid(classes="body"):
            yield from self.compose_body()
        yield ItemRow(classes="summary")

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    def show(self, view: View) -> None:
        """Redraw every widget of the pane from the view, unless nothing it draws changed."""
        state = view.state
        key = (state.records_version, view.cursor, view.layer, self.PLOTS_STEPS and state.version)
        if key == self._shown:
            return
        self._shown = key
        self.draw(view)
        self.query_one(".summary", ItemRow).show(self.summary(view))

    def draw(self, view: View) -> None:
        raise NotImplementedError

    def summary(self, view: View) -> list[Text]:
        raise NotImplementedError


def at_eval(view: View) -> Text:
    """First strip item: which evaluation the values are from."""
    ev = view.current
    if ev is None:
        return Text("waiting for the first evaluation", style="dim italic")
    return Text.assemble(("@ step ", "dim"), (fmt_int(ev.step), "bold"),
                         (" ep ", "dim"), fmt_num(ev.epoch))


def series(view: View, label: str, color: str, group: str, *path: str | int) -> Series:
    """One quantity over all evaluations, e.g. ("geometry", "nc1")."""
    return Series(label, view.state.history(group, *path), color)


def layer_series(view: View, key: str) -> list[Series]:
    """layers[k][key] over all evaluations, one series per layer in its layer colour."""
    return [series(view, view.layer_name(k), layer_color(k), "layers", k, key)
            for k in range(view.layer_count())]


def plot_data(view: View, curves: list[Series], lines: list[Line] | None = None) -> PlotData:
    """History plot data with the scrub marker of the view."""
    return PlotData(curves, lines or [], view.marker)
