"""Margins and norm-based bounds on small networks whose numbers are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nctui.metrics import (
    InputEnergy,
    InputStatistics,
    dense_data_term,
    dense_log_term,
    gap_bound,
    local_data_term,
    local_log_term,
    margin_error_counts,
    margin_summary,
    margins,
    norm_bounds,
    pixel_energy,
    rho_tilde,
    spectrum,
    sum_sq_norm,
)


def gap_dense(rho: float, m: int, depth: int, classes: int, sum_sq: float, gamma: float = 1.0,
              delta: float = 1e-3) -> float | None:
    return gap_bound(rho, m, gamma, delta, dense_log_term(depth, classes), dense_data_term(sum_sq))


def gap_local(rho: float, m: int, areas: list[int], classes: int, energy: float) -> float | None:
    return gap_bound(rho, m, 1.0, 1e-3, local_log_term(areas, classes), local_data_term(areas, energy))


def test_margins_of_a_hand_made_logits_matrix() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0], [1.0, 0.0, 4.0]])
    y = torch.tensor([0, 1, 1, 0])
    # 3 - 2 = 1; 5 - 1 = 4; 2 - 2 = 0 (a tie); 1 - 4 = -3.
    assert margins(logits, y).tolist() == [1.0, 4.0, 0.0, -3.0]


def test_margin_summary() -> None:
    m = torch.tensor([1.0, 4.0, 0.0, -3.0])
    r = margin_summary(m, rho=2.0)
    # Sorted (-3, 0, 1, 4), linear interpolation at positions q * 3:
    # q=0.05 -> 0.15: -3 + 0.15*3 = -2.55; q=0.25 -> 0.75: -0.75; q=0.5 -> 1.5: 0.5;
    # q=0.75 -> 2.25: 1.75; q=0.95 -> 2.85: 1 + 0.85*3 = 3.55.
    assert r["min"] == -3.0 and r["mean"] == 0.5
    assert r["quantiles"] == pytest.approx([-3.0, -2.55, -0.75, 0.5, 1.75, 3.55, 4.0])
    assert r["normalized_min"] == -1.5 and r["normalized_mean"] == 0.25
    assert r["normalized_quantiles"] == pytest.approx([v / 2 for v in r["quantiles"]])
    assert "err_gamma" not in r   # err_gamma is counted on the training set, in `bounds`
    assert margin_summary(m, rho=0.0)["normalized_min"] is None
    empty = margin_summary(torch.zeros(0), rho=1.0, quantiles=(0.5,))
    assert empty["min"] is None and empty["quantiles"] == [None]


def test_margin_error_counts_are_integers_that_add_over_chunks() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0], [1.0, 0.0, 4.0]])
    y = torch.tensor([0, 1, 1, 0])
    # margins 1, 4, 0, -3: three are <= 1, two <= 0.5; argmax 0, 1, 0 (first of a tie), 2: two wrong.
    counts = margin_error_counts(logits, y, gamma=1.0)
    assert counts.dtype == torch.int64 and counts.tolist() == [3, 2]
    assert margin_error_counts(logits, y, gamma=0.5).tolist() == [2, 2]
    halves = margin_error_counts(logits[:2], y[:2], 1.0) + margin_error_counts(logits[2:], y[2:], 1.0)
    assert halves.tolist() == [3, 2]


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
    assert margin_error_counts(f, y, 1.0).tolist() == [2, 1]   # err_1 = 2/4; one argmax wrong
    # rho~ = ||W1||_F ||W2||_F = sqrt(20) sqrt(2) = sqrt(40) = 6.324555 (dense: one position each).
    rho = rho_tilde([spectrum(w1, 2)["fro_norm"], spectrum(w2, 2)["fro_norm"]], [1, 1])
    assert rho == pytest.approx(math.sqrt(40), rel=1e-12)
    # sum ||x_i||^2 = 1 + 1 + 2 + 0.25 = 4.25, sqrt = 2.061553.
    assert sum_sq_norm(x) == 4.25
    # complexity: 2 sqrt2 (rho~ + 1) / m = 2.828427 * 7.324555 / 4 = 5.179243;
    #   1 + sqrt(2 (2 ln 2 + ln 2)) = 1 + sqrt(4.158883) = 3.039334;  5.179243 * 3.039334 * 2.061553 = 32.451827
    # confidence: 3 sqrt(ln(2 * 8.324555^2 / 1e-3) / 8) = 3 sqrt(ln(138596.44) / 8) = 3 sqrt(11.839322 / 8) = 3.649553
    # gap bound = 32.451827 + 3.649553 = 36.101380
    assert dense_log_term(2, 2) == pytest.approx(3 * math.log(2), rel=1e-15)
    assert gap_dense(rho, m=4, depth=2, classes=2, sum_sq=4.25) == pytest.approx(36.101380, rel=1e-7)
    # gamma divides the complexity only: 32.451827 / 2 + 3.649553
    assert gap_dense(rho, 4, 2, 2, 4.25, gamma=2.0) == pytest.approx(32.451827 / 2 + 3.649553, rel=1e-7)
    assert gap_dense(rho, 0, 2, 2, 4.25) is None
    assert gap_dense(math.inf, 4, 2, 2, 4.25) is None
    assert gap_dense(math.nan, 4, 2, 2, 4.25) is None
    assert gap_dense(rho, 4, 2, 2, 4.25, gamma=0.0) is None


def test_local_bound_of_a_two_layer_cnn_by_hand() -> None:
    # Conv 1 -> 1 channel, 2x2 kernel diag(1, 1) (k_1 = 4), on 3x3 images -> 4 positions -> Linear(4, 2).
    kernel = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    last = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    x = torch.stack([torch.arange(9.0).reshape(1, 3, 3), torch.ones(1, 3, 3)])  # m = 2 images
    # rho = ||kernel||_F ||last||_F = sqrt2 * sqrt2 = 2.
    rho = spectrum(kernel, 2)["fro_norm"] * spectrum(last, 2)["fro_norm"]
    assert rho == pytest.approx(2.0, rel=1e-12)
    # pixel j has energy j^2 + 1 (j = 0..8): the max is 64 + 1 = 65 at the corner (2, 2).
    assert pixel_energy(x).max().item() == 65.0
    assert (pixel_energy(x[:1]) + pixel_energy(x[1:])).max().item() == 65.0  # streamable over chunks
    # log terms: L ln2 + ln k_1 + ln C = 2 ln2 + 2 ln2 + ln2 = 5 ln2 = 3.465736; 1 + sqrt(6.931472) = 3.632769
    # data: sqrt(k_1 * 65) = sqrt(260) = 16.124515
    # complexity: 2 sqrt2 (2 + 1) / (1 * 2) * 3.632769 * 16.124515 = 4.242641 * 58.576... = 248.519626
    # confidence: 3 sqrt(ln(2 * 4^2 / 1e-3) / (2 * 2)) = 3 sqrt(10.373491 / 4) = 4.831186
    # gap bound = 248.519626 + 4.831186 = 253.350812
    assert local_log_term([4], 2) == pytest.approx(5 * math.log(2), rel=1e-15)
    assert local_data_term([4], 65.0) == pytest.approx(math.sqrt(260), rel=1e-15)
    assert gap_local(rho, m=2, areas=[4], classes=2, energy=65.0) == pytest.approx(253.350812, rel=1e-7)
    # With 1x1 "kernels" the local bound has the dense bound's shape (max pixel energy = sum ||x||^2 here).
    assert gap_local(3.0, 10, [1], 2, 7.0) == pytest.approx(gap_dense(3.0, 10, 2, 2, 7.0), rel=1e-15)


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


def test_input_energy_streams_the_seen_and_the_raw_inputs() -> None:
    # Two channels normalised with mean (0.5, 0.25) and std (0.5, 2): raw = x * std + mean.
    gen = torch.Generator().manual_seed(0)
    raw = torch.rand(7, 2, 3, 3, generator=gen, dtype=torch.float64)
    mean, std = torch.tensor([0.5, 0.25], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    seen = (raw - mean.view(1, 2, 1, 1)) / std.view(1, 2, 1, 1)
    acc = InputEnergy(mean.tolist(), std.tolist())
    for start in range(0, 7, 3):
        acc.update(seen[start:start + 3])
    stats = acc.result()
    assert stats.samples == 7
    assert stats.sum_sq_norm == pytest.approx(float(seen.square().sum()), rel=1e-14)
    assert stats.max_pixel_energy == pytest.approx(float(seen.square().sum((0, 1)).max()), rel=1e-14)
    # the raw energy is per single (channel, pixel) entry, not summed over channels
    assert stats.max_raw_entry_energy == pytest.approx(float(raw.square().sum(0).max()), rel=1e-14)
    plain = InputEnergy()
    plain.update(seen)
    assert plain.result().max_raw_entry_energy == pytest.approx(float(seen.square().sum(0).max()), rel=1e-14)
    assert InputEnergy().result() == InputStatistics(0, 0.0, 0.0, 0.0)


def test_the_bounds_group_of_the_hand_made_cnn_and_its_audit() -> None:
    # The CNN of test_local_bound_of_a_two_layer_cnn_by_hand: rho = 2, rho~ = sqrt2 * sqrt(4 positions) * sqrt2 = 4.
    inputs = InputStatistics(samples=2, sum_sq_norm=213.0, max_pixel_energy=65.0, max_raw_entry_energy=16.0)
    group = norm_bounds(convention="nctui", rho=2.0, rho_tilde=4.0, num_layers=2, kernel_areas=[4], num_classes=2,
                        inputs=inputs, m=None, gamma=1.0, delta=1e-3, err_gamma=0.5, err_gamma_samples=2,
                        test_error=0.25, train_error=0.0)
    assert group["gap_bound_local"] == pytest.approx(253.350812, rel=1e-7)
    assert group["gap_bound_dense"] == gap_dense(4.0, 2, 2, 2, 213.0)
    assert group["bound_local"] == group["gap_bound_local"] + 0.5
    assert group["bound_dense"] == group["gap_bound_dense"] + 0.5
    assert (group["err_gamma"], group["err_gamma_samples"], group["gap"]) == (0.5, 2, 0.25)
    assert (group["rho"], group["rho_tilde"], group["rho_over_sqrt_m"]) == (2.0, 4.0, 2.0 / math.sqrt(2))
    audit = group["audit"]
    assert {k: audit[k] for k in ("convention", "m", "gamma", "delta", "num_layers", "kernel_areas")} == {
        "convention": "nctui", "m": 2, "gamma": 1.0, "delta": 1e-3, "num_layers": 2, "kernel_areas": [4]}
    assert audit["log_term_local"] == pytest.approx(5 * math.log(2), rel=1e-15)
    assert audit["data_term_local"] == pytest.approx(math.sqrt(260), rel=1e-15)
    assert audit["log_term_dense"] == pytest.approx(3 * math.log(2), rel=1e-15)
    assert audit["data_term_dense"] == pytest.approx(math.sqrt(213), rel=1e-15)
    assert audit["confidence_local"] == pytest.approx(4.831186, rel=1e-6)
    # Recomputing each bound from the audit alone, as a reader of the record would:
    for kind, rho_star in (("dense", 4.0), ("local", 2.0)):
        complexity = (2 * math.sqrt(2) * (rho_star + 1) / (audit["gamma"] * audit["m"])
                      * (1 + math.sqrt(2 * audit[f"log_term_{kind}"])) * audit[f"data_term_{kind}"])
        assert group[f"gap_bound_{kind}"] == pytest.approx(complexity + audit[f"confidence_{kind}"], rel=1e-14)

    # The authors' convention: log term depth log(2 k_max) + log C = 2 ln 8 + ln 2 = 7 ln 2, data term
    # sqrt(16) * kernel side 2 = 8, and m as given (the data terms still sum over both images).
    authors = norm_bounds(convention="authors", rho=2.0, rho_tilde=4.0, num_layers=2, kernel_areas=[4],
                          num_classes=2, inputs=inputs, m=5, gamma=1.0, delta=1e-3, err_gamma=0.5,
                          err_gamma_samples=2, test_error=0.25, train_error=0.0)
    assert authors["audit"]["m"] == 5 and authors["rho_over_sqrt_m"] == 2.0 / math.sqrt(5)
    assert authors["audit"]["log_term_local"] == pytest.approx(7 * math.log(2), rel=1e-15)
    assert authors["audit"]["data_term_local"] == pytest.approx(8.0, rel=1e-15)
    assert authors["gap_bound_local"] == pytest.approx(
        2 * math.sqrt(2) * 3 / 5 * (1 + math.sqrt(14 * math.log(2))) * 8 + 3 * math.sqrt(math.log(32 / 1e-3) / 10),
        rel=1e-14)
    assert authors["gap_bound_dense"] == gap_dense(4.0, 5, 2, 2, 213.0)


def test_a_dense_net_has_no_local_bound_and_missing_numbers_stay_missing() -> None:
    inputs = InputStatistics(samples=10, sum_sq_norm=7.0, max_pixel_energy=1.0, max_raw_entry_energy=1.0)
    group = norm_bounds(convention="nctui", rho=3.0, rho_tilde=3.0, num_layers=2, kernel_areas=[], num_classes=2,
                        inputs=inputs, m=None, gamma=1.0, delta=1e-3, err_gamma=None, err_gamma_samples=None,
                        test_error=None, train_error=0.1)
    assert group["gap_bound_dense"] == gap_dense(3.0, 10, 2, 2, 7.0)
    assert group["gap_bound_local"] is group["bound_local"] is group["bound_dense"] is group["gap"] is None
    audit = group["audit"]
    assert audit["kernel_areas"] == []
    assert audit["log_term_local"] is audit["data_term_local"] is audit["confidence_local"] is None
    huge = norm_bounds(convention="nctui", rho=math.inf, rho_tilde=math.inf, num_layers=2, kernel_areas=[],
                       num_classes=2, inputs=inputs, m=None, gamma=1.0, delta=1e-3, err_gamma=0.5,
                       err_gamma_samples=10, test_error=0.5, train_error=0.1)
    assert huge["rho"] is huge["gap_bound_dense"] is huge["bound_dense"] is huge["audit"]["confidence_dense"] is None
    with pytest.raises(ValueError, match="convention"):
        norm_bounds(convention="paper", rho=1.0, rho_tilde=1.0, num_layers=2, kernel_areas=[], num_classes=2,
                    inputs=inputs, m=None, gamma=1.0, delta=1e-3, err_gamma=0.5, err_gamma_samples=10,
                    test_error=0.5, train_error=0.1)
    with pytest.raises(ValueError, match="kernel areas"):
        norm_bounds(convention="nctui", rho=1.0, rho_tilde=1.0, num_layers=3, kernel_areas=[4], num_classes=2,
                    inputs=inputs, m=None, gamma=1.0, delta=1e-3, err_gamma=0.5, err_gamma_samples=10,
                    test_error=0.5, train_error=0.1)
