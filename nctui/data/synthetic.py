"""The embedded data set: smooth random 28x28 "images", generated from the seed, no files.

Each class mixes a few prototypes (random low-frequency fields). A sample is one of its
class's prototypes, shifted and rescaled, plus a class-independent smooth field and white
pixel noise. The smooth field lives in the same low frequencies as the prototypes, so it cannot
be averaged away: classes overlap a little and test accuracy stays below 100%, while the white
noise gives a network enough per-sample detail to fit every training label, which is the regime
where neural collapse shows. Shaped 1x28x28 so the FC and the CNN presets both run on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nctui.data.errors import DataError
from nctui.data.seeding import seeded_generator

SIDE = 28
GENERATOR_VERSION = 1  # bump when the recipe below changes, so recorded runs stay reproducible


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that defines the synthetic data besides the seed (recorded in preprocessing)."""

    train_per_class: int = 250      # training samples per class
    test_per_class: int = 100       # test samples per class
    num_classes: int = 10           # C
    prototypes_per_class: int = 3   # smooth random "modes" each class mixes
    noise: float = 0.8              # std of additive white pixel noise (prototypes: unit RMS)
    smooth_noise: float = 0.65      # RMS of a class-independent smooth field per sample: overlap
    frequencies: int = 5            # fields use the lowest k x k cosine modes: smaller is smoother
    max_shift: int = 2              # per-sample translation, up to this many pixels each way
    contrast: float = 0.3           # per-sample gain, uniform in [1 - contrast, 1 + contrast]

    def check(self) -> None:
        """Reject specs that cannot generate a usable data set, naming the field."""
        for field, value, low in (("train_per_class", self.train_per_class, 1),
                                  ("test_per_class", self.test_per_class, 1),
                                  ("num_classes", self.num_classes, 2),
                                  ("prototypes_per_class", self.prototypes_per_class, 1),
                                  ("frequencies", self.frequencies, 2),
                                  ("max_shift", self.max_shift, 0)):
            if value < low:
                raise DataError(f"synthetic.{field} = {value}: must be at least {low}")
        for field, value in (("noise", self.noise), ("smooth_noise", self.smooth_noise),
                             ("contrast", self.contrast)):
            if not (math.isfinite(value) and value >= 0):
                raise DataError(f"synthetic.{field} = {value}: must be a finite number >= 0")
        if self.contrast >= 1:
            raise DataError(f"synthetic.contrast = {self.contrast}: must be below 1 "
                            "(gains stay positive)")


def _cosine_basis(k: int, n: int) -> torch.Tensor:
    """The k lowest-frequency DCT-II vectors on n points, (k, n), unit RMS."""
    u = torch.arange(k, dtype=torch.float64)[:, None]
    x = torch.arange(n, dtype=torch.float64)[None, :]
    return torch.cos(math.pi * (x + 0.5) * u / n) * math.sqrt(2.0)


def _smooth_fields(count: int, k: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """`count` zero-mean random fields on n x n with a 1/f-like spectrum, each unit RMS."""
    basis = _cosine_basis(k, n)
    u = torch.arange(k, dtype=torch.float64)
    decay = 1.0 / (1.0 + u[:, None] + u[None, :])
    decay[0, 0] = 0.0  # no constant offset: a field is a pattern, not a brightness
    coeffs = torch.randn(count, k, k, generator=gen, dtype=torch.float64) * decay
    fields = torch.einsum("puv,ux,vy->pxy", coeffs, basis, basis)
    fields = fields - fields.mean(dim=(1, 2), keepdim=True)
    return fields / fields.square().mean(dim=(1, 2), keepdim=True).sqrt()


def _samples(protos: torch.Tensor, labels: torch.Tensor, spec: SyntheticSpec,
             gen: torch.Generator) -> torch.Tensor:
    """Draw one image per label from its class's prototypes, (N, 1, 28, 28) float32."""
    n, p, s = labels.numel(), spec.prototypes_per_class, spec.max_shift
    which = labels * p + torch.randint(p, (n,), generator=gen)
    dy = torch.randint(2 * s + 1, (n,), generator=gen)
    dx = torch.randint(2 * s + 1, (n,), generator=gen)
    gain = 1.0 + spec.contrast * (2.0 * torch.rand(n, generator=gen, dtype=torch.float64) - 1.0)
    grid = torch.arange(SIDE)
    rows = (dy[:, None] + grid)[:, :, None]
    cols = (dx[:, None] + grid)[:, None, :]
    x = gain[:, None, None] * protos[which[:, None, None], rows, cols]
    x += spec.smooth_noise * _smooth_fields(n, spec.frequencies, SIDE, gen)
    x += spec.noise * torch.randn(n, SIDE, SIDE, generator=gen, dtype=torch.float64)
    return x.to(torch.float32).unsqueeze(1)


def _labels(per_class: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Exactly `per_class` of each class, in a seeded random order."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return labels[torch.randperm(labels.numel(), generator=gen)]


def make_synthetic(spec: SyntheticSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y) on CPU, bit-identical for the same spec and seed."""
    spec.check()
    gen = seeded_generator(seed, f"synthetic-v{GENERATOR_VERSION}")
    c, side = spec.num_classes, SIDE + 2 * spec.max_shift
    protos = _smooth_fields(c * spec.prototypes_per_class, spec.frequencies, side, gen)
    train_y = _labels(spec.train_per_class, c, gen)
    test_y = _labels(spec.test_per_class, c, gen)
    train_x = _samples(protos, train_y, spec, gen)
    test_x = _samples(protos, test_y, spec, gen)
    return train_x, train_y, test_x, test_y
