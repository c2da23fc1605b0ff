"""Overview: the four claims, each a small plot under its verdict, with loss and accuracy below.

The verdicts come from nctui.analysis.verdicts, the code `nctui verify` runs, judged on the
evaluations up to the selected one, so scrubbing shows when each claim came to hold. A
verdict that fails is drawn as loudly as one that holds: its mark, its colour and its border.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Grid
from textual.markup import escape
from textual.widgets import Static

from nctui.analysis.verdicts import (DEFAULT_THRESHOLDS, FAILS, HOLDS, Verdict, drift_series, gap_bound_kind,
                                     gap_bound_series, judge)
from nctui.tui.format import fmt_pct, metric, num
from nctui.tui.panes.base import Pane, at_eval, plot_data, series
from nctui.tui.state import View
from nctui.tui.widgets.plot import DIM_COLOR, PALETTE, Line, Plot, Series, layer_color
from nctui.tui.widgets.item_row import ItemRow

TRAIN, TEST, BATCH = PALETTE[0], PALETTE[1], "#3a6f9f"
STATUS_COLORS = {HOLDS: "#5fd75f", FAILS: "#ff5f5f"}
PENDING_COLOR = "#8a8a8a"
GUIDE = "#5f875f"
CLAIM_PLOTS = ("ov-collapse", "ov-rank", "ov-noise", "ov-bound")   # in CLAIMS order


def status_color(verdict: Verdict) -> str:
    return STATUS_COLORS.get(verdict.status, PENDING_COLOR)


def verdict_markup(verdict: Verdict) -> str:
    """The verdict for a border subtitle: a bold mark and the line, in the status colour."""
    color = status_color(verdict)
    return f"[bold {color}]{verdict.mark}[/] [{color}]{escape(verdict.text)}[/]"


def verdict_lines(verdicts: list[Verdict]) -> Text:
    """All four verdicts, one line each (what the Overview shows when there is no room for plots)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, verdict in enumerate(verdicts):
        color = status_color(verdict)
        text.append("\n" if i else "")
        text.append(f"{verdict.mark} {verdict.claim}: ", style=f"bold {color}")
        text.append(verdict.text, style=color)
    return text


class OverviewPane(Pane):
    TITLE = "Overview"
    PLOTS_STEPS = True
    SCOPED_CSS = False
    DEFAULT_CSS = """
    OverviewPane > .claims {
        height: 1fr;
        grid-size: 2;
        grid-rows: 1fr;
    }
    OverviewPane > #ov-verdicts {
        display: none;
        height: auto;
        padding: 0 1;
    }
    Screen.-tiny OverviewPane > .claims {
        display: none;
    }
    Screen.-tiny OverviewPane > #ov-verdicts {
        display: block;
    }
    """
    HELP = tuple((v.claim, f"{about}; ✔ when {v.rule}") for v, about in zip(judge([]), (
        "NC1 = (1/C) Tr(Σ_W Σ_B⁺) of the penultimate features, from the first evaluation to the selected one",
        "rank of each hidden layer (σ_i/‖W‖_F > monitor.rank_tol); the line is C − 1",
        "‖ΔW_k‖/‖W_k‖ per step between evaluations, mean over layers",
        "gap bound (local for CNNs, else dense) against the measured gap test − train error; line at 1",
    ))) + (
        ("✔ ✗ …", "holds, fails, pending (too few evaluations yet); the same verdicts as `nctui verify`"),
        ("loss, acc", "mean square loss and accuracy on the eval probe and the test set (plots on tall screens)"),
    )

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._judged: tuple[tuple, list[Verdict]] | None = None

    def compose(self) -> ComposeResult:
        with Grid(classes="claims"):
            yield from self.compose_body()
        yield Static(id="ov-verdicts")
        yield ItemRow(classes="summary")

    def compose_body(self) -> ComposeResult:
        yield Plot("collapse  NC1 (log)", "log10", id="ov-collapse")
        yield Plot("low rank  hidden ranks (log)", "log10", id="ov-rank")
        yield Plot("noise  drift per step (log)", "log10", id="ov-noise")
        yield Plot("bound  gap bound vs gap (log₂)", "log2", id="ov-bound")
        yield Plot("square loss  mean (f(x)−y)²  (log)", "log10", id="ov-loss", classes="secondary")
        yield Plot("accuracy", "linear", id="ov-acc", classes="secondary")

    def verdicts(self, view: View) -> list[Verdict]:
        """The verdicts on the evaluations up to the selected one (recomputed when those change)."""
        state, index = view.state, view.index
        key = (state.records_version, index)
        if self._judged is None or self._judged[0] != key:
            evals = state.evals[: index + 1] if index is not None else []
            self._judged = (key, judge(evals, state.start, DEFAULT_THRESHOLDS))
        return self._judged[1]

    def draw(self, view: View) -> None:
        state, evals = view.state, view.state.evals
        verdicts = self.verdicts(view)
        collapse, low_rank, _, _ = verdicts

        first_nc1 = num(collapse.numbers.get("nc1_first"))
        target = ([Line(first_nc1 / DEFAULT_THRESHOLDS.collapse_factor, GUIDE,
                        label=f"÷{DEFAULT_THRESHOLDS.collapse_factor:g}")] if first_nc1 else [])
        self._claim(0, view, [series(view, "NC1", PALETTE[0], "geometry", "nc1")], target, verdicts)

        hidden = max(0, view.layer_count() - 1)
        classes = int(num(state.num_classes) or 0)
        ranks = [series(view, view.layer_name(k), layer_color(k), "layers", k, "rank") for k in range(hidden)]
        names = " ".join(f"[{layer_color(k)}]{escape(view.layer_name(k))}[/]" for k in range(hidden))
        c_line = [Line(classes - 1, GUIDE, label="C−1")] if classes >= 2 else []
        self._claim(1, view, ranks, c_line, verdicts, f"low rank  ranks {names or 'of hidden layers'}  (log)")

        self._claim(2, view, [Series("drift", drift_series(evals), PALETTE[2])], [], verdicts,
                    "noise  drift ‖ΔW‖/‖W‖ per step (log)")

        kind = gap_bound_kind(evals)
        bound_color, gap_color = PALETTE[3], PALETTE[0]
        self._claim(3, view, [Series(f"{kind} gap bound", gap_bound_series(evals), bound_color),
                              series(view, "gap", gap_color, "bounds", "gap")],
                    [Line(1.0, GUIDE, label="1")], verdicts,
                    f"bound  [{bound_color}]{'local ' if kind == 'local' else ''}gap bound[/] vs [{gap_color}]gap[/] (log₂)")

        self.query_one("#ov-loss", Plot).show(plot_data(view, [
            Series("batch", state.losses, BATCH),
            series(view, "train", TRAIN, "train", "loss"),
            series(view, "test", TEST, "test", "loss"),
        ]))
        self.query_one("#ov-acc", Plot).show(plot_data(view, [
            series(view, "train", TRAIN, "train", "acc"),
            series(view, "test", TEST, "test", "acc"),
        ]))
        self.query_one("#ov-verdicts", Static).update(verdict_lines(verdicts))

    def _claim(self, index: int, view: View, curves: list[Series], lines: list[Line],
               verdicts: list[Verdict], title: str | None = None) -> None:
        """Draw claim `index`'s plot with its verdict in the bottom border, the border in its colour."""
        verdict = verdicts[index]
        plot = self.query_one(f"#{CLAIM_PLOTS[index]}", Plot)
        plot.show(plot_data(view, curves, lines), title=title)
        plot.border_subtitle = verdict_markup(verdict)
        color = STATUS_COLORS.get(verdict.status)
        plot.styles.border = ("round", Color.parse(color).with_alpha(0.7) if color else Color.parse(DIM_COLOR))

    def summary(self, view: View) -> list[Text]:
        step = view.step_record
        return [
            at_eval(view),
            metric("loss", *view.pair("train", "loss")),
            metric("test loss", *view.pair("test", "loss")),
            metric("acc", *view.pair("train", "acc"), good="up", fmt=fmt_pct),
            metric("test acc", *view.pair("test", "acc"), good="up", fmt=fmt_pct),
            metric("gap", *view.pair("bounds", "gap"), fmt=fmt_pct),
            metric("ρ", *view.pair("bounds", "rho"), good=None),
            metric("lr", step.lr if step is not None else None, good=None),
            metric("batch loss", step.loss if step is not None else None),
        ]
