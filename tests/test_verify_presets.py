"""The reproduction presets (presets/sweeps/*_tiny.yaml, *_paper.yaml): every one plans (each point's
config valid), comes in both sizes, names its paper in its comment, and a tiny one stays tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from nctui.sweep.spec import load_spec, plan

SWEEPS = Path(__file__).resolve().parent.parent / "presets" / "sweeps"
EXPERIMENTS = ("weight_decay", "rank_batch_size", "rank_lr", "noise_lr", "bounds_width", "bounds_wd")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_has_a_tiny_and_a_paper_preset_that_plan(experiment: str) -> None:
    tiny, paper = plan(load_spec(SWEEPS / f"{experiment}_tiny.yaml")), plan(load_spec(SWEEPS / f"{experiment}_paper.yaml"))
    assert tiny.spec.name == f"{experiment}_tiny" and paper.spec.name == f"{experiment}_paper"
    assert tiny.varying and paper.varying
    for the_plan in (tiny, paper):
        comment = "".join(line for line in the_plan.spec.path.read_text().splitlines(keepends=True)
                          if line.startswith("#"))
        assert any(word in comment for word in ("Xu", "Galanti")), the_plan.spec.path
    # tiny: synthetic data (no files, no network) and at most 6 runs of at most 2 500 steps each
    assert len(tiny.points) <= 6
    for point in tiny.points:
        config = dict(item.split("=", 1) for item in point.overrides)
        assert config.get("data.name", tiny.base_config["data"]["name"]) == "synthetic"
    per_class = tiny.base_config["data"]["synthetic"]["train_per_class"]
    for point in tiny.points:
        values = {**{k: v for k, v in tiny.spec.set.items()}, **point.values}
        samples = values.get("data.synthetic.train_per_class", per_class) * 10
        batch = values.get("train.batch_size", tiny.base_config["train"]["batch_size"])
        epochs = values.get("train.epochs", tiny.base_config["train"]["epochs"])
        assert epochs * (samples // batch) <= 2500, point.name       # full batches per epoch
