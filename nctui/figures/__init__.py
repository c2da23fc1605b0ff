"""`nctui plot`: the figure families of the papers, from recorded runs (matplotlib, extra [plot]).

`draw(name, runs, group_by, metric)` returns a matplotlib Figure, so tests and notebooks can
inspect what it holds (axes scales, lines, labels); `save(figure, path)` writes it as its
suffix says (pdf, png, svg) with fixed styling and no dates. Importing this package does not
import matplotlib (the names and the errors are here); `draw` does, after `require_matplotlib()`.
"""

from __future__ import annotations

from typing import Any, Sequence

from nctui.analysis.runs import RunData
from nctui.figures.style import FORMATS, INSTALL, MissingMatplotlib, file_format, require_matplotlib, save

FIGURES = ("claims", "nc", "rank", "spectrum", "noise", "bounds", "vs-param")


class FigureError(ValueError):
    """Runs or options a figure cannot be drawn from; str() is one line saying why."""


def draw(name: str, runs: Sequence[RunData], group_by: str | None = None, metric: str | None = None) -> Any:
    """The figure `name` (one of FIGURES) of the runs, drawn in the fixed style (a matplotlib Figure)."""
    if name not in FIGURES:
        raise FigureError(f"--figure {name}: not a figure; one of {', '.join(FIGURES)}")
    if metric is not None and name != "vs-param":
        raise FigureError("--metric applies to --figure vs-param only")
    if not runs:
        raise FigureError("no run to draw")
    require_matplotlib()
    from nctui.figures import families
    from nctui.figures.style import styled

    with styled():
        if name == "vs-param":
            return families.draw_vs_param(runs, group_by, metric or "rank")
        drawer = {"claims": families.draw_claims, "nc": families.draw_nc, "rank": families.draw_rank,
                  "spectrum": families.draw_spectrum, "noise": families.draw_noise,
                  "bounds": families.draw_bounds}[name]
        return drawer(runs, group_by)


__all__ = ["FIGURES", "FORMATS", "INSTALL", "FigureError", "MissingMatplotlib", "draw", "file_format",
           "require_matplotlib", "save"]
