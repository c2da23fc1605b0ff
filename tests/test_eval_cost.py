"""The cheaper evaluation computes what METRICS.md defines, whatever the chunking."""

from __future__ import annotations

import pytest
import torch

from nctui.config import DataConfig
from nctui import metrics
from nctui.config import build_config
from nctui.data import SyntheticSpec, load_dataset
from nctui.models.networks import square_loss
from nctui.train.trainer import Trainer


def trainer(noise_batches: int = 4, steps: int = 6) -> Trainer:
    """A small FC trainer (48 training samples, batch 16), trained a few steps so nothing is at init."""
    cfg = build_config({"data": {"synthetic": {"train_per_class": 16, "test_per_class": 4, "num_classes": 3}},
                        "model": {"width": 12, "depth": 3},
                        "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
                        "monitor": {"probe_per_class": 0, "noise_batches": noise_batches}})
    data = load_dataset(DataConfig(name="synthetic", root=None, download=False, synthetic=SyntheticSpec(train_per_class=16, test_per_class=4, num_classes=3)), seed=0, progress=False)
    t = Trainer(cfg, data, torch.device("cpu"), "t")
    for i in range(steps):
        t.train_step(torch.arange(16) + 16 * (i % 3))
    return t


def flatten(value, key: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for name, item in value.items() for k, v in flatten(item, f"{key}.{name}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{key}[{i}]").items()}
    return {key: value}


def test_a_probe_read_once_and_one_streamed_in_chunks_give_the_same_record() -> None:
    once, streamed = trainer(), trainer()
    streamed.evaluator.chunk = 5   # 48 probe samples: ten chunks, two passes
    assert once.evaluator.probe_x.shape[0] <= once.evaluator.chunk
    a = flatten(once.evaluator.evaluate(once.model, 6, 0.05, None))
    b = flatten(streamed.evaluator.evaluate(streamed.model, 6, 0.05, None))
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert b[key] == (pytest.approx(value, rel=1e-5, abs=1e-9) if isinstance(value, float) else value), key


@pytest.mark.parametrize("noise_batches", [3, 2])
def test_noise_minibatches_are_batches_of_the_sample_whose_gradient_is_the_full_one(
        noise_batches: int, monkeypatch: pytest.MonkeyPatch) -> None:
    t = trainer(noise_batches)
    seen = {}
    monkeypatch.setattr(metrics, "gradient_noise",
                        lambda full, batches, size, samples: seen.update(full=full, batches=batches, size=size) or {})
    t.evaluator._gradient_noise(t.model, 6)
    params = [p for p in t.model.parameters() if p.requires_grad]
    probe = t.evaluator
    loss = square_loss(t.model(probe.probe_x), probe.probe_t)   # the sample is the whole 48-sample probe
    full = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    assert len(seen["batches"]) == noise_batches and seen["size"] == 16
    torch.testing.assert_close(seen["full"], full, rtol=1e-4, atol=1e-7)
    if noise_batches == 3:   # three batches of 16 are the whole sample: their mean is the full gradient
        torch.testing.assert_close(torch.stack(seen["batches"]).mean(0), full, rtol=1e-4, atol=1e-7)


def test_the_first_layer_is_aligned_with_the_class_means_of_the_raw_input() -> None:
    t = trainer()
    record = t.evaluator.evaluate(t.model, 6, 0.05, None)
    probe = t.evaluator
    means = metrics.ClassMeans(3, probe.probe_x[0].numel())
    means.update(probe.probe_x.flatten(1), probe.probe_y)
    with torch.no_grad():
        expected = metrics.alignment(t.model.effective_weights()[0], means.means(), 3)
    assert record["layers"][0]["alignment"] == pytest.approx(expected, rel=1e-9)
