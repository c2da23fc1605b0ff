"""Sweep specs (DESIGN.md "Sweeps"): read SPEC.yaml strictly, expand grid x zip x seeds into
points, and validate every point's config exactly as `nctui run` will build it.

A point's config is the base config with the `--set` overrides the point lists: the spec's
`set`, then its grid values, its zip values and its seed. The overrides are the very strings
the child `nctui run` receives, and they are validated here, so a sweep that starts has no
point that fails on its config.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nctui.config import ConfigError, _StrictLoader, build_config, load_config
from nctui.presets import preset_path
from nctui.records import PLAIN_NAME

MAX_POINTS = 10_000          # refused above this, before anything is expanded
MAX_SPEC_BYTES = 1024 * 1024
SPEC_KEYS = ("name", "base", "set", "grid", "zip", "seeds")
DOTTED_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# how a point's run directory names a key (the key's last part otherwise)
SHORT_KEYS = {"weight_decay": "wd", "batch_size": "bs", "momentum": "mom", "target_scale": "ts",
              "lr_decay": "lrd", "train_per_class": "n"}
MAX_NAME = 120


class SpecError(Exception):
    """A spec the user can fix; str() is one line naming the file, and the key and point if any."""


class _SpecLoader(_StrictLoader):
    """Safe YAML without duplicate keys and without aliases: `*name` could expand a few lines into
    billions of values ("billion laughs"), and a spec has no use for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a sweep spec", mark)
        return super().compose_node(parent, index)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: what the file says, the base resolved to a file."""

    path: Path                    # the spec file
    name: str                     # the sweep's name (default: the file's stem)
    base: str                     # as written: a preset name or a path relative to the spec file
    base_path: Path               # the config file it names
    set: dict[str, Any]           # dotted key -> value, for every point
    grid: dict[str, list]         # dotted key -> values (Cartesian product)
    zip: dict[str, list]          # dotted key -> values (varying together)
    seeds: list[Any] | None       # every point once per seed; None: the base's seed
    raw: dict                     # the file as parsed, for the manifest


@dataclass(frozen=True)
class Point:
    """One run of a sweep."""

    index: int
    name: str                     # also the name of its run directory in the sweep directory
    values: dict[str, Any]        # varying key -> its resolved value at this point (seed included)
    overrides: list[str]          # KEY=VALUE items as `--set` takes them


@dataclass(frozen=True)
class Plan:
    """A validated, expanded spec: what a sweep directory is written from."""

    spec: SweepSpec
    base_config: dict             # the base config resolved (every key), as base.yaml holds it
    points: list[Point]
    varying: list[str]            # the keys whose value differs between points, "seed" last


# --- reading ---------------------------------------------------------------------------------


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check SPEC.yaml (not the configs it makes: `plan` does that)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise SpecError(f"{where}: no such file" if not path.exists() else f"{where}: not a regular file")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{where}: {path.stat().st_size} bytes is too large for a sweep spec")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SpecLoader)
    except UnicodeDecodeError:
        raise SpecError(f"{where}: not a text file (is it a sweep spec?)") from None
    except OSError as err:
        raise SpecError(f"{where}: cannot read ({err.strerror})") from None
    except RecursionError:
        raise SpecError(f"{where}: YAML nested too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise SpecError(f"{where}: {line}YAML error: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with keys {', '.join(SPEC_KEYS)}, got {_kind(raw)}")
    unknown = [str(k) for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]} (a spec has {', '.join(SPEC_KEYS)})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise SpecError(f"{where}: name must be a plain name (a letter or digit, then also spaces and . _ + - =), "
                        f"got {name!r}")
    base = raw.get("base")
    if not isinstance(base, str) or not base.strip():
        raise SpecError(f"{where}: base is required: a preset name (e.g. quickstart) or a config file "
                        "relative to the spec")
    settings = _mapping(raw, "set", where)
    grid = _mapping(raw, "grid", where)
    zipped = _mapping(raw, "zip", where)
    for section, values in (("grid", grid), ("zip", zipped)):
        for key, value in values.items():
            _check_list(value, f"{where}: {section}.{key}")
    for key, value in settings.items():
        if not _is_value(value):
            raise SpecError(f"{where}: set.{key}: expected a value or a list of values, got {_kind(value)}")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise SpecError(f"{where}: zip: lists of unequal lengths ({shown}); zipped keys vary together")
    seeds = raw.get("seeds")
    if seeds is not None:
        _check_list(seeds, f"{where}: seeds")
    _check_disjoint(settings, grid, zipped, seeds, where)
    return SweepSpec(path=path, name=name, base=base, base_path=_base_path(base, path), set=settings, grid=grid,
                     zip=zipped, seeds=seeds, raw=raw)


def _mapping(raw: dict, section: str, where: str) -> dict[str, Any]:
    value = raw.get(section)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: {section} must be a mapping of dotted config keys to values, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str) or not DOTTED_KEY.fullmatch(key):
            raise SpecError(f"{where}: {section}: {key!r} is not a dotted config key such as train.lr")
    return value


def _check_list(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise SpecError(f"{where}: expected a list of values, got {_kind(value)} (write [x] for one value)")
    if not value:
        raise SpecError(f"{where}: empty list (give at least one value)")
    for item in value:
        if not _is_value(item):
            raise SpecError(f"{where}: values must be numbers, strings, booleans or lists of them, got {_kind(item)}")


def _is_value(value: Any) -> bool:
    """A config value a spec may give: a scalar, or a flat list of scalars."""
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))


def _check_disjoint(settings: dict, grid: dict, zipped: dict, seeds: list | None, where: str) -> None:
    """A key given twice (set and grid, grid and zip, seed and seeds) would leave which one wins to chance."""
    places = [("set", set(settings)), ("grid", set(grid)), ("zip", set(zipped)),
              ("seeds", {"seed"} if seeds is not None else set())]
    for (first, a), (second, b) in itertools.combinations(places, 2):
        both = sorted(a & b)
        if both:
            raise SpecError(f"{where}: {both[0]} is given in both {first} and {second}")


def _base_path(base: str, spec_path: Path) -> Path:
    """A config file relative to the spec, else a preset of that name. Only ever read as YAML."""
    path = spec_path.parent / base
    if path.exists() or Path(base).suffix:
        return path
    return preset_path(base) or path


# --- expanding and validating -----------------------------------------------------------------


def count_points(spec: SweepSpec) -> int:
    """Points the spec expands to, computed without expanding it."""
    count = math.prod(len(values) for values in spec.grid.values())
    count *= len(next(iter(spec.zip.values()))) if spec.zip else 1
    return count * (len(spec.seeds) if spec.seeds is not None else 1)


def plan(spec: SweepSpec) -> Plan:
    """Expand the spec into points and build every point's config as `nctui run` will; SpecError
    naming the key and the point at the first bad one, or naming two points that are the same run."""
    count = count_points(spec)
    if count > MAX_POINTS:
        raise SpecError(f"{spec.path}: {count} points is more than a sweep may have ({MAX_POINTS}); "
                        "split it into smaller sweeps")
    if not spec.base_path.exists():
        raise SpecError(f"{spec.path}: base {spec.base}: no such file or preset ({spec.base_path} does not exist; "
                        "`nctui presets` lists the presets)")
    try:
        base = load_config(spec.base_path).to_dict()
    except ConfigError as err:
        raise SpecError(f"{spec.path}: base {spec.base}: {err}") from None
    set_overrides = [override(k, v) for k, v in spec.set.items()]
    _build(base, f"{spec.path}: set", set_overrides)

    grid_rows = itertools.product(*spec.grid.values())
    zip_rows = list(zip(*spec.zip.values())) or [()]
    seeds = spec.seeds if spec.seeds is not None else [None]
    keys = [*spec.grid, *spec.zip]
    raw_points = []
    for grid_row, zip_row, seed in itertools.product(grid_rows, zip_rows, seeds):
        values = dict(zip(keys, (*grid_row, *zip_row)))
        if seed is not None:
            values["seed"] = seed
        raw_points.append(values)

    varying = [k for k in keys if len({json.dumps(p[k]) for p in raw_points}) > 1]
    if spec.seeds is not None and len(spec.seeds) > 1:
        varying.append("seed")
    resolved, seen = [], {}
    for index, values in enumerate(raw_points):
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base config"
        overrides = set_overrides + [override(k, v) for k, v in values.items()]
        config = _build(base, f"{spec.path}: point {index} ({shown})", overrides)
        identity = json.dumps(config, sort_keys=True)
        if identity in seen:
            raise SpecError(f"{spec.path}: points {seen[identity]} and {index} ({shown}) are the same run "
                            "(duplicate values)")
        seen[identity] = index
        resolved.append(({k: _lookup(config, k) for k in varying}, overrides))
    names = _unique([point_name(values) for values, _ in resolved])
    points = [Point(index=i, name=name, values=values, overrides=overrides)
              for i, (name, (values, overrides)) in enumerate(zip(names, resolved))]
    return Plan(spec=spec, base_config=base, points=points, varying=varying)


def _build(base: dict, where: str, overrides: list[str]) -> dict:
    try:
        return build_config(base, where, overrides).to_dict()
    except ConfigError as err:
        raise SpecError(str(err)) from None


def _lookup(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def override(key: str, value: Any) -> str:
    """KEY=VALUE for `--set`: VALUE is YAML that reads back as `value` (JSON where plain text would not)."""
    return f"{key}={_override_text(json.dumps(value))}"


@functools.lru_cache(maxsize=4096)
def _override_text(value_json: str) -> str:
    """Cached by the value's JSON: a grid's few values recur in thousands of points."""
    value = json.loads(value_json)
    text = _yaml_text(value)
    try:
        same = yaml.safe_load(text) == value and type(yaml.safe_load(text)) is type(value)
    except yaml.YAMLError:
        same = False
    return text if same else value_json


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 reads 1e-07 as a string: it wants a dot in the mantissa and a signed exponent
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    return str(value)


# --- names -------------------------------------------------------------------------------------


def point_name(values: dict[str, Any]) -> str:
    """A readable run directory name from a point's varying values: `wd=1e-3_bs=32_s0`
    (letters, digits and . _ + - =)."""
    short = {key: SHORT_KEYS.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1]) for key in values if key != "seed"}
    clashing = {s for s in short.values() if list(short.values()).count(s) > 1}
    parts = [f"{key if short[key] in clashing else short[key]}={format_value(value)}"
             for key, value in values.items() if key != "seed"]
    if "seed" in values:
        parts.append(f"s{format_value(values['seed'])}")
    return "_".join(parts)[:MAX_NAME] or "point"


def format_value(value: Any) -> str:
    """A value as a name part: 0.001 -> 1e-3, 64 -> 64, [50, 100] -> 50+100, "a b" -> a-b."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        plain = repr(value)
        digits = next(d for d in range(17) if float(f"{value:.{d}e}") == value)
        mantissa, exponent = f"{value:.{digits}e}".split("e")
        scientific = f"{mantissa}e{int(exponent)}"
        return scientific if len(scientific) < len(plain) else plain
    if isinstance(value, list):
        return "+".join(format_value(v) for v in value) or "none"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", str(value)) or "empty"


def _unique(names: list[str]) -> list[str]:
    """Names made unique by the point's index where two values read the same ("a b" and "a-b")."""
    counts = collections.Counter(names)
    unique: list[str] = []
    taken: set[str] = set()
    for index, name in enumerate(names):
        candidate = f"{name}-{index}" if counts[name] > 1 else name
        while candidate in taken:   # "a-1" may also be another point's own name
            candidate += f"-{index}"
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
