"""Pure math on tensors for nctui: neural collapse, spectra, SGD noise, margins and bounds.

Imports torch and the standard library only. Every scalar summary leaves as a finite Python
float or None, never NaN or inf.
"""

from __future__ import annotations

from .bounds import bound_dense, bound_local, max_pixel_energy, pixel_energy, rho_tilde, sum_sq_norm
from .geometry import (
    ClassMeans,
    WithinClass,
    alignment,
    collapse_metrics,
    layer_collapse,
    neural_collapse,
)
from .margins import margin_summary, margins
from .noise import gradient_noise, output_jitter, relative_drift, rho_jitter
from .spectra import Singular, rank_ceiling, singular, spectrum

__all__ = [
    "ClassMeans",
    "Singular",
    "WithinClass",
    "alignment",
    "bound_dense",
    "bound_local",
    "collapse_metrics",
    "gradient_noise",
    "layer_collapse",
    "margin_summary",
    "margins",
    "max_pixel_energy",
    "neural_collapse",
    "output_jitter",
    "pixel_energy",
    "rank_ceiling",
    "relative_drift",
    "rho_jitter",
    "rho_tilde",
    "singular",
    "spectrum",
    "sum_sq_norm",
]
