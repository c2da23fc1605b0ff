"""The embedded synthetic data set, and the class-balanced subset shared by every data set."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from nctui.config import DataConfig
from nctui.data import DataError, SyntheticSpec, load_dataset
from nctui.data.seeding import balanced_indices, seeded_generator
from nctui.data.synthetic import make_synthetic


def synthetic(seed: int, **kwargs) -> object:
    return load_dataset(DataConfig(name="synthetic", root=None, download=False, **kwargs), seed=seed)


def test_same_seed_identical_different_seed_different() -> None:
    a, b, c = synthetic(3), synthetic(3), synthetic(4)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.train_x, c.train_x) and not torch.equal(a.train_y, c.train_y)


def test_global_rng_untouched_and_ignored() -> None:
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    first = make_synthetic(SyntheticSpec(), 7)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(123)
    assert torch.equal(make_synthetic(SyntheticSpec(), 7)[0], first[0])


def test_shapes_balance_and_normalisation() -> None:
    spec = SyntheticSpec()
    data = synthetic(0)
    c = spec.num_classes
    assert data.train_x.shape == (spec.train_per_class * c, 1, 28, 28)
    assert data.test_x.shape == (spec.test_per_class * c, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert torch.bincount(data.train_y).tolist() == [spec.train_per_class] * c
    assert torch.bincount(data.test_y).tolist() == [spec.test_per_class] * c
    assert data.train_y[:c].unique().numel() > 1  # shuffled, not sorted by class
    assert abs(data.train_x.mean().item()) < 1e-5
    assert abs(data.train_x.std(correction=0).item() - 1) < 1e-4
    assert abs(data.test_x.mean().item()) < 0.1 and abs(data.test_x.std().item() - 1) < 0.1
    assert data.num_classes == c and len(data.classes) == c


def test_spec_recorded_and_respected() -> None:
    spec = SyntheticSpec(train_per_class=7, test_per_class=3, num_classes=4,
                         prototypes_per_class=2, noise=0.1)
    data = synthetic(1, synthetic=spec, train_size=12)
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (12, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [3, 3, 3, 3]
    source = json.loads(json.dumps(data.preprocessing))["source"]
    assert source["spec"] == dataclasses.asdict(spec) and source["seed"] == 1


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    make_synthetic(SyntheticSpec(), 0)
    assert time.perf_counter() - start < 1.0


def test_classes_overlap_but_are_learnable() -> None:
    """Nearest class mean is far from chance yet far from perfect: the classes are multimodal
    and overlap, so a network has real work to do (the MLP of the quickstart reaches ~92%)."""
    data = synthetic(0)
    x, t = data.train_x.flatten(1), data.test_x.flatten(1)
    means = torch.stack([x[data.train_y == c].mean(0) for c in range(data.num_classes)])
    accuracy = (torch.cdist(t, means).argmin(1) == data.test_y).float().mean().item()
    assert 0.25 < accuracy < 0.8


@pytest.mark.parametrize(("field", "value"), [("num_classes", 1), ("noise", -1.0),
                                              ("contrast", 1.0), ("train_per_class", 0)])
def test_bad_spec_names_field(field: str, value: float) -> None:
    with pytest.raises(DataError, match=f"synthetic.{field} = "):
        make_synthetic(SyntheticSpec(**{field: value}), 0)


def test_balanced_subset_fills_from_larger_classes() -> None:
    labels = torch.tensor([0] * 2 + [1] * 10 + [2] * 10)
    keep = balanced_indices(labels, 3, 11, seeded_generator(0, "t"))
    assert torch.bincount(labels[keep], minlength=3).tolist() == [2, 5, 4]
    assert torch.equal(keep, keep.sort().values) and keep.unique().numel() == 11


def test_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown data set 'imagenet': choose one of synthetic, "
                                        "mnist, fashion_mnist, cifar10"):
        load_dataset(DataConfig(name="imagenet", root=None, download=False), seed=0)
