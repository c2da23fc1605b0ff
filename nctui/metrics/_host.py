"""Moving metric results from the device to plain, finite Python values.

Records and JSONL lines carry numbers that are finite or null, never NaN text (DESIGN.md), so
every metric maps a non-finite result to None here, at its public boundary, instead of
special-casing each division by zero upstream.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def finite(x: float | Tensor | None) -> float | None:
    """x as a Python float, or None when it is missing, NaN or infinite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def host_list(t: Tensor) -> Any:
    """A tensor as (nested) lists of finite floats, non-finite entries as None; one transfer."""
    return _clean(t.detach().to("cpu", torch.float64).tolist())


def _clean(v: Any) -> Any:
    return [_clean(e) for e in v] if isinstance(v, list) else finite(v)


def host_scalars(values: dict[str, Tensor | None]) -> dict[str, float | None]:
    """Scalar tensors (all on one device) to finite floats in a single transfer; None stays None."""
    keys = [k for k, v in values.items() if v is not None]
    out: dict[str, float | None] = dict.fromkeys(values)
    if keys:
        stacked = torch.stack([values[k].reshape(()).to(torch.float64) for k in keys])
        out.update(zip(keys, host_list(stacked)))
    return out
