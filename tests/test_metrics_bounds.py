"""Margins and norm-based bounds on small networks whose numbers are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nctui.metrics import (
    bound_dense,
    bound_local,
    margin_summary,
    margins,
    max_pixel_energy,
    pixel_energy,
    rho_tilde,
    spectrum,
    sum_sq_norm,
)


def test_margins_of_a_hand_made_logits_matrix() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0], [1.0, 0.0, 4.0]])
    y = torch.tensor([0, 1, 1, 0])
    # 3 - 2 = 1; 5 - 1 = 4; 2 - 2 = 0 (a tie); 1 - 4 = -3.
    assert margins(logits, y).tolist() == [1.0, 4.0, 0.0, -3.0]


def test_margin_summary() -> None:
    m = torch.tensor([1.0, 4.0, 0.0, -3.0])
    r = margin_summary(m, rho=2.0, gamma=1.0)
    # Sorted (-3, 0, 1, 4), linear interpolation at positions q * 3:
    # q=0.05 -> 0.15: -3 + 0.15*3 = -2.55; q=0.25 -> 0.75: -0.75; q=0.5 -> 1.5: 0.5;
    # q=0.75 -> 2.25: 1.75; q=0.95 -> 2.85: 1 + 0.85*3 = 3.55.
    assert r["min"] == -3.0 and r["mean"] == 0.5
    assert r["quantiles"] == pytest.approx([-3.0, -2.55, -0.75, 0.5, 1.75, 3.55, 4.0])
    assert r["normalized_min"] == -1.5 and r["normalized_mean"] == 0.25
    assert r["normalized_quantiles"] == pytest.approx([v / 2 for v in r["quantiles"]])
    assert r["err_gamma"] == 0.75  # 1, 0 and -3 are <= gamma = 1
    assert margin_summary(m, rho=0.0, gamma=1.0)["normalized_min"] is None
    empty = margin_summary(torch.zeros(0), rho=1.0, gamma=1.0, quantiles=(0.5,))
    assert empty["min"] is None and empty["quantiles"] == [None] and empty["err_gamma"] is None


def test_dense_bound_of_a_two_layer_net_by_hand() -> None:
    # f(x) = W2 relu(W1 x), W1 = diag(2, 4), W2 = I_2 (C = 2, L = 2).
    w1 = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    w2 = torch.eye(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    y = torch.tensor([0, 1, 0, 0])
    f = F.relu(x @ w1.T) @ w2.T
    # outputs (2, 0), (0, 4), (2, 4), (1, 0): margins 2, 4, -2, 1; err_1 = #{m <= 1}/4 = 2/4.
    m = margins(f, y)
    assert m.tolist() == [2.0, 4.0, -2.0, 1.0]
    err = margin_summary(m, rho=1.0, gamma=1.0)["err_gamma"]
    assert err == 0.5
    # rho~ = ||W1||_F ||W2||_F = sqrt(20) sqrt(2) = sqrt(40) = 6.324555 (dense: one position each).
    rho = rho_tilde([spectrum(w1, 2)["fro_norm"], spectrum(w2, 2)["fro_norm"]], [1, 1])
    assert rho == pytest.approx(math.sqrt(40), rel=1e-12)
    # sum ||x_i||^2 = 1 + 1 + 2 + 0.25 = 4.25, sqrt = 2.061553.
    assert sum_sq_norm(x) == 4.25
    # complexity: 2 sqrt2 (rho~ + 1) / m = 2.828427 * 7.324555 / 4 = 5.179243;
    #   1 + sqrt(2 (2 ln 2 + ln 2)) = 1 + sqrt(4.158883) = 3.039334;  5.179243 * 3.039334 * 2.061553 = 32.451827
    # confidence: 3 sqrt(ln(2 * 8.324555^2 / 1e-3) / 8) = 3 sqrt(ln(138596.44) / 8) = 3 sqrt(11.839322 / 8) = 3.649553
    # bound = 0.5 + 32.451827 + 3.649553 = 36.601380
    bound = bound_dense(err, rho, m=4, depth=2, num_classes=2, sum_sq_input_norm=4.25)
    assert bound == pytest.approx(36.601380, rel=1e-7)
    assert bound_dense(None, rho, 4, 2, 2, 4.25) is None
    assert bound_dense(err, rho, 0, 2, 2, 4.25) is None
    assert bound_dense(err, math.inf, 4, 2, 2, 4.25) is None


def test_local_bound_of_a_two_layer_cnn_by_hand() -> None:
    # Conv 1 -> 1 channel, 2x2 kernel diag(1, 1) (k_1 = 4), on 3x3 images -> 4 positions -> Linear(4, 2).
    kernel = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    last = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    x = torch.stack([torch.arange(9.0).reshape(1, 3, 3), torch.ones(1, 3, 3)])  # m = 2 images
    # rho = ||kernel||_F ||last||_F = sqrt2 * sqrt2 = 2.
    rho = spectrum(kernel, 2)["fro_norm"] * spectrum(last, 2)["fro_norm"]
    assert rho == pytest.approx(2.0, rel=1e-12)
    # pixel j has energy j^2 + 1 (j = 0..8): the max is 64 + 1 = 65 at the corner (2, 2).
    assert max_pixel_energy(x) == 65.0
    assert (pixel_energy(x[:1]) + pixel_energy(x[1:])).max().item() == 65.0  # streamable over chunks
    # log terms: L ln2 + ln k_1 + ln C = 2 ln2 + 2 ln2 + ln2 = 5 ln2 = 3.465736; 1 + sqrt(6.931472) = 3.632769
    # data: sqrt(k_1 * 65) = sqrt(260) = 16.124515
    # complexity: 2 sqrt2 (2 + 1) / (1 * 2) * 3.632769 * 16.124515 = 4.242641 * 58.576... = 248.519626
    # confidence: 3 sqrt(ln(2 * 4^2 / 1e-3) / (2 * 2)) = 3 sqrt(10.373491 / 4) = 4.831186
    # bound = 0.5 + 248.519626 + 4.831186 = 253.850812
    bound = bound_local(0.5, rho, m=2, depth=2, kernel_areas=[4], num_classes=2, max_pixel_energy=65.0)
    assert bound == pytest.approx(253.850812, rel=1e-7)
    # With 1x1 "kernels" the local bound has the dense bound's shape (max pixel energy = sum ||x||^2 here).
    assert bound_local(0.5, 3.0, 10, 2, [1], 2, 7.0) == pytest.approx(bound_dense(0.5, 3.0, 10, 2, 2, 7.0))
    with pytest.raises(ValueError):
        bound_local(0.5, rho, 2, 3, [4], 2, 65.0)
    assert bound_local(0.5, rho, 2, 2, [0], 2, 65.0) is None


def test_pixel_energy_sums_over_input_channels() -> None:
    x = torch.zeros(3, 2, 2, 2)
    x[:, 0, 1, 0] = 1.0  # three samples, channel 0: 3
    x[0, 1, 1, 0] = 2.0  # one sample, channel 1: 4
    energy = pixel_energy(x)
    assert energy.dtype == torch.float64
    assert energy.tolist() == [[0.0, 0.0], [7.0, 0.0]]
    with pytest.raises(ValueError):
        pixel_energy(torch.zeros(3, 4))


def test_rho_tilde_counts_conv_positions() -> None:
    # A conv kernel of norm 2 applied at 9 positions is an operator of norm 2 * 3 = 6; times a dense 5.
    assert rho_tilde([2.0, 5.0], [9, 1]) == pytest.approx(30.0)
