"""Low-rank bias: normalized singular spectra of the weight matrices.

SGD with weight decay drives the weight matrices towards low rank (Galanti, Siegel, Gupte &
Poggio 2022); these are the numbers that show it, on s = singular values of W / ||W||_F.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._host import finite, host_list, host_scalars


@dataclass(frozen=True, eq=False)
class Singular:
    """A layer's matrix W (out x in, float64) with its singular values, from `singular`.

    `values`: all min(out, in) singular values, descending, the numerically zero ones exactly 0;
    `fro_norm`: ||W||_F. Both None when W is not finite. `basis`: the Gram matrix's eigenvectors
    for the nonzero values, the left singular vectors U (out x r) when out <= in, else the right
    ones V (in x r); None when W is not finite.
    """

    matrix: Tensor
    values: Tensor | None
    fro_norm: float | None
    basis: Tensor | None

    def right(self, k: int) -> Tensor | None:
        """The right singular vectors of the top min(k, r) nonzero singular values (in x that);
        formed on demand, since V = W^T U / s costs a matmul per column and alignment reads only C.
        None when W is not finite."""
        if self.basis is None:
            return None
        top = self.basis[:, :k]
        if self.matrix.shape[0] <= self.matrix.shape[1]:
            # Row i of U^T W is s_i v_i^T. This order multiplies row-major operands: with eigh's
            # column-major U, W^T U takes a slow path (10-30x slower at 512 x 512).
            return (top.T @ self.matrix / self.values[: top.shape[1], None]).T
        return top


def singular(weight: Tensor) -> Singular:
    """The singular values and vectors of a layer (a conv kernel reshaped to out x (in * kh * kw)),
    shared by `spectrum` and `alignment` so that each layer is decomposed once per evaluation.

    One symmetric eigendecomposition of the smaller Gram matrix (W W^T or W^T W): less than half
    the cost of an SVD with vectors, no more than svdvals alone. Exact enough: its eigenvalue
    errors are ~eps64 * s_1^2, so s_i is off by ~eps64 * s_1^2 / s_i (under 1e-10 s_1 for s_i >
    1e-6 s_1), and values near 0 are resolved to ~sqrt(eps64 * max(out, in)) s_1 ~ 1e-7 s_1: the
    size of the float32 rounding of the weights themselves (which moves s by up to 6e-8 ||W||_F),
    and far below rank_tol (1e-3). Values under that, s_1 * sqrt(max(out, in) * eps64), are
    rounding noise: they are set to 0 and get no vectors (the SVD-style s_1 * max(out, in) * eps
    would keep noise directions here).
    """
    w = weight.detach().reshape(weight.shape[0], -1).to(torch.float64)
    fro = finite(torch.linalg.matrix_norm(w))
    if fro is None:
        return Singular(w, None, None, None)
    if not fro:
        return Singular(w, w.new_zeros(min(w.shape)), 0.0, w.new_zeros(min(w.shape), 0))
    eigenvalues, eigenvectors = torch.linalg.eigh(w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w)
    s = eigenvalues.flip(0).clamp(min=0).sqrt()
    keep = s > s[0] * math.sqrt(max(w.shape) * torch.finfo(torch.float64).eps)
    r = int(keep.sum())
    basis = eigenvectors[:, eigenvectors.shape[1] - r :].flip(1)
    return Singular(w, s.where(keep, 0.0), fro, basis)


def spectrum(weight: Tensor | Singular, num_classes: int, rank_tol: float = 1e-3) -> dict:
    """Normalized spectrum of a layer (a conv kernel reshaped to out x (in * kh * kw)), from the
    weight or its `singular` decomposition.

    Keys: `sv` (s descending, sum s_i^2 = 1), `rank` (number of s_i > rank_tol), `stable_rank`
    (||W||_F^2 / ||W||_2^2 = 1 / s_1^2), `effective_rank` (Roy & Vetterli 2007: exp of the
    entropy of p_i = s_i / sum s), `top_c_energy` (sum of s_i^2 over the top C), `fro_norm`
    (rho_k = ||W||_F). An all-zero weight has sv zeros, rank 0 and the ratios None; a
    non-finite one has sv and rank None too.
    """
    svd = weight if isinstance(weight, Singular) else singular(weight)
    fro = svd.fro_norm
    if not fro:
        k = min(svd.matrix.shape)
        undefined = dict.fromkeys(["stable_rank", "effective_rank", "top_c_energy"])
        if fro is None:
            return {"sv": [None] * k, "rank": None, **undefined, "fro_norm": None}
        return {"sv": [0.0] * k, "rank": 0, **undefined, "fro_norm": 0.0}
    s = svd.values / fro
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
