"""The vs-hyperparameter view (`v`): the chosen quantity at the scrubbed step (or each run's
newest evaluation) against the first varying key, one line per combination of the other
keys, each point the mean over its seeds with a ± one sample standard deviation bar (`s`:
the seeds as dots). The x axis is log when the key's values are log-spaced
(analysis.runs.is_log_spaced); `g` makes the next varying key the x."""

from __future__ import annotations

import math
from typing import Any, Iterable

from textual.markup import escape

from nctui.analysis.runs import aggregate, final, format_value, group_runs, hashable, is_log_spaced, label, \
    short_key, sort_key, value_of
from nctui.tui.compare.plot import DOTTED, STYLE_MARKS, ComparePlot, StyledSeries, dim
from nctui.tui.compare.state import CompareState
from nctui.tui.compare.timeplot import metric_title
from nctui.tui.widgets.plot import PALETTE, PlotData


def param_axis(values: Iterable[Any]) -> tuple[dict[Any, float], bool]:
    """x positions of a key's values, and whether they are log10: log when the values are
    log-spaced (a single 0 among log-spaced positives sits one average step left of the
    smallest), plain numbers otherwise, and anything else evenly spaced in sorted order."""
    distinct = sorted({hashable(v) for v in values}, key=sort_key)
    numbers = [v for v in distinct if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(distinct):
        return {v: float(i) for i, v in enumerate(distinct)}, False
    positive = [v for v in numbers if v > 0]
    if is_log_spaced(positive) and len(numbers) - len(positive) <= (1 if 0 in numbers else 0):
        positions = {v: math.log10(v) for v in positive}
        if 0 in numbers:
            low, high = min(positions.values()), max(positions.values())
            positions[0] = low - (high - low) / (len(positive) - 1)
        return positions, True
    return {v: float(v) for v in numbers}, False


def vs_data(state: CompareState) -> tuple[PlotData, list[tuple[float, str]], str, str]:
    """(plot data, x labels, title, legend) of the view; no series when nothing varies."""
    metric = state.metric
    if not state.keys:
        return PlotData(), [], f"{metric_title(state)} vs a hyperparameter", ""
    x_key, others = state.keys[0], state.keys[1:]
    positions, log = param_axis(value_of(run, x_key) for run in state.runs)
    combos = sorted({tuple(hashable(value_of(r, k)) for k in others) for r in state.runs},
                    key=lambda combo: tuple(map(sort_key, combo)))
    bars: list[StyledSeries] = []
    lines: list[StyledSeries] = []
    dots: list[StyledSeries] = []
    legend_items: list[str] = []
    for combo, group in group_runs(state.visible(), others).items():
        color = PALETTE[combos.index(combo) % len(PALETTE)]
        if others:
            legend_items.append(f"[{color}]■[/] {escape(label(others, combo))}")
        for part in range(len(metric.paths)):
            means = []
            for (x,), runs in group_runs(group, [x_key]).items():
                finals = [final(run, state.paths(run)[part], state.scrub) for run in runs]
                rows = aggregate([[(0, v)] for v in finals])
                if not rows:
                    continue
                _, mean, sd, n = rows[0]
                means.append((positions[x], mean))
                if n > 1:
                    bars.append(StyledSeries("", [(positions[x], mean - sd), (positions[x], mean + sd)], dim(color)))
                if state.show_seeds:
                    dots.append(StyledSeries("", [p for v in finals if v is not None for p in ((positions[x], v),
                                                                                             (positions[x], None))],
                                             color))
            lines.append(StyledSeries(label(others, combo), sorted(means), color, part * DOTTED))
    if len(metric.parts) > 1:
        legend_items += [f"{STYLE_MARKS[i * DOTTED]} {escape(part)}" for i, part in enumerate(metric.parts)]
    if bars:
        legend_items.append("[dim]┃ ±1 sd[/]")
    if dots:
        legend_items.append("⠂ seeds")
    at = f"step {state.scrub:,}" if state.scrub is not None else "newest"
    title = f"{metric_title(state)} vs {short_key(x_key)}{' (log x)' if log else ''} · {at}"
    x_labels = [(position, format_value(value)) for value, position in positions.items()]
    return PlotData([*bars, *dots, *lines]), x_labels, title, "  ".join(legend_items)


class VsParamPane(ComparePlot):
    """The vs-hyperparameter view of compare mode."""

    def draw(self, state: CompareState) -> None:
        data, x_labels, title, legend = vs_data(state)
        empty = "nothing varies across these runs: no hyperparameter to plot against" if not state.keys \
            else "no value of this quantity yet"
        self.show(data, title, legend, state.metric.scale, x_labels, empty)
