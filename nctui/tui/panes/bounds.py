"""Bounds: norm-based generalization bounds against what they bound, on a log2 axis, and the margins.

Two plots (METRICS.md): the gap bounds against the measured gap test − train error, and the
test-error bounds err_γ + gap bound against the test error, each with the line at 1 (above
it a bound says nothing). `a` opens the audit of the selected evaluation: every term the
bounds are made of, enough to recompute them by hand.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nctui.analysis.verdicts import gap_bound_kind
from nctui.tui.format import MISSING, dig, fmt_int, fmt_num, fmt_pct, metric, num
from nctui.tui.panes.base import Pane, at_eval, plot_data, series
from nctui.tui.state import View, value_at
from nctui.tui.widgets.boxplot import QuantileBox
from nctui.tui.widgets.plot import PALETTE, Line, Plot, Series, layer_color

VACUOUS_LINE = "#5f875f"
GOOD = "#5fd75f"
# (key in bounds, label, colour) of each plot's curves
GAP_CURVES = (("gap_bound_dense", "dense gap bound", PALETTE[3]), ("gap_bound_local", "local gap bound", PALETTE[1]),
              ("gap", "gap", PALETTE[0]), ("rho_over_sqrt_m", "ρ/√m", PALETTE[7]))
ERROR_CURVES = (("bound_dense", "dense bound", PALETTE[3]), ("bound_local", "local bound", PALETTE[1]),
                ("test_error", "test err", PALETTE[0]), ("err_gamma", "err_γ", PALETTE[2]))
FORMULA = "G = 2√2(ρ*+1)/(γm)·(1+√(2Lg))·D + 3√(log(2(ρ*+2)²/δ)/(2m)),  bound = err_γ + G"


def gap_bound_now(view: View) -> float | None:
    """The gap bound the bound claim judges (local for CNNs, else dense) at the selected evaluation."""
    kind = gap_bound_kind(view.state.evals)
    return num(value_at(view.current, "bounds", f"gap_bound_{kind}"))


def non_vacuous_since(view: View) -> float | None:
    """Step of the first evaluation at which a gap bound is below 1."""
    dense = view.state.history("bounds", "gap_bound_dense")
    local = view.state.history("bounds", "gap_bound_local")
    for (x, d), (_, lo) in zip(dense, local):
        if any(b is not None and 0 < b < 1.0 for b in (d, lo)):
            return x
    return None


def bounds_setting(view: View, key: str) -> Any:
    """gamma, delta or convention of the bounds: from the audit of the selected evaluation,
    else from the run's config (monitor.bounds.<key>); None when neither says."""
    value = value_at(view.current, "bounds", "audit", key)
    return value if value is not None else view.state.config("monitor", "bounds", key)


class BoundsPane(Pane):
    TITLE = "Bounds"
    BINDINGS = [Binding("a", "audit", "audit")]
    SCOPED_CSS = False
    DEFAULT_CSS = """
    BoundsPane #bo-plots {
        height: 1fr;
    }
    """
    HELP = (
        ("gap bound", "G = 2√2(ρ*+1)/(γm)·(1+√(2Lg))·D + 3√(log(2(ρ*+2)²/δ)/2m): test err − err_γ ≤ G w.p. 1−δ"),
        ("dense, local", "ρ* = ρ̃ (full operators, Golowich et al.) or ρ (kernel norms, CNNs only, Galanti et al.)"),
        ("gap", "measured test error − train error, what the gap bound is plotted against"),
        ("dense/local bound", "err_γ + G: bounds on the test error; err_γ = P(m_i ≤ γ) on the training set"),
        ("ρ/√m", "product of the layer norms over √(training samples)"),
        ("margins", "normalized margin (f_y − max_{j≠y} f_j)/ρ: quantiles 0·5·25·50·75·95·100% on the probe"),
        ("vacuous", "a bound ≥ 1 says nothing; the green tick marks where a gap bound first drops below 1"),
        ("a", "the audit of the selected evaluation: m, γ, δ, log and data terms, ρ and its factors"),
    )

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="bo-plots"):
            yield Plot("gap bounds vs gap (log₂)", "log2", id="bo-gap")
            yield Plot("test-error bounds vs test err (log₂)", "log2", id="bo-err")
        with Vertical(id="bo-margins", classes="secondary"):
            yield QuantileBox(PALETTE[2], id="bo-box")
            yield Static(id="bo-stats")

    def on_mount(self) -> None:
        self.query_one("#bo-margins").border_title = "normalized margins  m_i/ρ"

    def on_show(self) -> None:
        """Take the focus while shown, so that `a` (the audit) is this pane's key; focusable
        only then, or the screen's first focus would land on the hidden pane."""
        self.can_focus = True
        self.focus()

    def on_hide(self) -> None:
        self.can_focus = False

    def action_audit(self) -> None:
        """The audit of the evaluation the app has selected now (the app's `view`)."""
        view = getattr(self.app, "view", None)
        self.app.push_screen(AuditScreen(audit_table(view) if isinstance(view, View) and view.current is not None
                                         else Text("no evaluation yet", style="dim")))

    def draw(self, view: View) -> None:
        convention = bounds_setting(view, "convention")
        suffix = f" · {escape(convention)}" if isinstance(convention, str) else ""
        lines = [Line(1.0, VACUOUS_LINE, label="1: vacuous above")]
        below = non_vacuous_since(view)
        gap_lines = lines + ([Line(below, GOOD, vertical=True, label="non-vacuous")] if below is not None else [])
        self.query_one("#bo-gap", Plot).show(plot_data(view, self._curves(view, GAP_CURVES), gap_lines),
                                             title=f"gap bounds vs gap (log₂){suffix}")
        self.query_one("#bo-err", Plot).show(plot_data(view, self._curves(view, ERROR_CURVES), lines),
                                             title="test-error bounds vs test err (log₂)")
        margins = view.current.margins if view.current is not None else {}
        self.query_one("#bo-box", QuantileBox).show(dig(margins, "normalized_quantiles"))
        gamma, samples = bounds_setting(view, "gamma"), value_at(view.current, "bounds", "err_gamma_samples")
        self.query_one("#bo-stats", Static).update(Text.assemble(
            ("err_γ ", "dim"), (fmt_pct(value_at(view.current, "bounds", "err_gamma")), "bold"),
            (f" (γ={fmt_num(gamma)}, {fmt_int(samples)} training samples)", "dim"),
            ("   min ", "dim"), fmt_num(dig(margins, "normalized_min")),
            ("  mean ", "dim"), fmt_num(dig(margins, "normalized_mean")),
            ("\nraw margin  min ", "dim"), fmt_num(dig(margins, "min")),
            ("  mean ", "dim"), fmt_num(dig(margins, "mean")),
            ("   a: audit", "dim italic"),
        ))

    @staticmethod
    def _curves(view: View, curves: tuple[tuple[str, str, str], ...]) -> list[Series]:
        """The curves that have a point to draw (a dense net has no local bound)."""
        drawn = [series(view, label, color, "bounds", key) for key, label, color in curves]
        return [s for s in drawn if any(y is not None for _, y in s.points)]

    def summary(self, view: View) -> list[Text]:
        bound = gap_bound_now(view)
        verdict = (Text("–", style="dim") if bound is None or bound <= 0
                   else Text("non-vacuous", style=f"bold {GOOD}") if bound < 1
                   else Text("vacuous (≥ 1)", style="dim"))
        items = [at_eval(view)]
        for key, label, _ in GAP_CURVES + ERROR_CURVES:
            values = view.pair("bounds", key)
            if key.endswith("_local") and values[0] is None:
                continue
            items.append(metric(label, *values, fmt=fmt_pct if key in ("test_error", "gap", "err_gamma") else fmt_num))
        items.append(verdict)
        return items


def audit_table(view: View) -> Table:
    """Every term of the bounds at the selected evaluation, dense and local side by side."""
    current = view.current
    b = current.bounds if current is not None and isinstance(current.bounds, dict) else {}

    def a(key: str) -> Any:
        return dig(b, "audit", key)

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 2), show_edge=False)
    table.add_column("term", style="bold")
    table.add_column("dense", justify="right")
    table.add_column("local (CNN)", justify="right")
    table.add_column("meaning", style="dim")
    rows = (
        ("ρ*", fmt_num(b.get("rho_tilde")), fmt_num(b.get("rho")) if b.get("gap_bound_local") is not None else MISSING,
         "ρ̃ = ∏ operator norms;  ρ = ∏ kernel norms"),
        ("Lg  log term", fmt_num(a("log_term_dense")), fmt_num(a("log_term_local")), "L log 2 (+ Σ log k_l) + log C"),
        ("D  data term", fmt_num(a("data_term_dense")), fmt_num(a("data_term_local")),
         "√Σ‖x_i‖²;  √(∏k_l · max_j Σ‖z_j(x_i)‖²)"),
        ("confidence", fmt_num(a("confidence_dense")), fmt_num(a("confidence_local")), "3√(log(2(ρ*+2)²/δ)/(2m))"),
        ("G  gap bound", fmt_num(b.get("gap_bound_dense")), fmt_num(b.get("gap_bound_local")),
         "bounds test err − err_γ"),
        ("err_γ + G", fmt_num(b.get("bound_dense")), fmt_num(b.get("bound_local")), "bounds the test error"),
    )
    for row in rows:
        table.add_row(*row)

    areas = a("kernel_areas")
    rho_k = Text("ρ_k ", style="dim")
    for k in range(view.layer_count()):
        rho_k.append("  " if k else "")
        rho_k.append(view.layer_name(k), style=layer_color(k))
        rho_k.append(f" {fmt_num(value_at(current, 'layers', k, 'rho'))}")
    step = fmt_int(current.step) if current is not None else MISSING
    head = Text.assemble(("bounds audit", "bold underline"), ("  @ step ", "dim"), step,
                         ("   convention ", "dim"), (str(a("convention") or MISSING), "bold"))
    settings = Text.assemble(
        ("m ", "dim"), fmt_int(a("m")), ("   γ ", "dim"), fmt_num(a("gamma")), ("   δ ", "dim"), fmt_num(a("delta")),
        ("   L ", "dim"), fmt_int(a("num_layers")),
        ("   kernel areas ", "dim"), (", ".join(map(fmt_int, areas)) if isinstance(areas, list) and areas else MISSING),
        ("   err_γ ", "dim"), fmt_pct(b.get("err_gamma")),
        (" on ", "dim"), fmt_int(b.get("err_gamma_samples")), (" samples", "dim"),
    )
    measured = Text.assemble(
        ("test err ", "dim"), fmt_pct(b.get("test_error")), ("   train err ", "dim"), fmt_pct(b.get("train_error")),
        ("   gap ", "dim"), fmt_pct(b.get("gap")), ("   ρ ", "dim"), fmt_num(b.get("rho")),
        ("   ρ/√m ", "dim"), fmt_num(b.get("rho_over_sqrt_m")),
    )
    grid = Table.grid()
    grid.add_column()
    for part in (head, Text(""), settings, measured, rho_k,
                 Text(""), table, Text(""), Text(FORMULA, style="dim"), Text("esc closes", style="dim italic")):
        grid.add_row(part)
    return grid


class AuditScreen(ModalScreen[None]):
    """The bounds audit over the monitor (training goes on underneath)."""

    BINDINGS = [Binding("escape,a,q", "dismiss", "close")]
    DEFAULT_CSS = """
    AuditScreen {
        align: center middle;
    }
    AuditScreen > #audit {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        padding: 1 2;
        border: round $primary;
        background: $panel;
    }
    """

    def __init__(self, content: Table | Text) -> None:
        super().__init__()
        self.content = content

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="audit"):
            yield Static(self.content)
