"""SGD noise: the fluctuation of weights, gradients and outputs that weight decay keeps alive.

With weight decay and batches smaller than the data set SGD never settles (Galanti, Siegel,
Gupte & Poggio 2022); the gradient noise scale is that of McCandlish, Kaplan, Amodei et al.,
"An Empirical Model of Large-Batch Training" (2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._host import finite, host_list, host_scalars


def _norm(x: Tensor) -> Tensor:
    """Euclidean norm of all entries, accumulated in float64."""
    return torch.linalg.vector_norm(x.detach(), dtype=torch.float64)


def relative_drift(w_now: Tensor, w_prev: Tensor, steps: int) -> float | None:
    """||W(t) - W(t')||_F / ||W(t')||_F / steps: relative weight motion per SGD step.
    None when steps <= 0 or W(t') = 0."""
    if steps <= 0:
        return None
    return finite(_norm(w_now - w_prev) / _norm(w_prev) / steps)


def gradient_noise(full_grad: Tensor, batch_grads: Sequence[Tensor], batch_size: int) -> dict:
    """`grad_noise` = mean_b ||g_b - g||^2 / ||g||^2 and `noise_scale` = B_simple = tr(Sigma) / ||G||^2.

    g (the full gradient on the evaluation set) stands in for the true gradient G, and the
    minibatch gradients g_b of size B for draws with E ||g_b - G||^2 = tr(Sigma) / B, so
    tr(Sigma) ~ B * mean_b ||g_b - g||^2 and B_simple ~ B * grad_noise (McCandlish et al. 2018,
    Appendix A, with the large batch taken as the whole evaluation set; ||g||^2 overestimates
    ||G||^2 by tr(Sigma) / N, negligible when N >> B). Both None without batch gradients or
    when g = 0.
    """
    if not batch_grads:
        return {"grad_noise": None, "noise_scale": None}
    g = full_grad.detach().flatten()
    spread = torch.stack([_norm(b.flatten() - g) ** 2 for b in batch_grads]).mean()
    ratio = spread / _norm(g) ** 2
    return host_scalars({"grad_noise": ratio, "noise_scale": batch_size * ratio})


def output_jitter(f_now: Tensor, f_prev: Tensor) -> float | None:
    """RMS of f(t) - f(t') over a fixed probe divided by the RMS of f(t) (the entry counts
    cancel, leaving a ratio of norms). None when f(t) = 0."""
    return finite(_norm(f_now - f_prev) / _norm(f_now))


def rho_jitter(rho_history: Tensor) -> list[float | None]:
    """Per layer, population std / mean of rho_k = ||W_k||_F over the T samples (T x L) taken
    since the last evaluation. None for every layer when T < 2, and for a layer of mean 0."""
    rho = rho_history.detach().to(torch.float64)
    if rho.shape[0] < 2:
        return [None] * rho.shape[1]
    return host_list(rho.std(0, correction=0) / rho.mean(0))
