"""Norm-based generalization bounds, split into the parts a reader needs to recompute them.

The dense bound is that of Golowich, Rakhlin & Shamir 2018 (size-independent sample complexity
of neural networks); the local one is Galanti, Xu, Galanti & Poggio 2023, Theorem 3.2 /
Corollary 3.3, for CNNs whose kernels are localized and whose norm is that of the kernel
tensors, not of the full convolution operators. Both share one shape: with probability
>= 1 - delta,

    test error - err_gamma <= G = 2 sqrt(2) (rho_* + 1) / (gamma m) (1 + sqrt(2 Lg)) D
                                  + 3 sqrt(log(2 (rho_* + 2)^2 / delta) / (2 m)),

for a complexity term rho_*, a log term Lg and a data term D. G is the "gap bound" the authors
plot; err_gamma + G bounds the test error itself.

Two conventions fix Lg, D and m. "nctui" follows the theorems. "authors" reproduces what
lianegalanti/gen's utils.py evaluates (`our_total_bound`, `golowich_total_bound`,
`max_pixel_sums`): the local log term depth * log(2 k_max) + log C, the local data term
sqrt(max over single raw [0, 1] pixel entries of sum_i x_ij^2) * prod_l s_l (s_l the kernel
side, so prod_l s_l = sqrt(prod_l k_l) for square kernels), and an m that may differ from the
number of images the data terms sum over (their code uses 50 000 for MNIST's 60 000). Their
code has no gamma (it is 1); both conventions here divide the complexity by gamma.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._host import finite

CONVENTIONS = ("nctui", "authors")


# --- the parts of one bound ------------------------------------------------------------------


def confidence_term(rho_star: float, m: int, delta: float) -> float | None:
    """3 sqrt(log(2 (rho_* + 2)^2 / delta) / (2 m)); None where undefined."""
    if m <= 0 or not 0 < delta < 1 or not rho_star >= 0:
        return None
    return finite(3 * math.sqrt(math.log(2 * (rho_star + 2) ** 2 / delta) / (2 * m)))


def gap_bound(rho_star: float, m: int, gamma: float, delta: float, log_term: float | None,
              data_term: float | None) -> float | None:
    """G = 2 sqrt(2) (rho_* + 1) / (gamma m) (1 + sqrt(2 Lg)) D + confidence_term(rho_*, m, delta):
    a bound on test error - err_gamma. None where undefined (m <= 0, gamma <= 0, a missing or
    non-finite part)."""
    confidence = confidence_term(rho_star, m, delta)
    if confidence is None or gamma <= 0 or log_term is None or data_term is None or log_term < 0:
        return None
    complexity = 2 * math.sqrt(2) * (rho_star + 1) / (gamma * m) * (1 + math.sqrt(2 * log_term)) * data_term
    return finite(complexity + confidence)


def dense_log_term(num_layers: int, num_classes: int) -> float:
    """Lg = L log 2 + log C (Golowich et al. 2018; the authors' `golowich_total_bound` alike)."""
    return num_layers * math.log(2) + math.log(num_classes)


def local_log_term(kernel_areas: Sequence[int], num_classes: int) -> float:
    """Lg = L log 2 + sum_{l<L} log k_l + log C, L = len(kernel_areas) + 1 (Galanti et al. 2023)."""
    return (len(kernel_areas) + 1) * math.log(2) + sum(math.log(k) for k in kernel_areas) + math.log(num_classes)


def authors_local_log_term(num_layers: int, kernel_areas: Sequence[int], num_classes: int) -> float:
    """Lg = depth log(2 k_max) + log C, depth counting every layer and k_max the largest kernel
    area: `depth * np.log(2 * max_deg) + np.log(k)` of the authors' `our_total_bound`."""
    return num_layers * math.log(2 * max(kernel_areas)) + math.log(num_classes)


def dense_data_term(sum_sq_norm: float) -> float:
    """D = sqrt(sum_i ||x_i||^2) over the training inputs as the network sees them."""
    return math.sqrt(sum_sq_norm)


def local_data_term(kernel_areas: Sequence[int], max_energy: float) -> float:
    """D = sqrt(prod_{l<L} k_l * max_j sum_i ||z_j(x_i)||^2) (Galanti et al. 2023, Cor. 3.3)."""
    return math.sqrt(math.prod(kernel_areas) * max_energy)


def authors_local_data_term(kernel_areas: Sequence[int], max_raw_entry_energy: float) -> float:
    """D = sqrt(max_pixel_sums) * prod_l s_l, s_l = sqrt(k_l) the side of a square kernel:
    `max_sum_sqrt * deg_prod` of the authors' `our_total_bound`."""
    return math.sqrt(max_raw_entry_energy) * math.prod(math.sqrt(k) for k in kernel_areas)


def rho_tilde(fro_norms: Sequence[float], positions: Sequence[int]) -> float:
    """prod_k ||W_k||_F of the full operators: a conv layer applied at n_k output positions has
    an operator of Frobenius norm ||w_k||_F sqrt(n_k) (n_k = 1 for a dense layer), as the dense
    bound of Golowich et al. 2018 needs (the authors' `eval_rho_golowich`)."""
    return math.prod(f * math.sqrt(n) for f, n in zip(fro_norms, positions, strict=True))


# --- the training set's part, streamed once ----------------------------------------------------


def pixel_energy(x: Tensor) -> Tensor:
    """sum_i ||z_j(x_i)||^2 for every pixel j of a chunk x (N x Cin x H x W), z_j the vector over
    input channels, as an H x W float64 tensor on x's device: sum it over chunks, then take
    the max (Galanti et al. 2023). Squared in float64, so exact up to the summation."""
    if x.ndim != 4:
        raise ValueError(f"expected images N x C x H x W, got shape {tuple(x.shape)}")
    return torch.sum(x.detach().to(torch.float64).square(), dim=(0, 1))


def sum_sq_norm(x: Tensor) -> float:
    """sum_i ||x_i||^2 over all entries, in float64 (the data term of Golowich et al. 2018);
    additive over chunks."""
    return float(torch.sum(x.detach().to(torch.float64).square()))


@dataclass(frozen=True)
class InputStatistics:
    """What the bounds need of the training inputs (see InputEnergy)."""

    samples: int                  # images summed over
    sum_sq_norm: float            # sum_i ||x_i||^2, inputs as the network sees them
    max_pixel_energy: float       # max_j sum_i ||z_j(x_i)||^2, z_j a pixel's vector over channels, as seen
    max_raw_entry_energy: float   # max over single (channel, pixel) entries of sum_i x_ij^2, raw pixels


class InputEnergy:
    """Streams the training inputs once, chunk by chunk, into InputStatistics.

    `mean` and `std` (per input channel) undo the normalisation the network's inputs went
    through, x_raw = x std + mean, for the authors' raw-pixel data term; None: the inputs are raw.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.mean, self.std = mean, std
        self.samples = 0
        self.total = 0.0
        self.pixels: Tensor | None = None    # H x W
        self.entries: Tensor | None = None   # Cin x H x W, raw

    def update(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected images N x C x H x W, got shape {tuple(x.shape)}")
        x64 = x.detach().to(torch.float64)
        squares = x64.square()
        pixels = squares.sum(dim=(0, 1))
        if self.mean is not None and self.std is not None:
            shape = (1, -1, 1, 1)
            mean = torch.tensor(self.mean, dtype=torch.float64, device=x.device).view(shape)
            std = torch.tensor(self.std, dtype=torch.float64, device=x.device).view(shape)
            squares = (x64 * std + mean).square()
        entries = squares.sum(dim=0)
        self.samples += x.shape[0]
        self.total += float(pixels.sum())
        self.pixels = pixels if self.pixels is None else self.pixels + pixels
        self.entries = entries if self.entries is None else self.entries + entries

    def result(self) -> InputStatistics:
        if self.pixels is None or self.entries is None:
            return InputStatistics(0, 0.0, 0.0, 0.0)
        return InputStatistics(self.samples, self.total, float(self.pixels.max()), float(self.entries.max()))


# --- the whole `bounds` group ----------------------------------------------------------------


def norm_bounds(*, convention: str, rho: float, rho_tilde: float, num_layers: int, kernel_areas: Sequence[int],
                num_classes: int, inputs: InputStatistics, m: int | None, gamma: float, delta: float,
                err_gamma: float | None, err_gamma_samples: int | None, test_error: float | None,
                train_error: float | None) -> dict:
    """The `bounds` group of an evaluation (METRICS.md), with the `audit` that recomputes it.

    `kernel_areas`: k_l of the L - 1 layers before the last for a CNN, empty for a dense net (no
    local bound then). `m`: the sample count in the bounds; None: inputs.samples. err_gamma and
    train_error are measured on the training set (err_gamma_samples of them), test_error on the
    test set; each may be None.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown bound convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    local = bool(kernel_areas)
    if local and len(kernel_areas) != num_layers - 1:
        raise ValueError(f"{len(kernel_areas)} kernel areas given for {num_layers} layers: need one per layer but the last")
    m = inputs.samples if m is None else m
    log_dense = dense_log_term(num_layers, num_classes)
    data_dense = dense_data_term(inputs.sum_sq_norm)
    log_local = data_local = None
    if local and convention == "authors":
        log_local = authors_local_log_term(num_layers, kernel_areas, num_classes)
        data_local = authors_local_data_term(kernel_areas, inputs.max_raw_entry_energy)
    elif local:
        log_local = local_log_term(kernel_areas, num_classes)
        data_local = local_data_term(kernel_areas, inputs.max_pixel_energy)
    rho, rho_tilde = finite(rho), finite(rho_tilde)
    gap_dense = gap_bound(rho_tilde, m, gamma, delta, log_dense, data_dense) if rho_tilde is not None else None
    gap_local = gap_bound(rho, m, gamma, delta, log_local, data_local) if local and rho is not None else None

    def plus_err(gap: float | None) -> float | None:
        return finite(err_gamma + gap) if err_gamma is not None and gap is not None else None

    def confidence(rho_star: float | None) -> float | None:
        return confidence_term(rho_star, m, delta) if rho_star is not None else None

    return {
        "gap_bound_dense": gap_dense,
        "gap_bound_local": gap_local,
        "bound_dense": plus_err(gap_dense),
        "bound_local": plus_err(gap_local),
        "err_gamma": err_gamma,
        "err_gamma_samples": err_gamma_samples,
        "test_error": test_error,
        "train_error": train_error,
        "gap": finite(test_error - train_error) if test_error is not None and train_error is not None else None,
        "rho": rho,
        "rho_tilde": rho_tilde,
        "rho_over_sqrt_m": finite(rho / math.sqrt(m)) if rho is not None and m > 0 else None,
        "audit": {
            "convention": convention,
            "m": m,
            "gamma": gamma,
            "delta": delta,
            "num_layers": num_layers,
            "kernel_areas": list(kernel_areas),
            "log_term_dense": finite(log_dense),
            "log_term_local": finite(log_local),
            "data_term_dense": finite(data_dense),
            "data_term_local": finite(data_local),
            "confidence_dense": confidence(rho_tilde),
            "confidence_local": confidence(rho) if local else None,
        },
    }
