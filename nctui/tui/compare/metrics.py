"""The quantities compare mode offers, each a path (or two) into the evaluation records as
nctui.analysis.runs reads them; layer quantities show the mean over the hidden layers or one
layer (`l`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nctui.analysis.runs import RunData
from nctui.analysis.verdicts import gap_bound_kind
from nctui.tui.widgets.plot import Scale

LAYER = "<layer>"           # in a path: "hidden" (the mean over hidden layers) or a layer index
GAP_BOUND = "<gap bound>"   # in a path: gap_bound_local for a CNN, else gap_bound_dense (as the verdicts judge)


@dataclass(frozen=True)
class Metric:
    """One quantity to compare (or two drawn together, told apart by line style: `parts`)."""

    name: str                           # short, for the summary strip and the key list
    title: str                          # plot title (the formula where it helps)
    paths: tuple[tuple[Any, ...], ...]
    scale: Scale
    parts: tuple[str, ...] = ()         # names of the quantities when there are several
    good: str | None = "down"           # which way is better, for the strip

    @property
    def per_layer(self) -> bool:
        return any(LAYER in path for path in self.paths)

    def resolve(self, run: RunData, layer: int | None) -> list[tuple[Any, ...]]:
        """The concrete paths for one run: the layer placeholder filled in (None: hidden mean)."""
        kind = f"gap_bound_{gap_bound_kind(run.evals)}"
        return [tuple(("hidden" if layer is None else layer) if p == LAYER else kind if p == GAP_BOUND else p
                      for p in path) for path in self.paths]


METRICS: tuple[Metric, ...] = (
    Metric("NC1", "NC1  Tr(ΣW ΣB⁺)/C", (("geometry", "nc1"),), "log10"),
    Metric("rank", "rank", (("layers", LAYER, "rank"),), "log10"),
    Metric("test acc", "test accuracy", (("test", "acc"),), "linear", good="up"),
    Metric("loss", "train loss (probe)", (("train", "loss"),), "log10"),
    Metric("drift", "drift per step ‖ΔW‖/‖W‖", (("layers", LAYER, "drift"),), "log10", good=None),
    Metric("gap bound", "gap bound vs gap", (("bounds", GAP_BOUND), ("bounds", "gap")), "log2",
           parts=("bound", "gap")),
)
