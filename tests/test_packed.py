"""Packed training: each member of a pack records what the same run records alone.

A shrunk quickstart (640 samples, FC 784-64x3-10, batch 64: 10 steps an epoch, 20 epochs) on
the CPU with one thread. Members differ in lr, weight decay, momentum, target scale and seed;
they share one data set (the train layer packs runs on equal data; whether a seed draws other
data is the sweep's and the runner's concern, tested in test_packed_sweep.py).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import pytest
import torch

from nctui.config import Config, load_config
from nctui.data import load_dataset
from nctui.records import EXIT_OK, splice
from nctui.runner import RunError, resume_pack, resume_run, start_pack
from nctui.store.rundir import read_records, read_run_json
from nctui.store.snapshot import list_snapshots
from nctui.train.packed import PackedTrainer
from nctui.train.sink import ListSink
from nctui.train.trainer import Trainer
from run_fixtures import one_thread  # noqa: F401 - autouse

PRESET = Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml"
SHRUNK = ["data.synthetic.train_per_class=64", "data.synthetic.test_per_class=20", "model.width=64",
          "train.batch_size=64", "train.epochs=20", "train.device=cpu", "train.lr=0.1", "monitor.log_every=5",
          "monitor.eval_every=100", "monitor.early_evals=false", "monitor.probe_per_class=0",
          "monitor.noise_batches=2", "monitor.snapshot_minutes=0"]
MEMBERS = {"base": [], "lr_wd": ["train.lr=0.05", "train.weight_decay=1.0e-3"],
           "mom_ts": ["train.momentum=0.5", "train.target_scale=2"], "seed": ["seed=1"]}
CLOCKS = ("time", "elapsed", "eval_seconds", "samples_per_s")


def config(*extra: str) -> Config:
    return load_config(PRESET, [*SHRUNK, *extra])


@pytest.fixture(scope="module")
def data():
    return load_dataset(config().data, 0, progress=False)


def trainer(cfg: Config, data, name: str) -> Trainer:
    return Trainer(cfg, data, torch.device("cpu"), name)


@pytest.fixture(scope="module")
def alone(data) -> dict[str, list]:
    """Each member's records trained on its own."""
    records = {}
    for name, extra in MEMBERS.items():
        sink = ListSink()
        trainer(config(*extra), data, name).run(sink)
        records[name] = sink.records
    return records


@pytest.fixture(scope="module")
def packed(data) -> dict[str, list]:
    """The same members' records trained as one pack."""
    sinks = {name: ListSink() for name in MEMBERS}
    pack = PackedTrainer([trainer(config(*extra), data, name) for name, extra in MEMBERS.items()])
    pack.run(list(sinks.values()))
    return {name: sink.records for name, sink in sinks.items()}


def numbers(value: object, path: str = "") -> dict[str, float]:
    """Every number in a record (nested dicts and lists flattened), by its path."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: float(value)}
    return {}


def close(a: float, b: float, rel: float) -> bool:
    return a == b or (math.isfinite(a) and abs(a - b) <= rel * max(abs(a), abs(b)))


def of_type(records: list, kind: str) -> list:
    return [r for r in records if r.type == kind]


@pytest.mark.parametrize("name", MEMBERS)
def test_the_step_0_evaluation_and_the_loss_after_10_steps_equal_the_alone_runs(alone, packed, name) -> None:
    first_alone, first_packed = of_type(alone[name], "eval")[0], of_type(packed[name], "eval")[0]
    assert first_alone.step == first_packed.step == 0
    a = numbers({k: v for k, v in dataclasses.asdict(first_alone).items() if k not in CLOCKS})
    b = numbers({k: v for k, v in dataclasses.asdict(first_packed).items() if k not in CLOCKS})
    assert a.keys() == b.keys() and len(a) > 100
    assert [key for key in a if not close(a[key], b[key], 1e-6)] == []
    (step_10_alone,) = [r for r in of_type(alone[name], "step") if r.step == 10]
    (step_10_packed,) = [r for r in of_type(packed[name], "step") if r.step == 10]
    assert close(step_10_alone.loss, step_10_packed.loss, 1e-6)
    assert step_10_packed.lr == step_10_alone.lr


@pytest.mark.parametrize("name", MEMBERS)
def test_nc1_and_ranks_after_20_epochs_equal_the_alone_runs(alone, packed, name) -> None:
    last_alone, last_packed = of_type(alone[name], "eval")[-1], of_type(packed[name], "eval")[-1]
    assert last_alone.step == last_packed.step == 200
    assert close(last_alone.geometry["nc1"], last_packed.geometry["nc1"], 1e-3)
    for layer_alone, layer_packed in zip(last_alone.layers, last_packed.layers, strict=True):
        assert close(layer_alone["rank"], layer_packed["rank"], 1e-3)
        if layer_alone["nc1"] is not None:
            assert close(layer_alone["nc1"], layer_packed["nc1"], 1e-3)
    assert [r.type for r in alone[name]] == [r.type for r in packed[name]]
    assert of_type(packed[name], "end")[0].status == "completed"


def test_members_differ_as_their_runs_do(alone) -> None:
    """The comparison above means something: each hyperparameter changes the records."""
    losses = {name: [r.loss for r in of_type(records, "step")][-1] for name, records in alone.items()}
    assert len(set(losses.values())) == len(MEMBERS)


def test_a_members_initialisation_is_its_own_seeds(data) -> None:
    members = [trainer(config(), data, "a"), trainer(config("seed=1"), data, "b")]
    pack = PackedTrainer(members)
    for row, seed in enumerate((0, 1)):
        fresh = trainer(config(f"seed={seed}"), data, "fresh")
        for name, stacked in zip(pack.model.names, pack.model.params):
            assert torch.equal(stacked[row], fresh.model.get_parameter(name))
    assert not torch.equal(pack.model.params[0][0], pack.model.params[0][1])


def test_a_diverging_member_ends_alone_and_the_others_go_on(data, alone) -> None:
    sinks = [ListSink(), ListSink()]
    pack = PackedTrainer([trainer(config(), data, "base"), trainer(config("train.lr=100"), data, "wild")])
    ends = pack.run(sinks)
    assert ends[1].status == "diverged" and ends[1].step == 5 and "non-finite loss" in ends[1].reason
    assert ends[0].status == "completed" and ends[0].step == 200
    assert sinks[1].records[-1] == ends[1] and not of_type(sinks[1].records, "snapshot")
    kept = of_type(sinks[0].records, "eval")[-1]
    assert close(kept.geometry["nc1"], of_type(alone["base"], "eval")[-1].geometry["nc1"], 1e-3)
    assert pack.model.size == 1


def test_members_that_cannot_pack_are_refused(data) -> None:
    with pytest.raises(ValueError, match="differ in model.width"):
        PackedTrainer([trainer(config(), data, "a"), trainer(config("model.width=32"), data, "b")])
    other = dataclasses.replace(data, train_x=data.train_x + 1)
    with pytest.raises(ValueError, match="training data differ"):
        PackedTrainer([trainer(config(), data, "a"), trainer(config(), other, "b")])


# --- run directories: start, resume alone, resume as a pack -----------------------------------


@pytest.fixture(scope="module")
def pack_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two members (weight decay 1e-2 and 1e-3) trained by the runner, a snapshot every 50 steps."""
    out = tmp_path_factory.mktemp("pack")
    dirs = [out / "wd=1e-2", out / "wd=1e-3"]
    configs = [config("monitor.snapshot_every=50"), config("monitor.snapshot_every=50", "train.weight_decay=1e-3")]
    assert start_pack(configs, dirs) == EXIT_OK
    return dirs


def comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in CLOCKS}
            for r in splice(read_records(run_dir)) if r.type not in ("start", "snapshot")]


def rewound(run_dir: Path, to: Path, step: int) -> Path:
    """A copy of a run directory as if the run had been killed right after its snapshot at `step`."""
    shutil.copytree(run_dir, to)
    for snapshot_step, path in list_snapshots(to):
        if snapshot_step > step:
            path.unlink()
    return to


def test_each_member_is_an_ordinary_run_directory(pack_dirs) -> None:
    info = read_run_json(pack_dirs[0])
    assert info["config"]["train"]["weight_decay"] == 1e-2 and info["packed_with"] == ["wd=1e-3"]
    for run_dir in pack_dirs:
        records = read_records(run_dir)
        assert records[0].type == "start" and records[-1].type == "end" and records[-1].status == "completed"
        assert [s for s, _ in list_snapshots(run_dir)] == [50, 100, 150, 200]


def test_a_member_resumes_alone_to_the_records_of_the_pack(pack_dirs, tmp_path: Path) -> None:
    copy = rewound(pack_dirs[1], tmp_path / "alone", 100)
    assert resume_run(copy, []) == EXIT_OK
    assert comparable(copy) == comparable(pack_dirs[1])


def test_a_pack_resumes_as_a_pack(pack_dirs, tmp_path: Path) -> None:
    copies = [rewound(d, tmp_path / d.name, 150) for d in pack_dirs]
    assert resume_pack(copies, ["monitor.log_every=5"]) == EXIT_OK
    for copy, original in zip(copies, pack_dirs):
        assert comparable(copy) == comparable(original)
        assert read_run_json(copy)["resumes"][-1]["step"] == 150


def test_a_pack_whose_snapshots_are_at_different_steps_is_refused(pack_dirs, tmp_path: Path) -> None:
    copies = [rewound(pack_dirs[0], tmp_path / "a", 100), rewound(pack_dirs[1], tmp_path / "b", 150)]
    with pytest.raises(RunError, match="a pack resumes from one step.*a at step 100, b at step 150"):
        resume_pack(copies)


def test_start_pack_refuses_configs_that_cannot_pack_and_leaves_nothing(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(RunError, match="b: its config cannot train in a pack with .*a's"):
        start_pack([config(), config("train.batch_size=32")], dirs)
    with pytest.raises(RunError, match="cannot train in a pack"):   # synthetic data: the seed draws the data
        start_pack([config(), config("seed=1")], dirs)
    assert not any(d.exists() for d in dirs)


# --- on a GPU (bench/gpu_check.sh runs these) ----------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the packed CUDA graph needs one")


@needs_cuda
@pytest.mark.parametrize("graph", ["on", "off"])
def test_a_pack_on_the_gpu_records_what_its_members_record_alone(data, graph: str) -> None:
    """Captured (train.cuda_graph on) or eager: the loss after 10 and 100 steps and the step-100
    evaluation's NC1 of every member near its alone run's (GPU kernels differ from bmm to mm)."""
    device = torch.device("cuda")
    configs = {name: config(*extra, "train.device=cuda", f"train.cuda_graph={graph}", "train.epochs=10")
               for name, extra in MEMBERS.items()}
    alone = {}
    for name, cfg in configs.items():
        sink = ListSink()
        Trainer(cfg, data, device, name).run(sink)
        alone[name] = sink.records
    sinks = {name: ListSink() for name in MEMBERS}
    pack = PackedTrainer([Trainer(cfg, data, device, name) for name, cfg in configs.items()])
    assert pack.train_step.kind == ("cuda_graph" if graph == "on" else "eager")
    pack.run(list(sinks.values()))
    for name in MEMBERS:
        for step in (10, 100):
            (a,) = [r.loss for r in of_type(alone[name], "step") if r.step == step]
            (b,) = [r.loss for r in of_type(sinks[name].records, "step") if r.step == step]
            assert close(a, b, 1e-4 if step == 10 else 1e-2), (name, step, a, b)
        nc1 = [of_type(records, "eval")[-1].geometry["nc1"] for records in (alone[name], sinks[name].records)]
        assert close(*nc1, 1e-2), (name, nc1)
