"""The one seeding helper and the one class-balanced picker: everything random in a run.

Every random stream of a run (synthetic data, subsets, batch order, the evaluation probe, the
SGD-noise minibatches) is a CPU generator seeded by sha256("<seed>:<purpose>"), so the streams
never depend on each other, on the global RNG or on the device, and a resumed run redraws
exactly what the uninterrupted run drew. run.json records this scheme (records.RNG_SCHEME).
"""

from __future__ import annotations

import hashlib

import torch

from nctui.data.errors import DataError


def seeded_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose (e.g. "batch-order:3", "probe", "noise:400")."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def balanced_indices(labels: torch.Tensor, num_classes: int, size: int, generator: torch.Generator,
                     what: str = "size") -> torch.Tensor:
    """Sorted indices of `size` samples, as equal per class as the class counts allow.

    Each class gets size // C (the first classes one more for the remainder); a class with too
    few samples gives all it has and the others make up the difference. Within a class the
    picks are a seeded random permutation. DataError names `what` when `size` cannot be met.
    """
    labels = labels.cpu()
    if not num_classes <= size <= labels.numel():
        raise DataError(f"{what} = {size}: must be between the number of classes "
                        f"({num_classes}) and the number of samples ({labels.numel()})")
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    quota, left = [0] * num_classes, size
    while left:
        open_classes = [c for c in range(num_classes) if quota[c] < counts[c]]
        share = max(left // len(open_classes), 1)
        for c in open_classes:
            take = min(share, counts[c] - quota[c], left)
            quota[c] += take
            left -= take
    picks = []
    for c in range(num_classes):
        members = (labels == c).nonzero().squeeze(1)
        picks.append(members[torch.randperm(members.numel(), generator=generator)[:quota[c]]])
    return torch.cat(picks).sort().values
