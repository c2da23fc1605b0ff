"""The engine end to end through the CLI: headless runs, determinism, exit codes, real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nctui.cli import main

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "presets" / "quickstart.yaml")
FASHION = Path("/usr/share/datasets/fashion-mnist")
# A few seconds of the quickstart: small data, a narrow net, frequent evaluations.
TINY = ["--set", "data.synthetic.train_per_class=40", "--set", "data.synthetic.test_per_class=20",
        "--set", "model.width=64", "--set", "train.epochs=12", "--set", "train.batch_size=50",
        "--set", "train.milestones=[]", "--set", "monitor.log_every=4", "--set", "monitor.eval_every=24"]
TIME_KEYS = {"time", "elapsed", "samples_per_s", "eval_seconds", "run", "path"}


def run_cli(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _without_times(value):
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_headless_run_prints_exactly_the_metrics_lines(tmp_path):
    result = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path), *TINY])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["type"] == "start" and records[-1]["type"] == "end"
    assert records[-1]["status"] == "completed"
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "metrics.jsonl").read_text().splitlines() == lines
    assert "run directory" in result.stderr and str(run_dir) in result.stderr
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) >= 4
    assert evals[-1]["train"]["acc"] > evals[0]["train"]["acc"] + 0.3
    assert evals[-1]["train"]["loss"] < evals[0]["train"]["loss"]
    assert evals[-1]["geometry"]["nc1"] < evals[0]["geometry"]["nc1"]
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["config"]["model"]["width"] == 64
    assert run_json["data"]["normalize"] is not None and run_json["versions"]["nctui"]


def test_same_seed_same_records(tmp_path):
    outputs = []
    for out in ("a", "b"):
        result = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path / out), *TINY])
        assert result.exit_code == 0
        outputs.append([_without_times(json.loads(line)) for line in result.stdout.splitlines()])
    assert outputs[0] == outputs[1]
    other = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path / "c"), *TINY, "--set", "seed=1"])
    assert [_without_times(json.loads(line)) for line in other.stdout.splitlines()] != outputs[0]


def test_divergence_exits_3_with_reason(tmp_path):
    result = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path), *TINY, "--set", "train.lr=1e8"])
    assert result.exit_code == 3
    end = json.loads(result.stdout.splitlines()[-1])
    assert end["type"] == "end" and end["status"] == "diverged" and "non-finite" in end["reason"]


@pytest.mark.parametrize("args,message", [
    (["--set", "train.lr=-1"], "train.lr must be > 0"),
    (["--set", "model.kind=transformer"], "model.kind must be one of fc, cnn"),
    (["--set", "nonsense=1"], "unknown key nonsense"),
    (["--set", "data.name=mnist", "--set", "data.download=false"], "MNIST"),
    (["--set", "model.kind=cnn", "--set", "model.channels=[8,8,8,8,8,8]", "--set", "model.stride=2"],
     "leaves no pixels"),
])
def test_bad_runs_exit_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("NCTUI_DATA", str(tmp_path / "empty"))
    result = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_config_is_usage_error(tmp_path):
    result = run_cli(["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_presets_lists_every_preset():
    result = run_cli(["presets"])
    assert result.exit_code == 0
    for name in ("quickstart", "mnist_fc", "fashion_fc", "mnist_conv", "cifar10_cnn"):
        assert name in result.stdout


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_one_epoch_beats_70_percent(tmp_path, monkeypatch):
    monkeypatch.setenv("NCTUI_DATA", str(tmp_path / "cache"))
    result = run_cli(["run", str(ROOT / "presets" / "fashion_fc.yaml"), "--headless", "--out", str(tmp_path),
                      "--set", "train.epochs=1", "--set", "monitor.eval_every=100000",
                      "--set", "monitor.noise_batches=0", "--set", "monitor.early_evals=false"])
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["dataset"] == "fashion_mnist" and records[0]["train_samples"] == 60000
    final = [r for r in records if r["type"] == "eval"][-1]
    assert final["test"]["acc"] > 0.70


def test_quickstart_preset_shows_collapse_and_the_low_rank_bias(tmp_path):
    """Issue 3's bar for the quickstart as shipped: over the run NC1 falls 10x or more, NC4
    reaches 0, every hidden layer's rank at tol 1e-3 falls to at most 2C, drift stays above 0."""
    result = run_cli(["run", QUICKSTART, "--headless", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    classes = records[0]["num_classes"]
    evals = [r for r in records if r["type"] == "eval"]
    nc1 = [e["geometry"]["nc1"] for e in evals]
    assert nc1[0] / min(nc1) >= 10, nc1
    assert evals[-1]["geometry"]["nc4"] == 0.0
    first_ranks = [layer["rank"] for layer in evals[0]["layers"][:-1]]
    last_ranks = [layer["rank"] for layer in evals[-1]["layers"][:-1]]
    assert min(first_ranks) > 200 and max(last_ranks) <= 2 * classes, (first_ranks, last_ranks)
    assert all(layer["drift"] > 0 for e in evals[1:] for layer in e["layers"])
