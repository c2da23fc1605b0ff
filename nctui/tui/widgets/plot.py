"""A braille line plot: 2x4 dots per cell, linear / log10 / log2 y axes, legend in the border.

The drawing is a pure function of the series and the size (`draw_plot`), so it is cheap to
test and the widget only redraws when Textual asks for a frame while it is visible. Points
that cannot be drawn (None, NaN, inf, non-positive on a log axis) break the line instead of
raising. A long series is first thinned by a stride (a list slice, so a million points cost
almost nothing) to a few points per dot column, then reduced to at most four points per dot
column (first, min, max, last): a frame costs the same after a long run as after a short one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from rich.style import Style
from rich.text import Text
from textual.markup import escape
from textual.widget import Widget

from nctui.tui.format import fmt_num, num, superscript

Scale = Literal["linear", "log10", "log2"]
Dot = tuple[int, int]

# Series colours, chosen to stay apart on dark and light terminals.
PALETTE = ("#5fafff", "#ff8700", "#5fd75f", "#d75fd7", "#ffd75f", "#ff5f5f", "#5fd7d7", "#afafaf")
MARKER_COLOR = "#ffd700"
DIM_COLOR = "#6c6c6c"
THIN_PER_COLUMN = 4  # points per character column kept by the stride thinning
# Braille dot bits, indexed [row][column] inside one 2x4 cell.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def layer_color(k: int) -> str:
    """Colour of layer k, the same on every pane."""
    return PALETTE[k % len(PALETTE)]


@dataclass(frozen=True)
class Series:
    """One curve: (x, y) points, y None where there is nothing to draw."""

    label: str
    points: Sequence[tuple[float, float | None]]
    color: str


@dataclass(frozen=True)
class Line:
    """A horizontal (at y) or vertical (at x) guide line drawn under the series."""

    at: float
    color: str = DIM_COLOR
    vertical: bool = False
    label: str = ""          # shown in the legend when set


@dataclass
class PlotData:
    series: list[Series] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    marker: float | None = None     # x of the scrubbed evaluation


def transform(y: float | None, scale: Scale) -> float | None:
    """y on the axis' scale; None when it cannot be shown there."""
    y = num(y)
    if y is None:
        return None
    if scale == "linear":
        return y
    if y <= 0:
        return None
    return math.log10(y) if scale == "log10" else math.log2(y)


def tick_label(t: float, scale: Scale) -> str:
    """Label of a tick at axis position t: 1e-2 / 100 on log10, 2¹⁰ on log2."""
    if scale == "linear":
        return fmt_num(t)
    if abs(t - round(t)) > 1e-9:
        return fmt_num(10 ** t if scale == "log10" else 2 ** t)
    e = int(round(t))
    if scale == "log2":
        return f"2{superscript(e)}"
    return {0: "1", 1: "10", 2: "100"}.get(e, f"1e{e}")


def _y_range(values: list[float], scale: Scale) -> tuple[float, float]:
    """The data's range on the axis; a flat series gets room around it."""
    low, high = min(values), max(values)
    if high == low:
        pad = 0.5 if scale != "linear" else (abs(high) * 0.1 or 1.0)
        return low - pad, high + pad
    return low, high


def _ticks(low: float, high: float, scale: Scale, rows: int) -> list[float]:
    """Tick positions, top first: whole exponents on log axes when two or more fall inside
    (thinned to fit), else the top, middle and bottom of the range."""
    if scale != "linear":
        ticks = [float(e) for e in range(math.ceil(low), math.floor(high) + 1)]
        if len(ticks) >= 2:
            every = max(1, math.ceil(len(ticks) / max(1, rows // 2 + 1)))
            return ticks[::-1][::every]
    if rows < 3:
        return [high]
    return [high, (low + high) / 2, low] if rows >= 5 else [high, low]


def thin(points: Sequence[tuple[float, float | None]], budget: int) -> Sequence[tuple[float, float | None]]:
    """Every k-th point (and the last) so that about `budget` remain."""
    if len(points) <= budget or budget < 1:
        return points
    stride = -(-len(points) // budget)
    return [*points[::stride], points[-1]]


def _reduce(points: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """Keep first, min, max, last y of each dot column (None gaps kept), in order."""
    out: list[tuple[int, int | None]] = []
    bucket: list[tuple[int, int]] = []

    def flush() -> None:
        if len(bucket) <= 4:
            out.extend(bucket)
        else:
            lo = min(bucket, key=lambda p: p[1])
            hi = max(bucket, key=lambda p: p[1])
            keep = sorted({0, bucket.index(lo), bucket.index(hi), len(bucket) - 1})
            out.extend(bucket[i] for i in keep)
        bucket.clear()

    for px, py in points:
        if py is None:
            flush()
            out.append((px, None))
        else:
            if bucket and bucket[-1][0] != px:
                flush()
            bucket.append((px, py))
    flush()
    return out


def _segment(x0: int, y0: int, x1: int, y1: int) -> Iterable[Dot]:
    """Dots of a straight line (Bresenham)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x1 > x0 else -1), (1 if y1 > y0 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


class _Canvas:
    """A grid of braille cells, each with its dot bits and the colour drawn last."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.bits = [[0] * width for _ in range(height)]
        self.colors: list[list[str | None]] = [[None] * width for _ in range(height)]

    def dot(self, x: int, y: int, color: str) -> None:
        if 0 <= x < self.width * 2 and 0 <= y < self.height * 4:
            row, col = y // 4, x // 2
            self.bits[row][col] |= _DOTS[y % 4][x % 2]
            self.colors[row][col] = color

    def row(self, r: int, marker_col: int | None) -> Text:
        text = Text()
        for c in range(self.width):
            bits = self.bits[r][c]
            if bits:
                text.append(chr(0x2800 + bits), Style(color=self.colors[r][c]))
            elif c == marker_col:
                text.append("│", Style(color=MARKER_COLOR))
            else:
                text.append(" ")
        return text


def draw_plot(data: PlotData, width: int, height: int, scale: Scale = "linear") -> Text:
    """Render the plot into width x height cells (y labels left, x labels on the bottom row)."""
    if width < 8 or height < 2:
        return Text("")
    curves = [
        (s, [(float(x), transform(y, scale)) for x, y in thin(s.points, THIN_PER_COLUMN * width)
             if num(x) is not None])
        for s in data.series
    ]
    ys = [y for _, pts in curves for _, y in pts if y is not None]
    if not ys:
        return Text("no data yet", style="dim", justify="center")
    xs = [x for _, pts in curves for x, y in pts if y is not None]
    xs += [ln.at for ln in data.lines if ln.vertical and num(ln.at) is not None]
    if data.marker is not None:
        xs.append(data.marker)
    guides = [transform(ln.at, scale) for ln in data.lines if not ln.vertical]
    y_low, y_high = _y_range(ys + [g for g in guides if g is not None], scale)
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1

    rows = height - 1
    ticks = _ticks(y_low, y_high, scale, rows)
    labels = {t: tick_label(t, scale) for t in ticks}
    label_width = max(len(s) for s in labels.values())
    cols = width - label_width - 1
    if cols < 2:
        return Text("")
    canvas = _Canvas(cols, rows)
    dots_w, dots_h = cols * 2, rows * 4

    def px(x: float) -> int:
        return round((x - x_low) / (x_high - x_low) * (dots_w - 1))

    def py(y: float) -> int:
        return round((y_high - y) / (y_high - y_low) * (dots_h - 1))

    for ln in data.lines:
        at = num(ln.at) if ln.vertical else transform(ln.at, scale)
        if at is None:
            continue
        if ln.vertical:
            for y in range(0, dots_h, 2):
                canvas.dot(px(at), y, ln.color)
        else:
            for x in range(0, dots_w, 2):
                canvas.dot(x, py(at), ln.color)

    for series, pts in curves:
        reduced = _reduce([(px(x), None if y is None else py(y)) for x, y in pts])
        previous: Dot | None = None
        for x, y in reduced:
            if y is None:
                previous = None
                continue
            if previous is None:
                canvas.dot(x, y, series.color)
            else:
                for dx, dy in _segment(*previous, x, y):
                    canvas.dot(dx, dy, series.color)
            previous = (x, y)

    marker_col = px(data.marker) // 2 if data.marker is not None else None
    tick_rows = {min(rows - 1, max(0, py(t) // 4)): labels[t] for t in ticks}
    out = Text(no_wrap=True, overflow="crop")
    for r in range(rows):
        label = tick_rows.get(r)
        out.append((label or "").rjust(label_width), style="dim")
        out.append("┤" if label else "│", style="dim")
        out.append_text(canvas.row(r, marker_col))
        out.append("\n")
    out.append_text(_x_axis(label_width, cols, x_low, x_high))
    return out


def _x_axis(indent: int, cols: int, low: float, high: float) -> Text:
    """The bottom row: a rule with the first, middle and last x written into it."""
    chars = ["─"] * cols
    marks = [(0, fmt_num(low), "left"), (cols - 1, fmt_num(high), "right")]
    if cols > 30:
        middle = (low + high) / 2
        if float(low).is_integer() and float(high).is_integer():   # steps, indices: whole numbers
            middle = float(math.floor(middle))
        marks.append((cols // 2, fmt_num(middle), "center"))
    for pos, label, align in marks:
        start = pos if align == "left" else pos - len(label) + 1 if align == "right" else pos - len(label) // 2
        start = min(max(start, 0), max(0, cols - len(label)))
        for i, ch in enumerate(label[: cols]):
            chars[start + i] = ch
    return Text(" " * indent + "└" + "".join(chars), style="dim")


def legend(data: PlotData) -> str:
    """Textual markup for a border subtitle: a coloured mark and the label of each series
    and of each labelled guide line."""
    marks = [(s.color, "━", s.label) for s in data.series]
    marks += [(ln.color, "┆" if ln.vertical else "┄", ln.label) for ln in data.lines]
    return "  ".join(f"[{color}]{mark}[/] {escape(label)}" for color, mark, label in marks if label)


class Plot(Widget):
    """A titled braille plot of several series; `show` replaces the data and redraws."""

    def __init__(self, title: str, scale: Scale = "linear", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.scale: Scale = scale
        self.data = PlotData()
        self.border_title = title

    def show(self, data: PlotData, title: str | None = None) -> None:
        """New data (and optionally a new title); the legend follows the series."""
        self.data = data
        if title is not None:
            self.border_title = title
        self.border_subtitle = legend(data)
        self.refresh()

    def render(self) -> Text:
        return draw_plot(self.data, self.content_size.width, self.content_size.height, self.scale)
