"""Class-mean geometry: neural collapse NC1-NC4, per-layer collapse and alignment.

Definitions follow Papyan, Han & Donoho, PNAS 2020 (NC1-NC4), Han, Papyan & Donoho, ICLR 2022
(the same quantities under the MSE loss), Galanti et al. 2022 (class-distance normalized
variance, CDNV) and Rangamani et al., ICML 2023 (per-layer collapse, alignment). Features are
streamed in two passes (class sums, then deviations from the means) so that no p x p matrix and
no full feature set is ever held.

Classes without samples have no mean: every class-mean quantity is taken over the classes that
have samples (C is their number); their entries in the per-class arrays are None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ._host import finite, host_list, host_scalars
from .spectra import Singular, singular


BLOCK_ROWS = 1024  # rows of float64 scratch at a time on a CPU: ~4 MiB at p = 512, within cache


def _row_blocks(h: Tensor) -> list[slice]:
    """Row ranges to take a chunk in: BLOCK_ROWS on a CPU, where float64 copies of a whole chunk
    made the accumulators memory-bound (5x slower at 8192 x 512); one range on a GPU."""
    step = h.shape[0] if h.is_cuda else BLOCK_ROWS
    return [slice(start, start + step) for start in range(0, h.shape[0], max(step, 1))]


class ClassMeans:
    """Pass 1: float64 class sums and counts, giving the class means mu_c (Papyan et al. 2020)."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def update(self, h: Tensor, y: Tensor) -> None:
        """Add a chunk of features h (n x ..., flattened to n x p) with labels y (n)."""
        h = h.detach().flatten(1)
        for rows in _row_blocks(h):
            self.sums.index_add_(0, y[rows], h[rows].to(torch.float64))
        self.counts += torch.bincount(y, minlength=self.num_classes)

    def partial_sums(self) -> list[Tensor]:
        """The accumulators that add up over disjoint shards of the data (for an all-reduce)."""
        return [self.sums, self.counts]

    def means(self) -> Tensor:
        """Class means (C x p, float64); the row of a class without samples is 0."""
        return self.sums / self.counts.clamp(min=1).unsqueeze(1).to(self.sums)


def _centred(means: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """(mask of classes with samples, their centred means mu_c - mu_G as rows), with the
    unweighted global mean mu_G = (1/C) sum_c mu_c (Papyan et al. 2020)."""
    present = counts > 0
    m = means.to(torch.float64)[present]
    return present, m - m.sum(0) / max(m.shape[0], 1)


def _top_left_singular(a: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The top (at most k) left singular vectors and values of a, dropping numerically zero
    singular values (the torch.linalg.matrix_rank tolerance), so that their inverses are safe."""
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    tol = s[:1] * max(a.shape) * torch.finfo(a.dtype).eps
    keep = max(0, min(k, int((s > tol).sum())))
    return u[:, :keep], s[:keep]


class WithinClass:
    """Pass 2, given the class means: the within-class sums behind NC1, the CDNV and NC4.

    With the thin SVD M~/sqrt(C) = U S V^T restricted to its top C-1 columns, Sigma_B = U S^2 U^T
    and its pseudo-inverse is U S^-2 U^T, so Tr(Sigma_W Sigma_B^+) = (1/N) sum_i
    ||S^-1 U^T (h_i - mu_{y_i})||^2 (Papyan et al. 2020 NC1, computed without a p x p matrix).
    The accumulators are public tensors on the means' device, ready for an all-reduce. Scratch
    memory: about 2 BLOCK_ROWS p float64 values.
    """

    def __init__(self, means: Tensor, counts: Tensor) -> None:
        self.means = means.to(torch.float64)
        present, centred = _centred(self.means, counts)
        c = centred.shape[0]
        u, s = _top_left_singular(centred.T / math.sqrt(max(c, 1)), c - 1)
        self.whiten = u / s  # p x r, r <= C-1: maps a deviation d to S^-1 U^T d
        self.rank = s.shape[0]
        # ||mu_c||^2 for the nearest-mean classifier; a class without samples is never nearest.
        self._mean_sq = self.means.square().sum(1).masked_fill(~present, math.inf)
        device = self.means.device
        self.nc1_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.sq_dev = torch.zeros(means.shape[0], dtype=torch.float64, device=device)
        self.nc4_mismatch = torch.zeros((), dtype=torch.int64, device=device)
        self.nc4_seen = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, h: Tensor, y: Tensor, logits: Tensor | None = None) -> None:
        """Add a chunk: features h (n x ...), labels y (n), optionally the network's logits (n x C)."""
        h = h.detach().flatten(1)
        for rows in _row_blocks(h):
            self._update_block(h[rows], y[rows], None if logits is None else logits[rows])

    def _update_block(self, h: Tensor, y: Tensor, logits: Tensor | None) -> None:
        h = h.to(torch.float64, copy=True)
        if logits is not None:
            # ||h - mu_c||^2 = ||h||^2 - 2 h.mu_c + ||mu_c||^2; ||h||^2 is the same for every c,
            # so the nearest mean is the argmin of the last two terms (no n x C x p tensor).
            nearest = (self._mean_sq - 2 * h @ self.means.T).argmin(1)
            self.nc4_mismatch += (nearest != logits.detach().argmax(1)).sum()
            self.nc4_seen += y.shape[0]
        d = h.sub_(self.means[y])  # in place on our own copy
        self.sq_dev.index_add_(0, y, torch.linalg.vector_norm(d, dim=1).square())
        self.nc1_sum += (d @ self.whiten).square().sum()

    def partial_sums(self) -> list[Tensor]:
        """The accumulators that add up over disjoint shards of the data (for an all-reduce)."""
        return [self.nc1_sum, self.sq_dev, self.nc4_mismatch, self.nc4_seen]


def _nc1_terms(counts: Tensor, within: WithinClass, centred: Tensor) -> dict[str, Tensor | None]:
    """nc1 = (1/C) Tr(Sigma_W Sigma_B^+) and Tr Sigma_W / Tr Sigma_B, Sigma_W normalised by N
    (Papyan et al. 2020; trace ratio as in Rangamani et al. 2023)."""
    c, n = centred.shape[0], counts.sum()
    trace_b = centred.square().sum() / c
    return {
        "nc1": within.nc1_sum / (c * n) if within.rank else None,
        "nc1_trace_ratio": within.sq_dev.sum() / n / trace_b,
    }


def _coefficient_of_variation(x: Tensor) -> Tensor | None:
    """Population std / mean: the equinorm measure of Papyan et al. 2020 (NC2)."""
    return x.std(correction=0) / x.mean() if x.numel() else None


def layer_collapse(means: Tensor, counts: Tensor, within: WithinClass) -> dict[str, float | None]:
    """NC1 and its trace ratio on any layer's features (Rangamani et al. 2023)."""
    return host_scalars(_nc1_terms(counts, within, _centred(means, counts)[1]))


def collapse_metrics(
    means: Tensor, counts: Tensor, within: WithinClass, classifier: Tensor | None
) -> dict:
    """Every class-mean number nctui shows: NC1-NC4 (Papyan et al. 2020, Han et al. 2022), CDNV
    (Galanti et al. 2022), plus the cosine matrix, class-mean norms and classifier-row norms.

    Classifier-dependent keys are None without a classifier; nc4 is None when no logits were
    given to the within-class pass.
    """
    present, centred = _centred(means, counts)
    c = centred.shape[0]
    gram = centred @ centred.T
    norms = gram.diagonal().sqrt()
    cos = gram / (norms[:, None] * norms[None, :])
    scalars = _nc1_terms(counts, within, centred)
    later = ["cdnv", "nc2_equinorm_m", "nc2_equinorm_w", "nc2_equiangular", "nc2_etf_error", "nc3"]
    scalars |= dict.fromkeys(later)  # None unless defined below; keeps the documented key order
    if c >= 2:
        off = ~torch.eye(c, dtype=torch.bool, device=gram.device)
        var = within.sq_dev[present] / counts[present]
        # ||mu_i - mu_j||^2 from the Gram matrix (no C x C x p tensor), clamped against rounding.
        dist_sq = (norms[:, None] ** 2 + norms[None, :] ** 2 - 2 * gram).clamp(min=0)
        simplex = (torch.eye(c, dtype=gram.dtype, device=gram.device) - 1 / c) / math.sqrt(c - 1)
        scalars["cdnv"] = ((var[:, None] + var[None, :]) / (2 * dist_sq))[off.triu()].mean()
        scalars["nc2_equiangular"] = (cos[off] + 1 / (c - 1)).abs().mean()
        scalars["nc2_etf_error"] = torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - simplex)
    scalars["nc2_equinorm_m"] = _coefficient_of_variation(norms)
    classifier_norms = None
    if classifier is not None:
        w = classifier.detach().flatten(1).to(centred)
        w_norms = w.norm(dim=1)
        scalars["nc2_equinorm_w"] = _coefficient_of_variation(w_norms)
        if c:
            w = w[present]
            scalars["nc3"] = (w / w.norm() - centred / centred.norm()).square().sum()
        classifier_norms = host_list(w_norms)
    # 0/0 (no logits seen) is NaN, which the host conversion turns into None.
    scalars["nc4"] = within.nc4_mismatch.to(torch.float64) / within.nc4_seen
    full_cos = torch.full((counts.shape[0],) * 2, math.nan, dtype=cos.dtype, device=cos.device)
    full_cos[present[:, None] & present[None, :]] = cos.flatten()
    full_norms = torch.full((counts.shape[0],), math.nan, dtype=norms.dtype, device=norms.device)
    full_norms[present] = norms
    return host_scalars(scalars) | {
        "cosine": host_list(full_cos),
        "mean_norms": host_list(full_norms),
        "classifier_norms": classifier_norms,
    }


def _chunks(chunk: int, *tensors: Tensor | None) -> Iterator[tuple[Tensor | None, ...]]:
    """The tensors split along dim 0 into aligned chunks; a None stays None in every chunk."""
    n = next(t for t in tensors if t is not None).shape[0]
    for start in range(0, n, chunk):
        yield tuple(None if t is None else t[start : start + chunk] for t in tensors)


def neural_collapse(
    h: Tensor,
    y: Tensor,
    num_classes: int,
    classifier: Tensor | None = None,
    logits: Tensor | None = None,
    chunk: int = 4096,
) -> dict:
    """collapse_metrics on in-memory features, both passes run over chunks (tests, small sets)."""
    h = h.flatten(1)
    acc = ClassMeans(num_classes, h.shape[1], device=h.device)
    for hc, yc in _chunks(chunk, h, y):
        acc.update(hc, yc)
    means = acc.means()
    within = WithinClass(means, acc.counts)
    for hc, yc, lc in _chunks(chunk, h, y, logits):
        within.update(hc, yc, lc)
    return collapse_metrics(means, acc.counts, within, classifier)


def alignment(weight: Tensor | Singular, input_means: Tensor, num_classes: int) -> float | None:
    """Alignment of a layer with the class means of its input (Rangamani et al. 2023): the mean
    singular value of V_k[:, :C]^T U_m[:, :C], V_k the top right singular vectors of W_k (out x
    in), U_m the left singular vectors of the in x C matrix of uncentred input class means.
    1 = the layer reads exactly the span of the class means, 0 = orthogonal to it. `weight` is
    the weight or its `singular` decomposition (shared with `spectrum`).

    Directions with numerically zero singular values are dropped (they are arbitrary), so when
    in < C, or W_k or the means have rank below C, the mean is over the common smaller number.
    None for an all-zero or non-finite weight or all-zero means.
    """
    svd = weight if isinstance(weight, Singular) else singular(weight)
    w = svd.matrix
    m = input_means.detach().flatten(1).to(w).T
    if w.shape[1] != m.shape[0]:
        raise ValueError(f"weight has {w.shape[1]} inputs but the class means have dimension {m.shape[0]}")
    v = svd.right(num_classes)
    if v is None:
        return None
    u, _ = _top_left_singular(m, num_classes)
    if not (v.shape[1] and u.shape[1]):
        return None
    return finite(torch.linalg.svdvals(v.T @ u).mean())
