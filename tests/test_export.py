"""`nctui export --csv`: every number of metrics.jsonl comes back from the CSV, and nothing else."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from compare_fixtures import write_sweep
from nctui.report_commands import export
from report_fixtures import Finals, write_run

FIXED = ["step", "epoch", "metric", "layer", "index", "value"]


def leaves(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(metric, index, leaf) of a JSON value, read independently of nctui: lists flattened row-major."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        flat = [x for row in value for x in (row if isinstance(row, list) else [row])]
        for index, item in enumerate(flat):
            yield path, str(index), item
    else:
        yield path, "", value


def expected_rows(run_dir: Path, run: str) -> dict[tuple, Any]:
    """(run, step, metric, layer, index) -> number or None for every number in the step and eval lines."""
    expected = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        found: list[tuple[str, str, str, Any]] = []
        if record["type"] == "step":
            found = [("", f"step.{k}", "", record[k]) for k in ("loss", "lr", "samples_per_s", "elapsed")]
        elif record["type"] == "eval":
            found = [("", f"eval.{k}", "", record[k]) for k in ("elapsed", "eval_seconds")]
            for group in ("train", "test", "geometry", "noise", "margins", "bounds"):
                found += [("", metric, index, leaf) for metric, index, leaf in leaves(record[group], group)]
            for layer in record["layers"]:
                found += [(layer["name"], metric, index, leaf) for metric, index, leaf in leaves(layer, "layers")]
        for layer, metric, index, leaf in found:
            if leaf is None or (isinstance(leaf, (int, float)) and not isinstance(leaf, bool)):
                expected[(run, str(record["step"]), metric, layer, index)] = leaf
    return expected


def exported(*args: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(export, [*map(str, args), "--csv", "-"])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_the_csv_round_trips_every_number_of_metrics_jsonl(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    rows = exported(sweep)
    expected: dict[tuple, Any] = {}
    for run_dir in sorted(p for p in sweep.iterdir() if p.is_dir()):
        expected.update(expected_rows(run_dir, run_dir.name))
    got = {(r["run"], r["step"], r["metric"], r["layer"], r["index"]): r["value"] for r in rows}
    assert len(got) == len(rows), "a (run, step, metric, layer, index) appears twice"
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == ("" if value is None else repr(value)), key
        if value is not None:
            assert float(got[key]) == value                    # repr reads back to the same float
    strings = {r["metric"] for r in rows} & {"bounds.audit.convention", "layers.name"}
    assert strings == set()


def test_the_columns_name_the_varying_keys_then_the_fixed_ones(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    result = CliRunner().invoke(export, [str(sweep), "--csv", "-"])
    header = result.stdout.splitlines()[0].split(",")
    assert header == ["run", "train.weight_decay", "seed", *FIXED]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_run = {r["run"]: (r["train.weight_decay"], r["seed"]) for r in rows}
    assert by_run == {"wd=0_s0": ("0.0", "0"), "wd=0_s1": ("0.0", "1"), "wd=1e-2_s0": ("0.01", "0"),
                      "wd=1e-2_s1": ("0.01", "1")}
    epochs = {(r["step"], r["epoch"]) for r in rows if r["metric"] == "geometry.nc1"}
    assert ("100", "2.0") in epochs                             # 50 steps per epoch


def test_matrices_are_row_major_and_layers_named(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    rows = exported(sweep / "wd=1e-2_s0")
    last = json.loads([line for line in (sweep / "wd=1e-2_s0" / "metrics.jsonl").read_text().splitlines()
                       if '"eval"' in line][-1])
    cosine = {r["index"]: float(r["value"]) for r in rows
              if r["metric"] == "geometry.cosine" and r["step"] == str(last["step"])}
    assert len(cosine) == 100 and cosine["13"] == last["geometry"]["cosine"][1][3]
    ranks = {r["layer"]: r["value"] for r in rows if r["metric"] == "layers.rank" and r["step"] == str(last["step"])}
    assert ranks == {layer["name"]: str(layer["rank"]) for layer in last["layers"]}
    assert rows[0].keys() == {"run", *FIXED}                    # one run: no key columns


def test_metric_patterns_select_rows(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    rows = exported(run, "--metric", "geometry.*", "--metric", "layers.rank")
    assert {r["metric"] for r in rows} == {"geometry.nc1", "geometry.nc4", "layers.rank"}
    assert len([r for r in rows if r["metric"] == "geometry.nc1"]) == 9
    assert {r["layer"] for r in rows if r["metric"] == "layers.rank"} == {"fc1", "fc2", "fc3", "classifier"}


def test_a_file_is_written_and_pandas_reads_it(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", finals=Finals(nc1=0.02))
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(export, [str(run), "--csv", str(out)])
    assert result.exit_code == 0 and "rows from 1 runs" in result.stderr
    pandas = pytest.importorskip("pandas", reason="pandas is not a dependency; the csv module test above covers the format")
    frame = pandas.read_csv(out)
    assert list(frame.columns) == ["run", *FIXED]
    nc1 = frame[frame.metric == "geometry.nc1"].sort_values("step")
    assert nc1.value.iloc[-1] == pytest.approx(0.02) and nc1.step.iloc[-1] == 800
    assert math.isnan(frame[frame.metric == "bounds.gap_bound_local"].value.iloc[0])   # null: empty, NaN


def test_export_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(export, [str(tmp_path / "nope"), "--csv", "-"])
    assert result.exit_code == 2 and result.stderr.startswith("nctui: error: ") and "no such directory" in result.stderr
    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(export, [str(run), "--csv", str(tmp_path / "missing" / "x.csv")])
    assert result.exit_code == 2 and "cannot write" in result.stderr
