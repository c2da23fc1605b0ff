"""The `?` sheet of compare mode: its keys and what each quantity is."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nctui.tui.compare.metrics import METRICS

KEYS = (
    (f"1-{len(METRICS)}, m / M", "choose the quantity: " + ", ".join(m.name for m in METRICS)),
    ("l / L", "layer of rank and drift: the mean of the hidden layers, then each layer"),
    ("v", "vs-hyperparameter view: the quantity at the scrubbed step against the first varying key"),
    ("g", "group by the next varying key (the colours, and the x of the vs view)"),
    ("s", "seeds: every run its own curve, or each point's mean with a ± 1 sd band"),
    ("↑ ↓ (k j)", "select a run"),
    ("enter", "open the selected run in the monitor, at the scrubbed step (c or esc comes back)"),
    ("space", "hide / show the selected run in the plots"),
    ("p", "pin the selected run: listed first, never filtered out"),
    ("/", "filter: key=value key!=value key>value key<value (>=, <=), all must hold; "
          "key: a config key or its end (weight_decay, λ), seed, name, status; empty clears"),
    ("[  ]", "move every run to the previous / next evaluation step"),
    ("home / end", "the first evaluation / back to following the newest"),
    ("?", "this help (esc closes)"),
    ("q", "quit"),
)


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold #5fafff", no_wrap=True)
    table.add_column()
    table.add_row(Text("compare mode", style="bold underline"), "")
    for key, meaning in KEYS:
        table.add_row(key, meaning)
    table.add_row("", "")
    table.add_row(Text("quantities", style="bold underline"), "")
    for number, metric in enumerate(METRICS, start=1):
        table.add_row(f"{number} {metric.name}", metric.title)
    return table


class CompareHelp(ModalScreen[None]):
    """A modal sheet over compare mode."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table())
