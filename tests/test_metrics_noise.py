"""SGD-noise measures on hand cases and on a simulation with a known noise scale."""

from __future__ import annotations

import pytest
import torch

from nctui.metrics import gradient_noise, output_jitter, relative_drift, rho_jitter


def test_relative_drift_of_a_known_perturbation() -> None:
    # ||W(t')||_F = ||ones(2, 2)|| = 2; the perturbation has norm 0.2: 0.2 / 2 / 10 steps = 0.01.
    w_prev = torch.ones(2, 2)
    w_now = w_prev + torch.tensor([[0.2, 0.0], [0.0, 0.0]])
    assert relative_drift(w_now, w_prev, 10) == pytest.approx(0.01, rel=1e-6)
    assert relative_drift(w_prev, w_prev, 10) == 0.0
    assert relative_drift(w_now, w_prev, 0) is None
    assert relative_drift(w_now, torch.zeros(2, 2), 5) is None


def test_gradient_noise_hand_cases() -> None:
    g = torch.tensor([[2.0, 0.0]])
    same = gradient_noise(g, [g.clone(), g.clone()], batch_size=32)
    assert same == {"grad_noise": 0.0, "noise_scale": 0.0}
    # ||g||^2 = 4; ||g_b - g||^2 = 1, 1, 0: mean 2/3, grad_noise = (2/3)/4 = 1/6,
    # noise_scale = B * grad_noise = 64/6.
    batches = [torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    r = gradient_noise(g, batches, batch_size=64)
    assert r["grad_noise"] == pytest.approx(1 / 6, rel=1e-12)
    assert r["noise_scale"] == pytest.approx(64 / 6, rel=1e-12)
    assert gradient_noise(torch.zeros(2), [torch.ones(2)], 8) == {"grad_noise": None, "noise_scale": None}
    assert gradient_noise(g, [], 8) == {"grad_noise": None, "noise_scale": None}


def test_noise_scale_recovers_a_known_b_simple() -> None:
    # Per-sample gradients G + xi with xi ~ N(0, 9 I_10) and G = (1, ..., 1): tr(Sigma) = 90,
    # |G|^2 = 10, so B_simple = 9 (McCandlish et al. 2018) whatever the batch size.
    gen = torch.Generator().manual_seed(0)
    per_sample = 1 + 3 * torch.randn(40_000, 10, generator=gen, dtype=torch.float64)
    full = per_sample.mean(0)
    batch = 16
    batches = [per_sample[i : i + batch].mean(0) for i in range(0, 400 * batch, batch)]
    assert gradient_noise(full, batches, batch)["noise_scale"] == pytest.approx(9.0, rel=0.1)


def test_output_jitter() -> None:
    # change (0, 1): RMS sqrt(1/2); RMS of f = sqrt(25/2); ratio sqrt(1/25) = 0.2.
    assert output_jitter(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 3.0])) == pytest.approx(0.2, rel=1e-6)
    f = torch.randn(5, 3)
    assert output_jitter(f, f) == 0.0
    assert output_jitter(torch.zeros(4), torch.ones(4)) is None


def test_rho_jitter() -> None:
    # Layer 0 sees rho = 1, 3: mean 2, population std 1, ratio 0.5; layer 1 is constant.
    assert rho_jitter(torch.tensor([[1.0, 2.0], [3.0, 2.0]])) == pytest.approx([0.5, 0.0])
    assert rho_jitter(torch.full((7, 3), 1.7)) == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)
    assert rho_jitter(torch.ones(1, 2)) == [None, None]
    assert rho_jitter(torch.tensor([[0.0, 1.0], [0.0, 1.0]])) == [None, 0.0]
