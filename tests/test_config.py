"""Config loading: presets load, overrides apply, malformed input gives one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nctui.config import ConfigError, load_config

PRESETS = sorted((Path(__file__).resolve().parent.parent / "presets").glob("*.yaml"))


def test_every_preset_loads():
    assert {p.stem for p in PRESETS} >= {"quickstart", "mnist_fc", "fashion_fc", "mnist_conv", "cifar10_cnn"}
    for path in PRESETS:
        cfg = load_config(path)
        assert cfg.name == path.stem


def test_overrides_apply_with_types():
    cfg = load_config(PRESETS[0], ["train.lr=0.2", "monitor.bounds.gamma=2", "data.train_size=null",
                                   "train.milestones=[1, 2]", "seed=7"])
    assert cfg.train.lr == 0.2 and cfg.monitor.bounds.gamma == 2.0
    assert cfg.train.milestones == [1, 2] and cfg.seed == 7 and cfg.data.train_size is None


def test_scientific_notation_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  weight_decay: 5e-4\n")
    assert load_config(path).train.weight_decay == pytest.approx(5e-4)


MALFORMED = [
    ("train: [1, 2\n", "YAML syntax error"),
    ("", "empty config"),
    ("- a\n- b\n", "expected a mapping"),
    ("trian:\n  lr: 0.1\n", "unknown key trian"),
    ("train:\n  learning_rate: 0.1\n", "unknown key train.learning_rate"),
    ("train:\n  lr: fast\n", "train.lr must be a number"),
    ("train:\n  epochs: 2.5\n", "train.epochs must be an integer"),
    ("train:\n  batch_size: -4\n", "train.batch_size must be >= 1"),
    ("train:\n  lr: 0\n", "train.lr must be > 0"),
    ("data:\n  name: imagenet\n", "data.name must be one of"),
    ("model: 3\n", "model must be a mapping"),
    ("model:\n  channels: [16, zero]\n", "model.channels[1] must be an integer"),
    ("train:\n  momentum: 1.5\n", "train.momentum must be <= 1"),
    ("monitor:\n  enabled: maybe\n", "monitor.enabled must be true or false"),
    ("data:\n  synthetic:\n    num_classes: 1\n", "data.synthetic.num_classes"),
]


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_configs_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text_of_error = str(info.value)
    assert message in text_of_error
    assert str(path) in text_of_error and "\n" not in text_of_error


def test_missing_file_directory_and_binary(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x80\x04\x95\xff\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(binary)


def test_bad_override_is_named(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(PRESETS[0], ["train.lr"])
    with pytest.raises(ConfigError, match="unknown key train.lrr"):
        load_config(PRESETS[0], ["train.lrr=1"])
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        load_config(PRESETS[0], ["train.lr=abc"])
