"""Normalized spectra and the rank ceiling on hand-computable matrices."""

from __future__ import annotations

import math

import pytest
import torch

from nctui.metrics import rank_ceiling, spectrum


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
