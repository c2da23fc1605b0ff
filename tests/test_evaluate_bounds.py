"""The evaluator's `bounds` and `noise` groups: err_gamma on the training set, the authors'
convention reproduced from their code, and the local bound's advantage on a CONV net."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nctui.config import DataConfig, build_config
from nctui.data import SyntheticSpec, load_dataset
from nctui.metrics import margins
from nctui.models.networks import build_model, one_hot_targets
from nctui.train.evaluate import Evaluator
from run_fixtures import invoke, one_thread  # noqa: F401 - autouse

MEAN, STD = [0.5, 0.25], [0.5, 0.25]   # (raw - mean) / std and back are exact for raw pixels k / 16


def tiny_cnn_setup(monitor: dict | None = None, train_n: int = 12) -> tuple:
    """A CNN 2x6x6 -> conv(3, k2) -> conv(4, k2) -> Linear(3) on raw pixels k/16 normalised with
    MEAN and STD, its training and test sets, and its Evaluator."""
    cfg = build_config({"model": {"kind": "cnn", "channels": [3, 4], "kernel": 2, "stride": 1},
                        "train": {"batch_size": 4, "device": "cpu"},
                        "monitor": {"probe_per_class": 2, "noise_batches": 2, **(monitor or {})}})
    gen = torch.Generator().manual_seed(3)
    raw = torch.randint(0, 17, (train_n + 6, 2, 6, 6), generator=gen).float() / 16
    labels = torch.arange(train_n + 6) % 3
    shape = (1, 2, 1, 1)
    seen = (raw - torch.tensor(MEAN).view(shape)) / torch.tensor(STD).view(shape)
    torch.manual_seed(0)
    model = build_model(cfg.model, (2, 6, 6), 3)
    train_x, train_y = seen[:train_n], labels[:train_n]
    evaluator = Evaluator(cfg, model, train_x, train_y, seen[train_n:], labels[train_n:],
                          one_hot_targets(train_y, 3), 3, {"mean": MEAN, "std": STD})
    return cfg, model, raw[:train_n], train_x, train_y, evaluator


# --- the authors' bounds, transcribed from lianegalanti/gen utils.py (float64 where they use float32) ---


def authors_max_pixel_sums(raw_images: torch.Tensor) -> float:
    """`max_pixel_sums`: sum over the training images of to_tensor(image) ** 2, then the max entry."""
    pixel_sums = torch.zeros(raw_images.shape[1:], dtype=torch.float64)
    for image in raw_images:
        pixel_sums += torch.pow(image.double(), 2)
    return pixel_sums.max().item()


def authors_our_total_bound(layers: list[nn.Module], degs: list[int], n: int, k: int, raw: torch.Tensor) -> float:
    rho = 1
    for layer in layers:   # eval_rho
        rho = rho * torch.norm(layer.weight.double()).item()
    depth = len(layers)
    delta = 0.001
    max_deg = max(degs) ** 2
    deg_prod = np.prod(degs)
    mult1 = (rho + 1) / n
    mult2 = 2 ** 1.5 * (1 + math.sqrt(2 * (depth * np.log(2 * max_deg) + np.log(k))))
    max_sum_sqrt = math.sqrt(authors_max_pixel_sums(raw))
    mult3 = max_sum_sqrt * deg_prod
    add1 = 3 * math.sqrt(np.log((2 * (rho + 2) ** 2) / delta) / (2 * n))
    return mult1 * mult2 * mult3 + add1


def authors_golowich_total_bound(layers: list[nn.Module], shapes: list[torch.Size], n: int, k: int,
                                 seen: torch.Tensor) -> float:
    delta = 0.001
    rho = 1
    for i, layer in enumerate(layers):   # eval_rho_golowich; shapes[i + 1] is layer i's output
        rho = rho * torch.norm(layer.weight.double()).item()
        if isinstance(layer, nn.Conv2d):
            rho = rho * math.sqrt(shapes[i + 1][2] * shapes[i + 1][3])
    mult1 = (rho + 1) / n
    mult2 = 2 ** 1.5 * (1 + math.sqrt(2 * (len(layers) * np.log(2) + np.log(k))))
    mult3 = math.sqrt((torch.norm(seen.double(), p=2, dim=[1, 2, 3]) ** 2).sum().item())   # sum_norm
    add1 = 3 * math.sqrt(np.log((2 * (rho + 2) ** 2) / delta) / (2 * n))
    return mult1 * mult2 * mult3 + add1


def test_the_authors_convention_reproduces_their_utils_py() -> None:
    _, model, raw, train_x, train_y, evaluator = tiny_cnn_setup({"bounds": {"convention": "authors", "m": 10}})
    bounds = evaluator.evaluate(model, 0, 0.05, None)["bounds"]

    convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2d)]
    layers = [*convs, model.layers[-1]]
    degs = [conv.weight.shape[-1] for conv in convs]   # their net.degs: kernel sides
    shapes = [train_x.shape]
    with torch.no_grad():
        x = train_x
        for conv in convs:
            x = torch.relu(conv(x))
            shapes.append(x.shape)
    ours = authors_our_total_bound(layers, degs, 10, 3, raw)
    golowich = authors_golowich_total_bound(layers, shapes, 10, 3, train_x)
    assert bounds["gap_bound_local"] == pytest.approx(ours, rel=1e-9, abs=0)
    assert bounds["gap_bound_dense"] == pytest.approx(golowich, rel=1e-9, abs=0)

    # err_gamma and the training error: every training sample, counted.
    with torch.no_grad():
        logits = model(train_x)
    within = int((margins(logits, train_y) <= 1.0).sum())
    wrong = int((logits.argmax(1) != train_y).sum())
    assert (bounds["err_gamma"], bounds["err_gamma_samples"], bounds["train_error"]) == (within / 12, 12, wrong / 12)
    assert bounds["bound_local"] == bounds["err_gamma"] + bounds["gap_bound_local"]
    assert bounds["bound_dense"] == bounds["err_gamma"] + bounds["gap_bound_dense"]
    audit = bounds["audit"]
    assert (audit["convention"], audit["m"], audit["num_layers"], audit["kernel_areas"]) == ("authors", 10, 3, [4, 4])
    assert audit["log_term_local"] == pytest.approx(3 * math.log(8) + math.log(3), rel=1e-15)
    assert audit["data_term_local"] == pytest.approx(math.sqrt(authors_max_pixel_sums(raw)) * 4, rel=1e-12)
    assert bounds["rho_over_sqrt_m"] == pytest.approx(bounds["rho"] / math.sqrt(10), rel=1e-15)


def test_the_nctui_convention_uses_the_inputs_the_network_sees() -> None:
    _, model, _, train_x, _, evaluator = tiny_cnn_setup()
    bounds = evaluator.evaluate(model, 0, 0.05, None)["bounds"]
    audit = bounds["audit"]
    assert (audit["convention"], audit["m"]) == ("nctui", 12)
    energy = train_x.double().square().sum((0, 1)).max().item()   # per pixel, summed over channels
    assert audit["data_term_local"] == pytest.approx(math.sqrt(16 * energy), rel=1e-12)
    assert audit["data_term_dense"] == pytest.approx(math.sqrt(train_x.double().square().sum().item()), rel=1e-12)
    assert audit["log_term_local"] == pytest.approx(3 * math.log(2) + 2 * math.log(4) + math.log(3), rel=1e-15)


def test_normalisation_is_undone_for_the_raw_pixel_term() -> None:
    spec = SyntheticSpec(train_per_class=6, test_per_class=2, num_classes=3)
    plain = load_dataset(DataConfig(name="synthetic", normalize=False, synthetic=spec), seed=0)
    scaled = load_dataset(DataConfig(name="synthetic", normalize=True, synthetic=spec), seed=0)
    cfg = build_config({"model": {"width": 8, "depth": 2}, "train": {"device": "cpu"}})
    model = build_model(cfg.model, tuple(scaled.train_x.shape[1:]), 3)
    evaluator = Evaluator(cfg, model, scaled.train_x, scaled.train_y, scaled.test_x, scaled.test_y,
                          one_hot_targets(scaled.train_y, 3), 3, scaled.preprocessing["normalize"])
    expected = plain.train_x.double().square().sum(0).max().item()
    assert evaluator.inputs.max_raw_entry_energy == pytest.approx(expected, rel=1e-5)
    assert evaluator.inputs.sum_sq_norm == pytest.approx(scaled.train_x.double().square().sum().item(), rel=1e-12)


def test_err_gamma_on_a_class_balanced_cap_and_streamed_in_chunks() -> None:
    _, model, _, train_x, train_y, evaluator = tiny_cnn_setup({"margin_samples": 6})
    assert torch.bincount(evaluator.margin_y, minlength=3).tolist() == [2, 2, 2]
    bounds = evaluator.evaluate(model, 0, 0.05, None)["bounds"]
    with torch.no_grad():
        logits = model(evaluator.margin_x)
    assert bounds["err_gamma_samples"] == 6
    assert bounds["err_gamma"] == int((margins(logits, evaluator.margin_y) <= 1.0).sum()) / 6

    # The whole set as the probe: its logits are reused, and equal a pass streamed in chunks of 5.
    _, model, _, _, _, whole = tiny_cnn_setup({"probe_per_class": 0})
    assert whole.margins_from_probe
    reused = whole.evaluate(model, 0, 0.05, None)["bounds"]
    whole.margins_from_probe, whole.chunk = False, 5
    streamed = whole.evaluate(model, 0, 0.05, None)["bounds"]
    for key in ("err_gamma", "err_gamma_samples", "train_error", "bound_dense", "bound_local"):
        assert streamed[key] == reused[key], key

    with pytest.raises(ValueError, match="monitor.margin_samples = 2: must be 0"):
        tiny_cnn_setup({"margin_samples": 2})


def test_the_noise_group_says_how_many_batches_and_samples() -> None:
    _, model, _, _, _, evaluator = tiny_cnn_setup()   # probe 6 samples, batch 4: one batch fits
    noise = evaluator.evaluate(model, 0, 0.05, None)["noise"]
    assert (noise["noise_batches"], noise["noise_samples"]) == (1, 6)
    _, model, _, _, _, evaluator = tiny_cnn_setup({"probe_per_class": 0})
    noise = evaluator.evaluate(model, 0, 0.05, None)["noise"]
    assert (noise["noise_batches"], noise["noise_samples"]) == (2, 12)
    assert set(noise) == {"grad_noise", "noise_scale", "noise_batches", "noise_samples", "output_jitter"}
    _, model, _, _, _, evaluator = tiny_cnn_setup({"probe_per_class": 1})   # 3 samples, batch 4
    noise = evaluator.evaluate(model, 0, 0.05, None)["noise"]
    assert noise["noise_batches"] is noise["noise_samples"] is noise["noise_scale"] is None


def test_a_conv_net_run_headless_has_a_local_bound_far_below_the_dense_one(tmp_path: Path) -> None:
    # mnist_conv's shape (three 2x2 convs, stride 1, on 1x28x28) on a few synthetic images.
    run_dir = tmp_path / "conv"
    result = invoke("run", "mnist_conv", "--headless", "--run-dir", str(run_dir),
                    "--set", "data.name=synthetic", "--set", "data.synthetic.train_per_class=4",
                    "--set", "data.synthetic.test_per_class=2", "--set", "model.channels=[4, 4, 4]",
                    "--set", "train.epochs=1", "--set", "train.batch_size=20", "--set", "train.device=cpu",
                    "--set", "monitor.snapshot_every=0")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r["bounds"] for r in records if r["type"] == "eval"]
    assert evals
    for bounds in evals:
        assert bounds["audit"]["kernel_areas"] == [4, 4, 4]
        assert bounds["gap_bound_local"] * 2 ** 10 < bounds["gap_bound_dense"]
