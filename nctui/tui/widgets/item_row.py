"""A row of short items that wraps between items, never inside one.

The summary strip under each pane and the header line both use it, so at 80 columns a
value is never split from its label or its trend arrow.
"""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

GAP = "  "
MIN_SHRUNK = 12


def pack(items: Sequence[Text], width: int, shrink: int | None = None) -> Text:
    """Items separated by two spaces, a new line wherever the next item would not fit.

    Item `shrink`, if given, gives way when the items overflow one line: cut short with an
    ellipsis if it keeps MIN_SHRUNK cells, else left out.
    """
    total = sum(item.cell_len for item in items) + len(GAP) * (len(items) - 1)
    if shrink is not None and total > width:
        cut = items[shrink].cell_len - (total - width)
        kept = []
        if cut >= MIN_SHRUNK:
            kept = [items[shrink].copy()]
            kept[0].truncate(cut, overflow="ellipsis")
        items = [*items[:shrink], *kept, *items[shrink + 1:]]
    out = Text(no_wrap=True, overflow="ellipsis")
    used = 0
    for item in items:
        if item.cell_len > width > 0:
            item = item.copy()
            item.truncate(width, overflow="ellipsis")
        length = item.cell_len
        if used and used + len(GAP) + length > width:
            out.append("\n")
            used = 0
        elif used:
            out.append(GAP)
            used += len(GAP)
        out.append_text(item)
        used += length
    return out


class ItemRow(Widget):
    """Items laid out by `pack`; its height follows the number of lines they need."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: list[Text] = []
        self.shrink: int | None = None

    def show(self, items: Sequence[Text], shrink: int | None = None) -> None:
        """New items (item `shrink` may be cut short, see `pack`); re-layout only when the
        number of lines changes."""
        width = self.content_size.width
        before = self._lines(width)
        self.items, self.shrink = list(items), shrink
        self.refresh(layout=self._lines(width) != before)

    def _lines(self, width: int) -> int:
        return max(1, pack(self.items, width, self.shrink).plain.count("\n") + 1)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._lines(width)

    def render(self) -> Text:
        return pack(self.items, self.content_size.width, self.shrink)
