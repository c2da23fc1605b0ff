"""Packs in sweeps: which points pack (the seed only on data it does not draw), how many to a
pack, `nctui sweep` running a pack as one child whose members write the records their own
`nctui run` would, and the hidden `nctui pack` command's errors."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from nctui.cli import main
from nctui.config import load_config
from nctui.pack_command import pack
from nctui.records import EXIT_OK, EXIT_USAGE
from nctui.store.sweepdir import read_manifest
from nctui.sweep import executors, packing
from nctui.sweep.command import sweep
from nctui.sweep.engine import default_threads
from nctui.sweep.executors import Task
from nctui.sweep.progress import LiveDisplay, Row
from nctui.sweep.state import RESUME, START
from nctui.train import packed
from sweep_fixtures import comparable, only_dir, tiny_spec

QUICKSTART = load_config(Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml").to_dict()


def changed(config: dict, **values: object) -> dict:
    """A copy of a resolved config with dotted keys (written with __) changed."""
    config = {section: dict(v) if isinstance(v, dict) else v for section, v in config.items()}
    for key, value in values.items():
        *parents, leaf = key.split("__")
        node = config
        for part in parents:
            node[part] = dict(node[part])
            node = node[part]
        node[leaf] = value
    return config


def test_the_sweep_and_the_trainer_agree_on_what_members_may_differ_in() -> None:
    assert packing.MEMBER_KEYS == packed.MEMBER_KEYS


def test_points_pack_when_they_differ_only_in_member_keys() -> None:
    key = packing.pack_key(QUICKSTART)
    for values in ({"train__lr": 0.1, "train__weight_decay": 0.0}, {"train__momentum": 0.5},
                   {"train__target_scale": 3.0}, {"name": "other"}):
        assert packing.pack_key(changed(QUICKSTART, **values)) == key, values
    for values in ({"model__width": 128}, {"train__batch_size": 64}, {"train__epochs": 10},
                   {"train__milestones": [100]}, {"monitor__eval_every": 100}):
        assert packing.pack_key(changed(QUICKSTART, **values)) != key, values


def test_seeds_pack_only_on_data_the_seed_does_not_draw() -> None:
    assert packing.pack_key(changed(QUICKSTART, seed=1)) != packing.pack_key(QUICKSTART)   # synthetic
    mnist = changed(QUICKSTART, data__name="mnist")
    assert packing.pack_key(changed(mnist, seed=1)) == packing.pack_key(mnist)             # the whole set
    subset = changed(mnist, data__train_size=1000)
    assert packing.pack_key(changed(subset, seed=1)) != packing.pack_key(subset)           # a seeded subset


def tasks(count: int, action: str = START) -> list[Task]:
    return [Task(index=i, point={"run_dir": f"p{i}"}, action=action) for i in range(count)]


def test_compatible_tasks_are_gathered_into_even_packs_in_order() -> None:
    configs = [QUICKSTART] * 9 + [changed(QUICKSTART, model__width=8)] * 2 + [QUICKSTART]
    grouped = packing.group(tasks(12), configs, most=8)
    assert [[t.index for t in task.members] or [task.index] for task in grouped] == [
        [0, 1, 2, 3, 4], [5, 6, 7, 8, 11], [9, 10]]
    assert all(task.index == task.members[0].index and task.point == task.members[0].point for task in grouped)
    alone = packing.group(tasks(3), [QUICKSTART, changed(QUICKSTART, model__depth=2), QUICKSTART], most=1)
    assert [(t.index, t.members) for t in alone] == [(0, ()), (1, ()), (2, ())]


def test_resumed_tasks_pack_only_with_tasks_resumed_from_the_same_step() -> None:
    both = tasks(2) + [dataclasses.replace(t, index=t.index + 2) for t in tasks(4, RESUME)]
    grouped = packing.group(both, [QUICKSTART] * 6, most=8, resume_steps=[None, None, 40, 60, 40, 60])
    assert [[t.index for t in task.members] for task in grouped] == [[0, 1], [2, 4], [3, 5]]


def test_jobs_and_pack_size_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "cpu_count", lambda: 4)
    assert packing.size("cpu", None, None, 20) == (4, 5)     # one pack a core, one thread each
    assert packing.size("cpu", None, None, 100) == (4, packing.MOST_ON_CPU)
    assert packing.size("cpu", None, None, 3) == (3, 1)      # fewer points than cores: alone, in parallel
    assert packing.size("cpu", 1, None, 20) == (1, packing.MOST_ON_CPU)
    assert packing.size("cpu", 2, 3, 20) == (2, 3)           # what the user gives stands
    assert packing.size("cpu", None, 1, 20) == (1, 1)        # --no-pack: one run at a time unless asked
    assert packing.size("cuda", None, None, 100) == (1, packing.MOST_ON_GPU)
    assert packing.size("cuda", None, None, 5) == (1, 5)


@pytest.fixture(scope="module")
def packed_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny two-point sweep, one job (two would run them alone, side by side): one pack."""
    base = tmp_path_factory.mktemp("packed")
    result = CliRunner().invoke(sweep, [str(tiny_spec(base)), "--out", str(base / "out"), "--jobs", "1"],
                                catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.stderr
    return only_dir(base / "out"), result.stderr


def test_a_sweep_trains_compatible_points_as_one_pack(packed_sweep: tuple[Path, str]) -> None:
    sweep_dir, stderr = packed_sweep
    lines = stderr.splitlines()
    assert "nctui: sweep: 2 points train in 1 pack (of up to 2); --no-pack trains each alone" in lines
    assert "nctui: sweep: starting wd=0 (point 1 of 2, in pack 1)" in lines
    assert "nctui: sweep: starting wd=1e-3 (point 2 of 2, in pack 1)" in lines
    assert lines[-1] == f"nctui: sweep {sweep_dir}: 2 completed"
    log = (sweep_dir / "logs" / "wd=0.log").read_text()
    assert f"-m nctui.pack_command {sweep_dir} --points 0,1" in log.splitlines()[0]
    assert [p["status"] for p in read_manifest(sweep_dir)["points"]] == ["completed", "completed"]


def test_each_member_records_what_its_own_run_records(packed_sweep: tuple[Path, str], tmp_path: Path) -> None:
    sweep_dir, _ = packed_sweep
    for point in read_manifest(sweep_dir)["points"]:
        alone = tmp_path / point["run_dir"]
        settings = [arg for item in point["overrides"] for arg in ("--set", item)]
        result = CliRunner().invoke(main, ["run", str(sweep_dir / "base.yaml"), "--headless", "--run-dir", str(alone),
                                           *settings], catch_exceptions=False)
        assert result.exit_code == EXIT_OK, result.stderr
        assert comparable(sweep_dir / point["run_dir"]) == comparable(alone)


def test_print_prints_one_pack_command_per_pack(tmp_path: Path) -> None:
    result = CliRunner().invoke(sweep, [str(tiny_spec(tmp_path)), "--out", str(tmp_path / "out"), "--executor",
                                        "print", "--jobs", "1"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.stderr
    threads = default_threads(0, 1)   # the cores: the points' own train.threads=1 wins in the child
    assert result.stdout == f"nctui pack {only_dir(tmp_path / 'out')} --points 0,1 --threads {threads}\n"
    alone = CliRunner().invoke(sweep, [str(tiny_spec(tmp_path, name="alone")), "--out", str(tmp_path / "alone"),
                                       "--executor", "print", "--no-pack"], catch_exceptions=False)
    assert [line.split()[:2] for line in alone.stdout.splitlines()] == [["nctui", "run"]] * 2


def test_pack_and_no_pack_contradict_each_other(tmp_path: Path) -> None:
    result = CliRunner().invoke(sweep, [str(tiny_spec(tmp_path)), "--pack", "4", "--no-pack"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == "nctui: error: --pack and --no-pack contradict each other\n"


def test_the_pack_command_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, extra="zip:\n  model.weight_norm: [true, false]\n")   # 2 x 2 points
    made = CliRunner().invoke(sweep, [str(spec), "--out", str(tmp_path / "out"), "--executor", "print", "--jobs", "1"])
    sweep_dir = only_dir(tmp_path / "out")
    assert made.exit_code == EXIT_OK
    assert [line.split()[3:5] for line in made.stdout.splitlines()] == [["--points", "0,2"], ["--points", "1,3"]]
    cases = {("--points", "0,7"): "--points 0,7: the sweep has points 0 to 3, each given once",
             ("--points", "0,0"): "--points 0,0: the sweep has points 0 to 3, each given once",
             ("--points", "a"): "--points a: expected point indices such as 0,3,5",
             ("--points", "0,1"): "cannot train in a pack with"}
    for args, message in cases.items():
        result = CliRunner().invoke(pack, [str(sweep_dir), *args])
        assert result.exit_code == EXIT_USAGE and message in result.stderr and result.stderr.count("\n") == 1, args
    assert [p.name for p in sweep_dir.iterdir() if p.is_dir()] == []
    result = CliRunner().invoke(pack, ["--resume"])
    assert result.exit_code == EXIT_USAGE and "--resume needs the run directories" in result.stderr


def test_the_live_table_has_a_pack_column_when_runs_are_packed() -> None:
    def rendered(rows: list[Row]) -> list[list[str]]:
        console = Console(file=io.StringIO(), width=120, height=30)
        display = LiveDisplay(console, "t")
        display.live.stop()
        console.print(display.table(rows))
        return [[cell.strip() for cell in line.strip("┃│").split(line[0])]
                for line in console.file.getvalue().splitlines() if line[:1] in "┃│"]

    packed_rows = rendered([Row(index=0, name="a", status="running", pack="1"), Row(index=1, name="b")])
    assert [row[:4] for row in packed_rows] == [["#", "point", "pack", "status"], ["1", "a", "1", "running"],
                                                ["2", "b", "-", "pending"]]
    assert rendered([Row(index=0, name="a")])[0][:3] == ["#", "point", "status"]
