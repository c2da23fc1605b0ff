"""Neural-collapse geometry pinned on closed-form cases and on an independent numpy reference."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from nctui.metrics import (
    ClassMeans,
    WithinClass,
    alignment,
    collapse_metrics,
    layer_collapse,
    neural_collapse,
    singular,
)

SCALAR_KEYS = [
    "nc1",
    "nc1_trace_ratio",
    "cdnv",
    "nc2_equinorm_m",
    "nc2_equinorm_w",
    "nc2_equiangular",
    "nc2_etf_error",
    "nc3",
    "nc4",
]


def assert_clean(value) -> None:
    """Every number in a (nested) result is a finite Python float/int or None."""
    if isinstance(value, dict):
        for v in value.values():
            assert_clean(v)
    elif isinstance(value, list):
        for v in value:
            assert_clean(v)
    else:
        assert value is None or (isinstance(value, (int, float)) and math.isfinite(value))


def random_problem(n: int = 300, p: int = 50, c: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    centres = 2 * torch.randn(c, p, generator=g)
    h = centres[y] + torch.randn(n, p, generator=g) + 0.5
    w = centres + 0.3 * torch.randn(c, p, generator=g)
    logits = h @ w.T + 50 * torch.randn(n, c, generator=g)  # some argmax disagree with the nearest mean
    return h, y, w, logits


def test_result_keys_and_types() -> None:
    h, y, w, logits = random_problem()
    r = neural_collapse(h, y, 5, w, logits)
    assert list(r) == SCALAR_KEYS + ["cosine", "mean_norms", "classifier_norms"]
    assert all(isinstance(r[k], float) for k in SCALAR_KEYS)
    assert len(r["cosine"]) == 5 and all(len(row) == 5 for row in r["cosine"])
    assert len(r["mean_norms"]) == 5 and len(r["classifier_norms"]) == 5
    assert_clean(r)


def test_simplex_etf_is_fully_collapsed() -> None:
    # Centred means 10 e_c - 1 (first C coordinates, integers: exact in float32) form a simplex
    # ETF: ||mu~_c||^2 = 100 - 20 + 10 = 90, <mu~_c, mu~_c'> = -10 - 10 + 10 = -10, cos = -1/9.
    # A global mean 3 e_15, orthogonal to them, checks the centring.
    c, p, per_class = 10, 20, 4
    centred = torch.zeros(c, p)
    centred[:, :c] = 10 * torch.eye(c) - 1
    means = centred.clone()
    means[:, 15] = 3.0
    y = torch.arange(c).repeat_interleave(per_class)
    h = means[y]
    w = centred  # W = M~^T
    r = neural_collapse(h, y, c, classifier=w, logits=h @ w.T)
    for key in SCALAR_KEYS:
        assert r[key] == pytest.approx(0.0, abs=1e-9), key
    cos = np.array(r["cosine"])
    off = ~np.eye(c, dtype=bool)
    np.testing.assert_allclose(cos[off], -1 / (c - 1), atol=1e-12)
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-12)
    np.testing.assert_allclose(r["mean_norms"], math.sqrt(90), rtol=1e-12)
    np.testing.assert_allclose(r["classifier_norms"], math.sqrt(90), rtol=1e-12)


def test_two_classes_hand_computed() -> None:
    # Class means (-1, 0) and (1, 0), mu_G = 0; each class has the four samples mu_c + (+-s, 0)
    # and mu_c + (0, +-s), s = 1/2.
    # M~ = [[-1, 1], [0, 0]] (p x C), Sigma_B = M~ M~^T / 2 = diag(1, 0), Sigma_B^+ = diag(1, 0).
    # Sigma_W = (1/8) (2 classes x diag(2 s^2, 2 s^2)) = diag(s^2/2, s^2/2).
    # nc1 = (1/2) Tr(Sigma_W Sigma_B^+) = (1/2)(s^2/2) = s^2/4 = 1/16.
    # Tr Sigma_W / Tr Sigma_B = s^2 / 1 = 1/4.  Var_c = (1/4)(4 s^2) = s^2 = 1/4.
    # cdnv = (s^2 + s^2) / (2 ||mu_0 - mu_1||^2) = (1/2) / 8 = 1/16.
    s = 0.5
    offsets = torch.tensor([[s, 0.0], [-s, 0.0], [0.0, s], [0.0, -s]])
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    h = torch.cat([means[0] + offsets, means[1] + offsets])
    y = torch.tensor([0] * 4 + [1] * 4)
    w = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])  # = M~^T
    r = neural_collapse(h, y, 2, classifier=w, logits=h @ w.T)
    assert r["nc1"] == pytest.approx(1 / 16, rel=1e-12)
    assert r["nc1_trace_ratio"] == pytest.approx(1 / 4, rel=1e-12)
    assert r["cdnv"] == pytest.approx(1 / 16, rel=1e-12)
    # C = 2: the centred means are opposite, cos = -1 = -1/(C-1), an exact simplex.
    assert r["nc2_equiangular"] == pytest.approx(0.0, abs=1e-12)
    assert r["nc2_etf_error"] == pytest.approx(0.0, abs=1e-12)
    assert r["nc2_equinorm_m"] == pytest.approx(0.0, abs=1e-12)
    assert r["nc3"] == pytest.approx(0.0, abs=1e-12)
    assert r["nc4"] == 0.0
    # Flip the logits of two of the eight samples: nc4 = 2/8.
    logits = h @ w.T
    logits[[0, 5]] = logits[[0, 5]].flip(1)
    assert neural_collapse(h, y, 2, classifier=w, logits=logits)["nc4"] == pytest.approx(0.25)


def test_three_classes_in_one_dimension_hand_computed() -> None:
    # Means -1, 0, 2 (p = 1); class c has the two samples mu_c +- s_c, s = (1/4, 1/2, 3/4).
    # mu_G = 1/3; M~ = (-4/3, -1/3, 5/3); Sigma_B = (16 + 1 + 25)/9 / 3 = 14/9 (rank 1 = p).
    # Sigma_W = (1/6) * 2 * (1/16 + 4/16 + 9/16) = 7/24.
    # nc1 = (1/3) (7/24) / (14/9) = 1/16;  Tr Sigma_W / Tr Sigma_B = (7/24) / (14/9) = 3/16.
    # Var = (1/16, 1/4, 9/16); cdnv = mean of (1/16 + 1/4)/(2*1), (1/16 + 9/16)/(2*9),
    # (1/4 + 9/16)/(2*4).  ||mu~_c|| = (4/3, 1/3, 5/3): mean 10/9, population variance
    # 42/27 - 100/81 = 26/81, so equinorm = (sqrt(26)/9)/(10/9) = sqrt(26)/10.
    # cos = +1 (0,1), -1 (0,2), -1 (1,2): equiangular = mean(|1 + 1/2|, |-1 + 1/2|, |-1 + 1/2|) = 5/6.
    means = torch.tensor([-1.0, 0.0, 2.0])
    spread = torch.tensor([0.25, 0.5, 0.75])
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    h = (means[y] + spread[y] * torch.tensor([1.0, -1.0]).repeat(3)).unsqueeze(1)
    r = neural_collapse(h, y, 3)
    var = [Fraction(1, 16), Fraction(1, 4), Fraction(9, 16)]
    dist_sq = {(0, 1): 1, (0, 2): 9, (1, 2): 4}
    cdnv = sum((var[i] + var[j]) / (2 * d) for (i, j), d in dist_sq.items()) / 3
    assert r["nc1"] == pytest.approx(1 / 16, rel=1e-12)
    assert r["nc1_trace_ratio"] == pytest.approx(3 / 16, rel=1e-12)
    assert r["cdnv"] == pytest.approx(float(cdnv), rel=1e-12)
    assert r["nc2_equinorm_m"] == pytest.approx(math.sqrt(26) / 10, rel=1e-12)
    assert r["nc2_equiangular"] == pytest.approx(5 / 6, rel=1e-12)
    assert r["cosine"][0][1] == pytest.approx(1.0) and r["cosine"][1][2] == pytest.approx(-1.0)
    assert r["mean_norms"] == pytest.approx([4 / 3, 1 / 3, 5 / 3], rel=1e-12)
    for key in ("nc2_equinorm_w", "nc3", "nc4", "classifier_norms"):
        assert r[key] is None, key


def numpy_reference(h, y, c, w, logits) -> dict:
    """Straight from the definitions, with full p x p matrices."""
    h, y, w, logits = (t.double().numpy() if t.is_floating_point() else t.numpy() for t in (h, y, w, logits))
    n = len(y)
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    centred = mu - mu.mean(0)
    dev = h - mu[y]
    sigma_w = dev.T @ dev / n
    sigma_b = centred.T @ centred / c
    vals, vecs = np.linalg.eigh(sigma_b)
    top_vals, top_vecs = vals[-(c - 1) :], vecs[:, -(c - 1) :]
    sigma_b_pinv = np.linalg.pinv(top_vecs @ np.diag(top_vals) @ top_vecs.T)
    var = np.array([(dev[y == k] ** 2).sum(1).mean() for k in range(c)])
    pairs = [(i, j) for i in range(c) for j in range(i + 1, c)]
    norms = np.linalg.norm(centred, axis=1)
    cos = centred @ centred.T / np.outer(norms, norms)
    gram = centred @ centred.T
    etf = (np.eye(c) - 1 / c) / np.sqrt(c - 1)
    w_norms = np.linalg.norm(w, axis=1)
    nearest = np.argmin(((h[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    return {
        "nc1": np.trace(sigma_w @ sigma_b_pinv) / c,
        "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b),
        "cdnv": np.mean([(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i, j in pairs]),
        "nc2_equinorm_m": norms.std() / norms.mean(),
        "nc2_equinorm_w": w_norms.std() / w_norms.mean(),
        "nc2_equiangular": np.abs(cos[~np.eye(c, dtype=bool)] + 1 / (c - 1)).mean(),
        "nc2_etf_error": np.linalg.norm(gram / np.linalg.norm(gram) - etf),
        "nc3": np.sum((w / np.linalg.norm(w) - centred / np.linalg.norm(centred)) ** 2),
        "nc4": np.mean(nearest != logits.argmax(1)),
        "cosine": cos,
    }


def test_agrees_with_full_matrix_numpy_reference() -> None:
    h, y, w, logits = random_problem(n=300, p=50, c=5)
    r = neural_collapse(h, y, 5, w, logits, chunk=64)
    ref = numpy_reference(h, y, 5, w, logits)
    for key in SCALAR_KEYS:
        assert r[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
    np.testing.assert_allclose(r["cosine"], ref["cosine"], rtol=1e-9, atol=1e-12)
    assert 0 < r["nc4"] < 1  # the reference case does exercise mismatches


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_streaming_matches_one_pass(chunk: int) -> None:
    h, y, w, logits = random_problem(n=203, p=13, c=6, seed=1)
    whole = neural_collapse(h, y, 6, w, logits, chunk=len(y))
    streamed = neural_collapse(h, y, 6, w, logits, chunk=chunk)
    for key in SCALAR_KEYS:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-6), key
    for key in ("cosine", "mean_norms", "classifier_norms"):
        np.testing.assert_allclose(streamed[key], whole[key], rtol=1e-6)


def test_class_means_flattens_features_and_counts() -> None:
    h = torch.arange(24.0).reshape(4, 2, 3)  # n x 2 x 3 -> n x 6
    y = torch.tensor([1, 0, 1, 1])
    acc = ClassMeans(3, 6)
    acc.update(h, y)
    assert acc.counts.tolist() == [1, 3, 0]
    assert acc.counts.dtype == torch.int64
    means = acc.means()
    assert means.dtype == torch.float64 and means.shape == (3, 6)
    torch.testing.assert_close(means[0], h[1].flatten().double())
    torch.testing.assert_close(means[1], h[[0, 2, 3]].flatten(1).double().mean(0))
    assert means[2].abs().sum() == 0


def test_within_class_keeps_c_minus_one_directions_without_p_by_p() -> None:
    h, y, _, _ = random_problem(n=60, p=2000, c=4)
    acc = ClassMeans(4, 2000)
    acc.update(h, y)
    within = WithinClass(acc.means(), acc.counts)
    assert within.whiten.shape == (2000, 3)
    assert within.rank == 3


def test_layer_collapse_matches_collapse_metrics() -> None:
    h, y, w, logits = random_problem(c=4, seed=2)
    acc = ClassMeans(4, h.shape[1])
    acc.update(h, y)
    within = WithinClass(acc.means(), acc.counts)
    within.update(h, y)
    full = collapse_metrics(acc.means(), acc.counts, within, w)
    assert layer_collapse(acc.means(), acc.counts, within) == {
        "nc1": full["nc1"],
        "nc1_trace_ratio": full["nc1_trace_ratio"],
    }


def test_empty_class_is_left_out_of_the_geometry() -> None:
    h, y, w, logits = random_problem(n=120, p=8, c=3, seed=3)
    w4 = torch.cat([w, torch.randn(1, 8)])
    logits4 = torch.cat([logits, torch.full((120, 1), -100.0)], 1)
    r = neural_collapse(h, y, 4, w4, logits4)  # class 3 has no samples
    assert_clean(r)
    assert r["cosine"][3] == [None] * 4 and all(row[3] is None for row in r["cosine"])
    assert r["mean_norms"][3] is None
    assert len(r["classifier_norms"]) == 4 and r["classifier_norms"][3] is not None
    three = neural_collapse(h, y, 3, w, logits)
    for key in ("nc1", "nc1_trace_ratio", "cdnv", "nc2_equinorm_m", "nc2_equiangular", "nc2_etf_error", "nc3", "nc4"):
        assert r[key] == pytest.approx(three[key], rel=1e-12), key


def test_all_zero_features_give_none_not_errors() -> None:
    y = torch.arange(12) % 3
    r = neural_collapse(torch.zeros(12, 5), y, 3, classifier=torch.zeros(3, 5), logits=torch.zeros(12, 3))
    assert_clean(r)
    for key in ("nc1", "nc1_trace_ratio", "cdnv", "nc2_equinorm_m", "nc2_equinorm_w", "nc2_equiangular",
                "nc2_etf_error", "nc3"):
        assert r[key] is None, key
    assert r["nc4"] == 0.0  # every distance and logit ties at class 0
    assert r["mean_norms"] == [0.0, 0.0, 0.0]
    assert r["classifier_norms"] == [0.0, 0.0, 0.0]


def test_two_classes_random_and_single_class_and_no_samples() -> None:
    h, y, w, logits = random_problem(n=50, p=7, c=2, seed=4)
    r = neural_collapse(h, y, 2, w, logits)
    assert_clean(r)
    assert all(r[k] is not None for k in SCALAR_KEYS)
    assert r["nc2_equiangular"] == pytest.approx(0.0, abs=1e-12)  # C = 2 is always a simplex
    one = neural_collapse(h, torch.zeros(50, dtype=torch.long), 2, w, logits)
    assert_clean(one)
    assert one["nc1"] is None and one["cdnv"] is None and one["nc2_equiangular"] is None
    empty = ClassMeans(3, 4)
    within = WithinClass(empty.means(), empty.counts)
    none = collapse_metrics(empty.means(), empty.counts, within, torch.ones(3, 4))
    assert_clean(none)
    assert all(none[k] is None for k in SCALAR_KEYS if k != "nc2_equinorm_w")


def test_alignment_closed_forms() -> None:
    # Uncentred class means e1 and e2 in R^4 (C = 2): U_m spans {e1, e2}.
    means = torch.eye(4)[:2]
    assert alignment(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]), means, 2) == pytest.approx(1.0)
    assert alignment(torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]), means, 2) == pytest.approx(0.0, abs=1e-12)
    # Rank-1 W along (e1 + e3)/sqrt(2): V_k^T U_m = (1/sqrt 2, 0), one singular value 1/sqrt(2).
    assert alignment(torch.tensor([[1.0, 0, 1.0, 0]]), means, 2) == pytest.approx(1 / math.sqrt(2))
    # in < C: three classes in R^2 span the whole input space, any full-rank W is aligned.
    assert alignment(torch.randn(5, 2), torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0]]), 3) == pytest.approx(1.0)
    assert alignment(torch.zeros(3, 4), means, 2) is None
    assert alignment(torch.randn(3, 4), torch.zeros(2, 4), 2) is None
    assert alignment(torch.tensor([[1.0, math.nan, 0, 0]]), means, 2) is None


def alignment_by_svd(w: torch.Tensor, means: torch.Tensor, c: int) -> float:
    """METRICS.md's alignment straight from two full SVDs (every direction is nonzero here)."""
    v = torch.linalg.svd(w.to(torch.float64).flatten(1))[2][:c].T
    u = torch.linalg.svd(means.to(torch.float64).T, full_matrices=False)[0][:, :c]
    return float(torch.linalg.svdvals(v.T @ u).mean())


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (30, 30)], ids=["wide", "tall", "square"])
def test_alignment_from_the_shared_decomposition(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(5)
    # Singular values 10..6 then 1 and below: a gap, so the top-5 right subspace is well defined.
    k = min(shape)
    u = torch.linalg.qr(torch.randn(shape[0], k, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(shape[1], k, generator=g, dtype=torch.float64))[0]
    s = torch.cat([torch.arange(10.0, 5.0, -1, dtype=torch.float64), torch.rand(k - 5, generator=g, dtype=torch.float64)])
    w = u @ torch.diag(s) @ v.T
    means = torch.randn(5, shape[1], generator=g) + 2 * v[:, :5].T   # partly along W's top directions
    expected = alignment_by_svd(w, means, 5)
    assert alignment(singular(w), means, 5) == alignment(w, means, 5)
    assert alignment(w, means, 5) == pytest.approx(expected, rel=1e-10)
