"""The classifiers the theory is about: homogeneous ReLU nets, weight-normalised, no biases.

Weight normalisation is one scalar per whole matrix, W_k = g_k V_k / ||V_k||_F, on every layer
but the last (torch's `weight_norm(layer, dim=None)`), so rho_k = ||W_k||_F = |g_k| and
f(W; x) = prod_k rho_k * f(V; x) (Xu et al. 2023, section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

if TYPE_CHECKING:   # the builder reads the section's fields only
    from nctui.config import ModelConfig


@dataclass(frozen=True)
class LayerInfo:
    """What the metrics need to know of one weighted layer."""

    name: str
    kind: str           # "dense" or "conv"
    positions: int      # output positions a kernel is applied at (1 for a dense layer)
    kernel_area: int    # kh * kw (1 for a dense layer)


class Classifier(nn.Module):
    """A stack of weighted layers with ReLU between them; the last layer is the plain classifier."""

    def __init__(self, layers: list[nn.Module], infos: list[LayerInfo], description: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.flatten_input = infos[0].kind == "dense"  # an FC net sees the image as one vector
        self.infos = infos
        self.description = description

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x = x.flatten(1)
        *hidden, last = self.layers
        for layer in hidden:
            x = F.relu(layer(x))
        return last(x.flatten(1))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the input of every layer (flattened): [x, h_1, ..., h_{L-1}].

        The last entry is the penultimate feature h(x) of neural collapse.
        """
        if self.flatten_input:
            x = x.flatten(1)
        inputs = []
        *hidden, last = self.layers
        for layer in hidden:
            inputs.append(x.flatten(1))
            x = F.relu(layer(x))
        inputs.append(x.flatten(1))
        return last(x.flatten(1)), inputs

    def effective_weights(self) -> list[torch.Tensor]:
        """W_k as the forward pass uses them (g V/||V||_F for normalised layers)."""
        return [layer.weight for layer in self.layers]


def build_model(spec: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> Classifier:
    """The network a config's `model` section describes, initialised from torch's global RNG.

    FC: x -> [Linear, ReLU] x (depth-1) -> Linear(C). CNN: [Conv, ReLU] per channel -> Linear(C).
    """
    kind, width, depth, channels = spec.kind, spec.width, spec.depth, spec.channels
    kernel, stride, bias = spec.kernel, spec.stride, spec.bias
    in_ch, height, width_px = input_shape
    layers: list[nn.Module] = []
    infos: list[LayerInfo] = []
    if kind == "fc":
        sizes = [in_ch * height * width_px] + [width] * (depth - 1)
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers.append(nn.Linear(n_in, n_out, bias=bias))
            infos.append(LayerInfo(f"fc{i + 1}", "dense", 1, 1))
        flat = sizes[-1]
        hidden = f"{width}x{depth - 1}-" if depth > 1 else ""
        description = f"FC {sizes[0]}-{hidden}{num_classes}"
    elif kind == "cnn":
        if not channels:
            raise ValueError("a cnn needs at least one conv layer (model.channels)")
        for i, out_ch in enumerate(channels):
            height = (height - kernel) // stride + 1
            width_px = (width_px - kernel) // stride + 1
            if height < 1 or width_px < 1:
                raise ValueError(f"model.channels: conv layer {i + 1} leaves no pixels "
                                 f"(kernel {kernel}, stride {stride}); use fewer layers or a smaller stride")
            layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, bias=bias))
            infos.append(LayerInfo(f"conv{i + 1}", "conv", height * width_px, kernel * kernel))
            in_ch = out_ch
        flat = in_ch * height * width_px
        description = f"CNN {'-'.join(map(str, channels))} k{kernel}s{stride}-{num_classes}"
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    layers.append(nn.Linear(flat, num_classes, bias=bias))
    infos.append(LayerInfo("classifier", "dense", 1, 1))
    if spec.weight_norm:
        layers[:-1] = [weight_norm(layer, dim=None) for layer in layers[:-1]]
        description += " · WN"
    return Classifier(layers, infos, description)


def square_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over batch and classes of (f(x) - target)^2, targets one-hot (times a scale)."""
    return F.mse_loss(logits, targets)


def one_hot_targets(labels: torch.Tensor, num_classes: int, scale: float = 1.0) -> torch.Tensor:
    """Float one-hot targets, computed once so the step is a gather, not a scatter."""
    return F.one_hot(labels, num_classes).float() * scale

