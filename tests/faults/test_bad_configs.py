"""Malformed configs and options: each is one line naming the problem (and the file, where there
is one), exit 2, no traceback, no run directory left behind, and nothing executed or written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import pytest

from faults.helpers import assert_one_line_error
from run_fixtures import invoke

BAD = "bad.yaml"   # the file the YAML cases are written to
Setup = Union[str, bytes, Callable[[Path], str]]   # YAML text or bytes for BAD, or: make the CONFIG argument


def preset(_: Path) -> str:
    return "quickstart"


def fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "pipe.yaml")
    return str(tmp_path / "pipe.yaml")


def huge(tmp_path: Path) -> str:
    (tmp_path / "huge.yaml").write_text("# padding\n" * 200_000)
    return str(tmp_path / "huge.yaml")


CASES: list[tuple[str, Setup, list[str], list[str]]] = [
    # YAML syntax
    ("unclosed-list", "train: [1, 2\n", [], [BAD, "line 2: YAML syntax error"]),
    ("tab-indent", "train:\n\tlr: 0.1\n", [], [BAD, "line 2: YAML syntax error: found character '\\t'"]),
    ("unclosed-quote", 'name: "abc\n', [], [BAD, "YAML syntax error"]),
    ("duplicate-key", "train: {lr: 0.1}\ntrain: {lr: 0.2}\n", [],
     [BAD, "line 2: YAML syntax error: duplicate key 'train'"]),
    ("python-tag", "!!python/object/apply:os.system ['touch PWNED']\n", [], [BAD, "could not determine a constructor"]),
    ("nested-too-deep", "train: " + "[" * 5000 + "]" * 5000 + "\n", [], [BAD, "YAML syntax error: nested too deeply"]),
    ("nul-character", "name: x\x00y\n", [], [BAD, "character #x0000 is not allowed"]),
    # not a config
    ("empty", "", [], [BAD, "empty config"]),
    ("only-comments", "# nothing here\n", [], [BAD, "empty config"]),
    ("top-level-list", "- train\n- model\n", [], [BAD, "expected a mapping of sections at the top, got a list"]),
    ("top-level-number", "42\n", [], [BAD, "expected a mapping of sections at the top, got an integer"]),
    ("latin-1", "name: caf\xe9\n".encode("latin-1"), [], [BAD, "not a text file"]),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", [], [BAD, "not a text file"]),
    ("directory", lambda tmp_path: str(tmp_path), [], ["is a directory, not a YAML config file"]),
    ("missing-file", lambda tmp_path: str(tmp_path / "nope.yaml"), [], ["nope.yaml: no such file"]),
    ("unknown-preset", lambda _: "quikstart", [], ["quikstart: no such file or preset", "nctui presets"]),
    ("named-pipe", fifo, [], ["pipe.yaml: not a regular file"]),
    ("two-megabytes", huge, [], ["huge.yaml: 2000000 bytes is too large for a YAML config"]),
    # unknown keys
    ("unknown-section", "trian:\n  lr: 0.1\n", [], [BAD, "unknown key trian (known here: data, model, monitor, name"]),
    ("unknown-key", "train:\n  learning_rate: 0.1\n", [],
     [BAD, "unknown key train.learning_rate (known here: batch_size"]),
    ("unknown-nested-key", "data:\n  synthetic:\n    bogus: 1\n", [], [BAD, "unknown key data.synthetic.bogus"]),
    ("unknown-set-key", preset, ["--set", "nonsense=1"], ["unknown key nonsense"]),
    # wrong types
    ("section-not-mapping", "model: 3\n", [], [BAD, "model must be a mapping, got an integer"]),
    ("word-for-number", "train:\n  lr: fast\n", [], [BAD, "train.lr must be a number, got 'fast'"]),
    ("fraction-for-integer", "train:\n  epochs: 2.5\n", [], [BAD, "train.epochs must be an integer, got 2.5"]),
    ("bool-for-integer", "train:\n  batch_size: true\n", [], [BAD, "train.batch_size must be an integer, got True"]),
    ("word-for-bool", "monitor:\n  enabled: maybe\n", [], [BAD, "monitor.enabled must be true or false, got 'maybe'"]),
    ("word-in-list", "model:\n  channels: [16, zero]\n", [], [BAD, "model.channels[1] must be an integer, got 'zero'"]),
    ("number-for-list", "train:\n  milestones: 5\n", [], [BAD, "train.milestones must be a list of integers, got 5"]),
    ("nan", "train:\n  lr: .nan\n", [], [BAD, "train.lr must be a number, got nan"]),
    ("set-not-a-number", preset, ["--set", "train.lr=abc"], ["train.lr must be a number, got 'abc'"]),
    ("set-broken-yaml", preset, ["--set", "model.channels=[8,"],
     ["model.channels must be a list of integers, got '[8,'"]),
    ("set-without-value", preset, ["--set", "train.lr"], ["--set 'train.lr': expected KEY=VALUE"]),
    ("set-through-a-value", preset, ["--set", "train=3", "--set", "train.lr=0.1"],
     ["--set train.lr: train is not a section"]),
    # negative, zero and absurd sizes
    ("negative-batch", "train:\n  batch_size: -4\n", [], [BAD, "train.batch_size must be >= 1, got -4"]),
    ("negative-width", "model:\n  width: -1\n", [], [BAD, "model.width must be >= 1, got -1"]),
    ("zero-epochs", "train:\n  epochs: 0\n", [], [BAD, "train.epochs must be >= 1, got 0"]),
    ("negative-snapshot-every", "monitor:\n  snapshot_every: -5\n", [],
     [BAD, "monitor.snapshot_every must be >= 0, got -5"]),
    ("negative-samples", "data:\n  synthetic:\n    train_per_class: -3\n", [],
     [BAD, "data.synthetic.train_per_class = -3: must be at least 1"]),
    ("zero-lr", "train:\n  lr: 0\n", [], [BAD, "train.lr must be > 0, got 0"]),
    ("momentum-above-1", "train:\n  momentum: 1.5\n", [], [BAD, "train.momentum must be <= 1, got 1.5"]),
    ("negative-seed", "seed: -1\n", [], [BAD, "seed must be >= 0, got -1"]),
    ("huge-seed", "seed: 100000000000000000000\n", [], [BAD, "seed must be <= 4294967295"]),
    ("huge-epochs", preset, ["--set", "train.epochs=100000000000000000000"], ["train.epochs must be <= 1000000"]),
    ("subset-larger-than-data", preset, ["--set", "data.train_size=100000"],
     ["data.train_size = 100000: must be between the number of classes (10) and the number of samples (2500)"]),
    ("too-many-conv-layers", preset, ["--set", "model.kind=cnn", "--set", "model.channels=[4,4,4,4,4,4]"],
     ["model.channels: conv layer 4 leaves no pixels (kernel 3, stride 2)"]),
    ("no-conv-layers", preset, ["--set", "model.kind=cnn", "--set", "model.channels=[]"],
     ["a cnn needs at least one conv layer (model.channels)"]),
    ("model-larger-than-memory", preset, ["--set", "model.width=1000000000000", "--set", "model.depth=2"],
     ["not enough memory for this model (fc, width 1000000000000, depth 2"]),
    # unknown choices
    ("unknown-dataset", "data:\n  name: imagenet\n", [],
     [BAD, "data.name must be one of synthetic, mnist, fashion_mnist, cifar10, got 'imagenet'"]),
    ("unknown-model", preset, ["--set", "model.kind=transformer"],
     ["model.kind must be one of fc, cnn, got 'transformer'"]),
    ("unknown-device", "train:\n  device: tpu\n", [], [BAD, "train.device must be one of auto, cpu, cuda, got 'tpu'"]),
    # names that would put the run directory elsewhere
    ("name-climbs-out", "name: ../../escape\n", [], [BAD, "name must be a plain name", "got '../../escape'"]),
    ("name-option-with-slash", preset, ["--name", "a/b"], ["name must be a plain name", "got 'a/b'"]),
    ("empty-name", "name: ''\n", [], [BAD, "name must be a plain name", "got ''"]),
]


@pytest.mark.parametrize("setup, args, parts", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_config_is_one_line_and_exit_2(setup: Setup, args: list[str], parts: list[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)   # where a PWNED file would appear
    if callable(setup):
        config = setup(tmp_path)
    else:
        path = tmp_path / BAD
        path.write_bytes(setup if isinstance(setup, bytes) else setup.encode())
        config = str(path)
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "out" / "runs"
    result = invoke("run", config, "--headless", "--out", str(out), *args)
    assert_one_line_error(result, 2, *parts)
    # no run directory (at most the empty --out), nothing written elsewhere, nothing executed
    assert set(tmp_path.rglob("*")) - before <= {out, out.parent}


def test_there_are_at_least_30_distinct_bad_inputs() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 30
