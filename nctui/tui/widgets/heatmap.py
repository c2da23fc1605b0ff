"""The C x C matrix of cosines between centred class means, on a diverging colour scale.

Collapse shows as a uniform off-diagonal at the simplex-ETF value -1/(C-1); pairs of
classes that stay alike show as warm cells. The grid adapts to the space: square cells with
class labels when they fit, two class rows per text row (upper half blocks) when short,
block averages when C is larger than the cells available (C = 100 on a laptop terminal).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual import events
from textual.widget import Widget

from nctui.tui.format import fmt_num, num

# RdBu: blue for -1, near-white for 0, red for +1.
_STOPS = ((-1.0, (33, 102, 172)), (-0.5, (103, 169, 207)), (0.0, (247, 247, 247)),
          (0.5, (239, 138, 98)), (1.0, (178, 24, 43)))
_MISSING = Style(color="#6c6c6c")
LEGEND_ROWS = 3


def diverging(value: float) -> Color:
    """Colour of a cosine in [-1, 1] (clamped)."""
    v = min(1.0, max(-1.0, value))
    for (a, ca), (b, cb) in zip(_STOPS, _STOPS[1:]):
        if v <= b:
            t = (v - a) / (b - a)
            return Color.from_rgb(*(ca[i] + (cb[i] - ca[i]) * t for i in range(3)))
    return Color.from_rgb(*_STOPS[-1][1])


@dataclass(frozen=True)
class Grid:
    """How C classes map onto cells: `block` classes per cell, `cells` cells a side."""

    block: int
    cells: int
    cell_w: int
    cell_h: int          # text rows per cell row; 0 means two cell rows per text row
    label_w: int

    @property
    def header(self) -> bool:
        return self.block == 1 and self.cell_h > 0 and self.cell_w >= 2

    def class_at(self, x: int, y: int) -> tuple[int, int] | None:
        """(row class, column class) under a content offset; None off the grid or in a cell
        that stands for several classes or shares its text row with another."""
        if self.block != 1 or self.cell_h == 0:
            return None
        row_y = y - (1 if self.header else 0)
        if row_y < 0 or x < self.label_w:
            return None
        row, col = row_y // self.cell_h, (x - self.label_w) // self.cell_w
        return (row, col) if row < self.cells and col < self.cells else None


def fit_grid(classes: int, width: int, height: int) -> Grid | None:
    """The largest readable layout of the matrix in width x height cells, None if none fits."""
    label_w = len(str(max(classes - 1, 0))) + 1
    avail_w = width - label_w
    for block in range(1, classes + 1):
        n = math.ceil(classes / block)
        if avail_w < n:
            continue
        rows_h = min(3, (height - 1) // n, avail_w // (2 * n))
        if rows_h >= 1:
            return Grid(block, n, min(2 * rows_h, avail_w // n), rows_h, label_w)
        if height * 2 >= n:
            return Grid(block, n, 1, 0, label_w)
    return None


def _block_mean(matrix: list[list[Any]], rows: range, cols: range) -> float | None:
    values = [num(matrix[i][j]) for i in rows for j in cols
              if i < len(matrix) and isinstance(matrix[i], list) and j < len(matrix[i])]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _valid_matrix(matrix: Any, classes: int) -> list[list[Any]] | None:
    if not isinstance(matrix, list) or not matrix or classes < 1:
        return None
    return matrix if all(isinstance(row, list) for row in matrix) else None


def off_diagonal(matrix: list[list[Any]]) -> list[float]:
    """The finite off-diagonal cosines."""
    values = (num(v) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j)
    return [v for v in values if v is not None]


class Heatmap(Widget):
    """Cosine heatmap with its scale, the ETF target and the value under the mouse."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self.matrix: list[list[Any]] | None = None
        self.num_classes = 0
        self.hover: tuple[int, int] | None = None
        self._grid: Grid | None = None

    def show(self, matrix: Any, classes: int | None) -> None:
        """A new cosine matrix (anything not a list of lists shows as missing)."""
        size = classes if classes else (len(matrix) if isinstance(matrix, list) else 0)
        self.num_classes = size
        self.matrix = _valid_matrix(matrix, size)
        self.refresh()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        offset = event.get_content_offset(self)
        cell = self._grid.class_at(offset.x, offset.y) if self._grid and offset else None
        if cell != self.hover:
            self.hover = cell
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self.hover is not None:
            self.hover = None
            self.refresh()

    def render(self) -> Text:
        width, height = self.content_size
        matrix, classes = self.matrix, self.num_classes
        if matrix is None:
            return Text("no cosine matrix yet", style="dim")
        legend_rows, grid = self._fit(width, height)
        self._grid = grid
        out = Text(no_wrap=True, overflow="crop")
        if grid is not None:
            out.append_text(self._grid_text(matrix, grid))
        else:
            out.append("too small for the matrix\n", style="dim")
        for line in self._legend(matrix, classes, width)[:legend_rows]:
            out.append_text(line)
            out.append("\n")
        out.rstrip()
        return out

    def _fit(self, width: int, height: int) -> tuple[int, Grid | None]:
        """Legend rows and grid: the whole legend unless dropping legend rows lets every
        class have its own cell."""
        for legend_rows in range(min(LEGEND_ROWS, max(0, height - 2)), -1, -1):
            grid = fit_grid(self.num_classes, width, height - legend_rows)
            if grid is not None and grid.block == 1:
                return legend_rows, grid
        legend_rows = min(LEGEND_ROWS, max(0, height - 2))
        return legend_rows, fit_grid(self.num_classes, width, height - legend_rows)

    def _grid_text(self, matrix: list[list[Any]], grid: Grid) -> Text:
        n, b, classes = grid.cells, grid.block, self.num_classes
        colors = [[_block_mean(matrix, range(i * b, min((i + 1) * b, classes)),
                               range(j * b, min((j + 1) * b, classes))) for j in range(n)]
                  for i in range(n)]
        out = Text()
        if grid.header:
            out.append(" " * grid.label_w)
            for j in range(n):
                out.append(str(j % 10).rjust(grid.cell_w), style="dim")
            out.append("\n")
        if grid.cell_h:
            for i in range(n):
                for line in range(grid.cell_h):
                    label = str(i * b) if line == 0 and (b == 1 or i % 2 == 0) else ""
                    out.append(label.rjust(grid.label_w - 1) + " ", style="dim")
                    for j in range(n):
                        value = colors[i][j]
                        style = _MISSING if value is None else Style(bgcolor=diverging(value))
                        out.append(" " * grid.cell_w if value is not None else "·" * grid.cell_w, style)
                    out.append("\n")
        else:
            for i in range(0, n, 2):
                out.append(str(i * b).rjust(grid.label_w - 1) + " ", style="dim")
                for j in range(n):
                    top = colors[i][j]
                    bottom = colors[i + 1][j] if i + 1 < n else None
                    out.append("▀" * grid.cell_w, Style(
                        color=diverging(top) if top is not None else None,
                        bgcolor=diverging(bottom) if bottom is not None else None))
                out.append("\n")
        return out

    def _legend(self, matrix: list[list[Any]], classes: int, width: int) -> list[Text]:
        target = -1 / (classes - 1) if classes > 1 else None
        bar_w = max(5, min(21, width - 6))
        bar = Text("−1 ", style="dim")
        target_pos = round((target + 1) / 2 * (bar_w - 1)) if target is not None else None
        for k in range(bar_w):
            color = diverging(-1 + 2 * k / (bar_w - 1))
            bar.append("│" if k == target_pos else "█",
                       Style(color="black", bgcolor=color) if k == target_pos else Style(color=color))
        bar.append(" +1", style="dim")
        stats = Text.assemble(("target −1/(C−1) ", "dim"), (fmt_num(target), "bold"))
        if self.hover is not None:
            i, j = self.hover
            value = matrix[i][j] if i < len(matrix) and j < len(matrix[i]) else None
            detail = Text.assemble(("cos(μ", "dim"), str(i), (", μ", "dim"), str(j), (") = ", "dim"),
                                   (fmt_num(value), "bold"))
        else:
            off = off_diagonal(matrix)
            spread = statistics.pstdev(off) if len(off) > 1 else None
            detail = Text.assemble(("off-diagonal ", "dim"), fmt_num(statistics.fmean(off) if off else None),
                                   (" ± ", "dim"), fmt_num(spread))
        return [bar, stats, detail]
