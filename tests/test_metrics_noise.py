"""SGD-noise measures on hand cases and on a simulation with a known noise scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nctui.metrics import gradient_noise, noise_estimates, output_jitter, relative_drift, rho_jitter


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
    same = gradient_noise(g, [g.clone(), g.clone()], batch_size=32, samples=64)
    # no spread: tr(Sigma)^ = 0, |G|^2^ = ||g||^2 = 4, B_simple = 0
    assert same == {"grad_noise": 0.0, "noise_scale": 0.0, "noise_batches": 2, "noise_samples": 64}
    # ||g||^2 = 4; ||g_b - g||^2 = 1, 1, 0: mean 2/3, grad_noise = (2/3)/4 = 1/6.
    # B = 64 of n = 256: tr(Sigma)^ = 64 (2/3) / (1 - 1/4) = 512/9; |G|^2^ = 4 - (512/9)/256 = 34/9;
    # noise_scale = 512/34.
    batches = [torch.tensor([[2.0, 1.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0]])]
    r = gradient_noise(g, batches, batch_size=64, samples=256)
    assert r["grad_noise"] == pytest.approx(1 / 6, rel=1e-12)
    assert r["noise_scale"] == pytest.approx(512 / 34, rel=1e-12)
    assert (r["noise_batches"], r["noise_samples"]) == (3, 256)
    spread, trace, grad_sq = noise_estimates(g, batches, 64, 256)
    assert (float(spread), float(trace), float(grad_sq)) == pytest.approx((2 / 3, 512 / 9, 34 / 9), rel=1e-12)
    # With n = 70, tr(Sigma)^ = 64 (2/3) / (1 - 64/70) = 4480/9 and |G|^2^ = 4 - 64/9 < 0: no noise
    # scale, grad_noise still defined.
    low = gradient_noise(g, batches, batch_size=64, samples=70)
    assert low["noise_scale"] is None and low["grad_noise"] == pytest.approx(1 / 6, rel=1e-12)
    assert gradient_noise(torch.zeros(2), [torch.ones(2)], 8, 16)["grad_noise"] is None
    assert gradient_noise(g, [], 8, 16) == {"grad_noise": None, "noise_scale": None,
                                            "noise_batches": None, "noise_samples": None}
    with pytest.raises(ValueError, match="B < n"):
        gradient_noise(g, batches, batch_size=64, samples=64)


def test_noise_scale_recovers_a_known_b_simple() -> None:
    # Per-sample gradients G + xi with xi ~ N(0, 9 I_10) and G = (1, ..., 1): tr(Sigma) = 90,
    # |G|^2 = 10, so B_simple = 9 (McCandlish et al. 2018) whatever the batch size.
    gen = torch.Generator().manual_seed(0)
    per_sample = 1 + 3 * torch.randn(40_000, 10, generator=gen, dtype=torch.float64)
    full = per_sample.mean(0)
    batch = 16
    batches = [per_sample[i : i + batch].mean(0) for i in range(0, 400 * batch, batch)]
    assert gradient_noise(full, batches, batch, 40_000)["noise_scale"] == pytest.approx(9.0, rel=0.1)


def per_sample_gradients(n: int = 40) -> torch.Tensor:
    """Exact per-sample gradients (n x d, float64) of the square loss of a tiny ReLU net on random data."""
    gen = torch.Generator().manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU(), torch.nn.Linear(3, 3, bias=False))
    net = net.to(torch.float64)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    targets = F.one_hot(torch.randint(3, (n,), generator=gen), 3).to(torch.float64)
    params = list(net.parameters())
    rows = []
    for i in range(n):
        loss = F.mse_loss(net(x[i : i + 1]), targets[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


def test_the_noise_estimators_are_unbiased_for_the_sampling_design() -> None:
    # The population: a tiny net's exact per-sample gradients. Its tr(Sigma) (population
    # covariance) and |G|^2 are known exactly. One draw, as the evaluator makes it: n points from
    # the population, g their mean gradient, K minibatches of B drawn without replacement from
    # those n (disjoint slices of one permutation). The mean of the estimates over many draws
    # must match the truth within a few standard errors.
    grads = per_sample_gradients()
    population, dim = grads.shape
    mean_grad = grads.mean(0)
    true_trace = float((grads - mean_grad).square().sum(1).mean())
    true_grad_sq = float(mean_grad.square().sum())
    n, batch, k, draws = 12, 4, 2, 5000
    gen = torch.Generator().manual_seed(2)
    estimates, naive = [], []
    for _ in range(draws):
        sample = grads[torch.randint(population, (n,), generator=gen)]
        order = torch.randperm(n, generator=gen)
        minibatches = [sample[order[b * batch:(b + 1) * batch]].mean(0) for b in range(k)]
        spread, trace, grad_sq = noise_estimates(sample.mean(0), minibatches, batch, n)
        estimates.append((float(trace), float(grad_sq)))
        naive.append((batch * float(spread), float(sample.mean(0).square().sum())))
    est, old = torch.tensor(estimates, dtype=torch.float64), torch.tensor(naive, dtype=torch.float64)
    standard_error = est.std(0) / draws ** 0.5
    truth = torch.tensor([true_trace, true_grad_sq], dtype=torch.float64)
    assert torch.all((est.mean(0) - truth).abs() < 4 * standard_error), (est.mean(0), truth, standard_error)
    # The estimators without the finite-population factor and the tr(Sigma)/n correction are
    # biased (by 1 - B/n = 2/3 and by + tr(Sigma)/n), far beyond the same standard errors.
    old_error = old.std(0) / draws ** 0.5
    assert torch.all((old.mean(0) - truth).abs() > 10 * old_error), (old.mean(0), truth, old_error)


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
