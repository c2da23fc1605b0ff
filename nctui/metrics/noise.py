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


def noise_estimates(full_grad: Tensor, batch_grads: Sequence[Tensor], batch_size: int,
                    samples: int) -> tuple[Tensor, Tensor, Tensor]:
    """(mean_b ||g_b - g||^2, tr(Sigma)^, |G|^2^) as float64 scalars, for g the gradient on n =
    `samples` points drawn from the data and g_b the gradients of minibatches of B =
    `batch_size` points drawn without replacement from those same n.

    Then E ||g_b - g||^2 = (1 - B/n) S^2 / B with S^2 the n points' sample variance (divisor
    n - 1), unbiased for tr(Sigma); so tr(Sigma)^ = B mean_b ||g_b - g||^2 / (1 - B/n), and
    since E ||g||^2 = |G|^2 + tr(Sigma) / n, |G|^2^ = ||g||^2 - tr(Sigma)^ / n: both unbiased
    (McCandlish et al. 2018, App. A, for this design). ValueError unless 0 < B < n and there
    is at least one minibatch.
    """
    if not batch_grads or not 0 < batch_size < samples:
        raise ValueError(f"need minibatches of 0 < B < n, got {len(batch_grads)} of B = {batch_size}, n = {samples}")
    g = full_grad.detach().flatten()
    spread = torch.stack([_norm(b.flatten() - g) ** 2 for b in batch_grads]).mean()
    trace = batch_size * spread / (1 - batch_size / samples)
    return spread, trace, _norm(g) ** 2 - trace / samples


def gradient_noise(full_grad: Tensor, batch_grads: Sequence[Tensor], batch_size: int, samples: int) -> dict:
    """The `noise` group's gradient part: `grad_noise` = mean_b ||g_b - g||^2 / ||g||^2,
    `noise_scale` = B_simple = tr(Sigma)^ / |G|^2^ (see noise_estimates; None when |G|^2^ <= 0),
    `noise_batches` K (the number of minibatches) and `noise_samples` n.

    g is the gradient on n points, the g_b those of K minibatches of B = `batch_size` of them
    drawn without replacement from the same n. Everything None without minibatches; the two
    ratios None when g = 0.
    """
    if not batch_grads:
        return {"grad_noise": None, "noise_scale": None, "noise_batches": None, "noise_samples": None}
    spread, trace, grad_sq = noise_estimates(full_grad, batch_grads, batch_size, samples)
    ratios = host_scalars({"grad_noise": spread / _norm(full_grad) ** 2,
                           "noise_scale": trace / grad_sq if grad_sq > 0 else None})
    return {**ratios, "noise_batches": len(batch_grads), "noise_samples": samples}


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
