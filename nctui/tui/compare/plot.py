"""The compare plot: the monitor's braille plot (widgets.plot) with line styles, a legend of
its own and, for the vs-parameter view, labels at chosen x positions.

A braille cell has one colour, so runs are told apart by colour first; a second varying key
(or the second quantity of a pair, such as gap bound and gap) by line style: solid, dashed or
dotted. Dashes are made by cutting the curve into pieces at dot columns of the plot's width,
so they look the same at any zoom; a log axis interpolates in log space, where the curve is
drawn straight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from rich.text import Text

from nctui.tui.format import num
from nctui.tui.widgets.plot import (THIN_PER_COLUMN, Plot, PlotData, Scale, Series, draw_plot, thin,
                                    transform)

SOLID, DASHED, DOTTED = 0, 1, 2
STYLE_MARKS = ("━", "╍", "┈")
DASH_DOTS = 3   # a dash and the gap after it, in dot columns
LABEL_GAP = 2   # cells kept between two x labels


@dataclass(frozen=True)
class StyledSeries(Series):
    """A curve with a line style: SOLID, DASHED or DOTTED."""

    style: int = SOLID


@dataclass(frozen=True)
class Band(Series):
    """A shaded band between `points` (its lower edge) and `high`, at the same x."""

    high: Sequence[tuple[float, float | None]] = ()


def dim(color: str) -> str:
    """A colour halfway to grey: the band around a mean in the mean's hue."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*((c + 0x58) // 2 for c in (r, g, b)))


def _x_range(data: PlotData, scale: Scale, columns: int) -> tuple[float, float]:
    """The x range draw_plot will use for `data` (the drawable points, guides and marker)."""
    xs = [float(x) for s in data.series for x, y in thin(s.points, THIN_PER_COLUMN * columns)
          if num(x) is not None and transform(y, scale) is not None]
    xs += [ln.at for ln in data.lines if ln.vertical and num(ln.at) is not None]
    if data.marker is not None:
        xs.append(data.marker)
    if not xs:
        return 0.0, 1.0
    low, high = min(xs), max(xs)
    return (low - 1, high + 1) if low == high else (low, high)


def styled_points(points: Sequence[tuple[float, float | None]], style: int, scale: Scale,
                  x_low: float, x_high: float, dots: int) -> list[tuple[float, float | None]]:
    """The points of a dashed or dotted curve: sampled at every dot column between two drawable
    points, kept in dashes of DASH_DOTS columns (dotted: one dot in DASH_DOTS), None between."""
    if style == SOLID or dots < 2:
        return list(points)
    out: list[tuple[float, float | None]] = []
    for column, x, t in _columns(points, scale, x_low, (x_high - x_low) / (dots - 1)):
        y = _untransform(t, scale)
        if style == DASHED and column % (2 * DASH_DOTS) < DASH_DOTS:
            out.append((x, y))
        elif style == DASHED:
            if out and out[-1][1] is not None:
                out.append((x, None))
        elif column % DASH_DOTS == 0:
            out += [(x, y), (x, None)]
    return out


def _columns(points: Sequence[tuple[float, float | None]], scale: Scale, x_low: float, step: float):
    """(dot column, x, y on the axis' scale) at every dot column between two drawable points."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        t0, t1 = transform(y0, scale), transform(y1, scale)
        if t0 is None or t1 is None or x1 <= x0:
            continue
        for column in range(math.ceil((x0 - x_low) / step), math.floor((x1 - x_low) / step) + 1):
            x = x_low + column * step
            yield column, x, t0 + (t1 - t0) * (x - x0) / (x1 - x0)


def _untransform(t: float, scale: Scale) -> float:
    return t if scale == "linear" else 10 ** t if scale == "log10" else 2 ** t


def band_points(band: Band, scale: Scale, x_low: float, x_high: float, dots: int) -> list[tuple[float, float | None]]:
    """A band as vertical strokes from its lower to its upper edge at every other dot column."""
    if dots < 2:
        return []
    step = (x_high - x_low) / (dots - 1)
    highs = {column: t for column, _, t in _columns(band.high, scale, x_low, step)}
    out: list[tuple[float, float | None]] = []
    for column, x, low in _columns(band.points, scale, x_low, step):
        if column % 2 == 0 and column in highs:
            out += [(x, _untransform(low, scale)), (x, _untransform(highs[column], scale)), (x, None)]
    return out


def x_axis(indent: int, cols: int, x_low: float, x_high: float, labels: Sequence[tuple[float, str]]) -> Text:
    """An x axis rule with `labels` centred under their x, each dropped that would touch the one
    before."""
    chars = ["─"] * cols
    free_from = 0
    for x, label in sorted(labels):
        col = round((x - x_low) / (x_high - x_low) * (2 * cols - 1)) // 2
        start = min(max(col - len(label) // 2, 0), max(0, cols - len(label)))
        if start < free_from:
            continue
        chars[start:start + len(label)] = label[:cols - start]
        free_from = start + len(label) + LABEL_GAP
    return Text(" " * indent + "└" + "".join(chars[:cols]), style="dim")


class ComparePlot(Plot):
    """A plot of StyledSeries and Bands; `show` takes the legend markup, x labels and an empty-plot text."""

    def __init__(self, title: str = "", scale: Scale = "linear", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(title, scale, id=id, classes=classes)
        self.x_labels: list[tuple[float, str]] = []
        self.empty = "no data yet"

    def show(self, data: PlotData, title: str | None = None, legend: str = "", scale: Scale | None = None,
             x_labels: Sequence[tuple[float, str]] = (), empty: str = "no data yet") -> None:
        self.x_labels, self.empty = list(x_labels), empty
        if scale is not None:
            self.scale = scale
        super().show(data, title)
        self.border_subtitle = legend

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not any(transform(y, self.scale) is not None for s in self.data.series for _, y in s.points):
            return Text(self.empty, style="dim", justify="center")
        x_low, x_high = _x_range(self.data, self.scale, width)
        dots = 2 * max(width - 7, 2)   # the y labels take about 6 cells and the axis one
        series = [Series(s.label, band_points(s, self.scale, x_low, x_high, dots) if isinstance(s, Band)
                         else styled_points(s.points, getattr(s, "style", SOLID), self.scale, x_low, x_high, dots),
                         s.color) for s in self.data.series]
        text = draw_plot(PlotData(series, self.data.lines, self.data.marker), width, height, self.scale)
        lines = text.split("\n")
        if not self.x_labels or "└" not in lines[-1].plain:
            return text
        indent = lines[-1].plain.index("└")
        axis = x_axis(indent, width - indent - 1, x_low, x_high, self.x_labels)
        return Text("\n", no_wrap=True, overflow="crop").join([*lines[:-1], axis])
