"""Normalized spectra and the rank ceiling on hand-computable matrices; the shared Gram-matrix
decomposition against torch's SVD."""

from __future__ import annotations

import math

import pytest
import torch

from nctui.metrics import Singular, rank_ceiling, singular, spectrum


def with_spectrum(out: int, inputs: int, s: list[float], seed: int = 0) -> torch.Tensor:
    """A float64 out x inputs matrix with singular values s (padded with zeros) and random vectors."""
    g = torch.Generator().manual_seed(seed)
    k = min(out, inputs)
    u = torch.linalg.qr(torch.randn(out, k, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(inputs, k, generator=g, dtype=torch.float64))[0]
    return u @ torch.diag(torch.tensor(s + [0.0] * (k - len(s)), dtype=torch.float64)) @ v.T


def projector(v: torch.Tensor) -> torch.Tensor:
    return v @ v.T


def test_diagonal_matrix_by_hand() -> None:
    # diag(3, 4, 0, 0): ||W||_F = 5, s = (4/5, 3/5, 0, 0) = (0.8, 0.6, 0, 0).
    # stable rank = 1 / 0.8^2 = 1/0.64; p = (0.8, 0.6)/1.4 = (4/7, 3/7),
    # effective rank = exp(-(4/7 ln 4/7 + 3/7 ln 3/7)) = 1.97963; top-2 energy 0.64 + 0.36 = 1.
    r = spectrum(torch.diag(torch.tensor([3.0, 4.0, 0.0, 0.0])), num_classes=2)
    assert r["sv"] == pytest.approx([0.8, 0.6, 0.0, 0.0], abs=1e-12)
    assert r["rank"] == 2 and isinstance(r["rank"], int)
    assert r["stable_rank"] == pytest.approx(1 / 0.64, rel=1e-12)
    entropy = -(4 / 7 * math.log(4 / 7) + 3 / 7 * math.log(3 / 7))
    assert r["effective_rank"] == pytest.approx(math.exp(entropy), rel=1e-12)
    assert r["effective_rank"] == pytest.approx(1.97963, abs=1e-5)
    assert r["top_c_energy"] == pytest.approx(1.0, rel=1e-12)
    assert r["fro_norm"] == pytest.approx(5.0, rel=1e-12)
    assert spectrum(torch.diag(torch.tensor([3.0, 4.0, 0.0])), num_classes=1)["top_c_energy"] == pytest.approx(0.64)


def test_conv_kernel_is_reshaped_out_by_in_kh_kw() -> None:
    # Two 1-channel 2x2 kernels: rows (3, 0, 0, 0) and (0, 4, 0, 0) of a 2 x 4 matrix.
    kernel = torch.zeros(2, 1, 2, 2)
    kernel[0, 0, 0, 0] = 3.0
    kernel[1, 0, 0, 1] = 4.0
    r = spectrum(kernel, num_classes=10)
    assert r["sv"] == pytest.approx([0.8, 0.6], abs=1e-12)
    assert r["rank"] == 2 and r["fro_norm"] == pytest.approx(5.0)
    wide = spectrum(torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0)), num_classes=4)
    assert len(wide["sv"]) == 8  # min(8, 3 * 3 * 3)
    assert sum(s * s for s in wide["sv"]) == pytest.approx(1.0, rel=1e-12)
    assert wide["sv"] == sorted(wide["sv"], reverse=True)


def test_rank_tolerance() -> None:
    w = torch.diag(torch.tensor([1.0, 1e-4], dtype=torch.float64))
    assert spectrum(w, 2)["rank"] == 1
    assert spectrum(w, 2, rank_tol=1e-5)["rank"] == 2


def test_zero_and_non_finite_weights() -> None:
    zero = spectrum(torch.zeros(3, 5), 2)
    assert zero == {"sv": [0.0, 0.0, 0.0], "rank": 0, "stable_rank": None, "effective_rank": None,
                    "top_c_energy": None, "fro_norm": 0.0}
    bad = spectrum(torch.tensor([[1.0, math.nan], [0.0, 1.0]]), 2)
    assert bad["sv"] == [None, None] and bad["rank"] is None and bad["fro_norm"] is None


def test_rank_ceiling() -> None:
    # 128 * 1 * ln(2 / 1e-3) / (0.1 * 5e-4) = 128 * 7.6009 / 5e-5 = 1.94583e7.
    assert rank_ceiling(128, 1, 0.1, 5e-4, 1e-3) == pytest.approx(128 * math.log(2000) / 5e-5, rel=1e-12)
    assert rank_ceiling(128, 1, 0.1, 5e-4, 1e-3) == pytest.approx(1.94583e7, rel=1e-5)
    assert rank_ceiling(32, 49, 0.1, 5e-4, 1e-3) == pytest.approx(32 * 49 * math.log(2000) / 5e-5)
    assert rank_ceiling(128, 1, 0.1, 0.0, 1e-3) is None
    assert rank_ceiling(128, 1, 0.0, 5e-4, 1e-3) is None
    assert rank_ceiling(128, 1, 0.1, 5e-4, 0.0) is None


# A gap after the 5th value (for the subspace check), then a tail down to ~1e-6 s_1.
GRADED = [10.0, 9.0, 8.0, 7.0, 6.0] + [10.0 ** (-0.25 * i) for i in range(20)] + [2e-6] * 3


@pytest.mark.parametrize("shape", [(40, 90), (90, 40), (28, 28), (16, 3, 3, 3)], ids=["wide", "tall", "square", "conv"])
def test_singular_matches_torch_svd(shape: tuple[int, ...]) -> None:
    out, inputs = shape[0], math.prod(shape[1:])
    for w in (with_spectrum(out, inputs, GRADED[: min(out, inputs)]),
              torch.randn(out, inputs, generator=torch.Generator().manual_seed(1), dtype=torch.float64)):
        w = w.reshape(shape)
        d = singular(w)
        flat = w.reshape(out, -1)
        _, s_ref, vh_ref = torch.linalg.svd(flat)
        assert d.values.shape == (min(out, inputs),)
        assert d.fro_norm == pytest.approx(float(torch.linalg.matrix_norm(flat)), rel=1e-14)
        resolved = s_ref > 1e-6 * s_ref[0]
        torch.testing.assert_close(d.values[resolved], s_ref[resolved], rtol=0, atol=1e-10 * float(s_ref[0]))
        v = d.right(5)
        assert v.shape == (inputs, 5)
        torch.testing.assert_close(v.T @ v, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-10)
        if d.values[4] / d.values[5] > 1.1:   # a gap: the top-5 subspace is well defined
            torch.testing.assert_close(projector(v), projector(vh_ref[:5].T), rtol=0, atol=1e-10)


@pytest.mark.parametrize("transpose", [False, True], ids=["wide", "tall"])
def test_rank_deficient_singular_has_exact_rank_and_only_its_vectors(transpose: bool) -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 3, generator=g) @ torch.randn(3, 20, generator=g)   # rank 3, float32 like a weight
    w = w.T if transpose else w
    d = singular(w)
    assert d.basis.shape[1] == 3
    assert (d.values[:3] > 0).all() and (d.values[3:] == 0).all()
    v = d.right(10)
    assert v.shape == (w.shape[1], 3)
    _, _, vh_ref = torch.linalg.svd(w.to(torch.float64))
    torch.testing.assert_close(projector(v), projector(vh_ref[:3].T), rtol=0, atol=1e-10)
    assert spectrum(d, 10)["rank"] == 3


@pytest.mark.parametrize("weight", [
    torch.randn(12, 30, generator=torch.Generator().manual_seed(3)),
    torch.randn(6, 2, 3, 3, generator=torch.Generator().manual_seed(4)),
    torch.diag(torch.tensor([3.0, 4.0, 0.0, 0.0])),
    torch.zeros(3, 5),
    torch.tensor([[1.0, math.nan], [0.0, 1.0]]),
    torch.tensor([[1.0, math.inf], [0.0, 1.0]]),
], ids=["random", "conv", "diagonal", "zero", "nan", "inf"])
def test_spectrum_of_the_decomposition_is_the_spectrum_of_the_weight(weight: torch.Tensor) -> None:
    d = singular(weight)
    assert isinstance(d, Singular)
    assert spectrum(d, 2, rank_tol=1e-2) == spectrum(weight, 2, rank_tol=1e-2)


def test_zero_and_non_finite_decompositions() -> None:
    zero = singular(torch.zeros(3, 5))
    assert zero.values.tolist() == [0.0, 0.0, 0.0] and zero.fro_norm == 0.0 and zero.right(2).shape == (5, 0)
    bad = singular(torch.tensor([[1.0, math.nan], [0.0, 1.0]]))
    assert bad.values is None and bad.fro_norm is None and bad.right(2) is None
