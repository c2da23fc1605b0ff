"""Low-rank bias: normalized singular spectra of the weight matrices.

SGD with weight decay drives the weight matrices towards low rank (Galanti, Siegel, Gupte &
Poggio 2022); these are the numbers that show it, on s = singular values of W / ||W||_F.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._host import finite, host_list, host_scalars


def spectrum(weight: Tensor, num_classes: int, rank_tol: float = 1e-3) -> dict:
    """Normalized spectrum of a layer (a conv kernel reshaped to out x (in * kh * kw)).

    Keys: `sv` (s descending, sum s_i^2 = 1), `rank` (number of s_i > rank_tol), `stable_rank`
    (||W||_F^2 / ||W||_2^2 = 1 / s_1^2), `effective_rank` (Roy & Vetterli 2007: exp of the
    entropy of p_i = s_i / sum s), `top_c_energy` (sum of s_i^2 over the top C), `fro_norm`
    (rho_k = ||W||_F). An all-zero weight has sv zeros, rank 0 and the ratios None; a
    non-finite one has sv and rank None too.
    """
    w = weight.detach().reshape(weight.shape[0], -1).to(torch.float64)
    fro = finite(torch.linalg.matrix_norm(w))
    if not fro:
        k = min(w.shape)
        undefined = dict.fromkeys(["stable_rank", "effective_rank", "top_c_energy"])
        if fro is None:
            return {"sv": [None] * k, "rank": None, **undefined, "fro_norm": None}
        return {"sv": [0.0] * k, "rank": 0, **undefined, "fro_norm": 0.0}
    s = torch.linalg.svdvals(w / fro)
    p = s / s.sum()
    scalars = host_scalars(
        {
            "rank": (s > rank_tol).sum(),
            "stable_rank": 1 / s[0] ** 2,
            "effective_rank": torch.exp(-torch.special.xlogy(p, p).sum()),
            "top_c_energy": s[:num_classes].square().sum(),
        }
    )
    return {"sv": host_list(s), **scalars, "rank": int(scalars["rank"]), "fro_norm": fro}


def rank_ceiling(batch_size: int, positions: int, lr: float, weight_decay: float, eps: float) -> float | None:
    """B * m * log(2 / eps) / (lr * weight_decay): the rank that the unrolled SGD + WD update can
    hold (Galanti et al. 2022), m = positions a kernel is applied at (1 for a dense layer).
    A ceiling, not a prediction. None when lr * weight_decay <= 0 or eps is not in (0, 2)."""
    if lr * weight_decay <= 0 or not 0 < eps < 2:
        return None
    return finite(batch_size * positions * math.log(2 / eps) / (lr * weight_decay))
