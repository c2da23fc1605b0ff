"""Block-character bars: a column chart of one value per class, and one-line sparklines.

Bars start at zero so equal norms (equinorm collapse) read as a flat row of equal columns.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.style import Style
from rich.text import Text

from nctui.tui.format import fmt_num, num
from nctui.tui.widgets.values import ValuesWidget

_EIGHTHS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[Any], width: int) -> str:
    """The last `width` values as block heights scaled to their own range; gaps for missing."""
    tail = [num(v) for v in values][-width:] if width > 0 else []
    finite = [v for v in tail if v is not None]
    if not finite:
        return " " * len(tail)
    low, high = min(finite), max(finite)
    span = high - low
    return "".join(" " if v is None else _EIGHTHS[1 + round((v - low) / span * 7) if span else 4]
                   for v in tail)


def _columns(values: list[float | None], width: int) -> list[float | None]:
    """Average neighbouring values until they fit in `width` columns."""
    block = max(1, math.ceil(len(values) / max(width, 1)))
    out = []
    for i in range(0, len(values), block):
        chunk = [v for v in values[i:i + block] if v is not None]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


def draw_bars(values: Sequence[Any], width: int, height: int, color: str) -> Text:
    """A column chart in width x height cells: bars from zero, class index and range below."""
    raw = [num(v) for v in values]
    finite = [v for v in raw if v is not None and v >= 0]
    if not finite or width < 1 or height < 2:
        return Text("no data yet", style="dim")
    cols = _columns(raw, width)
    bar_w = max(1, min(6, width // len(cols)))
    gap = 1 if bar_w >= 2 else 0
    bar_w -= gap
    top = max(finite) or 1.0
    rows = height - 1
    out = Text(no_wrap=True, overflow="crop")
    style = Style(color=color)
    for r in range(rows):
        floor = (rows - 1 - r) / rows
        for v in cols:
            level = 0 if v is None or v < 0 else (v / top - floor) * rows
            out.append(_EIGHTHS[min(8, max(0, int(level * 8)))] * bar_w, style)
            out.append(" " * gap)
        out.append("\n")
    out.append(f"min {fmt_num(min(finite))}  max {fmt_num(max(finite))}", style="dim")
    return out


class Bars(ValuesWidget):
    """One bar per class, e.g. the norms of the centred class means."""

    def render(self) -> Text:
        return draw_bars(self.values, self.content_size.width, self.content_size.height, self.color)
