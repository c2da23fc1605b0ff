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
from typing import Any, Optional, TypedDict, Union

SCHEMA_VERSION = 1
# How a run draws its random numbers (nctui.data.seeding): recorded in run.json; a resume under
# another scheme would not replay the same batches, so it is refused.
RNG_SCHEME = "sha256(seed:purpose)/v2"

# Exit codes of every nctui command (DESIGN.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
# How a run ends (EndRecord.status) and the exit code each gives `nctui run`.
END_STATUSES = ("completed", "stopped", "diverged", "failed")
# Levels of the margin quantiles (margins.quantiles and margins.normalized_quantiles).
QUANTILE_LEVELS = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
# a run directory's name or a file name inside one: one path component, no separators, not hidden
PLAIN_NAME = re.compile(r"\w[\w .+=-]*")


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
    world_size: int = 1           # processes training this segment together (torchrun)
    backend: str | None = None    # their torch.distributed backend (gloo, nccl); None for one process
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


# --- the eval-record groups: the one vocabulary of what an evaluation measures -----------------
# At run time the groups are plain dicts (they come from JSON as often as from the evaluator);
# these TypedDicts name every key once. tests/test_record_contract.py ties them to the
# evaluator's output, to what the panes read and to docs/records.md. Numbers may be None
# (not finite, or not defined for this model).

Num = Optional[float]


class TrainGroup(TypedDict):
    loss: Num          # mean square loss on the evaluation probe (a class-balanced training subset)
    acc: Num           # accuracy on the probe
    samples: int       # probe size


class TestGroup(TypedDict):
    loss: Num          # mean square loss on the test set
    acc: Num           # test accuracy


class GeometryGroup(TypedDict):
    nc1: Num
    nc1_trace_ratio: Num
    cdnv: Num
    nc2_equinorm_m: Num
    nc2_equinorm_w: Num
    nc2_equiangular: Num
    nc2_etf_error: Num
    nc3: Num
    nc4: Num
    cosine: list[list[Num]]      # C x C cosines of the centred class means
    mean_norms: list[Num]        # ||mu_c - mu_G||
    classifier_norms: list[Num]  # ||w_c||


class LayerGroup(TypedDict):
    name: str
    rho: Num                 # ||W_k||_F
    sv: list[Num]            # singular values of W_k / ||W_k||_F, descending
    rank: Optional[int]
    stable_rank: Num
    effective_rank: Num
    top_c_energy: Num
    rank_ceiling: Num
    nc1: Num                 # of the layer's output; None for the classifier
    nc1_trace_ratio: Num
    alignment: Num           # None for conv layers
    drift: Num               # per step, since the previous evaluation
    rho_jitter: Num


class NoiseGroup(TypedDict):
    grad_noise: Num
    noise_scale: Num
    noise_batches: Optional[int]   # K minibatches behind grad_noise and noise_scale
    noise_samples: Optional[int]   # n samples behind the full gradient
    output_jitter: Num


class MarginsGroup(TypedDict):
    min: Num
    mean: Num
    quantiles: list[Num]              # at QUANTILE_LEVELS
    normalized_min: Num
    normalized_mean: Num
    normalized_quantiles: list[Num]


class BoundsAudit(TypedDict):
    convention: str          # nctui | authors
    m: int
    gamma: float
    delta: float
    num_layers: int
    kernel_areas: list[int]
    log_term_dense: Num
    log_term_local: Num
    data_term_dense: Num
    data_term_local: Num
    confidence_dense: Num
    confidence_local: Num


class BoundsGroup(TypedDict):
    gap_bound_dense: Num     # bounds test error - err_gamma (what the authors plot against the gap)
    gap_bound_local: Num     # CNNs only
    bound_dense: Num         # err_gamma + gap_bound_dense: a bound on the test error
    bound_local: Num
    err_gamma: Num           # fraction of training samples with margin <= gamma
    err_gamma_samples: Optional[int]
    test_error: Num
    train_error: Num
    gap: Num                 # test_error - train_error
    rho: Num
    rho_tilde: Num
    rho_over_sqrt_m: Num
    audit: BoundsAudit


# group name in EvalRecord -> its TypedDict (layers: each element)
EVAL_GROUPS: dict[str, type] = {
    "train": TrainGroup, "test": TestGroup, "geometry": GeometryGroup, "layers": LayerGroup,
    "noise": NoiseGroup, "margins": MarginsGroup, "bounds": BoundsGroup,
}


@dataclass
class EvalRecord:
    """Everything METRICS.md defines, measured at one evaluation.

    Groups are plain dicts keyed as the TypedDicts above say (EVAL_GROUPS); `layers` holds
    one LayerGroup per layer, input to output.
    """

    step: int
    epoch: float
    elapsed: float
    eval_seconds: float | None = None          # wall time this evaluation took
    train: TrainGroup = field(default_factory=dict)
    test: TestGroup = field(default_factory=dict)
    geometry: GeometryGroup = field(default_factory=dict)
    layers: list[LayerGroup] = field(default_factory=list)
    noise: NoiseGroup = field(default_factory=dict)
    margins: MarginsGroup = field(default_factory=dict)
    bounds: BoundsGroup = field(default_factory=dict)
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


@dataclass
class Checkpoint:
    """A run at one step, as a snapshot holds it: what the trainer hands its sink and restores from.

    `tensors` are named CPU torch tensors (`model.*`, `optim.*`, `weights.*`, `resume.*`,
    `eval.*`; the trainer's `slots` declare them); the rest is JSON-able metadata. The store
    writes and reads Checkpoints and knows nothing of the trainer.
    """

    step: int
    epoch: float
    reason: str                   # periodic | final | user
    run: str                      # run directory name
    config: dict                  # the resolved config
    tensors: dict[str, Any]       # name -> torch.Tensor (CPU)
    resume: dict                  # step, elapsed, steps_since_log, prev_step
    eval: EvalRecord | None = None  # the newest evaluation, whose arrays the snapshot also keeps


Record = Union[StartRecord, StepRecord, EvalRecord, SnapshotRecord, EndRecord]
RECORD_TYPES: dict[str, type] = {
    "start": StartRecord, "step": StepRecord, "eval": EvalRecord,
    "snapshot": SnapshotRecord, "end": EndRecord,
}


def exit_code_for(status: str, stop_code: int = EXIT_OK) -> int:
    """The exit code of a run that ended with `status`; a stopped run exits with `stop_code`
    (0 for `q`, 130 for Ctrl+C, 143 for SIGTERM)."""
    return {"diverged": EXIT_DIVERGED, "failed": EXIT_FAILED, "stopped": stop_code}.get(status, EXIT_OK)


def supersedes(start: Record, record: Record) -> bool:
    """Whether a resumed segment's `start` record supersedes an earlier `record` of the same run:
    every step, eval and snapshot record past the step it resumed from, and every end record."""
    resumed_from = getattr(start, "resumed_from", None) if start.type == "start" else None
    if not isinstance(resumed_from, int) or record.type == "start":
        return False
    if record.type == "end":
        return True
    step = getattr(record, "step", None)
    return not isinstance(step, (int, float)) or step > resumed_from


def splice(records: list[Record]) -> list[Record]:
    """A run's records as the run continued: each resumed segment drops what it supersedes."""
    kept: list[Record] = []
    for record in records:
        if record.type == "start":
            kept = [r for r in kept if not supersedes(record, r)]
        kept.append(record)
    return kept


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
