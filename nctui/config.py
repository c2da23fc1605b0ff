"""The run configuration: one YAML file, loaded into frozen dataclasses, every field commented.

Every field below is the whole truth about what a run does. Unknown keys, wrong types and
out-of-range values are errors that name the key and the file (`ConfigError`); `--set a.b=v`
goes through the same checks.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nctui.data.errors import DataError
from nctui.data.synthetic import SyntheticSpec
from nctui.records import PLAIN_NAME


MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(Exception):
    """A config the user can fix; str() is one line naming the key and the file."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_scalar(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str) -> Any:
    """Safe YAML without duplicate keys; absurd nesting is a YAML error, not a RecursionError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise yaml.MarkedYAMLError(problem="nested too deeply") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What YAML found wrong, and where, as the end of one line."""
    if isinstance(err, yaml.reader.ReaderError):
        code = err.character if isinstance(err.character, int) else ord(err.character)
        return f"YAML syntax error: character #x{code:04x} is not allowed (position {err.position})"
    mark = getattr(err, "problem_mark", None)
    line = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{line}YAML syntax error: {getattr(err, 'problem', None) or 'invalid YAML'}"


def _spec(default: Any = dataclasses.MISSING, *, choices: tuple = (), low: float | None = None,
          high: float | None = None, low_open: bool = False, factory: Any = None) -> Any:
    """A dataclass field carrying its validation rules (choices, inclusive or open bounds)."""
    meta = {"choices": choices, "low": low, "high": high, "low_open": low_open}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    name: str = _spec("synthetic", choices=("synthetic", "mnist", "fashion_mnist", "cifar10"))  # data set
    root: str | None = None       # where data files live; None: $NCTUI_DATA, else ~/.cache/nctui/data
    download: bool = True         # fetch the official files (checksummed) when absent
    train_size: int | None = _spec(None, low=1)  # class-balanced seeded subset of the training set; None: all
    test_size: int | None = _spec(None, low=1)   # same for the test set
    normalize: bool = True        # per-channel standardisation with the training set's mean and std
    synthetic: SyntheticSpec = _spec(factory=SyntheticSpec)  # only read when name is synthetic; fields in nctui/data/synthetic.py


@dataclass(frozen=True)
class ModelConfig:
    kind: str = _spec("fc", choices=("fc", "cnn"))  # fc: [Linear, ReLU] x (depth-1) -> Linear(C); cnn: convs -> Linear(C)
    width: int = _spec(512, low=1)   # fc: hidden units per layer
    depth: int = _spec(5, low=1)     # fc: number of Linear layers, the classifier included
    channels: list[int] = _spec(factory=lambda: [32, 64, 128, 128], low=1)  # cnn: output channels of each conv
    kernel: int = _spec(3, low=1)    # cnn: square kernel size (2 for CONV-L-H)
    stride: int = _spec(2, low=1)    # cnn: stride of every conv
    weight_norm: bool = True         # W = g V / ||V||_F on every layer but the last
    bias: bool = False               # biases break homogeneity; off as in the paper


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _spec(20, low=1, high=10**6)     # passes over the training set
    batch_size: int = _spec(128, low=1)            # B
    lr: float = _spec(0.05, low=0.0, low_open=True)  # initial learning rate
    momentum: float = _spec(0.9, low=0.0, high=1.0)  # SGD momentum
    weight_decay: float = _spec(5e-4, low=0.0)     # L2 on every parameter (g, V and the last layer)
    milestones: list[int] = _spec(factory=list, low=1)   # epochs at which lr is multiplied by lr_decay
    lr_decay: float = _spec(0.1, low=0.0, high=1.0, low_open=True)  # the multiplier at each milestone
    target_scale: float = _spec(1.0, low=0.0, low_open=True)  # one-hot targets are multiplied by this
    device: str = _spec("auto", choices=("auto", "cpu", "cuda"))  # auto: cuda when there is one
    cuda_graph: str = _spec("auto", choices=("auto", "on", "off"))  # capture the step as a CUDA graph
    threads: int = _spec(0, low=0)   # torch CPU threads; 0: auto (with the TUI one core is left to it)


@dataclass(frozen=True)
class BoundsConfig:
    gamma: float = _spec(1.0, low=0.0, low_open=True)  # margin of err_gamma and the bounds
    delta: float = _spec(1e-3, low=0.0, high=1.0, low_open=True)  # confidence of the bounds
    convention: str = _spec("nctui", choices=("nctui", "authors"))  # authors: lianegalanti/gen's utils.py (METRICS.md)
    m: int | None = _spec(None, low=1)  # the sample count m in the bounds; None: the training-set size (authors used 50000 for MNIST)


@dataclass(frozen=True)
class MonitorConfig:
    log_every: int = _spec(20, low=1)        # steps between `step` records
    eval_every: int = _spec(200, low=1)      # steps between evaluations (plus one at step 0 and at the end)
    early_evals: bool = True                 # also evaluate at log-spaced steps before the first eval_every
    probe_per_class: int = _spec(200, low=0)  # class-balanced training probe for NC metrics; 0: whole set
    noise_batches: int = _spec(4, low=0)     # minibatch gradients behind grad_noise / noise_scale; 0: off
    margin_samples: int = _spec(0, low=0)    # class-balanced training samples behind err_gamma; 0: the whole training set
    rank_tol: float = _spec(1e-3, low=0.0, low_open=True)  # singular values above tol count towards rank
    snapshot_every: int = _spec(0, low=0)    # steps between snapshots; 0: only at the end
    keep_snapshots: int = _spec(0, low=0)    # keep the newest N snapshots; 0: keep all
    enabled: bool = True                     # False: no evaluations at all (benchmarks)
    progress_seconds: float = _spec(30.0, low=0.0, low_open=True)  # seconds between plain headless progress lines
    snapshot_minutes: float = _spec(5.0, low=0.0)  # also snapshot after this many wall-clock minutes without one; 0: off
    bounds: BoundsConfig = _spec(factory=BoundsConfig)


@dataclass(frozen=True)
class Config:
    name: str = "run"            # run name; the run directory is <out>/<name>-<UTC timestamp>
    seed: int = _spec(0, low=0, high=2**32 - 1)  # seeds data generation, initialisation and batch order
    data: DataConfig = _spec(factory=DataConfig)
    model: ModelConfig = _spec(factory=ModelConfig)
    train: TrainConfig = _spec(factory=TrainConfig)
    monitor: MonitorConfig = _spec(factory=MonitorConfig)

    def to_dict(self) -> dict:
        """The resolved config as plain data, for run.json and snapshot metadata."""
        return dataclasses.asdict(self)


# --- loading -------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config, apply `a.b=value` overrides, validate everything."""
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise ConfigError(f"{where}: no such file")
    if path.is_dir():
        raise ConfigError(f"{where}: is a directory, not a YAML config file")
    if not path.is_file():
        raise ConfigError(f"{where}: not a regular file (a device or a pipe?), not a YAML config file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {path.stat().st_size} bytes is too large for a YAML config")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a text file (is it a YAML config?)") from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read ({err.strerror})") from None
    try:
        raw = _parse_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: {_yaml_problem(err)}") from None
    if raw is None:
        raise ConfigError(f"{where}: empty config (expected sections such as data, model, train)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top, got {_kind(raw)}")
    return build_config(raw, where, overrides)


def build_config(raw: dict, where: str = "<config>", overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Validate plain data (as from YAML or run.json), after `a.b=value` overrides, into a Config."""
    try:
        raw = copy.deepcopy(raw)
    except RecursionError:   # JSON nested a few hundred deep: no config looks like that
        raise ConfigError(f"{where}: nested too deeply to be a config") from None
    for item in overrides:
        _apply_override(raw, item)
    config = _build(Config, raw, where, "")
    if not PLAIN_NAME.fullmatch(config.name):   # it names the run directory
        raise ConfigError(f"{where}: name must be a plain name (a letter or digit, then also spaces and . _ + = -), "
                          f"got {_shown(config.name)}")
    try:
        config.data.synthetic.check()
    except DataError as err:
        raise ConfigError(f"{where}: data.{err}") from None
    return config


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=0.05")
    try:
        parsed = _parse_yaml(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = parsed


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A config class's resolved type hints and fields, once per class: resolving the string
    annotations is most of the cost of building a config (a sweep builds one per point)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _build(cls: type, raw: Any, where: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {_kind(raw)}")
    hints, fields = _fields(cls)
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key {prefix}{key} (known here: {known})")
    values = {}
    for name, spec in fields.items():
        if name not in raw:
            continue
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name] if raw[name] is not None else {}, where, key + ".")
        else:
            values[name] = _check(raw[name], hint, spec.metadata, key, where)
    return cls(**values)


def _check(value: Any, hint: Any, meta: Any, key: str, where: str) -> Any:
    """Coerce one leaf value to its declared type and check its range; name the key on failure."""
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if optional:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    bad = ConfigError(f"{where}: {key} must be {_describe(hint)}{' or null' if optional else ''}, "
                      f"got {_shown(value)}")
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise bad
        inner = typing.get_args(hint)[0]
        return [_check(v, inner, meta, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif hint is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 5e-4 as a string
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise bad
    if meta:
        choices = meta.get("choices") or ()
        if choices and value not in choices:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}, got {_shown(value)}")
        low, high = meta.get("low"), meta.get("high")
        if low is not None and (value < low or (meta.get("low_open") and value == low)):
            op = ">" if meta.get("low_open") else ">="
            raise ConfigError(f"{where}: {key} must be {op} {_bound(low)}, got {_shown(value)}")
        if high is not None and value > high:
            raise ConfigError(f"{where}: {key} must be <= {_bound(high)}, got {_shown(value)}")
    return value


def _bound(limit: float) -> str:
    """A range limit as written: 0.5 or 1e-06 for floats, every digit for ints."""
    return f"{limit:g}" if isinstance(limit, float) else str(limit)


def _shown(value: Any) -> str:
    """The offending value for an error line, cut short so the line stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        inner = typing.get_args(hint)[0]
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(inner, inner)}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
