"""The one vocabulary of eval records, tied together: the real Evaluator produces exactly the
keys records.py types, docs/records.md lists exactly those keys, and every key a pane (or the
Overview's verdicts) reads is one the evaluator writes. Rename one key anywhere and this fails."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import torch

from nctui.config import load_config
from nctui.data import load_dataset
from nctui.records import EVAL_GROUPS, BoundsAudit, EvalRecord, StartRecord
from nctui.train.sink import ListSink
from nctui.train.trainer import Trainer
from tui_fixtures import press, replay_feed, settle

ROOT = Path(__file__).resolve().parent.parent
TINY = ["train.epochs=4", "train.batch_size=16", "data.synthetic.train_per_class=12", "data.synthetic.test_per_class=4",
        "model.width=16", "monitor.eval_every=10", "monitor.probe_per_class=8", "monitor.log_every=5"]


@pytest.fixture(scope="module")
def recorded() -> list:
    """A tiny quickstart trained by the real Trainer and Evaluator: its start and eval records."""
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "presets" / "quickstart.yaml", TINY)
    sink = ListSink()
    trainer = Trainer(cfg, load_dataset(cfg.data, cfg.seed, progress=False), torch.device("cpu"), "contract")
    assert trainer.run(sink).status == "completed"
    evals = [r for r in sink.records if r.type == "eval"]
    assert len(evals) >= 3
    return sink.records


def typed_keys(group: str) -> set[str]:
    return set(typing.get_type_hints(EVAL_GROUPS[group]))


def test_the_evaluator_writes_exactly_the_typed_keys(recorded: list) -> None:
    for record in recorded:
        if record.type != "eval":
            continue
        for group in EVAL_GROUPS:
            values = getattr(record, group)
            for item in values if group == "layers" else [values]:
                assert set(item) == typed_keys(group), group
        assert set(record.bounds["audit"]) == set(typing.get_type_hints(BoundsAudit))


def documented_keys() -> dict[str, set[str]]:
    """group -> the keys in the first column of its table in docs/records.md."""
    text = (ROOT / "docs" / "records.md").read_text()
    tables, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"### `([\w.]+)`", line)
        if heading:
            current = heading.group(1)
            tables[current] = set()
        elif current and (row := re.match(r"\| `(\w+)` \|", line)):
            tables[current].add(row.group(1))
        elif line.startswith("## "):
            current = None
    return tables


def test_docs_list_exactly_the_typed_keys() -> None:
    documented = documented_keys()
    for group in EVAL_GROUPS:
        assert documented.get(group) == typed_keys(group), group
    assert documented.get("bounds.audit") == set(typing.get_type_hints(BoundsAudit))


class Watched(dict):
    """A group dict that notes every key read from it that it does not have."""

    missing: set[tuple[str, str]] = set()

    def __init__(self, group: str, data: dict) -> None:
        super().__init__({k: Watched(f"{group}.{k}", v) if isinstance(v, dict) else v for k, v in data.items()})
        self.group = group

    def get(self, key, default=None):
        if key not in self:
            Watched.missing.add((self.group, key))
        return super().get(key, default)

    def __getitem__(self, key):
        if key not in self:
            Watched.missing.add((self.group, key))
        return super().__getitem__(key)


def watched(record: EvalRecord) -> EvalRecord:
    groups = {group: ([Watched(group, layer) for layer in record.layers] if group == "layers"
                      else Watched(group, getattr(record, group))) for group in EVAL_GROUPS}
    return EvalRecord(step=record.step, epoch=record.epoch, elapsed=record.elapsed,
                      eval_seconds=record.eval_seconds, **groups)


async def test_every_key_the_panes_read_is_written(recorded: list) -> None:
    from nctui.tui.app import PANES, NctuiApp

    records = [watched(r) if r.type == "eval" else r for r in recorded]
    assert isinstance(records[0], StartRecord)
    Watched.missing.clear()
    app = NctuiApp(replay_feed(records), mode="replay")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for key in range(1, len(PANES) + 1):
            await press(pilot, str(key))
            for _ in range(len(app.state.layer_names())):
                await press(pilot, "l")   # every layer of the spectra pane
        await press(pilot, "5", "a")      # the bounds audit
        await press(pilot, "escape", "left_square_bracket", "home")   # and the first evaluation
        for key in range(1, len(PANES) + 1):
            await press(pilot, str(key))
    assert Watched.missing == set()
