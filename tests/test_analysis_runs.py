"""analysis.runs on recorded run directories: loading runs and sweeps, free keys, grouping,
series, final values, seed aggregation (exact numbers), log spacing and filters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from compare_fixtures import (accuracy, append, config, end_record, eval_for, gap_bound, mean_std, nc1, rank,
                              resumed_start, run_records, write_run, write_sweep)
from nctui.analysis.runs import (FilterError, aggregate, final, free_keys, group_runs, is_log_spaced, label,
                                 load_runs, matches, parse_filter, seeds, series)
from nctui.store.rundir import RunDirError
from nctui.store.sweepdir import SweepDirError
from tui_fixtures import EVAL_STEPS


def test_a_sweep_loads_its_points_in_order_with_values_seeds_and_status(tmp_path: Path) -> None:
    runs = load_runs([write_sweep(tmp_path)])
    assert [r.name for r in runs] == ["wd=0_s0", "wd=0_s1", "wd=1e-2_s0", "wd=1e-2_s1"]
    assert [r.seed for r in runs] == [0, 1, 0, 1]
    assert [r.values for r in runs][3] == {"train.weight_decay": 0.01, "seed": 1}
    assert {r.sweep for r in runs} == {"wd-sweep"} and {r.status for r in runs} == {"completed"}
    assert [len(r.evals) for r in runs] == [len(EVAL_STEPS)] * 4
    assert runs[2].config["train"]["weight_decay"] == 0.01


def test_run_dirs_load_as_given_once_each_and_errors_name_the_file(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", config(0.0, 0), run_records(0.0, 0))
    b = write_run(tmp_path / "b", config(1e-2, 0), run_records(1e-2, 0, upto=200, ended=False))
    runs = load_runs([b, a, tmp_path / "b"])
    assert [(r.name, r.values, r.sweep) for r in runs] == [("b", {}, None), ("a", {}, None)]
    assert runs[0].status == "running" and runs[1].status == "completed"   # b was written just now
    with pytest.raises(RunDirError, match="nope"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("{")
    with pytest.raises(SweepDirError, match="sweep.json: corrupt"):
        load_runs([tmp_path / "bad"])


def test_free_keys_are_the_differing_config_keys_without_bookkeeping(tmp_path: Path) -> None:
    runs = load_runs([write_sweep(tmp_path)])
    assert free_keys(runs) == ["train.weight_decay"]   # seed, name: bookkeeping
    assert seeds(runs) == [0, 1]
    loose = [write_run(tmp_path / f"r{i}", config(0.0, 0, lr=lr, device=device, batch_size=batch), run_records(0.0, 0))
             for i, (lr, device, batch) in enumerate([(0.1, "cpu", 40), (0.01, "cuda", 40), (0.1, "cpu", 40.0)])]
    assert free_keys(load_runs(loose)) == ["train.lr"]   # device is bookkeeping; 40 and 40.0 are equal
    assert free_keys(load_runs(loose[:1])) == []


def test_group_runs_puts_the_seeds_of_a_point_together_in_value_order(tmp_path: Path) -> None:
    runs = load_runs([write_sweep(tmp_path)])
    groups = group_runs(list(reversed(runs)), ["train.weight_decay"])
    assert list(groups) == [(0.0,), (0.01,)]
    assert [[r.name for r in group] for group in groups.values()] == [["wd=0_s1", "wd=0_s0"],
                                                                      ["wd=1e-2_s1", "wd=1e-2_s0"]]
    assert list(group_runs(runs, [])) == [()]
    assert label(["train.weight_decay", "train.batch_size", "model.width"], [0.01, 32, 64]) == "λ=1e-2 B=32 width=64"


def test_series_and_final_read_eval_paths_derived_means_and_step_records(tmp_path: Path) -> None:
    run = load_runs([write_sweep(tmp_path)])[3]   # wd 1e-2, seed 1
    ts = [i / 8 for i in range(9)]
    assert series(run, ("geometry", "nc1")) == [(s, pytest.approx(nc1(0.01, 1, t))) for s, t in zip(EVAL_STEPS, ts)]
    assert series(run, ("layers", 1, "rank")) == [(s, rank(0.01, 1, t, 1)) for s, t in zip(EVAL_STEPS, ts)]
    hidden = [(rank(0.01, 1, t, 0) + rank(0.01, 1, t, 1) + rank(0.01, 1, t, 2)) / 3 for t in ts]
    assert [v for _, v in series(run, ("layers", "hidden", "rank"))] == pytest.approx(hidden)
    assert series(run, ("layers", "hidden", "drift"))[:2] == [(0, None), (50, pytest.approx(2.2e-4))]
    assert series(run, ("bounds", "gap_bound_local"))[0] == (0, None)
    assert series(run, ("nothing", "here"))[-1] == (400, None)
    assert len(series(run, ("steps", "loss"))) == 20
    assert final(run, ("test", "acc")) == pytest.approx(accuracy(0.01, 1, 1.0))
    assert final(run, ("bounds", "gap_bound_dense"), step=220) == pytest.approx(gap_bound(0.01, 4 / 8))
    assert final(run, ("test", "acc"), step=-1) is None


def test_aggregate_aligns_by_step_with_mean_sample_std_and_count() -> None:
    a = [(0, 1.0), (10, 2.0), (20, None), (30, 4.0)]
    b = [(0, 3.0), (10, 6.0), (20, 5.0)]
    c = [(10, 7.0), (40, math.nan)]   # a NaN would come as None from `series`; aggregate skips None only
    rows = aggregate([a, b, [(s, v) for s, v in c if not math.isnan(v)]])
    assert [(s, n) for s, _, _, n in rows] == [(0, 2), (10, 3), (20, 1), (30, 1)]
    assert rows[0][1:3] == pytest.approx((2.0, math.sqrt(2)))
    assert rows[1][1:3] == pytest.approx(mean_std([2.0, 6.0, 7.0]))
    assert rows[2][1:3] == (5.0, 0.0) and rows[3][1:3] == (4.0, 0.0)
    assert aggregate([]) == []


def test_seeds_of_a_sweep_point_aggregate_to_the_closed_form_mean(tmp_path: Path) -> None:
    runs = load_runs([write_sweep(tmp_path)])
    groups = group_runs(runs, free_keys(runs))
    rows = aggregate([series(r, ("geometry", "nc1")) for r in groups[(0.01,)]])
    for (step, mean, std, n), t in zip(rows, [i / 8 for i in range(9)]):
        assert n == 2 and (mean, std) == pytest.approx(mean_std([nc1(0.01, 0, t), nc1(0.01, 1, t)]))


def test_is_log_spaced() -> None:
    assert is_log_spaced([1e-4, 1e-3, 1e-2]) and is_log_spaced([32, 64, 128, 256]) and is_log_spaced([1e-3, 1e-2])
    assert not is_log_spaced([1, 2, 3]) and not is_log_spaced([0, 1e-3, 1e-2]) and not is_log_spaced([32, 128])
    assert not is_log_spaced([5]) and not is_log_spaced([]) and not is_log_spaced(["a", "b"])
    assert not is_log_spaced([1.0, 1.5, 2.25])   # even in log, but too narrow to need it


def test_filters_select_runs_by_key_value_and_name_bad_ones(tmp_path: Path) -> None:
    runs = load_runs([write_sweep(tmp_path)])

    def chosen(text: str) -> list[str]:
        conditions = parse_filter(text, runs)
        return [r.name for r in runs if matches(r, conditions)]

    assert chosen("train.weight_decay>0") == ["wd=1e-2_s0", "wd=1e-2_s1"]
    assert chosen("weight_decay=0.01, seed=1") == ["wd=1e-2_s1"]
    assert chosen("λ=0") == ["wd=0_s0", "wd=0_s1"]
    assert chosen("seed!=1 status=completed") == ["wd=0_s0", "wd=1e-2_s0"]
    assert chosen("weight_decay<=0") == ["wd=0_s0", "wd=0_s1"]
    assert chosen("model.kind=fc") == [r.name for r in runs] and chosen("") == [r.name for r in runs]
    assert chosen("model.kind>1") == []
    with pytest.raises(FilterError, match="'wd': not key=value"):
        parse_filter("wd", runs)
    with pytest.raises(FilterError, match="depth: no run has this config key"):
        parse_filter("depth=3", runs[:0])
    runs[0].config["x"] = {"kind": 1}
    with pytest.raises(FilterError, match="kind: ambiguous: model.kind, x.kind"):
        parse_filter("kind=fc", runs)


def test_pending_points_are_kept_on_request_and_picked_up_when_they_start(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path, started=3)
    assert len(load_runs([sweep_dir])) == 3
    runs = load_runs([sweep_dir], pending=True)
    last = runs[-1]
    assert (last.status, last.seed, last.records) == ("pending", 1, [])
    assert last.config == {"train": {"weight_decay": 0.01}, "seed": 1}
    assert free_keys(runs) == ["train.weight_decay"]
    assert last.poll() == []
    write_run(sweep_dir / last.name, config(0.01, 1), run_records(0.01, 1, upto=100, ended=False))
    assert len(last.poll()) == 1 + 5 + 3 and last.status == "running"
    assert last.config["model"]["width"] == 32
    append(last.path, [eval_for(3, 0.01, 1), end_record(150)])
    assert [r.type for r in last.poll()] == ["eval", "end"] and last.status == "completed"
    assert final(last, ("geometry", "nc1")) == pytest.approx(nc1(0.01, 1, 3 / 8))


def test_a_resumed_segment_splices_in_polls_and_in_detached_copies(tmp_path: Path) -> None:
    run = load_runs([write_run(tmp_path / "r", config(0.0, 0), run_records(0.0, 0, upto=200, ended=False))])[0]
    copy = run.detached()
    assert copy.reader is None and copy.records == run.records and copy.records is not run.records
    new = [resumed_start(0.0, 0, 100), eval_for(3, 0.0, 0)]
    append(run.path, new)
    assert run.poll() == new
    copy.add(new)
    for data in (run, copy):
        assert [s for s, _ in series(data, ("geometry", "nc1"))] == [0, 50, 100, 150]
        assert data.records == run.reader.records
