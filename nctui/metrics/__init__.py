"""Pure math on tensors for nctui: neural collapse, spectra, SGD noise, margins and bounds.

Imports torch and the standard library only. Every scalar summary leaves as a finite Python
float or None, never NaN or inf.
"""

from __future__ import annotations

from .bounds import (
    CONVENTIONS,
    InputEnergy,
    InputStatistics,
    authors_local_data_term,
    authors_local_log_term,
    confidence_term,
    dense_data_term,
    dense_log_term,
    gap_bound,
    local_data_term,
    local_log_term,
    norm_bounds,
    pixel_energy,
    rho_tilde,
    sum_sq_norm,
)
from .geometry import (
    ClassMeans,
    WithinClass,
    alignment,
    collapse_metrics,
    layer_collapse,
    neural_collapse,
)
from .margins import margin_error_counts, margin_summary, margins
from .noise import gradient_noise, noise_estimates, output_jitter, relative_drift, rho_jitter
from .spectra import Singular, rank_ceiling, singular, spectrum

__all__ = [
    "CONVENTIONS",
    "ClassMeans",
    "InputEnergy",
    "InputStatistics",
    "Singular",
    "WithinClass",
    "alignment",
    "authors_local_data_term",
    "authors_local_log_term",
    "collapse_metrics",
    "confidence_term",
    "dense_data_term",
    "dense_log_term",
    "gap_bound",
    "gradient_noise",
    "layer_collapse",
    "local_data_term",
    "local_log_term",
    "margin_error_counts",
    "margin_summary",
    "margins",
    "neural_collapse",
    "noise_estimates",
    "norm_bounds",
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
