"""Geometry: neural collapse of the penultimate features (NC1-NC4, Papyan et al. 2020)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from nctui.tui.format import metric
from nctui.tui.panes.base import Pane, at_eval, plot_data, series
from nctui.tui.state import View, value_at
from nctui.tui.widgets.bars import Bars
from nctui.tui.widgets.heatmap import Heatmap
from nctui.tui.widgets.plot import PALETTE, Plot

# (key, label) of the NC2-NC4 family, in drawing order.
FAMILY = (
    ("nc2_etf_error", "ETF err"),
    ("nc2_equinorm_m", "equinorm μ"),
    ("nc2_equinorm_w", "equinorm w"),
    ("nc2_equiangular", "equiangular"),
    ("nc3", "NC3"),
    ("nc4", "NC4"),
)


class GeometryPane(Pane):
    TITLE = "Geometry"
    HELP = (
        ("NC1", "(1/C) Tr(Σ_W Σ_B⁺): within-class spread against between-class spread → 0"),
        ("tr ratio, CDNV", "Tr Σ_W / Tr Σ_B; mean class-distance-normalized variance → 0"),
        ("ETF err", "‖M̃ᵀM̃/‖M̃ᵀM̃‖_F − (I − 11ᵀ/C)/√(C−1)‖_F: distance of the class means from a simplex ETF"),
        ("equinorm, equiangular", "std/mean of ‖μ_c − μ_G‖ and of ‖w_c‖; mean |cos + 1/(C−1)| → 0"),
        ("NC3, NC4", "‖Wᵀ/‖W‖ − M̃/‖M̃‖‖²: classifier = class means; nearest-mean ≠ argmax rate"),
        ("cosines", "cos(μ̃_c, μ̃_c') of the centred class means (point at a cell to read it); collapse: off-diagonal = −1/(C−1)"),
    )

    def compose_body(self) -> ComposeResult:
        yield Plot("NC1  Tr(Σ_W Σ_B⁺)/C  (log)", "log10", id="geo-nc1")
        yield Heatmap("class-mean cosines", id="geo-cos")
        yield Plot("NC2–NC4  (log)", "log10", id="geo-nc2", classes="secondary")
        yield Bars(PALETTE[2], title="‖μ_c − μ_G‖ per class", id="geo-norms", classes="secondary")

    def draw(self, view: View) -> None:
        self.query_one("#geo-nc1", Plot).show(plot_data(view, [
            series(view, "NC1", PALETTE[0], "geometry", "nc1"),
            series(view, "TrΣ_W/TrΣ_B", PALETTE[1], "geometry", "nc1_trace_ratio"),
            series(view, "CDNV", PALETTE[2], "geometry", "cdnv"),
        ]))
        self.query_one("#geo-nc2", Plot).show(plot_data(view, [
            series(view, label, PALETTE[i], "geometry", key) for i, (key, label) in enumerate(FAMILY)
        ]))
        self.query_one("#geo-cos", Heatmap).show(value_at(view.current, "geometry", "cosine"),
                                                 view.state.num_classes)
        self.query_one("#geo-norms", Bars).show(value_at(view.current, "geometry", "mean_norms"))

    def summary(self, view: View) -> list[Text]:
        return [
            at_eval(view),
            metric("NC1", *view.pair("geometry", "nc1")),
            *(metric(label, *view.pair("geometry", key)) for key, label in FAMILY),
            metric("CDNV", *view.pair("geometry", "cdnv")),
            metric("tr ratio", *view.pair("geometry", "nc1_trace_ratio")),
        ]
