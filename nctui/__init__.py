"""nctui: watch neural collapse, low-rank bias, SGD noise and norm bounds while a classifier trains."""

from __future__ import annotations

__version__ = "0.1.0"
