"""The training step, eager or replayed from a CUDA graph, and a leaner weight-norm backward.

One SGD step is a gather, a forward pass, the square loss, a backward pass and the optimizer
update. On a GPU the launch overhead of those few hundred small kernels dominates, so with
fixed shapes the whole step is captured once as a CUDA graph and replayed (static index
buffer in, static loss out; the learning rate is baked into the graph, so a new one means a
new capture). Everywhere else, and whenever capture fails, the same step runs eagerly. Neither
path reads anything back to the host.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils import parametrizations

from nctui.models.networks import Classifier, square_loss

WARMUP_STEPS = 3  # eager steps on a side stream before the first capture (lazy init, momentum buffers)


class _WeightNormFn(torch.autograd.Function):
    """W = g V / ||V||_F with the backward written out: three passes over V instead of about seven.

    dW -> dg = <dW, V> / ||V||, dV = (g / ||V||) (dW - (<dW, V> / ||V||^2) V). The forward is
    the same arithmetic as torch's weight norm with dim=None, so the weights are bit for bit
    the same; only the gradient's rounding may differ.
    """

    @staticmethod
    def forward(ctx, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        norm = v.norm()
        ctx.save_for_backward(g, v, norm)
        return v * (g / norm)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, v, norm = ctx.saved_tensors
        scale = g / norm
        dot = torch.dot(grad.reshape(-1), v.reshape(-1))
        grad_v = (grad * scale).addcmul_(v, -scale * dot / (norm * norm))
        return (dot / norm).reshape(g.shape), grad_v


class _LeanWeightNorm(nn.Module):
    """Drop-in for torch's whole-tensor weight-norm parametrization (same inputs, same output)."""

    def forward(self, weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
        return _WeightNormFn.apply(weight_g, weight_v)


def lean_weight_norm(model: nn.Module) -> int:
    """Swap torch's dim=None weight-norm parametrizations for `_LeanWeightNorm`; returns how many.

    The parameters (and so state_dict keys, snapshots and optimizer state) stay as they are;
    on a CPU, where that backward costs about as much as the matmuls, the FC step gets ~10%
    faster (bench/README.md). A torch without the private class leaves the model untouched.
    """
    torch_weight_norm = getattr(parametrizations, "_WeightNorm", None)
    swapped = 0
    for module in model.modules():
        chains = getattr(module, "parametrizations", None)
        for name in list(chains or ()):
            chain = chains[name]
            if len(chain) == 1 and type(chain[0]) is torch_weight_norm and chain[0].dim == -1:
                chain[0] = _LeanWeightNorm()
                swapped += 1
    return swapped


class EagerStep:
    """One SGD step on the batch at `idx`, returning the loss as a device tensor (no sync)."""

    kind = "eager"

    def __init__(self, model: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 targets: torch.Tensor, reason: str = "") -> None:
        self.model, self.optimizer, self.x, self.targets = model, optimizer, x, targets
        self.reason = reason   # why this step is not a CUDA graph, for the user

    def eager(self, idx: torch.Tensor) -> torch.Tensor:
        loss = square_loss(self.model(self.x[idx]), self.targets[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    __call__ = eager

    def describe(self) -> str:
        return f"{self.kind} ({self.reason})" if self.reason else self.kind


class CudaGraphStep(EagerStep):
    """The eager step captured as a CUDA graph after WARMUP_STEPS eager ones, then replayed.

    Every call is one real optimizer step, capture included (a capture records without
    running, so it is followed by a replay). The graph owns the gradients and activations in
    its private pool, reads the batch through `self.idx` and leaves the loss in `self.loss`,
    valid until the next call. It bakes in the learning rate: a call with another lr in the
    param groups re-captures. The momentum buffers must stay the tensors they were at capture,
    which happens in the first calls: restore optimizer state before running. If capture
    fails, `strict` raises; otherwise the step stays eager from then on and `reason` says why.
    """

    kind = "cuda_graph"

    def __init__(self, model: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 targets: torch.Tensor, batch_size: int, strict: bool) -> None:
        super().__init__(model, optimizer, x, targets)
        self.strict = strict
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=x.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        self.lrs: list[float] = []
        self.warmup_left = WARMUP_STEPS
        self.side_stream = torch.cuda.Stream(device=x.device)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.kind == "eager":
            return self.eager(idx)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.graph is None or lrs != self.lrs:
            if self.warmup_left:
                return self._warmup(idx)
            try:
                self._capture(lrs)
            except RuntimeError as err:
                return self._give_up(err, idx)
        self.idx.copy_(idx)
        self.graph.replay()
        return self.loss

    def _warmup(self, idx: torch.Tensor) -> torch.Tensor:
        """An eager step on a side stream, as capture wants its lazy initialisation done there."""
        self.warmup_left -= 1
        main = torch.cuda.current_stream(self.x.device)
        self.side_stream.wait_stream(main)
        with torch.cuda.stream(self.side_stream):
            loss = self.eager(idx)
        main.wait_stream(self.side_stream)
        loss.record_stream(main)
        return loss

    def _capture(self, lrs: list[float]) -> None:
        self.graph = self.loss = None   # free the old graph's pool before taking a new one
        self.optimizer.zero_grad(set_to_none=True)   # backward in the graph allocates static grads
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = square_loss(self.model(self.x[self.idx]), self.targets[self.idx])
            loss.backward()
            self.optimizer.step()
        self.graph, self.loss, self.lrs = graph, loss.detach(), lrs

    def _give_up(self, err: RuntimeError, idx: torch.Tensor) -> torch.Tensor:
        """Fall back to eager steps (or raise, when strict). torch leaves its CUDA generator in
        capture mode after a failed capture, so CUDA random draws would fail from then on; the
        trainer draws nothing on the GPU (init, batch order and probes use CPU generators)."""
        if self.strict:
            raise RuntimeError(f"train.cuda_graph is on but capturing the step failed: {err}") from err
        self.graph = self.loss = None
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(self.x.device)
        self.kind, self.reason = "eager", f"CUDA graph capture failed: {err}"
        return self.eager(idx)


def make_step(model: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
              targets: torch.Tensor, batch_size: int, mode: str) -> EagerStep:
    """The step for `train.cuda_graph` = mode: a CUDA graph only on a CUDA device (auto, on), else eager.

    `on` where no graph is possible is an error the user can fix; `auto` falls back with a reason.
    """
    if mode == "off":
        return EagerStep(model, optimizer, x, targets, "train.cuda_graph is off")
    if x.device.type != "cuda":
        if mode == "on":
            raise ValueError(f"train.cuda_graph is on but the device is {x.device.type}: "
                               "CUDA graphs need a CUDA device (use auto or off)")
        return EagerStep(model, optimizer, x, targets, f"{x.device.type}: CUDA graphs need a CUDA device")
    return CudaGraphStep(model, optimizer, x, targets, batch_size, strict=mode == "on")
