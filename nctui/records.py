"""The records a run produces: the one vocabulary shared by train/, store/ and tui/.

Plain dataclasses of Python numbers, strings and small lists (never tensors), so the live
view, metrics.jsonl and a replay are the same thing. docs/records.md documents each field.
Non-finite numbers are written as JSON null; reading tolerates missing and unknown keys so
an old viewer opens a newer run and a hostile file cannot crash the reader.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

SCHEMA_VERSION = 1
# a run directory's name or a file name inside one: one path component, no separators, not hidden
PLAIN_NAME = re.compile(r"\w[\w .+-]*")


@dataclass
class StartRecord:
    """First line of every run (and of every resumed segment)."""

    run: str                      # run directory name
    time: float                   # wall-clock start, Unix seconds
    device: str                   # "cpu" or e.g. "cuda (NVIDIA H200)"
    dataset: str                  # data set name
    model: str                    # one-line description, e.g. "FC 784-512x4-10 · WN"
    num_classes: int              # C
    layers: list[str]             # layer names, input to output; the last is the classifier
    epochs: int                   # planned epochs
    steps_per_epoch: int
    total_steps: int              # planned steps
    train_samples: int            # m, the size of the training set
    resumed_from: int | None = None  # step the run resumed at, None for a fresh start
    config: dict = field(default_factory=dict)  # the resolved config
    type: str = "start"


@dataclass
class StepRecord:
    """Training progress, every monitor.log_every steps."""

    step: int                     # optimizer steps done
    epoch: float                  # step / steps_per_epoch
    loss: float | None            # mean square loss of the logged step's batch
    lr: float                     # learning rate in force
    samples_per_s: float | None   # throughput since the previous step record
    elapsed: float                # seconds since the start of the run
    type: str = "step"


@dataclass
class EvalRecord:
    """Everything METRICS.md defines, measured at one evaluation.

    Groups are plain dicts keyed as in METRICS.md; `layers` holds one dict per layer, input
    to output (keys: name, rho, sv, rank, stable_rank, effective_rank, top_c_energy,
    rank_ceiling, nc1, nc1_trace_ratio, alignment, drift, rho_jitter).
    """

    step: int
    epoch: float
    elapsed: float
    eval_seconds: float | None = None          # wall time this evaluation took
    train: dict = field(default_factory=dict)  # loss, acc on the probe; err = 1 - acc
    test: dict = field(default_factory=dict)   # loss, acc on the test set
    geometry: dict = field(default_factory=dict)  # nc1 ... nc4, cosine (C x C), mean_norms, classifier_norms
    layers: list[dict] = field(default_factory=list)
    noise: dict = field(default_factory=dict)  # grad_noise, noise_scale, output_jitter
    margins: dict = field(default_factory=dict)  # min, mean, quantiles, normalized_*, err_gamma
    bounds: dict = field(default_factory=dict)  # bound_dense, bound_local, test_error, train_error, gap, rho, rho_over_sqrt_m
    type: str = "eval"


@dataclass
class SnapshotRecord:
    """A snapshot file was written (snap-<step>.safetensors)."""

    step: int
    path: str                     # file name inside the run directory
    reason: str                   # periodic | final | user
    elapsed: float
    type: str = "snapshot"


@dataclass
class EndRecord:
    """Last line of a run: how and why it ended."""

    step: int
    status: str                   # completed | stopped | diverged | failed
    reason: str                   # one human sentence
    elapsed: float
    type: str = "end"


Record = Union[StartRecord, StepRecord, EvalRecord, SnapshotRecord, EndRecord]
RECORD_TYPES: dict[str, type] = {
    "start": StartRecord, "step": StepRecord, "eval": EvalRecord,
    "snapshot": SnapshotRecord, "end": EndRecord,
}
END_STATUSES = ("completed", "stopped", "diverged", "failed")


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities by None, recursively, so JSON never carries NaN text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def record_to_dict(record: Record) -> dict:
    """A record as plain JSON-able data, `type` first, non-finite numbers as None."""
    data = finite_or_none(dataclasses.asdict(record))
    return {"type": data.pop("type"), **data}


def record_to_json(record: Record) -> str:
    """One metrics.jsonl line (without the newline)."""
    return json.dumps(record_to_dict(record), allow_nan=False)


class RecordError(ValueError):
    """A line that is not a record this version understands."""


def record_from_dict(data: Any) -> Record:
    """Rebuild a record from parsed JSON; unknown keys are ignored, missing optional ones defaulted."""
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    kind = data.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RecordError(f"unknown record type {kind!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in known and k != "type"}
    for name, spec in known.items():
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if required and name not in values:
            raise RecordError(f"{kind} record without {name!r}")
    for name in ("train", "test", "geometry", "noise", "margins", "bounds", "config"):
        if name in values and not isinstance(values[name], dict):
            raise RecordError(f"{kind} record: {name} is not an object")
    if "layers" in values and not isinstance(values["layers"], list):
        raise RecordError(f"{kind} record: layers is not a list")
    if kind == "snapshot" and not (isinstance(values["path"], str) and PLAIN_NAME.fullmatch(values["path"])):
        raise RecordError(f"snapshot record: path {str(values['path'])[:60]!r} is not a file name in the "
                          "run directory")
    return cls(**values)


def record_from_json(line: str) -> Record:
    """Parse one metrics.jsonl line."""
    try:
        data = json.loads(line)
    except ValueError as err:
        raise RecordError(f"not JSON ({err.msg})") from None
    except RecursionError:
        raise RecordError("not a record (JSON nested too deeply)") from None
    return record_from_dict(data)
