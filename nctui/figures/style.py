"""One fixed look for every figure, and files that are the same bytes for the same runs.

matplotlib comes from the optional extra `[plot]`; `require_matplotlib` turns its absence into
a message naming the install command. Every figure is drawn and saved inside `STYLE` (fixed
rcParams: fonts, sizes, colours, the SVG id salt), and saved without a creation date, so the
same runs give the same SVG and PDF bytes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

INSTALL = 'pip install -e ".[plot]"'
FORMATS = ("pdf", "png", "svg")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")

STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.4,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "svg.hashsalt": "nctui",         # element ids from this, not from random numbers
    "svg.fonttype": "none",          # text stays text: smaller files, no embedded glyph paths
    "pdf.fonttype": 42,
    "path.simplify": True,
}
# No creation or modification date, and no matplotlib version in the file, per format.
METADATA: dict[str, dict[str, Any]] = {
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "png": {"Software": None},
}


class MissingMatplotlib(ImportError):
    """matplotlib is not installed: the message names the extra that brings it."""


def require_matplotlib() -> None:
    """Import matplotlib or raise MissingMatplotlib naming `pip install -e ".[plot]"`."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingMatplotlib(f"nctui plot needs matplotlib, from the optional extra [plot]: {INSTALL}") from None


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """The fixed rcParams, for drawing and for saving (some are read at save time)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def file_format(path: str | Path) -> str:
    """pdf, png or svg from the file's suffix; ValueError naming the choices otherwise."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"{path}: the figure's format comes from its suffix, one of "
                         + ", ".join(f".{f}" for f in FORMATS))
    return suffix


def save(figure: Any, path: str | Path) -> None:
    """Write the figure as its suffix says, without dates (OSError when the file cannot be written)."""
    kind = file_format(path)
    with styled():
        figure.savefig(path, format=kind, metadata=METADATA[kind])
