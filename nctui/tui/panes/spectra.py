"""Spectra: the low-rank bias of SGD + weight decay, layer by layer (Galanti et al. 2022)."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from nctui.tui.format import fmt_num, metric, num
from nctui.tui.panes.base import Pane, plot_data, series
from nctui.tui.state import View, value_at
from nctui.tui.widgets.bars import sparkline
from nctui.tui.widgets.plot import DIM_COLOR, PALETTE, Line, PlotData, Plot, Series, layer_color

RANKS = (("rank", "rank"), ("stable_rank", "stable 1/σ₁²"), ("effective_rank", "effective e^H(p)"))
TOL_COLOR = "#ff5f5f"
CLASSES_COLOR = "#5f875f"
NOT_BINDING = "not binding"


def rank_tol(view: View) -> float | None:
    """The singular-value threshold of `rank`: monitor.rank_tol in the run's config, None when
    the run does not say (no line is drawn then rather than a guessed one)."""
    tol = num(view.state.config("monitor", "rank_tol"))
    return tol if tol is not None and tol > 0 else None


def ceiling_text(view: View, k: int) -> str:
    """Layer k's rank ceiling, or "not binding" when it is >= min(out, in) (the number of its
    singular values): a ceiling above the matrix's own size says nothing (METRICS.md)."""
    ceiling = num(value_at(view.current, "layers", k, "rank_ceiling"))
    sv = value_at(view.current, "layers", k, "sv")
    if ceiling is not None and isinstance(sv, list) and sv and ceiling >= len(sv):
        return NOT_BINDING
    return fmt_num(ceiling)


def spectrum(sv: object, classes: int, color: str) -> list[Series]:
    """Singular values by index: the top C in the layer colour, the rest dimmed."""
    values = [num(v) for v in sv] if isinstance(sv, list) else []
    points = [(float(i + 1), v) for i, v in enumerate(values)]
    top = max(1, min(classes, len(points)))
    return [Series(f"top {top}", points[:top], color),
            Series("rest", points[top - 1:], DIM_COLOR)]


class SpectraPane(Pane):
    TITLE = "Spectra"
    HELP = (
        ("σ_i", "singular values of W_k/‖W_k‖_F (Σσ² = 1); red line: rank tolerance (monitor.rank_tol); top C brighter"),
        ("rank", "number of σ_i above the tolerance (monitor.rank_tol)"),
        ("stable, effective", "stable rank 1/σ₁²; effective rank exp(−Σ p log p), p = σ/Σσ"),
        ("top-C energy", "Σ_{i≤C} σ_i²: the share of the layer in a C-dimensional subspace"),
        ("ceiling", "B·m·log(2/ε)/(lr·wd): the rank SGD+WD can hold — a ceiling, not a prediction; "
                    "'not binding' when it is ≥ min(out, in)"),
        ("C−1", "the line in the rank plot: the rank of the centred class means, a simplex in C−1 dimensions"),
        ("align", "alignment of W_k's top right singular vectors with the class means of its input; 1 = aligned"),
    )

    def compose_body(self) -> ComposeResult:
        yield Plot("singular values", "log10", id="sp-sv")
        yield Plot("ranks", "log10", id="sp-rank")
        yield Static(id="sp-table", classes="secondary")

    def on_mount(self) -> None:
        self.query_one("#sp-table").border_title = "every layer"

    def draw(self, view: View) -> None:
        count, k = view.layer_count(), view.layer_index
        name = view.layer_name(k)
        tol = rank_tol(view)
        sv = value_at(view.current, "layers", k, "sv")
        classes = int(num(view.state.num_classes) or 1)
        tol_line = [Line(tol, TOL_COLOR, label=f"tol {fmt_num(tol)}")] if tol is not None else []
        self.query_one("#sp-sv", Plot).show(
            PlotData(spectrum(sv, classes, layer_color(k)), tol_line),
            title=f"σ_i/‖W‖_F  {name} {k + 1}/{max(count, 1)}  (log)")
        c_line = [Line(classes - 1, CLASSES_COLOR, label="C−1")] if classes >= 2 else []
        self.query_one("#sp-rank", Plot).show(plot_data(view, [
            series(view, label, PALETTE[i], "layers", k, key) for i, (key, label) in enumerate(RANKS)
        ], c_line), title=f"ranks of {name}  (log)")
        self.query_one("#sp-table", Static).update(self._table(view, k))

    def _table(self, view: View, selected: int) -> Table:
        """Every layer's latest ranks, with a sparkline of its rank over the evaluations."""
        table = Table(box=box.SIMPLE_HEAD, expand=True, padding=(0, 1), pad_edge=False, show_edge=False)
        for title in ("layer", "rank", "stable", "eff", "top-C E", "align", "ceiling"):
            table.add_column(title, justify="left" if title == "layer" else "right", no_wrap=True)
        table.add_column("rank over time", no_wrap=True, ratio=1)
        current, upto = view.current, (view.index or 0) + 1
        for k in range(view.layer_count()):
            history = [y for _, y in view.state.history("layers", k, "rank")[:upto]]
            style = "bold reverse" if k == selected else ""
            ceiling = ceiling_text(view, k)
            table.add_row(
                Text(view.layer_name(k), style=layer_color(k)),
                *(fmt_num(value_at(current, "layers", k, key)) for key in
                  ("rank", "stable_rank", "effective_rank", "top_c_energy", "alignment")),
                Text(ceiling, style="dim" if ceiling == NOT_BINDING else ""),
                Text(sparkline(history, 24), style=layer_color(k)),
                style=style,
            )
        return table

    def summary(self, view: View) -> list[Text]:
        count, k = view.layer_count(), view.layer_index

        def item(label: str, key: str, good: str | None = "down") -> Text:
            return metric(label, *view.pair("layers", k, key), good=good)

        return [
            Text.assemble(("layer ", "dim"), (view.layer_name(k), f"bold {layer_color(k)}"),
                          (f" {k + 1}/{max(count, 1)}", "dim")),
            item("rank", "rank"),
            item("stable", "stable_rank"),
            item("eff", "effective_rank"),
            item("top-C energy", "top_c_energy", "up"),
            item("align", "alignment", "up"),
            item("NC1", "nc1"),
            Text.assemble(("ceiling ", "dim"), (ceiling_text(view, k), "bold")),
        ]
