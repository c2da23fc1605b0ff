"""Snapshots: `snap-<step>.safetensors` in a run directory, written atomically, read suspiciously.

The layout (docs/snapshots.md): tensors `model.*`, `optim.*`, `weights.*`, `eval.*`,
`resume.*`, and string metadata (format, schema, run, step, epoch, reason, config, eval,
resume). Reading never unpickles: the safetensors header is parsed here first (its size
bounded, every offset checked against the file), then, for a resume, every tensor's dtype and
shape is compared with the model the run's config builds before any data is read.

torch and safetensors are imported inside the functions that need them, so `nctui open` and
`nctui ls`, which only read headers, start without loading torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nctui.records import PLAIN_NAME, Checkpoint, EvalRecord, RecordError, record_from_dict, record_to_json
from nctui.store.rundir import RunDirError, atomic_write_bytes

if TYPE_CHECKING:
    import torch

FORMAT = "nctui.snapshot"
SCHEMA = 1
NAME = re.compile(r"snap-(\d{9})\.safetensors")
MAX_HEADER_BYTES = 100 * 1024 * 1024
METADATA_KEYS = ("format", "schema", "run", "step", "epoch", "reason", "config", "eval", "resume")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1}
TORCH_DTYPES = {"torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16",
                "torch.bfloat16": "BF16", "torch.int64": "I64", "torch.int32": "I32", "torch.uint8": "U8",
                "torch.bool": "BOOL"}

# name -> (shape, dtype, required) of every tensor the run declares; -1 matches any size
Layout = dict[str, tuple[tuple[int, ...], Any, bool]]


class SnapshotError(Exception):
    """A snapshot that cannot be written or used; the message names the file and says why."""


def snapshot_name(step: int) -> str:
    return f"snap-{step:09d}.safetensors"


def list_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every file under a real snapshot name, oldest first (temporaries never match)."""
    found = []
    for path in Path(run_dir).iterdir():
        match = NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


# --- writing ------------------------------------------------------------------------------


def write_snapshot(run_dir: Path, checkpoint: Checkpoint, keep: int = 0) -> str:
    """Write `checkpoint` as snap-<step>.safetensors in `run_dir`; returns the file name.

    Written to a temporary name, fsynced and renamed, so a crash never leaves a torn snapshot;
    then the `keep` newest are kept (0: all). The newest evaluation's arrays go in as `eval.*`.
    """
    from safetensors.torch import save

    tensors = dict(checkpoint.tensors)
    if checkpoint.eval is not None:
        tensors.update(eval_arrays(checkpoint.eval))
    metadata = {
        "format": FORMAT, "schema": str(SCHEMA), "run": checkpoint.run, "step": str(checkpoint.step),
        "epoch": repr(checkpoint.epoch), "reason": checkpoint.reason,
        "config": json.dumps(checkpoint.config, allow_nan=False),
        "eval": record_to_json(checkpoint.eval) if checkpoint.eval is not None else "null",
        "resume": json.dumps(checkpoint.resume, allow_nan=False),
    }
    name = snapshot_name(checkpoint.step)
    try:
        atomic_write_bytes(run_dir / name, save(tensors, metadata))
    except RunDirError as err:
        raise SnapshotError(str(err)) from None
    prune_snapshots(run_dir, keep, checkpoint.step)
    return name


def eval_arrays(record: EvalRecord) -> dict[str, torch.Tensor]:
    """The arrays of an eval record as float64 tensors (`eval.*`); null entries become NaN."""
    import torch

    arrays = {
        "eval.cosine": record.geometry.get("cosine"),
        "eval.mean_norms": record.geometry.get("mean_norms"),
        "eval.classifier_norms": record.geometry.get("classifier_norms"),
        "eval.margin_quantiles": record.margins.get("quantiles"),
        "eval.normalized_margin_quantiles": record.margins.get("normalized_quantiles"),
        **{f"eval.sv.{k}": layer.get("sv") for k, layer in enumerate(record.layers)},
    }
    return {name: torch.tensor(_nan_for_none(values), dtype=torch.float64)
            for name, values in arrays.items() if isinstance(values, list)}


def _nan_for_none(values: Any) -> Any:
    if isinstance(values, list):
        return [_nan_for_none(v) for v in values]
    return math.nan if values is None else values


def prune_snapshots(run_dir: Path, keep: int, newest: int) -> None:
    """Keep the `keep` newest snapshots up to step `newest` (0: keep all); `newest` itself always stays.

    Files past `newest` are left from a segment a resume superseded; the run overwrites them
    when it gets there.
    """
    if keep <= 0:
        return
    older = [path for step, path in list_snapshots(run_dir) if step <= newest]
    for path in older[:-keep]:
        path.unlink(missing_ok=True)


# --- reading ------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A snapshot's header, parsed and checked; `tensors` is filled by `read_snapshot` only."""

    path: Path
    step: int
    epoch: float
    reason: str
    run: str
    config: dict
    eval: EvalRecord | None
    resume: dict                                       # step, elapsed, steps_since_log, prev_step
    metadata: dict[str, str]                           # the raw header metadata
    layout: dict[str, tuple[str, tuple[int, ...]]]     # name -> (safetensors dtype, shape)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def read_header(path: str | Path) -> Snapshot:
    """Parse and check a snapshot's header and metadata without reading any tensor data (stdlib only)."""
    path = Path(path)
    match = NAME.fullmatch(path.name)
    if match is None:
        raise SnapshotError(f"{path}: not a snapshot name (expected snap-<9 digits>.safetensors)")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if length < 0 or length > MAX_HEADER_BYTES or 8 + length > size:
                raise SnapshotError(f"{path}: corrupt or truncated (header of {length} bytes in a "
                                    f"file of {size})")
            raw = handle.read(length)
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read ({err.strerror})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):   # RecursionError: absurdly nested JSON
        raise SnapshotError(f"{path}: corrupt header (not JSON)") from None
    if not isinstance(header, dict):
        raise SnapshotError(f"{path}: corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    layout = _check_offsets(path, header, size - 8 - length)
    return _parse_metadata(path, int(match.group(1)), metadata, layout)


def _check_offsets(path: Path, header: dict, data_bytes: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor's dtype, shape and byte range must be sane and lie inside the file."""
    layout, end = {}, 0
    for name, spec in header.items():
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        shape = spec.get("shape") if isinstance(spec, dict) else None
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        ok = (dtype in DTYPE_BYTES and isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
              and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in [*shape, *offsets]))
        if not ok or offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise SnapshotError(f"{path}: corrupt header (tensor {name!r})")
        layout[name] = (dtype, tuple(shape))
        end = max(end, offsets[1])
    if end != data_bytes:
        raise SnapshotError(f"{path}: truncated or corrupt ({data_bytes} bytes of tensor data, the header "
                            f"describes {end})")
    return layout


def _parse_metadata(path: Path, step: int, metadata: Any,
                    layout: dict[str, tuple[str, tuple[int, ...]]]) -> Snapshot:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise SnapshotError(f"{path}: not an nctui snapshot (no format={FORMAT} metadata)")
    missing = [key for key in METADATA_KEYS if not isinstance(metadata.get(key), str)]
    if missing:
        raise SnapshotError(f"{path}: metadata {missing[0]!r} missing or not a string")
    if metadata["schema"] != str(SCHEMA):
        raise SnapshotError(f"{path}: snapshot schema {metadata['schema'][:20]!r}; this nctui reads {SCHEMA}")
    if metadata["step"] != str(step):
        raise SnapshotError(f"{path}: metadata step {metadata['step'][:20]!r} does not match the file name")
    if not PLAIN_NAME.fullmatch(metadata["run"]):
        raise SnapshotError(f"{path}: bad metadata (run {metadata['run'][:60]!r} is not a plain name)")
    try:
        config, resume = json.loads(metadata["config"]), json.loads(metadata["resume"])
        eval_data = json.loads(metadata["eval"])
        epoch = float(metadata["epoch"])
        record = record_from_dict(eval_data) if eval_data is not None else None
    except (ValueError, RecordError, TypeError, RecursionError) as err:
        raise SnapshotError(f"{path}: bad metadata ({err})") from None
    numbers_ok = isinstance(resume, dict) and resume.get("step") == step and all(
        isinstance(resume.get(key), int) and resume[key] >= 0 for key in ("steps_since_log", "prev_step")
    ) and isinstance(resume.get("elapsed"), (int, float)) and math.isfinite(resume["elapsed"])
    if not isinstance(config, dict) or not numbers_ok or (record is not None and record.type != "eval"):
        raise SnapshotError(f"{path}: bad metadata (config, resume or eval has the wrong shape)")
    return Snapshot(path=path, step=step, epoch=epoch, reason=metadata["reason"], run=metadata["run"],
                    config=config, eval=record, resume=resume, metadata=dict(metadata), layout=layout)


def check_layout(snapshot: Snapshot, expected: Layout) -> None:
    """Every tensor's dtype and shape against `expected` (the layout of the model
    the run's config builds); any `eval.*` array not listed must be float and at most 2-D."""
    for name, (want_shape, want_dtype, required) in expected.items():
        if name not in snapshot.layout:
            if required:
                raise SnapshotError(f"{snapshot.path}: tensor {name} missing")
            continue
        dtype, shape = snapshot.layout[name]
        want = TORCH_DTYPES.get(str(want_dtype))
        if dtype != want or len(shape) != len(want_shape) or any(w not in (-1, s) for w, s in zip(want_shape, shape)):
            raise SnapshotError(f"{snapshot.path}: {name} is {dtype} {list(shape)}; this run's config builds "
                                f"{want} {list(want_shape)}")
    for name, (dtype, shape) in snapshot.layout.items():
        if name not in expected and not (name.startswith("eval.") and dtype in ("F64", "F32") and len(shape) <= 2):
            raise SnapshotError(f"{snapshot.path}: unexpected tensor {name!r} (not part of the model this "
                                f"run's config builds)")


def read_snapshot(path: str | Path, expected: Layout | None = None) -> Snapshot:
    """Header, metadata and tensors (on the CPU); with `expected`, shapes are checked before any data is read."""
    from safetensors import SafetensorError, safe_open

    snapshot = read_header(path)
    if expected is not None:
        check_layout(snapshot, expected)
    try:
        with safe_open(str(snapshot.path), framework="pt", device="cpu") as handle:
            snapshot.tensors = {name: handle.get_tensor(name) for name in snapshot.layout}
    except (SafetensorError, OSError) as err:
        raise SnapshotError(f"{snapshot.path}: corrupt ({err})") from None
    if any(tuple(snapshot.tensors[name].shape) != shape for name, (_, shape) in snapshot.layout.items()):
        raise SnapshotError(f"{snapshot.path}: changed while being read")
    return snapshot


def read_checkpoint(path: str | Path, expected: Layout) -> Checkpoint:
    """A snapshot as the Checkpoint it was written from, checked against `expected` (the layout of
    the model the run's config builds) before any tensor data is read."""
    snapshot = read_snapshot(path, expected)
    tensors = {name: value for name, value in snapshot.tensors.items()
               if name in expected}   # the eval.* arrays derived from the record stay behind
    return Checkpoint(step=snapshot.step, epoch=snapshot.epoch, reason=snapshot.reason, run=snapshot.run,
                      config=snapshot.config, tensors=tensors, resume=snapshot.resume, eval=snapshot.eval)
