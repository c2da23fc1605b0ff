"""Noise: with weight decay and small batches SGD never settles; this pane shows it stays."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from nctui.tui.format import fmt_num, metric
from nctui.tui.panes.base import Pane, at_eval, layer_series, plot_data, series
from nctui.tui.state import View, value_at
from nctui.tui.widgets.plot import PALETTE, Plot, layer_color

NOISE = (("grad_noise", "E‖g_b−g‖²/‖g‖²"), ("noise_scale", "B_simple"), ("output_jitter", "output jitter"))


class NoisePane(Pane):
    TITLE = "Noise"
    HELP = (
        ("drift", "‖W_k(t) − W_k(t′)‖_F / ‖W_k(t′)‖_F per step between evaluations, per layer"),
        ("grad noise", "E_b‖g_b − g‖² / ‖g‖²: minibatch gradients against the full gradient"),
        ("B_simple", "gradient noise scale tr(Σ)/‖G‖² (McCandlish et al. 2018)"),
        ("output jitter", "RMS change of f(x) on a fixed probe between evaluations / RMS f(x)"),
        ("ρ_k jitter", "std/mean of ρ_k over the steps since the last evaluation"),
    )

    def compose_body(self) -> ComposeResult:
        yield Plot("drift ‖ΔW_k‖/‖W_k‖ per step (log)", "log10", id="no-drift")
        yield Plot("gradient and output noise (log)", "log10", id="no-grad")
        yield Plot("ρ_k jitter  std/mean of ρ_k since the last eval  (log)", "log10", id="no-rho",
                   classes="secondary")

    def draw(self, view: View) -> None:
        self.query_one("#no-drift", Plot).show(plot_data(view, layer_series(view, "drift")))
        self.query_one("#no-grad", Plot).show(plot_data(view, [
            series(view, label, PALETTE[i], "noise", key) for i, (key, label) in enumerate(NOISE)
        ]))
        self.query_one("#no-rho", Plot).show(plot_data(view, layer_series(view, "rho_jitter")))

    def summary(self, view: View) -> list[Text]:
        return [
            at_eval(view),
            metric("grad noise", *view.pair("noise", "grad_noise"), good=None),
            metric("B_simple", *view.pair("noise", "noise_scale"), good=None),
            metric("output jitter", *view.pair("noise", "output_jitter"), good=None),
            per_layer(view, "drift/step", "drift"),
            per_layer(view, "ρ jitter", "rho_jitter"),
        ]


def per_layer(view: View, label: str, key: str) -> Text:
    """One strip item with a layer quantity for every layer, each in its layer colour."""
    text = Text(label, style="dim")
    for k in range(view.layer_count()):
        text.append(" ")
        text.append(fmt_num(value_at(view.current, "layers", k, key)), style=layer_color(k))
    return text
