"""Runs as tidy long rows: one number a row, for pandas, R or a spreadsheet (`nctui export --csv`).

Columns: run, then the free keys of the runs (the config keys whose values differ, as
`nctui.analysis.runs.free_keys` finds them, then `seed` when the seeds differ), then step,
epoch, metric, layer, index, value. docs/records.md ("Exporting to CSV") is the contract:

- every number of every `step` and `eval` record is one row, nothing else (start, snapshot
  and end records are not measurements; their config is in the key columns);
- metric is the number's path in the record: `step.loss`, `step.lr`, `step.samples_per_s`,
  `step.elapsed`, `eval.elapsed`, `eval.eval_seconds`, then `<group>.<key>` for the groups
  (`geometry.nc1`, `bounds.gap`, `bounds.audit.m`, `layers.rank`, ...);
- layer is the layer's name for `layers.*` rows, else empty;
- index is the position in a list (`layers.sv`, `margins.quantiles`, `geometry.mean_norms`),
  row-major for the C x C `geometry.cosine` (i * C + j), else empty;
- value is the number as Python's repr writes it (it reads back to the same float), empty for
  null; strings and booleans (`bounds.audit.convention`) are not numbers and have no row.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
from typing import Any, Iterator, Sequence, TextIO

from nctui.analysis.runs import RunData, free_keys, seeds, value_of
from nctui.records import EvalRecord, Record, StepRecord

FIXED_COLUMNS = ("step", "epoch", "metric", "layer", "index", "value")
STEP_FIELDS = ("loss", "lr", "samples_per_s", "elapsed")
EVAL_SCALARS = ("elapsed", "eval_seconds")
EVAL_GROUPS = ("train", "test", "geometry", "noise", "margins", "bounds")

Row = tuple[str, str, str, str, str, str]   # step, epoch, metric, layer, index, value (as CSV text)


def key_columns(runs: Sequence[RunData]) -> list[str]:
    """The config keys that tell the runs apart, then `seed` when the runs have several seeds."""
    return free_keys(runs) + (["seed"] if len(seeds(runs)) > 1 else [])


def record_rows(record: Record) -> Iterator[Row]:
    """The rows of one record (none for start, snapshot and end records)."""
    if isinstance(record, StepRecord):
        for name in STEP_FIELDS:
            yield from _number_rows(record, f"step.{name}", getattr(record, name, None))
    elif isinstance(record, EvalRecord):
        for name in EVAL_SCALARS:
            yield from _number_rows(record, f"eval.{name}", getattr(record, name, None))
        for group in EVAL_GROUPS:
            values = getattr(record, group, None)
            if isinstance(values, dict):
                yield from _group_rows(record, group, values, "")
        for position, layer in enumerate(record.layers if isinstance(record.layers, list) else []):
            if isinstance(layer, dict):
                name = layer.get("name") if isinstance(layer.get("name"), str) else f"layer{position + 1}"
                yield from _group_rows(record, "layers", layer, name)


def _group_rows(record: Record, prefix: str, values: dict, layer: str) -> Iterator[Row]:
    for key, value in values.items():
        metric = f"{prefix}.{key}"
        if isinstance(value, dict):
            yield from _group_rows(record, metric, value, layer)
        elif isinstance(value, list):
            flat = [x for row in value for x in (row if isinstance(row, list) else [row])]
            for index, item in enumerate(flat):
                yield from _number_rows(record, metric, item, layer, str(index))
        else:
            yield from _number_rows(record, metric, value, layer)


def _number_rows(record: Record, metric: str, value: Any, layer: str = "", index: str = "") -> Iterator[Row]:
    """One row for a number or a null; nothing for text and booleans."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        text = ""
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    else:
        return
    yield (str(record.step), repr(float(record.epoch)) if isinstance(record.epoch, (int, float)) else "",
           metric, layer, index, text)


def key_text(value: Any) -> str:
    """A config value in a key column: text as it is, anything else as JSON (0.001, [200, 200], true)."""
    return value if isinstance(value, str) else json.dumps(value)


def export_rows(runs: Sequence[RunData], metrics: Sequence[str] = ()) -> Iterator[list[str]]:
    """The header, then every row of every run, in run order then record order; `metrics` are
    shell-style patterns (`geometry.*`, `layers.rank`) a row's metric must match, if any given."""
    keys = key_columns(runs)
    yield ["run", *keys, *FIXED_COLUMNS]
    for run in runs:
        prefix = [run.name, *(key_text(value_of(run, key)) for key in keys)]
        for record in run.records:
            for row in record_rows(record):
                if not metrics or any(fnmatch.fnmatchcase(row[2], pattern) for pattern in metrics):
                    yield [*prefix, *row]


def write_csv(runs: Sequence[RunData], handle: TextIO, metrics: Sequence[str] = ()) -> int:
    """Write the CSV to an open text handle; returns the number of data rows."""
    writer = csv.writer(handle, lineterminator="\n")
    count = -1
    for row in export_rows(runs, metrics):
        writer.writerow(row)
        count += 1
    return count
