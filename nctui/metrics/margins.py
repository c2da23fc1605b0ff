"""Classification margins, raw and normalized by rho = prod_k ||W_k||_F.

For a homogeneous network f(W; x) = rho f(V; x), so m_i / rho is the margin of the normalized
network, the quantity the norm-based bounds control (Golowich, Rakhlin & Shamir 2018; Galanti,
Xu, Galanti & Poggio 2023).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._host import finite, host_list

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def margins(logits: Tensor, y: Tensor) -> Tensor:
    """m_i = f(x_i)_{y_i} - max_{j != y_i} f(x_i)_j, one per sample (N)."""
    logits = logits.detach()
    index = y.unsqueeze(1)
    rivals = logits.scatter(1, index, float("-inf")).amax(1)
    return logits.gather(1, index).squeeze(1) - rivals


def margin_summary(m: Tensor, rho: float, quantiles: Sequence[float] = QUANTILES) -> dict:
    """`min`, `mean`, `quantiles` of the margins and the same divided by rho (`normalized_*`, None
    when rho is not positive). Everything None for an empty m."""
    m = m.detach().flatten().to(torch.float64)
    if not m.numel():
        empty = [None] * len(quantiles)
        return {"min": None, "mean": None, "quantiles": empty, "normalized_min": None,
                "normalized_mean": None, "normalized_quantiles": empty}
    q = torch.quantile(m, torch.tensor(quantiles, dtype=torch.float64, device=m.device))
    low, mean, *qs = host_list(torch.cat([m.min()[None], m.mean()[None], q]))

    def normalized(v: float | None) -> float | None:
        return finite(v / rho) if v is not None and rho > 0 else None

    return {
        "min": low,
        "mean": mean,
        "quantiles": qs,
        "normalized_min": normalized(low),
        "normalized_mean": normalized(mean),
        "normalized_quantiles": [normalized(v) for v in qs],
    }


def margin_error_counts(logits: Tensor, y: Tensor, gamma: float) -> Tensor:
    """[#{i: m_i <= gamma}, #{i: argmax_j f(x_i)_j != y_i}] of a chunk, as an int64 tensor on
    its device: integer counts that add up exactly over the chunks of a streamed training set
    (err_gamma, the empirical margin error of the bounds, and the training error)."""
    logits = logits.detach()
    within = (margins(logits, y) <= gamma).sum()
    wrong = (logits.argmax(1) != y).sum()
    return torch.stack([within, wrong]).to(torch.int64)
