"""A one-line box plot of a distribution given by its 0, 5, 25, 50, 75, 95, 100% quantiles.

Used for the normalized margins: where the box sits relative to zero (misclassified samples
have negative margins) is the story, so zero is always inside the axis.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.style import Style
from rich.text import Text

from nctui.records import QUANTILE_LEVELS
from nctui.tui.format import fmt_num, num
from nctui.tui.widgets.values import ValuesWidget

_ZERO_COLOR = "#ff5f5f"


def _place(line: list[str], pos: int, label: str) -> None:
    """Write label into line centred at pos, kept inside, not over earlier labels."""
    start = min(max(pos - len(label) // 2, 0), max(0, len(line) - len(label)))
    span = range(start, min(start + len(label), len(line)))
    if all(line[i] == " " for i in span) and (start == 0 or line[start - 1] == " "):
        for i, ch in zip(span, label):
            line[i] = ch


def draw_quantiles(quantiles: Sequence[Any], width: int, height: int, color: str) -> Text:
    """Box (25-75%), median, whiskers (5-95%), dotted tails (0-100%) and a zero tick; under
    it, when there are two rows, the extremes, the median and zero labelled."""
    q = [num(v) for v in quantiles][: len(QUANTILE_LEVELS)]
    if len(q) != len(QUANTILE_LEVELS) or any(v is None for v in q) or width < 8:
        return Text("no margins yet", style="dim")
    q = sorted(q)  # type: ignore[arg-type]
    low, high = min(q[0], 0.0), max(q[-1], 0.0)
    span = (high - low) or 1.0

    def pos(v: float) -> int:
        return round((v - low) / span * (width - 1))

    glyphs = [" "] * width
    styles: list[Style | None] = [None] * width
    paint = Style(color=color)
    for a, b, ch in ((q[0], q[1], "·"), (q[1], q[2], "─"), (q[2], q[4], "█"), (q[4], q[5], "─"),
                     (q[5], q[6], "·")):
        for i in range(pos(a), pos(b) + 1):
            glyphs[i], styles[i] = ch, paint
    glyphs[pos(q[0])] = glyphs[pos(q[6])] = "│"
    glyphs[pos(q[3])], styles[pos(q[3])] = "┃", Style(color="white", bgcolor=color, bold=True)
    zero = pos(0.0)
    if glyphs[zero] == " ":
        glyphs[zero], styles[zero] = "╎", Style(color=_ZERO_COLOR)
    out = Text(no_wrap=True, overflow="crop")
    for ch, style in zip(glyphs, styles):
        out.append(ch, style or "")
    if height < 2:
        return out
    labels = [" "] * width
    for v in (q[0], q[6], q[3]):
        _place(labels, pos(v), fmt_num(v))
    _place(labels, zero, "0")
    out.append("\n" + "".join(labels), style="dim")
    return out


class QuantileBox(ValuesWidget):
    """The box plot of one set of quantiles."""

    def render(self) -> Text:
        return draw_quantiles(self.values, self.content_size.width, self.content_size.height, self.color)
