"""K classifiers of one architecture as one model: every parameter gains a leading member axis.

A dense layer becomes one batched matmul (`torch.bmm`, K x B x in times K x in x out) and a conv
layer one grouped convolution (the K members' channels side by side, `groups=K`), so K runs of
a sweep cost a few large kernels a step instead of K sets of small ones. Weight normalisation
is per member (W_k = g_k V_k / ||V_k||_F over member k's matrix alone), so every member computes
what its own `Classifier` would; the packed model holds only the stacked parameters, and
`load_member` / `store_member` copy one member's slice from and to its ordinary model, whose
state_dict names they share (`names`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils import parametrize

from nctui.models.networks import Classifier


class _PackedWeightNormFn(torch.autograd.Function):
    """W[k] = g[k] V[k] / ||V[k]||_F for every member k, the backward written out (three passes
    over V, as the single-model `_WeightNormFn` of train/fast_step.py).

    The norms and the dot products are taken member by member with the single model's own
    reductions (`Tensor.norm`, `torch.dot`): a batched reduction sums in another order, and on a
    CPU that rounding difference was the only thing that kept a packed FC member from matching
    its alone run bit for bit.
    """

    @staticmethod
    def forward(ctx, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (v.dim() - 1)
        norm = torch.stack([member.norm() for member in v]).view(shape)
        ctx.save_for_backward(g, v, norm)
        return v * (g.view(shape) / norm)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, v, norm = ctx.saved_tensors
        scale = g.view(norm.shape) / norm
        dot = torch.stack([torch.dot(a, b) for a, b in zip(grad.flatten(1), v.flatten(1))]).view(norm.shape)
        grad_v = (grad * scale).addcmul_(v, -scale * dot / (norm * norm))
        return (dot / norm).view(g.shape), grad_v


class _PackedLinearFn(torch.autograd.Function):
    """x[k] W[k]^T for every member, with the weight gradient taken as g^T x (what `F.linear`'s
    backward computes): autograd's own bmm backward forms x^T g and transposes it, whose rounding
    differs for some shapes (e.g. 256 -> 10)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.bmm(x, w.transpose(1, 2))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x)


@dataclass(frozen=True)
class _Layer:
    """Where one layer's stacked parameters sit in `PackedClassifier.params`, and how it is applied."""

    kind: str               # "dense" | "conv"
    weight: int             # index of V (weight-normalised) or of the plain weight
    scale: int | None       # index of g when weight-normalised
    bias: int | None
    stride: int


class PackedClassifier(nn.Module):
    """K members of one architecture; `forward` maps K x B inputs to K x B x C logits."""

    def __init__(self, members: Sequence[Classifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a pack needs at least one member")
        first = members[0]
        self.names = [name for name, _ in first.named_parameters()]
        for other in members[1:]:
            shapes = [(n, tuple(p.shape)) for n, p in other.named_parameters()]
            if other.description != first.description or shapes != [(n, tuple(p.shape)) for n, p
                                                                    in first.named_parameters()]:
                raise ValueError(f"members differ in architecture: {first.description} and {other.description}")
        with torch.no_grad():
            self.params = nn.ParameterList(
                nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in members]))
                for name in self.names)
        self.flatten_input = first.flatten_input
        self.infos = first.infos
        self.description = first.description
        self.layers = [self._describe(i, layer) for i, layer in enumerate(first.layers)]

    def _describe(self, i: int, layer: nn.Module) -> _Layer:
        kind = "conv" if isinstance(layer, nn.Conv2d) else "dense"
        normalised = parametrize.is_parametrized(layer, "weight")
        weight = f"layers.{i}.parametrizations.weight.original1" if normalised else f"layers.{i}.weight"
        scale = f"layers.{i}.parametrizations.weight.original0" if normalised else None
        bias = f"layers.{i}.bias" if layer.bias is not None else None
        stride = layer.stride[0] if kind == "conv" else 1
        where = {name: k for k, name in enumerate(self.names)}
        return _Layer(kind, where[weight], where.get(scale), where.get(bias), stride)

    @property
    def size(self) -> int:
        """K, the members packed now."""
        return self.params[0].shape[0]

    def _weight(self, layer: _Layer) -> torch.Tensor:
        v = self.params[layer.weight]
        return v if layer.scale is None else _PackedWeightNormFn.apply(self.params[layer.scale], v)

    def effective_weights(self) -> list[torch.Tensor]:
        """W of every layer, K x (the member's shape), as the forward pass uses them."""
        return [self._weight(layer) for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: K x B x (input shape), member k's batch in row k; K x B x C logits."""
        members, batch = x.shape[:2]
        grouped = False   # conv activations stay B x (K * channels) x H x W between conv layers
        if self.flatten_input:
            x = x.flatten(2)
        *hidden, last = self.layers
        for layer in hidden:
            w = self._weight(layer)
            bias = self.params[layer.bias] if layer.bias is not None else None
            if layer.kind == "conv":
                if not grouped:
                    x, grouped = x.transpose(0, 1).reshape(batch, -1, *x.shape[3:]), True
                x = F.conv2d(x, w.flatten(0, 1), bias.flatten() if bias is not None else None,
                             stride=layer.stride, groups=members)
            else:
                x = _PackedLinearFn.apply(x, w)
                if bias is not None:
                    x = x + bias.unsqueeze(1)
            x = F.relu(x)
        if grouped:
            x = x.reshape(batch, members, -1).transpose(0, 1)
        x = _PackedLinearFn.apply(x.flatten(2), self._weight(last))
        if last.bias is not None:
            x = x + self.params[last.bias].unsqueeze(1)
        return x

    # --- members in and out -----------------------------------------------------------------

    @torch.no_grad()
    def load_member(self, position: int, model: Classifier) -> None:
        """Copy an ordinary model's parameters into the member at `position`."""
        for name, p in zip(self.names, self.params):
            p[position].copy_(model.get_parameter(name))

    @torch.no_grad()
    def store_member(self, position: int, model: Classifier) -> None:
        """Copy the member at `position` into an ordinary model (for its evaluation or snapshot)."""
        for name, p in zip(self.names, self.params):
            model.get_parameter(name).copy_(p[position])

    @torch.no_grad()
    def keep(self, positions: list[int]) -> None:
        """Keep only the members at `positions`, in that order (a member that ends leaves the pack)."""
        index = torch.tensor(positions, dtype=torch.long, device=self.params[0].device)
        for p in self.params:
            p.data = p.data.index_select(0, index)
            p.grad = None


def packed_square_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's square loss (mean over its batch and classes, as `square_loss`): K values."""
    return (logits - targets).square().mean(dim=(1, 2))
