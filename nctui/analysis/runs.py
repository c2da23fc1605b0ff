"""Several runs as the analysis sees them: loaded from run or sweep directories, told apart by
the config keys that differ, grouped into points (the seeds of one setting), and read as
series of one quantity that can be aggregated over seeds.

Compare mode, `nctui export`, `nctui plot` and `nctui verify` all read runs through here, so
they agree on what varies, what a point is and what a run's final value is. Plain Python on
records (never torch or textual).

A quantity is named by a path into the evaluation records, e.g. ("geometry", "nc1"),
("layers", 2, "rank") or ("bounds", "gap_bound_dense"); two derived paths:
("layers", "hidden", key) is the mean of `key` over the hidden layers (every layer but the
classifier, the layers present in that record), and ("steps", key) reads the step records
(loss, lr, samples_per_s) instead of the evaluations.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from nctui.records import EvalRecord, Record, StartRecord, StepRecord, supersedes
from nctui.store.reader import RunReader
from nctui.store.rundir import RUN_JSON, RunDirError   # what RunData.poll raises, for callers above the store
from nctui.store.sweepdir import SWEEP_JSON, read_manifest

# Config keys that say how a run was executed or stored, not what it computed: never "free".
BOOKKEEPING = frozenset({
    "name", "seed", "data.root", "data.download", "train.device", "train.cuda_graph", "train.threads",
    "monitor.progress_seconds", "monitor.snapshot_every", "monitor.snapshot_minutes", "monitor.keep_snapshots",
})
# Short names for labels and legends; any other key is shown by its last component.
SHORT_KEYS = {"train.weight_decay": "λ", "train.lr": "lr", "train.batch_size": "B", "train.momentum": "mom",
              "train.target_scale": "scale", "train.lr_decay": "lr decay", "seed": "seed"}
PENDING = "pending"   # the status of a sweep point whose run has not started

Point = tuple[int, "float | None"]
Path_ = tuple[Any, ...]


@dataclass(eq=False)
class RunData:
    """One run: where it is, its resolved config, its records as it continued (resumes spliced).

    `reader` is the RunReader that follows the directory (None for a copy handed to another
    thread, see `detached`, and for a sweep point not started yet, whose `config` holds only
    the point's values). `values` are the sweep point's values (seed included), {} for a run
    opened on its own.
    """

    name: str
    path: Path
    config: dict
    seed: Any = None
    values: dict = field(default_factory=dict)
    sweep: str | None = None
    status: str = PENDING     # completed | stopped | diverged | failed | running | unfinished | pending
    records: list[Record] = field(default_factory=list)
    reader: RunReader | None = field(default=None, repr=False)
    _evals: list[EvalRecord] | None = field(default=None, repr=False)

    @property
    def evals(self) -> list[EvalRecord]:
        if self._evals is None:
            self._evals = [r for r in self.records if isinstance(r, EvalRecord)]
        return self._evals

    @property
    def steps(self) -> list[StepRecord]:
        return [r for r in self.records if isinstance(r, StepRecord)]

    @property
    def start(self) -> StartRecord | None:
        return next((r for r in reversed(self.records) if isinstance(r, StartRecord)), None)

    @property
    def warnings(self) -> list[str]:
        return self.reader.warnings if self.reader is not None else []

    def add(self, records: Iterable[Record]) -> None:
        """Append records as a reader delivered them, splicing a resumed segment's start."""
        for record in records:
            if record.type == "start" and getattr(record, "resumed_from", None) is not None:
                self.records = [r for r in self.records if not supersedes(record, r)]
                self._evals = None
            self.records.append(record)
            if self._evals is not None and isinstance(record, EvalRecord):
                self._evals.append(record)

    def poll(self) -> list[Record]:
        """Read what the run appended since the last call (needs the reader); a pending point
        whose run directory has appeared is opened first. Updates records, status and config.
        RunDirError (naming the file) when metrics.jsonl cannot be read."""
        if self.reader is None:
            if not (self.path / RUN_JSON).is_file():
                return []
            try:
                self.reader = RunReader(self.path)
            except RunDirError:   # being created right now: try again next time
                return []
            self.config = self.reader.config
            self.seed = self.config.get("seed", self.seed)
        new = self.reader.poll()
        if new:
            self.records = self.reader.records   # the reader's own list: this copy is the reader thread's
            self._evals = None
        self.status = self.reader.status
        return new

    def detached(self) -> RunData:
        """A copy without the reader, for a thread that only receives records (compare mode's UI)."""
        return replace(self, records=list(self.records), reader=None, _evals=None)


def load_runs(paths: Iterable[str | Path], pending: bool = False) -> list[RunData]:
    """The runs of each path, in order: a run directory, or a sweep directory (its points in
    sweep.json order). Each run is read in full. A sweep point with no readable run yet is left
    out, or kept as a pending RunData when `pending` (compare mode follows it). A path given
    twice is loaded once. RunDirError / SweepDirError (naming the file) for an unreadable path.
    """
    runs: list[RunData] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        for run in (_load_sweep(path, pending) if (path / SWEEP_JSON).is_file() else [_load_run(path)]):
            key = run.path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def _load_run(path: Path, **known: Any) -> RunData:
    reader = RunReader(path).read()
    return RunData(name=known.pop("name", reader.name), path=path, config=reader.config,
                   seed=reader.config.get("seed"), records=list(reader.records), status=reader.status,
                   reader=reader, **known)


def _load_sweep(sweep_dir: Path, pending: bool) -> list[RunData]:
    manifest = read_manifest(sweep_dir)
    runs = []
    for point in manifest["points"]:
        path, values = sweep_dir / point["run_dir"], point["values"]
        try:
            runs.append(_load_run(path, name=point["name"], values=values, sweep=manifest["name"]))
        except RunDirError:
            if pending:
                config: dict = {}
                for key, value in values.items():
                    _set_dotted(config, key, value)
                runs.append(RunData(name=point["name"], path=path, config=config, seed=values.get("seed"),
                                    values=values, sweep=manifest["name"]))
    return runs


def _set_dotted(config: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        config = config.setdefault(part, {})
    config[last] = value


# --- what varies ------------------------------------------------------------------------------


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists are leaves): {"train": {"lr": 0.1}} -> {"train.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def value_of(run: RunData, key: str) -> Any:
    """A run's value of a dotted config key ("seed" is the run's seed); None when absent."""
    if key == "seed":
        return run.seed
    value: Any = run.config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def hashable(value: Any) -> Any:
    """A value as a dict key: lists become tuples, mappings sorted item tuples (0 and 0.0 stay equal)."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value


def sort_key(value: Any) -> tuple:
    """Orders values of mixed types: numbers by size, then strings, then anything else, None last."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (3, 0.0, "") if value is None else (2, 0.0, json.dumps(value, sort_keys=True, default=str))


def free_keys(runs: Sequence[RunData]) -> list[str]:
    """Dotted config keys whose values differ across the runs, bookkeeping (BOOKKEEPING: name,
    seed, device, ...) left out; a key absent from a run is not a difference. Keys a sweep
    varies come first in the sweep's order, the rest alphabetically. Seeds: `seeds`."""
    values: dict[str, set] = {}
    for run in runs:
        for key, value in flatten(run.config).items():
            values.setdefault(key, set()).add(hashable(value))
    free = {key for key, seen in values.items() if len(seen) > 1 and key not in BOOKKEEPING}
    swept = [key for run in runs for key in run.values if key in free]
    ordered = list(dict.fromkeys(swept))
    return ordered + sorted(free - set(ordered))


def seeds(runs: Sequence[RunData]) -> list[Any]:
    """The distinct seeds of the runs, sorted."""
    return sorted({hashable(run.seed) for run in runs}, key=sort_key)


def group_runs(runs: Sequence[RunData], keys: Sequence[str]) -> dict[tuple, list[RunData]]:
    """Runs of one point together: key = their values of `keys` (as `hashable` makes them),
    ordered by those values; within a point the runs keep their order. Pass the free keys
    (seed is never one), so each group holds the seeds of one setting."""
    groups: dict[tuple, list[RunData]] = {}
    for run in runs:
        groups.setdefault(tuple(hashable(value_of(run, key)) for key in keys), []).append(run)
    return dict(sorted(groups.items(), key=lambda item: tuple(sort_key(v) for v in item[0])))


# --- labels -------------------------------------------------------------------------------------


def short_key(key: str) -> str:
    """A key as legends show it: λ for train.weight_decay, else its last component."""
    return SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])


def format_value(value: Any) -> str:
    """A config value, compact: 0.01 -> 1e-2, 1e-4 -> 1e-4, 0.5 -> 0.5, 64 -> 64, [50, 100] -> 50+100."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        if value != 0 and (abs(value) < 0.1 or abs(value) >= 1e6):
            digits = next(d for d in range(17) if float(f"{value:.{d}e}") == value)
            mantissa, exponent = f"{value:.{min(digits, 3)}e}".split("e")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value) or "[]"
    return str(value)


def label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """`λ=1e-2 B=32` for the given keys and values ("" when there are none)."""
    return " ".join(f"{short_key(k)}={format_value(v)}" for k, v in zip(keys, values))


# --- filters ----------------------------------------------------------------------------------

CONDITION = re.compile(r"^([A-Za-z_][\w.]*)\s*(!=|>=|<=|=|>|<)\s*(.+)$")


class FilterError(ValueError):
    """A filter the user can fix; str() is one line saying what is wrong."""


@dataclass(frozen=True)
class Condition:
    """`key op value`, e.g. train.weight_decay>0."""

    key: str
    op: str
    value: Any

    def holds(self, run: RunData) -> bool:
        have = run.status if self.key == "status" else run.name if self.key == "name" else value_of(run, self.key)
        a, b = _number(have), _number(self.value)
        if self.op in ("=", "!="):
            same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300) if a is not None and b is not None \
                else format_value(have) == format_value(self.value)
            return same == (self.op == "=")
        if a is None or b is None:
            return False
        return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[self.op]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_filter(text: str, runs: Sequence[RunData]) -> list[Condition]:
    """Conditions separated by spaces or commas, all of which a run must meet: `key=value`,
    `key!=value`, `key>value` (>=, <, <=), where key is a dotted config key, the end of one
    (`weight_decay`, or `λ`, `B` as labels show them), seed, name or status. FilterError
    names a malformed condition or a key that none or several of the runs' keys end with."""
    known = {key for run in runs for key in flatten(run.config)} | {"seed", "name", "status"}
    shorts = {v: k for k, v in SHORT_KEYS.items()}
    conditions = []
    for part in (p for p in re.split(r"[\s,]+", text.strip()) if p):
        match = CONDITION.match(part) or re.match(r"^(λ)\s*(!=|>=|<=|=|>|<)\s*(.+)$", part)
        if match is None:
            raise FilterError(f"{part!r}: not key=value, key>value or key<value")
        key, op, value = match.groups()
        key = shorts.get(key, key)
        if key not in known:
            candidates = sorted(k for k in known if k.endswith("." + key))
            if len(candidates) != 1:
                raise FilterError(f"{key}: " + ("ambiguous: " + ", ".join(candidates) if candidates
                                                else "no run has this config key"))
            key = candidates[0]
        conditions.append(Condition(key, op, _parse_value(value)))
    return conditions


def matches(run: RunData, conditions: Sequence[Condition]) -> bool:
    return all(condition.holds(run) for condition in conditions)


# --- series -----------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _dig(value: Any, path: Sequence[Any]) -> Any:
    for key in path:
        if isinstance(key, int) and not isinstance(key, bool):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def eval_value(record: EvalRecord, path: Sequence[Any]) -> float | None:
    """One quantity of one evaluation (see the module docstring for paths); None when absent
    or not a finite number."""
    group, *rest = path
    if group == "layers" and rest and rest[0] == "hidden":
        layers = record.layers[:-1] if isinstance(record.layers, list) else []
        values = [v for v in (_finite(_dig(layer, rest[1:])) for layer in layers) if v is not None]
        return sum(values) / len(values) if values else None
    return _finite(_dig(getattr(record, group, None), rest))


def series(run: RunData, path: Sequence[Any]) -> list[Point]:
    """(step, value) of a quantity at every evaluation of the run (every step record for
    ("steps", key)), in order; value None where the record lacks it."""
    if path[0] == "steps":
        return [(r.step, _finite(getattr(r, path[1], None))) for r in run.steps]
    return [(r.step, eval_value(r, path)) for r in run.evals]


def final(run: RunData, path: Sequence[Any], step: int | None = None) -> float | None:
    """The quantity at the run's last evaluation, or at the last one at or before `step`
    (the value there, even when None: a diverged run's NaN is not replaced by an older number)."""
    points = [(s, v) for s, v in series(run, path) if step is None or s <= step]
    return points[-1][1] if points else None


def aggregate(series_list: Sequence[Sequence[Point]]) -> list[tuple[int, float, float, int]]:
    """(step, mean, std, n) at every step where n >= 1 of the series has a value: the seeds of
    one point aligned by step. std is the sample standard deviation (n - 1), 0 when n = 1."""
    by_step: dict[int, list[float]] = {}
    for points in series_list:
        for step, value in points:
            if value is not None:
                by_step.setdefault(step, []).append(value)
    return [(step, statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
            for step, values in sorted(by_step.items())]


def is_log_spaced(values: Iterable[Any]) -> bool:
    """Whether values are better shown on a log axis: all positive numbers, and two that differ
    tenfold or more, or three or more spread fourfold or more whose gaps are more even in log
    than in linear (1e-4, 1e-3, 1e-2 or 32, 64, 128; not 1, 2, 3)."""
    values = list(values)
    if not values or any(_number(v) is None or v <= 0 for v in values):
        return False
    distinct = sorted({float(v) for v in values})
    if len(distinct) < 2:
        return False
    spread = distinct[-1] / distinct[0]
    if len(distinct) == 2:
        return spread >= 10
    if spread < 4:
        return False
    logs = [math.log(v) for v in distinct]

    def evenness(points: list[float]) -> float:
        gaps = [b - a for a, b in zip(points, points[1:])]
        return min(gaps) / max(gaps)

    return evenness(logs) >= evenness(distinct)
