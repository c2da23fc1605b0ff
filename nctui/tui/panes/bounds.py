"""Bounds: norm-based generalization bounds against the measured test error, and the margins."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from nctui.tui.format import dig, fmt_num, fmt_pct, metric, num
from nctui.tui.panes.base import Pane, at_eval, plot_data, series
from nctui.tui.state import View, value_at
from nctui.tui.widgets.boxplot import QuantileBox
from nctui.tui.widgets.plot import PALETTE, Line, Plot

VACUOUS_LINE = "#5f875f"
GOOD = "#5fd75f"
CURVES = (("bound_dense", "dense bound"), ("bound_local", "local bound"), ("test_error", "test err"),
          ("gap", "gap"), ("rho_over_sqrt_m", "ρ/√m"))


def tightest(*bounds: object) -> float | None:
    """The smallest of the bounds that are numbers."""
    return min((b for b in map(num, bounds) if b is not None), default=None)


def non_vacuous_since(view: View) -> float | None:
    """Step of the first evaluation at which a bound is below 1."""
    dense, local = view.state.history("bounds", "bound_dense"), view.state.history("bounds", "bound_local")
    tight = ((x, tightest(d, l)) for (x, d), (_, l) in zip(dense, local))
    return next((x for x, bound in tight if bound is not None and bound < 1.0), None)


class BoundsPane(Pane):
    TITLE = "Bounds"
    HELP = (
        ("dense bound", "err_γ + (2√2/γ)(ρ̃+1)/m·(1+√(2(L log2+log C)))·√Σ‖x_i‖² + 3√(log(2(ρ̃+2)²/δ)/2m)"),
        ("local bound", "the same with kernel norms and areas for CNNs with localized kernels (shown for CNNs)"),
        ("test err, gap", "measured test error, and test error − train error"),
        ("ρ/√m", "product of the layer norms over √(training samples)"),
        ("margins", "normalized margin (f_y − max_{j≠y} f_j)/ρ: quantiles 0·5·25·50·75·95·100%; err_γ = P(m_i ≤ γ)"),
        ("vacuous", "a bound ≥ 1 says nothing; the green tick marks where it first drops below 1"),
    )

    def compose_body(self) -> ComposeResult:
        yield Plot("generalization bounds, test error, gap, ρ/√m  (log₂)", "log2", id="bo-plot")
        with Vertical(id="bo-margins", classes="secondary"):
            yield QuantileBox(PALETTE[2], id="bo-box")
            yield Static(id="bo-stats")

    def on_mount(self) -> None:
        self.query_one("#bo-margins").border_title = "normalized margins  m_i/ρ"

    def draw(self, view: View) -> None:
        curves = [series(view, label, PALETTE[i], "bounds", key) for i, (key, label) in enumerate(CURVES)]
        curves = [s for s in curves if any(y is not None for _, y in s.points)]
        lines = [Line(1.0, VACUOUS_LINE, label="1: vacuous above")]
        below = non_vacuous_since(view)
        if below is not None:
            lines.append(Line(below, GOOD, vertical=True, label="non-vacuous"))
        self.query_one("#bo-plot", Plot).show(plot_data(view, curves, lines))
        margins = view.current.margins if view.current is not None else {}
        self.query_one("#bo-box", QuantileBox).show(dig(margins, "normalized_quantiles"))
        gamma = view.state.config("monitor", "bounds", "gamma")
        self.query_one("#bo-stats", Static).update(Text.assemble(
            ("err_γ ", "dim"), (fmt_pct(dig(margins, "err_gamma")), "bold"),
            (f" (γ={fmt_num(gamma if gamma is not None else 1.0)})", "dim"),
            ("   min ", "dim"), fmt_num(dig(margins, "normalized_min")),
            ("  mean ", "dim"), fmt_num(dig(margins, "normalized_mean")),
            ("\nraw margin  min ", "dim"), fmt_num(dig(margins, "min")),
            ("  mean ", "dim"), fmt_num(dig(margins, "mean")),
        ))

    def summary(self, view: View) -> list[Text]:
        bound = tightest(*(value_at(view.current, "bounds", key) for key in ("bound_dense", "bound_local")))
        verdict = (Text("–", style="dim") if bound is None
                   else Text("non-vacuous", style=f"bold {GOOD}") if bound < 1
                   else Text("vacuous (≥ 1)", style="dim"))
        items = [at_eval(view)]
        for key, label in CURVES:
            values = view.pair("bounds", key)
            if key != "bound_local" or values[0] is not None:
                items.append(metric(label, *values, fmt=fmt_pct if key in ("test_error", "gap") else fmt_num))
        items.append(metric("err_γ", *view.pair("margins", "err_gamma"), fmt=fmt_pct))
        items.append(verdict)
        return items
