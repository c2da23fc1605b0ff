"""Denormals: the CPU trainers flush them to zero (weight decay drives unused weights into float32
denormals, which slow a CPU several times over), and flushing changes no recorded metric at the
values that matter: what lies below the rank tolerance stays below it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nctui import metrics
from nctui.config import load_config
from nctui.data import load_dataset
from nctui.train.packed import PackedTrainer
from nctui.train.trainer import Trainer

PRESET = Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml"

TINIEST_NORMAL = torch.finfo(torch.float32).tiny   # 1.18e-38: float32 below this is denormal


def flushing() -> bool:
    """Whether the CPU flushes float32 denormals now (a denormal times 1 reads back as 0)."""
    return float(torch.tensor([TINIEST_NORMAL / 8]) * 1.0) == 0.0


@pytest.fixture
def restore_flushing() -> Iterator[None]:
    """Start with flushing off (a Trainer built earlier in this process turned it on) and put it back."""
    before = flushing()
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(before)


def test_the_packed_trainer_flushes_denormals_on_the_cpu(restore_flushing) -> None:
    torch.set_flush_denormal(False)
    assert not flushing()
    cfg = load_config(PRESET, ["data.synthetic.train_per_class=20", "model.width=16", "train.device=cpu"])
    data = load_dataset(cfg.data, 0, progress=False)
    members = [Trainer(cfg, data, torch.device("cpu"), "a")]
    torch.set_flush_denormal(False)   # each Trainer flushes too: the pack must not rely on it
    PackedTrainer(members)
    assert flushing()


def matrix_with_tiny_directions() -> tuple[torch.Tensor, torch.Tensor]:
    """A float32 64 x 128 weight with singular values from 1 down to 1e-6 (relative) plus a
    block of denormal entries, as weight decay leaves unused inputs; and its designed values."""
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(128, 64, generator=gen, dtype=torch.float64))
    s = torch.tensor([1.0, 0.5, 0.3, 0.1, 3e-2, 1e-2, 5e-3, 2e-3, 1.2e-3, 8e-4, 3e-4, 1e-4, 1e-6]
                     + [0.0] * 51, dtype=torch.float64)
    w = ((u * s) @ v.T).float()
    w[:, 96:] = torch.rand(64, 32, generator=gen) * TINIEST_NORMAL / 2   # denormals only
    return w, s


def test_a_matrix_with_tiny_singular_values_has_the_same_spectrum_with_and_without_flushing(
        restore_flushing) -> None:
    w, designed = matrix_with_tiny_directions()
    assert 0 < float(w[:, 96:].max()) < TINIEST_NORMAL   # the block really is denormal
    results, block = {}, {}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        block[flush] = float(w[:, 96:].double().abs().max())   # what the float64 spectra read of it
        results[flush] = metrics.spectrum(w.clone(), num_classes=10, rank_tol=1e-3)
    assert block[False] > 0 and block[True] == 0   # flushing does change the input ...
    off, on = results[False], results[True]   # ... and nothing that is recorded
    relative = designed / designed.norm()
    assert off["rank"] == on["rank"] == int((relative > 1e-3).sum()) == 9
    for key in ("stable_rank", "effective_rank", "top_c_energy", "fro_norm"):
        assert on[key] == pytest.approx(off[key], rel=1e-6), key
    above = [i for i, value in enumerate(off["sv"]) if value > 1e-5]
    assert [on["sv"][i] for i in above] == pytest.approx([off["sv"][i] for i in above], rel=1e-6)
    assert all(on["sv"][i] <= 1e-5 for i in range(len(on["sv"])) if i not in above)
