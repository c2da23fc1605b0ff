"""The time-series view: the chosen quantity against step, every shown point overlaid in its
colour (and line style), the seeds of a point as their mean with a band of ± one sample
standard deviation (`s`: every seed its own curve), a marker at the scrubbed step."""

from __future__ import annotations

from textual.markup import escape

from nctui.analysis.runs import aggregate, series
from nctui.tui.compare.plot import DOTTED, STYLE_MARKS, Band, ComparePlot, StyledSeries, dim
from nctui.tui.compare.state import CompareState
from nctui.tui.widgets.plot import PlotData

SCALE_NOTES = {"log10": " (log)", "log2": " (log₂)", "linear": ""}


def metric_title(state: CompareState) -> str:
    """The quantity, its layer when it has one, and its axis."""
    metric = state.metric
    title = metric.title
    if metric.per_layer:
        names = state.layer_names()
        title += " · mean of hidden layers" if state.layer is None or state.layer >= len(names) \
            else f" · {names[state.layer]}"
    return title + SCALE_NOTES[metric.scale]


def legend(state: CompareState, banded: bool) -> str:
    """Markup: a coloured square for each point colour, a line mark for each style, the band."""
    marks: dict[str, str] = {}
    keys = state.colour_keys
    for group in state.groups():
        run = group[0]
        marks.setdefault(state.colour(run), state.point_label(run, keys))
    items = [f"[{color}]■[/] {escape(text)}" for color, text in marks.items() if text]
    parts = state.metric.parts
    if len(parts) > 1:
        items += [f"{STYLE_MARKS[i * DOTTED]} {escape(part)}" for i, part in enumerate(parts)]
    elif state.style_key is not None:
        seen = {state.style(run): state.point_label(run, [state.style_key]) for run in state.visible()}
        items += [f"{STYLE_MARKS[style]} {escape(text)}" for style, text in sorted(seen.items())]
    if banded:
        items.append("[dim]▒ ±1 sd[/]")
    return "  ".join(items)


def time_data(state: CompareState) -> tuple[PlotData, bool]:
    """The curves (bands under means), and whether any point shows a band."""
    bands: list[Band] = []
    curves: list[StyledSeries] = []
    pairs = len(state.metric.parts) > 1
    for group in state.groups():
        color = state.colour(group[0])
        for part in range(len(state.metric.paths)):
            style = part * DOTTED if pairs else state.style(group[0])
            if state.show_seeds or len(group) == 1:
                curves += [StyledSeries(run.name, [(float(s), v) for s, v in series(run, state.paths(run)[part])],
                                        color, style) for run in group]
                continue
            rows = aggregate([series(run, state.paths(run)[part]) for run in group])
            means = [(float(s), m) for s, m, _, _ in rows]
            curves.append(StyledSeries(state.point_label(group[0]), means, color, style))
            if any(n > 1 for *_, n in rows):
                bands.append(Band("", [(float(s), m - sd if n > 1 else None) for s, m, sd, n in rows], dim(color),
                                  [(float(s), m + sd if n > 1 else None) for s, m, sd, n in rows]))
    marker = float(state.scrub) if state.scrub is not None else None
    return PlotData([*bands, *curves], [], marker), bool(bands)


class TimePane(ComparePlot):
    """The time-series view of compare mode."""

    def draw(self, state: CompareState) -> None:
        data, banded = time_data(state)
        title = metric_title(state)
        if banded:
            title += ", mean ± sd over seeds"
        self.show(data, title, legend(state, banded), state.metric.scale,
                  empty="no evaluation of this quantity yet" if state.visible() else "no run shown")
