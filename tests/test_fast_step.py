"""The training step: which implementation runs where, the lean weight norm, eager vs CUDA graph."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils.parametrizations import weight_norm

from nctui.config import DataConfig, ModelConfig, build_config
from nctui.data import SyntheticSpec, load_dataset
from nctui.models.networks import build_model, one_hot_targets
from nctui.train.fast_step import CudaGraphStep, EagerStep, lean_weight_norm, make_step
from nctui.train.trainer import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the captured step can only be compared on a GPU")


def tiny(kind: str = "fc", device: str = "cpu", seed: int = 0):
    """A tiny WN classifier, its SGD optimizer and 64 samples of data, all on `device`.

    Everything random is drawn on the CPU, as nctui itself does: a failed capture (the fallback
    test) leaves torch's CUDA generator in capture mode, and any later CUDA draw in the process
    raises "Offset increment outside graph capture encountered unexpectedly"."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind, width=8, depth=3, channels=[4, 4], kernel=2, stride=1),
                        (1, 6, 6), 3).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)
    x = torch.randn(64, 1, 6, 6).to(device)
    targets = one_hot_targets(torch.arange(64, device=device) % 3, 3)
    return model, optimizer, x, targets


def batches(device: str, steps: int, batch: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randperm(64, generator=gen)[:batch].to(device) for _ in range(steps)]


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_cpu_always_steps_eagerly_and_says_why(mode: str) -> None:
    model, optimizer, x, targets = tiny()
    step = make_step(model, optimizer, x, targets, 16, mode)
    assert type(step) is EagerStep and step.kind == "eager"
    assert step.reason and step.describe().startswith("eager (")


def test_cuda_graph_on_without_cuda_is_a_config_error() -> None:
    model, optimizer, x, targets = tiny()
    with pytest.raises(ValueError, match="train.cuda_graph is on"):
        make_step(model, optimizer, x, targets, 16, "on")
    cfg = build_config({"data": {"synthetic": {"train_per_class": 8, "test_per_class": 2}},
                        "model": {"width": 8, "depth": 2}, "train": {"epochs": 1, "batch_size": 16, "cuda_graph": "on"}})
    data = load_dataset(DataConfig(name="synthetic", root=None, download=False, synthetic=SyntheticSpec(train_per_class=8, test_per_class=2)), seed=0, progress=False)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        Trainer(cfg, data, torch.device("cpu"), "t")


@pytest.mark.parametrize("kind", ["fc", "cnn"])
def test_lean_weight_norm_keeps_weights_and_state_and_matches_the_gradients(kind: str) -> None:
    model, _, x, targets = tiny(kind)
    reference = copy.deepcopy(model)
    assert lean_weight_norm(model) == len(model.layers) - 1   # every layer but the classifier
    assert lean_weight_norm(model) == 0                        # nothing left to swap
    assert model.state_dict().keys() == reference.state_dict().keys()
    with torch.no_grad():
        for lean, plain in zip(model.effective_weights(), reference.effective_weights()):
            assert torch.equal(lean, plain)   # the same forward arithmetic, bit for bit
    for m in (model, reference):
        torch.nn.functional.mse_loss(m(x), targets).backward()
    for (name, lean), plain in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(lean.grad, plain.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_lean_weight_norm_leaves_other_parametrizations_alone() -> None:
    per_row = weight_norm(torch.nn.Linear(4, 3, bias=False))   # dim=0: one norm per output row
    assert lean_weight_norm(per_row) == 0


def test_eager_steps_are_deterministic_on_cpu() -> None:
    runs = []
    for _ in range(2):
        model, optimizer, x, targets = tiny()
        lean_weight_norm(model)
        step = make_step(model, optimizer, x, targets, 16, "auto")
        losses = torch.stack([step(idx) for idx in batches("cpu", 5)])
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@needs_cuda
@pytest.mark.parametrize("kind", ["fc", "cnn"])
def test_captured_steps_give_the_weights_of_eager_steps(kind: str) -> None:
    """Warm-up, capture, replays, an lr change (re-capture): the same weights and losses as eager."""
    results = []
    for mode in ("off", "auto"):
        model, optimizer, x, targets = tiny(kind, "cuda")
        lean_weight_norm(model)
        step = make_step(model, optimizer, x, targets, 16, mode)
        losses = []
        for i, idx in enumerate(batches("cuda", 12)):
            if i == 8:
                optimizer.param_groups[0]["lr"] = 0.01
            losses.append(step(idx).clone())
        torch.cuda.synchronize()
        results.append((step, torch.stack(losses), [p.detach().clone() for p in model.parameters()]))
    (eager, eager_losses, eager_params), (graph, graph_losses, graph_params) = results
    assert isinstance(graph, CudaGraphStep) and graph.kind == "cuda_graph", graph.describe()
    assert graph.graph is not None and graph.lrs == [0.01]
    torch.testing.assert_close(graph_losses, eager_losses, rtol=1e-5, atol=1e-6)
    for a, b in zip(graph_params, eager_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def host_sync(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
    """A forward hook that reads a number back to the host: a step with it cannot be captured."""
    out.sum().item()


@needs_cuda
def test_a_step_that_cannot_be_captured_falls_back_or_fails_as_asked() -> None:
    model, optimizer, x, targets = tiny("fc", "cuda")
    model.register_forward_hook(host_sync)
    step = make_step(model, optimizer, x, targets, 16, "auto")
    for idx in batches("cuda", 5):
        step(idx)
    assert step.kind == "eager" and "capture failed" in step.reason
    model, optimizer, x, targets = tiny("fc", "cuda")
    model.register_forward_hook(host_sync)
    strict = make_step(model, optimizer, x, targets, 16, "on")
    with pytest.raises(RuntimeError, match="capturing the step failed"):
        for idx in batches("cuda", 5):
            strict(idx)
