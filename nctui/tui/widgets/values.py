"""The base of widgets that draw one list of numbers (class-mean norms, margin quantiles)."""

from __future__ import annotations

from typing import Any, Sequence

from textual.widget import Widget


class ValuesWidget(Widget):
    """Holds a list of values and a colour; subclasses draw them in `render`."""

    def __init__(self, color: str, *, title: str = "", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self.color = color
        self.values: Sequence[Any] = ()

    def show(self, values: Any) -> None:
        """New values; anything but a list shows as missing."""
        self.values = values if isinstance(values, list) else ()
        self.refresh()
