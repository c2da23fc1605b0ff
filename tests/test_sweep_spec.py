"""Sweep specs: grid x zip x seeds expansion (counts, values, names, overrides), and every bad
spec refused with one clear line, exit 2 and nothing written. No run is started here."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from nctui.config import load_config
from nctui.sweep.command import sweep
from nctui.sweep.spec import MAX_POINTS, format_value, load_spec, override, plan, point_name

QUICKSTART = Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml"


def write_spec(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def invoke_sweep(*args: str) -> Result:
    return CliRunner().invoke(sweep, list(args), catch_exceptions=False)


def assert_refused(result: Result, out: Path, *parts: str) -> str:
    """Exit 2, one `nctui: error:` line holding every part, nothing on stdout, nothing written."""
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nctui: error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert not out.exists() or list(out.iterdir()) == []
    return lines[0]


# --- expansion ----------------------------------------------------------------------------------


def test_grid_zip_and_seeds_expand_to_their_product_in_order(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """
name: wd_rank
base: quickstart
set:
  train.epochs: 2
grid:
  train.weight_decay: [0, 1.0e-3, 1.0e-2]
  train.batch_size: [32, 128]
zip:
  model.width: [64, 128]
  model.depth: [3, 4]
seeds: [0, 1]
""")
    the_plan = plan(load_spec(spec))
    assert len(the_plan.points) == 3 * 2 * 2 * 2
    assert the_plan.varying == ["train.weight_decay", "train.batch_size", "model.width", "model.depth", "seed"]
    expected = [
        {"train.weight_decay": wd, "train.batch_size": bs, "model.width": w, "model.depth": d, "seed": s}
        for wd, bs, (w, d), s in itertools.product([0.0, 1e-3, 1e-2], [32, 128], [(64, 3), (128, 4)], [0, 1])]
    assert [p.values for p in the_plan.points] == expected
    assert [p.index for p in the_plan.points] == list(range(24))
    first, last = the_plan.points[0], the_plan.points[-1]
    assert first.name == "wd=0_bs=32_width=64_depth=3_s0"
    assert last.name == "wd=0.01_bs=128_width=128_depth=4_s1"
    assert first.overrides == ["train.epochs=2", "train.weight_decay=0", "train.batch_size=32", "model.width=64",
                               "model.depth=3", "seed=0"]
    assert len({p.name for p in the_plan.points}) == 24
    # each point's overrides give exactly the config its values say, as `nctui run --set` builds it
    for point in (first, the_plan.points[13], last):
        cfg = load_config(QUICKSTART, point.overrides)
        assert cfg.train.epochs == 2 and cfg.seed == point.values["seed"]
        assert (cfg.train.weight_decay, cfg.train.batch_size, cfg.model.width, cfg.model.depth) == tuple(
            point.values[k] for k in ("train.weight_decay", "train.batch_size", "model.width", "model.depth"))


def test_without_seeds_each_point_runs_once_with_the_base_seed(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "base: quickstart\ngrid:\n  train.lr: [0.1, 0.2]\n  model.depth: [3]\n")
    the_plan = plan(load_spec(spec))
    assert [p.name for p in the_plan.points] == ["lr=0.1", "lr=0.2"]   # depth does not vary: not in the name
    assert the_plan.varying == ["train.lr"] and the_plan.spec.name == "spec"
    assert all(not any(o.startswith("seed=") for o in p.overrides) for p in the_plan.points)
    assert the_plan.base_config == load_config(QUICKSTART).to_dict()


def test_a_spec_with_nothing_to_vary_is_one_point(tmp_path: Path) -> None:
    the_plan = plan(load_spec(write_spec(tmp_path, "base: quickstart\nset:\n  train.epochs: 1\n")))
    assert [(p.name, p.values, p.overrides) for p in the_plan.points] == [("point", {}, ["train.epochs=1"])]


@pytest.mark.parametrize("value, text", [(0.0, "0"), (1e-3, "1e-3"), (0.05, "0.05"), (1e-2, "0.01"),
                                         (2.5e-7, "2.5e-7"), (123456.5, "123456.5"), (32, "32"), (True, "true"),
                                         ("fc", "fc"), ("a b/c", "a-b-c"), ([50, 100], "50+100"), ([], "none")])
def test_values_read_well_in_directory_names(value: object, text: str) -> None:
    assert format_value(value) == text


def test_names_keep_to_plain_characters_and_tell_clashing_keys_apart() -> None:
    name = point_name({"data.synthetic.noise": 0.5, "monitor.noise": 1, "model.kind": "c n/n", "seed": 3})
    assert name == "data.synthetic.noise=0.5_monitor.noise=1_kind=c-n-n_s3"
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-=")


@pytest.mark.parametrize("value", [1e-7, 0.1, 3.0, 10, True, False, None, "fc", "true", "1e-3", "a: b", "",
                                   [50, 100], [], [1e-9]])
def test_an_override_reads_back_as_its_value(value: object) -> None:
    key, _, text = override("train.x", value).partition("=")
    parsed = yaml.safe_load(text) if text.strip() else None
    assert key == "train.x" and parsed == value and type(parsed) is type(value)


def test_distinct_values_that_read_the_same_get_distinct_names(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "base: quickstart\ngrid:\n  name: [a b, a-b, c]\n")
    assert [p.name for p in plan(load_spec(spec)).points] == ["name=a-b-0", "name=a-b-1", "name=c"]


def test_a_preset_sweep_expands_and_its_base_round_trips(tmp_path: Path) -> None:
    preset = QUICKSTART.parent / "sweeps" / "quickstart_wd.yaml"
    the_plan = plan(load_spec(preset))
    assert [p.name for p in the_plan.points] == ["wd=0_s0", "wd=0_s1", "wd=1e-3_s0", "wd=1e-3_s1", "wd=0.01_s0",
                                                 "wd=0.01_s1"]
    base = tmp_path / "base.yaml"   # what the sweep directory's base.yaml holds
    base.write_text(yaml.safe_dump(the_plan.base_config, sort_keys=False))
    assert load_config(base).to_dict() == load_config(QUICKSTART).to_dict()


def test_dry_run_lists_the_points_and_writes_nothing(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "base: quickstart\ngrid:\n  train.weight_decay: [0, 1.0e-3]\nseeds: [4]\n")
    out = tmp_path / "out"
    result = invoke_sweep(str(spec), "--out", str(out), "--dry-run", "--no-pack")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["wd=0  --set train.weight_decay=0 --set seed=4",
                                          "wd=1e-3  --set train.weight_decay=0.001 --set seed=4"]
    assert "2 points, varying train.weight_decay; dry run: nothing written" in result.stderr
    assert not out.exists()


def test_dry_run_shows_the_packs_the_sweep_will_train(tmp_path: Path) -> None:
    """On synthetic data the seed draws the samples: points pack across weight decay, not seeds;
    --pack caps a pack (the even split of sweep/packing.py: 3 points by 2 -> 2 + 1)."""
    spec = write_spec(tmp_path, "base: quickstart\ngrid:\n  train.weight_decay: [0, 1.0e-3, 1.0e-2]\n"
                                "seeds: [0, 1]\n")
    result = invoke_sweep(str(spec), "--dry-run", "--jobs", "1")
    assert result.exit_code == 0, result.stderr
    assert [line.split("  ")[:2] for line in result.stdout.splitlines()] == [
        ["wd=0_s0", "[pack 1]"], ["wd=0_s1", "[pack 2]"], ["wd=1e-3_s0", "[pack 1]"], ["wd=1e-3_s1", "[pack 2]"],
        ["wd=0.01_s0", "[pack 1]"], ["wd=0.01_s1", "[pack 2]"]]
    capped = invoke_sweep(str(spec), "--dry-run", "--jobs", "1", "--pack", "2")
    assert [line.split("  ")[1] for line in capped.stdout.splitlines()] == [
        "[pack 1]", "[pack 2]", "[pack 1]", "[pack 2]", "--set train.weight_decay=0.01 --set seed=0",
        "--set train.weight_decay=0.01 --set seed=1"]


# --- bad specs ------------------------------------------------------------------------------------

BAD_SPECS = {
    "unknown grid key": ("base: quickstart\ngrid:\n  train.wd: [0, 1]\n",
                         ["spec.yaml: point 0 (train.wd=0): unknown key train.wd"]),
    "unknown set key": ("base: quickstart\nset:\n  model.widht: 3\ngrid:\n  train.lr: [0.1]\n",
                        ["spec.yaml: set: unknown key model.widht"]),
    "bad value names the key and the point": (
        "base: quickstart\ngrid:\n  train.lr: [0.1, -1]\nseeds: [0, 1]\n",
        ["spec.yaml: point 2 (train.lr=-1, seed=0): train.lr must be > 0, got -1"]),
    "bad seed": ("base: quickstart\nseeds: [0, -1]\n", ["point 1 (seed=-1): seed must be >= 0"]),
    "empty list": ("base: quickstart\ngrid:\n  train.lr: []\n", ["spec.yaml: grid.train.lr: empty list"]),
    "not a list": ("base: quickstart\ngrid:\n  train.lr: 0.1\n",
                   ["spec.yaml: grid.train.lr: expected a list of values, got a number (write [x] for one value)"]),
    "seeds not a list": ("base: quickstart\nseeds: 3\n", ["spec.yaml: seeds: expected a list of values"]),
    "a mapping as a value": ("base: quickstart\ngrid:\n  train: [{lr: 1}]\n",
                             ["grid.train: values must be numbers, strings, booleans or lists of them"]),
    "duplicate points": ("base: quickstart\ngrid:\n  train.weight_decay: [0.001, 1.0e-3]\n",
                         ["spec.yaml: points 0 and 1 (train.weight_decay=0.001) are the same run (duplicate values)"]),
    "duplicate seeds": ("base: quickstart\nseeds: [1, 1]\n", ["points 0 and 1 (seed=1) are the same run"]),
    "zip of unequal lengths": ("base: quickstart\nzip:\n  model.width: [64, 128]\n  model.depth: [3, 4, 5]\n",
                               ["spec.yaml: zip: lists of unequal lengths (model.width: 2, model.depth: 3)"]),
    "key in set and grid": ("base: quickstart\nset:\n  train.lr: 0.1\ngrid:\n  train.lr: [0.2]\n",
                            ["train.lr is given in both set and grid"]),
    "seed in grid and seeds": ("base: quickstart\ngrid:\n  seed: [1, 2]\nseeds: [0]\n",
                               ["seed is given in both grid and seeds"]),
    "unknown top-level key": ("base: quickstart\ngrids:\n  train.lr: [0.1]\n",
                              ["spec.yaml: unknown key grids (a spec has name, base, set, grid, zip, seeds)"]),
    "no base": ("grid:\n  train.lr: [0.1]\n", ["spec.yaml: base is required"]),
    "missing base": ("base: ../nowhere.yaml\n", ["spec.yaml: base ../nowhere.yaml: no such file or preset"]),
    "missing preset": ("base: quickstrat\n", ["spec.yaml: base quickstrat: no such file or preset"]),
    "bad name": ("name: ../up\nbase: quickstart\n", ["spec.yaml: name must be a plain name"]),
    "not a key": ("base: quickstart\ngrid:\n  train lr: [1]\n", ["grid: 'train lr' is not a dotted config key"]),
    "not a mapping": ("- base\n- quickstart\n", ["spec.yaml: expected a mapping with keys name, base"]),
    "YAML error": ("base: [quickstart\n", ["spec.yaml: line 2: YAML error"]),
    "duplicate key": ("base: quickstart\nbase: quickstart\n", ["duplicate key 'base'"]),
    "billion laughs": ("\n".join(["base: quickstart", "x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
                                 + [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
                                    f"*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
                                 + ["grid:", "  train.lr: *a8"]),
                       ["aliases (*name) are not allowed in a sweep spec"]),
    "ten million points": ("base: quickstart\ngrid:\n" + "".join(
        f"  {key}: [{', '.join(str(v) for v in range(1, 11))}]\n"
        for key in ("train.epochs", "train.batch_size", "model.width", "model.depth", "monitor.log_every",
                    "monitor.eval_every", "monitor.noise_batches")),
        [f"spec.yaml: 10000000 points is more than a sweep may have ({MAX_POINTS})"]),
}


@pytest.mark.parametrize("case", BAD_SPECS)
def test_a_bad_spec_is_one_clear_line_exit_2_and_nothing_written(case: str, tmp_path: Path) -> None:
    text, parts = BAD_SPECS[case]
    spec = write_spec(tmp_path, text)
    out = tmp_path / "out"
    started = time.monotonic()
    result = invoke_sweep(str(spec), "--out", str(out))
    assert_refused(result, out, *parts)
    assert time.monotonic() - started < 20   # refused before expanding 10^7 points or 10^9 laughs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_a_base_through_dotdot_or_a_symlink_is_just_read_as_a_config(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "specs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text(QUICKSTART.read_text().replace("name: quickstart", "name: mine"))
    os.symlink(tmp_path / "configs" / "mine.yaml", tmp_path / "specs" / "link.yaml")
    for base in ("../configs/mine.yaml", "link.yaml"):
        spec = write_spec(tmp_path / "specs", f"base: {base}\nseeds: [0, 1]\n")
        assert plan(load_spec(spec)).base_config["name"] == "mine"
    # a script, a device or a directory under the base's name: read as a config, and refused as one
    (tmp_path / "specs" / "script.sh").write_text("#!/bin/sh\ntouch hacked\n")
    for base, problem in (("script.sh", "expected a mapping of sections at the top, got a string"),
                          ("/dev/zero", "not a regular file"), ("..", "is a directory")):
        spec = write_spec(tmp_path / "specs", f"base: {base}\n")
        result = invoke_sweep(str(spec), "--out", str(tmp_path / "out"))
        assert_refused(result, tmp_path / "out", f"base {base}: ", problem)
    assert not (tmp_path / "hacked").exists() and not (tmp_path / "specs" / "hacked").exists()


def test_spec_and_resume_are_one_or_the_other(tmp_path: Path) -> None:
    assert_refused(invoke_sweep(), tmp_path / "out", "give SPEC (a sweep spec YAML file) for a new sweep")
    spec = write_spec(tmp_path, "base: quickstart\n")
    assert_refused(invoke_sweep(str(spec), "--resume", str(tmp_path)), tmp_path / "out", ", not both")
    assert_refused(invoke_sweep("--resume", str(tmp_path), "--out", "x"), tmp_path / "out",
                   "--out does not apply to --resume")
    assert_refused(invoke_sweep(str(tmp_path / "none.yaml")), tmp_path / "out", "none.yaml: no such file")
