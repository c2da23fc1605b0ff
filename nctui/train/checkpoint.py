"""One slot of a snapshot: the unit in which the trainer declares what a Checkpoint holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

# name -> (shape, dtype, required); -1 in a shape matches any size
Layout = dict[str, tuple[tuple[int, ...], Any, bool]]


@dataclass(frozen=True)
class Slot:
    """A named tensor of the run's state: its expected shape and dtype, whether every snapshot
    must hold it, how to read it now (None: absent at the moment) and how to put a saved value
    back (None: derived, never restored; called with None when the snapshot lacks it)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    required: bool
    get: Callable[[], torch.Tensor | None]
    put: Callable[[torch.Tensor | None], Any] | None
