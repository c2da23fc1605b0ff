"""The `?` screen: every key, and one line for each quantity every pane shows."""

from __future__ import annotations

from typing import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nctui.tui.panes.base import Pane

KEYS = (
    ("1-5, tab, shift+tab", "switch pane (or click its name)"),
    ("p", "pause / resume training (live runs)"),
    ("s", "write a snapshot now (live runs)"),
    ("[  ]", "select the previous / next evaluation: every pane shows that moment"),
    ("home / end", "first evaluation / back to following the newest"),
    ("l / L", "next / previous layer in the Spectra pane"),
    ("?", "this help (esc closes)"),
    ("q", "stop training (final snapshot is written), then quit; q again quits at once"),
    ("ctrl+c", "the same as q, exit code 130"),
)


def help_table(panes: Sequence[type[Pane]]) -> Table:
    """Keys first, then each pane's quantities, one line each."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold #5fafff", no_wrap=True)
    table.add_column()
    table.add_row(Text("keys", style="bold underline"), "")
    for key, meaning in KEYS:
        table.add_row(key, meaning)
    for number, pane in enumerate(panes, start=1):
        table.add_row("", "")
        table.add_row(Text(f"{number} {pane.TITLE}", style="bold underline"), "")
        for name, meaning in pane.HELP:
            table.add_row(name, meaning)
    return table


class HelpScreen(ModalScreen[None]):
    """A modal help sheet over the monitor; training goes on underneath."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def __init__(self, panes: Sequence[type[Pane]]) -> None:
        super().__init__()
        self.panes = panes

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table(self.panes))
