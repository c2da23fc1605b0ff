"""Every number the UI prints goes through here, so one run reads the same on every pane.

Records may carry None (JSON null), NaN, infinities, bools or junk where a number belongs;
`num` is the single gate that turns them into a finite float or None, and the formatters
print None as an en dash.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from rich.text import Text

MISSING = "–"
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_UNITS = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def num(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, inf, bools, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def dig(value: Any, *path: str | int) -> Any:
    """Walk nested dicts/lists by keys and indices; None wherever the path does not exist."""
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def fmt_num(value: Any) -> str:
    """Compact float: 4.2e-3, 0.031, 3.14, 314, 1.02k, 3.9e13; '–' when missing."""
    x = num(value)
    if x is None:
        return MISSING
    a = abs(x)
    if a == 0:
        return "0"
    if a < 0.01 or a >= 1e12:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if a < 1:
        return f"{x:.2g}"
    for scale, unit in _UNITS:
        if a >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def fmt_int(value: Any) -> str:
    """Whole number with thousands separators: 17,353."""
    x = num(value)
    return MISSING if x is None else f"{round(x):,}"


def fmt_pct(value: Any) -> str:
    """A fraction as a percentage: 0.9876 -> 98.8%."""
    x = num(value)
    return MISSING if x is None else f"{100 * x:.1f}%"


def fmt_duration(seconds: Any) -> str:
    """Clock-style duration: 02:14, 1:02:14, 3d04h."""
    x = num(seconds)
    if x is None or x < 0:
        return MISSING
    total = int(x)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def superscript(n: int) -> str:
    """An integer in superscript digits, for axis labels such as 2¹⁰."""
    return str(n).translate(_SUPERSCRIPT)


def trend(current: Any, previous: Any, good: str | None = "down") -> Text:
    """An arrow from the previous to the current value, green when it moves the good way.

    `good` is "down" (collapse metrics, losses), "up" (accuracy, alignment) or None (no
    preferred direction: the arrow stays neutral).
    """
    cur, prev = num(current), num(previous)
    if cur is None or prev is None:
        return Text(" ")
    scale = max(abs(cur), abs(prev))
    if scale == 0 or abs(cur - prev) <= 1e-3 * scale:
        return Text("→", style="dim")
    direction = "up" if cur > prev else "down"
    arrow = "▲" if direction == "up" else "▼"
    if good is None:
        return Text(arrow, style="dim")
    return Text(arrow, style="green" if direction == good else "red")


def metric(label: str, current: Any, previous: Any = None, good: str | None = "down",
           fmt: Callable[[Any], str] = fmt_num) -> Text:
    """One summary-strip item: dim label, bold value, trend arrow."""
    text = Text.assemble((label + " ", "dim"), (fmt(current), "bold"))
    arrow = trend(current, previous, good)
    if arrow.plain.strip():
        text.append(" ")
        text.append_text(arrow)
    return text
