"""Overview: is it training? Losses, accuracies, the learning rate and the norms rho_k."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from nctui.tui.format import fmt_pct, metric
from nctui.tui.panes.base import Pane, at_eval, layer_series, plot_data, series
from nctui.tui.state import View
from nctui.tui.widgets.plot import PALETTE, Plot, Series

TRAIN, TEST, BATCH, RHO, LR = PALETTE[0], PALETTE[1], "#3a6f9f", "#e4e4e4", PALETTE[7]


class OverviewPane(Pane):
    TITLE = "Overview"
    PLOTS_STEPS = True
    HELP = (
        ("loss", "mean square loss (f(x) − onehot(y))², per logged batch and on the eval probe/test set"),
        ("acc", "fraction classified right on the training probe and on the test set"),
        ("ρ, ρ_k", "ρ_k = ‖W_k‖_F (= |g_k| under weight norm), ρ = ∏ρ_k scales the output f = ρ f(V)"),
        ("lr", "learning rate in force"),
    )

    def compose_body(self) -> ComposeResult:
        yield Plot("square loss  mean (f(x)−y)²  (log)", "log10", id="ov-loss")
        yield Plot("accuracy", "linear", id="ov-acc")
        yield Plot("ρ = ∏ρ_k,  ρ_k = ‖W_k‖_F,  lr  (log)", "log10", id="ov-rho", classes="secondary")

    def draw(self, view: View) -> None:
        state = view.state
        self.query_one("#ov-loss", Plot).show(plot_data(view, [
            Series("batch", state.losses, BATCH),
            series(view, "train", TRAIN, "train", "loss"),
            series(view, "test", TEST, "test", "loss"),
        ]))
        self.query_one("#ov-acc", Plot).show(plot_data(view, [
            series(view, "train", TRAIN, "train", "acc"),
            series(view, "test", TEST, "test", "acc"),
        ]))
        self.query_one("#ov-rho", Plot).show(plot_data(view, [
            series(view, "ρ", RHO, "bounds", "rho"),
            *layer_series(view, "rho"),
            Series("lr", state.lrs, LR),
        ]))

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
