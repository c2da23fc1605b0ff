"""Norm-based generalization bounds, in the forms the authors' code evaluates.

The dense bound is that of Golowich, Rakhlin & Shamir 2018 (size-independent sample complexity
of neural networks); the local one is Galanti, Xu, Galanti & Poggio 2023, Theorem 3.2 /
Corollary 3.3, for CNNs whose kernels are localized and whose norm is that of the kernel
tensors, not of the full convolution operators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._host import finite


def _norm_bound(
    err_gamma: float | None, rho: float, m: int, gamma: float, delta: float, log_terms: float, data_norm: float
) -> float | None:
    """err_gamma + (2 sqrt 2 (rho + 1) / (gamma m)) (1 + sqrt(2 log_terms)) data_norm
    + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)): the shape both bounds share."""
    if err_gamma is None or m <= 0 or gamma <= 0 or not 0 < delta < 1 or rho < 0:
        return None
    complexity = 2 * math.sqrt(2) * (rho + 1) / (gamma * m) * (1 + math.sqrt(2 * log_terms)) * data_norm
    confidence = 3 * math.sqrt(math.log(2 * (rho + 2) ** 2 / delta) / (2 * m))
    return finite(err_gamma + complexity + confidence)


def bound_dense(
    err_gamma: float | None,
    rho_tilde: float,
    m: int,
    depth: int,
    num_classes: int,
    sum_sq_input_norm: float,
    gamma: float = 1.0,
    delta: float = 1e-3,
) -> float | None:
    """Golowich et al. 2018: err_gamma + (2 sqrt 2 / gamma) (rho~ + 1) / m
    (1 + sqrt(2 (L log 2 + log C))) sqrt(sum_i ||x_i||^2) + 3 sqrt(log(2 (rho~ + 2)^2 / delta) / (2 m)),
    rho~ the product of the Frobenius norms of the full (dense) operators (see rho_tilde).
    None where undefined (no err_gamma, m <= 0, depth or C < 1, ...)."""
    if depth < 1 or num_classes < 1 or sum_sq_input_norm < 0:
        return None
    log_terms = depth * math.log(2) + math.log(num_classes)
    return _norm_bound(err_gamma, rho_tilde, m, gamma, delta, log_terms, math.sqrt(sum_sq_input_norm))


def bound_local(
    err_gamma: float | None,
    rho: float,
    m: int,
    depth: int,
    kernel_areas: Sequence[int],
    num_classes: int,
    max_pixel_energy: float,
    gamma: float = 1.0,
    delta: float = 1e-3,
) -> float | None:
    """Galanti et al. 2023, Cor. 3.3: err_gamma + (2 sqrt 2 (rho + 1) / (gamma m))
    (1 + sqrt(2 (L log 2 + sum_{l<L} log k_l + log C))) sqrt(prod_{l<L} k_l max_j sum_i ||z_j(x_i)||^2)
    + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)), rho the product of the kernel tensors'
    Frobenius norms (the last layer: its full matrix), k_l the kernel areas of the L - 1 layers
    before the last. None where undefined."""
    if len(kernel_areas) != depth - 1:
        raise ValueError(f"{len(kernel_areas)} kernel areas given for depth {depth}: need depth - 1")
    if num_classes < 1 or max_pixel_energy < 0 or any(k < 1 for k in kernel_areas):
        return None
    log_terms = depth * math.log(2) + sum(math.log(k) for k in kernel_areas) + math.log(num_classes)
    data_norm = math.sqrt(math.prod(kernel_areas) * max_pixel_energy)
    return _norm_bound(err_gamma, rho, m, gamma, delta, log_terms, data_norm)


def rho_tilde(fro_norms: Sequence[float], positions: Sequence[int]) -> float:
    """prod_k ||W_k||_F of the full operators: a conv layer applied at n_k output positions has
    an operator of Frobenius norm ||w_k||_F sqrt(n_k) (n_k = 1 for a dense layer), as the dense
    bound of Golowich et al. 2018 needs."""
    return math.prod(f * math.sqrt(n) for f, n in zip(fro_norms, positions, strict=True))


def pixel_energy(x: Tensor) -> Tensor:
    """sum_i ||z_j(x_i)||^2 for every pixel j of a chunk x (N x Cin x H x W), z_j the vector over
    input channels, as an H x W float64 tensor on x's device: sum it over chunks, then take
    the max (Galanti et al. 2023)."""
    if x.ndim != 4:
        raise ValueError(f"expected images N x C x H x W, got shape {tuple(x.shape)}")
    return torch.sum(x.detach().square(), dim=(0, 1), dtype=torch.float64)


def max_pixel_energy(x: Tensor) -> float:
    """max_j sum_i ||z_j(x_i)||^2 over a whole (in-memory) set of images (Galanti et al. 2023)."""
    return float(pixel_energy(x).max())


def sum_sq_norm(x: Tensor) -> float:
    """sum_i ||x_i||^2 over all entries, in float64 (the data term of Golowich et al. 2018);
    additive over chunks."""
    return float(torch.sum(x.detach().square(), dtype=torch.float64))
