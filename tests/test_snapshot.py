"""Snapshots: the round trip, plain safetensors readers, retention, and hostile files."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nctui.config import load_config
from nctui.data import load_dataset
from nctui.records import EndRecord, SnapshotRecord, StartRecord, StepRecord, record_to_dict, splice
from nctui.store.rundir import read_records
from nctui.store.snapshot import (SnapshotError, eval_arrays, list_snapshots, prune_snapshots, read_checkpoint,
                                  read_header, read_snapshot, snapshot_name, write_snapshot)
from nctui.train.sink import NullSink
from nctui.train.trainer import Trainer
from run_fixtures import TINY, Terminal, nctui_command, one_thread, settings  # noqa: F401 - autouse

PRESET = Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml"


class SnapshotsOnly(NullSink):
    """A sink that writes the snapshots into `run_dir` and keeps no records."""

    def __init__(self, run_dir: Path, keep: int = 0) -> None:
        self.run_dir, self.keep = run_dir, keep

    def snapshot(self, checkpoint) -> str:
        return write_snapshot(self.run_dir, checkpoint, self.keep)


def make_trainer(run_dir: Path, **changes: object) -> Trainer:
    cfg = load_config(PRESET, settings(**changes)[1::2])
    return Trainer(cfg, load_dataset(cfg.data, cfg.seed), torch.device("cpu"), run_dir.name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    """A tiny trainer run to the end (20 steps), its snapshots in its run directory."""
    run_dir = tmp_path_factory.mktemp("run")
    trainer = make_trainer(run_dir, train__epochs=2)
    trainer.run_dir = run_dir
    assert trainer.run(SnapshotsOnly(run_dir)).status == "completed"
    return trainer


def test_round_trip_gives_identical_tensors_and_metadata(trained: Trainer) -> None:
    run_dir = trained.run_dir
    assert [p.name for _, p in list_snapshots(run_dir)] == [snapshot_name(s) for s in (7, 14, 20)]
    assert sorted(p.name for p in run_dir.iterdir()) == [snapshot_name(s) for s in (7, 14, 20)]  # no temporaries
    snap = read_snapshot(run_dir / snapshot_name(20), trained.layout())
    checkpoint = trained.checkpoint("final")
    tensors = {**checkpoint.tensors, **eval_arrays(trained.last_eval)}
    assert snap.tensors.keys() == tensors.keys()
    for name, value in tensors.items():
        assert snap.tensors[name].dtype == value.dtype and torch.equal(snap.tensors[name], value), name
    assert (snap.step, snap.epoch, snap.reason, snap.run) == (20, 2.0, "final", run_dir.name)
    assert snap.config == trained.cfg.to_dict()
    assert record_to_dict(snap.eval) == record_to_dict(trained.last_eval)
    assert {k: v for k, v in snap.resume.items() if k != "elapsed"} == {
        k: v for k, v in checkpoint.resume.items() if k != "elapsed"}


def test_a_snapshot_loads_with_plain_safetensors(trained: Trainer) -> None:
    path = trained.run_dir / snapshot_name(20)
    plain = load_file(path)
    assert plain.keys() == read_snapshot(path).tensors.keys()
    model = trained.model.state_dict()
    assert all(torch.equal(plain[f"model.{key}"], value) for key, value in model.items())
    for k, w in enumerate(trained.model.effective_weights()):
        assert torch.equal(plain[f"weights.{k}"], w.detach())
        sv = torch.linalg.svdvals(w.detach().double())
        assert torch.allclose(plain[f"eval.sv.{k}"], sv / sv.norm(), atol=1e-6)
    assert plain["eval.cosine"].shape == (10, 10)
    assert plain["eval.class_means"].shape == (10, TINY["model.width"])


def test_snapshot_files_hold_the_layout_the_docs_promise(trained: Trainer) -> None:
    snap = read_header(trained.run_dir / snapshot_name(14))
    assert set(snap.metadata) == {"format", "schema", "run", "step", "epoch", "reason", "config", "eval",
                                  "resume"}
    assert snap.metadata["step"] == "14" and snap.reason == "periodic" and snap.eval.step == 10
    assert snap.layout["resume.rho_history"] == ("F32", (1, 3))   # rho_k sampled at step 12
    prefixes = {name.split(".")[0] for name in snap.layout}
    assert prefixes == {"model", "optim", "weights", "eval", "resume"}
    assert {"resume.rho_history", "resume.loss_sum", "resume.prev_logits", "resume.rng_cpu"} <= set(snap.layout)


def test_s_and_q_in_the_monitor_write_snapshots(tmp_path: Path) -> None:
    """The live app on a pty: `s` asks for a snapshot, `q` stops the run after a final one."""
    long_run = settings(train__epochs=1000, monitor__snapshot_every=0)
    terminal = Terminal(nctui_command("run", "quickstart", "--out", str(tmp_path), *long_run))
    try:
        terminal.wait_for(b"running")
        terminal.type(b"s")
        deadline = time.time() + 30
        while time.time() < deadline and not any(r.type == "snapshot" for r in _records(tmp_path)):
            time.sleep(0.05)
        terminal.type(b"q")
        assert terminal.wait_exit() == 0
    finally:
        terminal.close()
    records = _records(tmp_path)
    snapshots = [r for r in records if r.type == "snapshot"]
    end = records[-1]
    assert [s.reason for s in snapshots] == ["user", "final"] and end.status == "stopped"
    assert snapshots[-1].step == end.step < 10_000
    run_dir = next(tmp_path.iterdir())
    assert [step for step, _ in list_snapshots(run_dir)] == [s.step for s in snapshots]
    assert read_header(run_dir / snapshots[0].path).reason == "user"


def _records(out: Path) -> list:
    runs = [p for p in out.iterdir() if (p / "metrics.jsonl").is_file()]
    return read_records(runs[0]) if runs else []


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    for step in (5, 10, 15, 20, 99):
        (tmp_path / snapshot_name(step)).write_bytes(b"x")
    prune_snapshots(tmp_path, 2, 20)
    assert [s for s, _ in list_snapshots(tmp_path)] == [15, 20, 99]  # 99: a superseded segment's, left alone
    prune_snapshots(tmp_path, 1, 20)
    assert [s for s, _ in list_snapshots(tmp_path)] == [20, 99]
    prune_snapshots(tmp_path, 0, 20)
    assert [s for s, _ in list_snapshots(tmp_path)] == [20, 99]


def test_keep_snapshots_in_a_run(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, train__epochs=3, monitor__keep_snapshots=2)
    trainer.run(SnapshotsOnly(tmp_path, keep=2))
    assert [s for s, _ in list_snapshots(tmp_path)] == [28, 30]


def corrupt_copies(source: Path, target: Path) -> dict[Path, str]:
    """Damaged versions of a good snapshot, each under its real name in a directory of its own;
    path -> what the error must say."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    tensors = data[8 + length:]

    def with_metadata(**changes: str) -> bytes:
        blob = json.dumps(dict(header, __metadata__={**header["__metadata__"], **changes})).encode()
        return struct.pack("<Q", len(blob)) + blob + tensors

    cases = [
        (data[:len(data) // 2], "truncated"),
        (struct.pack("<Q", 1 << 40) + data[8:], "corrupt or truncated"),
        (data[:5], "corrupt or truncated"),
        (b"\x80\x04\x95" + b"\x00" * 40, "corrupt or truncated"),   # a pickle: never unpickled
        (data[:8] + b"\xff" * length + tensors, "not JSON"),
        (with_metadata(format="other"), "not an nctui snapshot"),
        (with_metadata(step="8"), "does not match the file name"),
        (with_metadata(schema="2"), "schema"),
        (with_metadata(eval='{"type": 1}'), "bad metadata"),
        (with_metadata(resume="[]"), "bad metadata"),
        (with_metadata(config="{"), "bad metadata"),
    ]
    expected = {}
    for index, (blob, message) in enumerate(cases):
        path = target / f"case{index}" / source.name
        path.parent.mkdir()
        path.write_bytes(blob)
        expected[path] = message
    return expected


def test_hostile_snapshots_are_named_in_a_clear_error(trained: Trainer, tmp_path: Path) -> None:
    for path, message in corrupt_copies(trained.run_dir / snapshot_name(20), tmp_path).items():
        with pytest.raises(SnapshotError) as caught:
            read_snapshot(path)
        assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)
    foreign = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(2)}, foreign)
    with pytest.raises(SnapshotError, match="not a snapshot name"):
        read_snapshot(foreign)
    no_metadata = tmp_path / snapshot_name(20)
    save_file({"x": torch.zeros(2)}, no_metadata)
    with pytest.raises(SnapshotError, match="not an nctui snapshot"):
        read_snapshot(no_metadata)


def test_shapes_are_checked_against_the_model_the_config_builds(trained: Trainer, tmp_path: Path) -> None:
    wider = make_trainer(tmp_path, train__epochs=2, model__width=48)
    with pytest.raises(SnapshotError, match=r"model.layers.0.parametrizations.weight.original1 is F32 \[32, 784\]; "
                                            r"this run's config builds F32 \[48, 784\]"):
        read_snapshot(trained.run_dir / snapshot_name(20), wider.layout())
    path = tmp_path / snapshot_name(20)
    shutil.copy(trained.run_dir / snapshot_name(20), path)
    tensors = load_file(path)
    metadata = read_header(path).metadata
    extra = {**tensors, "model.extra": torch.zeros(3)}
    save_file(extra, path, metadata=metadata)
    with pytest.raises(SnapshotError, match="unexpected tensor 'model.extra'"):
        read_snapshot(path, trained.layout())
    del tensors["resume.loss_sum"]
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(SnapshotError, match="tensor resume.loss_sum missing"):
        read_snapshot(path, trained.layout())


def test_restore_continues_the_same_state(trained: Trainer, tmp_path: Path) -> None:
    fresh = make_trainer(tmp_path, train__epochs=2)
    saved = read_checkpoint(trained.run_dir / snapshot_name(14), fresh.layout())
    fresh.restore(saved)
    again = fresh.checkpoint("periodic")
    assert fresh.resumed_from == 14 and again.resume["steps_since_log"] == 2 and again.resume["prev_step"] == 10
    assert again.tensors.keys() == saved.tensors.keys()
    for name, value in again.tensors.items():
        assert torch.equal(saved.tensors[name], value), name
    saved.tensors.pop("resume.prev_logits")
    with pytest.raises(ValueError, match="must come together"):
        fresh.restore(saved)


def test_splice_drops_what_a_resumed_segment_superseded() -> None:
    def start(resumed_from: int | None) -> StartRecord:
        return StartRecord(run="r", time=0.0, device="cpu", dataset="d", model="m", num_classes=2, layers=[],
                           epochs=1, steps_per_epoch=10, total_steps=30, train_samples=4, resumed_from=resumed_from)

    def step(n: int) -> StepRecord:
        return StepRecord(step=n, epoch=n / 10, loss=0.1, lr=0.1, samples_per_s=1.0, elapsed=float(n))

    first = [start(None), step(5), SnapshotRecord(step=7, path=snapshot_name(7), reason="periodic", elapsed=7.0),
             step(10), EndRecord(step=10, status="stopped", reason="q", elapsed=10.0)]
    spliced = splice(first + [start(7), step(10), step(15)])
    assert [(r.type, getattr(r, "step", None)) for r in spliced] == [
        ("start", None), ("step", 5), ("snapshot", 7), ("start", None), ("step", 10), ("step", 15)]
    assert splice(first) == first


def test_a_snapshot_is_due_after_snapshot_minutes_of_wall_time(tmp_path: Path) -> None:
    """monitor.snapshot_minutes bounds what a kill can lose in time, whatever the step count."""
    trainer = make_trainer(tmp_path, train__epochs=2, monitor__snapshot_every=0, monitor__snapshot_minutes=5)
    assert not trainer._snapshot_due(3)                        # just started
    trainer._last_snapshot_time -= 5 * 60 + 1
    assert trainer._snapshot_due(3)                            # five minutes without one
    assert not trainer._snapshot_due(trainer.total_steps)      # the last step gets the final one instead
    trainer.run(SnapshotsOnly(tmp_path))                       # each snapshot restarts the clock
    assert not trainer._snapshot_due(3)
    never = make_trainer(tmp_path, train__epochs=2, monitor__snapshot_every=0, monitor__snapshot_minutes=0)
    never._last_snapshot_time -= 10 ** 6
    assert not never._snapshot_due(3)
