"""The four claims' verdicts on small recorded runs, each made to hold, to fail, and to wait.

Every run here is written to metrics.jsonl lines and read back (`recorded`), so the verdicts
are judged on what a run directory holds (NaN as null, tuples as lists), not on live objects.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from nctui.analysis.verdicts import (CLAIMS, FAILS, HOLDS, PENDING, Thresholds, Verdict, all_hold, drift_series,
                                     gap_bound_series, judge, judge_bound, judge_collapse, judge_low_rank,
                                     judge_noise, lr_at)
from nctui.records import EvalRecord, StartRecord, record_from_json, record_to_json

C = 10
WD = {"train": {"lr": 0.1, "weight_decay": 1e-2, "milestones": [], "lr_decay": 0.1}}


def recorded(evals: list[EvalRecord]) -> list[EvalRecord]:
    """The evaluations as `nctui open` reads them back from metrics.jsonl."""
    return [record_from_json(record_to_json(ev)) for ev in evals]  # type: ignore[misc]


def ev(step: int, *, nc1: float | None = None, nc4: float | None = None, ranks: list | None = None,
       width: int = 256, drift: float | None = None, bounds: dict | None = None,
       steps_per_epoch: int = 100) -> EvalRecord:
    """One evaluation with only what a claim reads; hidden layers fc1.. plus a classifier."""
    layers = []
    if ranks is not None:
        layers = [{"name": f"fc{k + 1}", "rank": r, "sv": [0.1] * width, "drift": drift}
                  for k, r in enumerate(ranks)]
        layers.append({"name": "out", "rank": C, "sv": [0.3] * C, "drift": drift})
    elif drift is not None:
        layers = [{"name": "fc1", "drift": drift}, {"name": "out", "drift": drift}]
    return EvalRecord(step=step, epoch=step / steps_per_epoch, elapsed=float(step),
                      geometry={"nc1": nc1, "nc4": nc4}, layers=layers, bounds=bounds or {})


def run(values: list, key: str, steps: list[int] | None = None, **extra) -> list[EvalRecord]:
    steps = steps if steps is not None else [100 * i for i in range(len(values))]
    return recorded([ev(s, **{key: v}, **extra) for s, v in zip(steps, values)])


# --- collapse -------------------------------------------------------------------------------


def test_collapse_holds_when_nc1_falls_tenfold_and_nc4_is_small() -> None:
    evals = recorded([ev(0, nc1=0.5, nc4=0.4), ev(100, nc1=0.2, nc4=0.1), ev(200, nc1=0.035, nc4=0.0)])
    verdict = judge_collapse(evals)
    assert verdict.status == HOLDS
    assert verdict.text == "NC1 0.50 → 0.035 (14×), NC4 0"
    assert verdict.numbers["factor"] == pytest.approx(0.5 / 0.035)
    assert verdict.numbers["nc1_first"] == 0.5 and verdict.numbers["nc1"] == 0.035 and verdict.numbers["step"] == 200
    assert verdict.line() == "✔ collapse: NC1 0.50 → 0.035 (14×), NC4 0"


def test_collapse_fails_on_a_small_fall_or_a_large_nc4() -> None:
    slow = judge_collapse(recorded([ev(0, nc1=0.5, nc4=0.0), ev(100, nc1=0.3, nc4=0.0), ev(200, nc1=0.1, nc4=0.0)]))
    assert slow.status == FAILS
    assert slow.text == "NC1 0.50 → 0.10 (5×, needs 10×), NC4 0"
    disagreeing = judge_collapse(recorded([ev(0, nc1=1.0, nc4=0.5), ev(100, nc1=0.1, nc4=0.4),
                                           ev(200, nc1=0.01, nc4=0.2)]))
    assert disagreeing.status == FAILS and disagreeing.text.endswith("NC4 0.20 > 0.05")
    assert disagreeing.mark == "✗" and not disagreeing.holds


def test_collapse_thresholds_are_configurable() -> None:
    evals = recorded([ev(0, nc1=0.5, nc4=0.1), ev(100, nc1=0.3, nc4=0.1), ev(200, nc1=0.1, nc4=0.1)])
    assert judge_collapse(evals).status == FAILS
    lenient = Thresholds(collapse_factor=5.0, collapse_nc4=0.1)
    verdict = judge_collapse(evals, lenient)
    assert verdict.status == HOLDS and "needs" not in verdict.text
    assert verdict.rule == "NC1 falls ≥ 5× from the first evaluation and NC4 ≤ 0.1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        lenient.collapse_factor = 2.0  # type: ignore[misc]


def test_collapse_is_pending_until_enough_evaluations_carry_nc1() -> None:
    assert judge_collapse(recorded([ev(0, nc1=0.5), ev(100, nc1=0.01)])).status == PENDING
    with_gap = judge_collapse(recorded([ev(0, nc1=0.5), ev(100, nc1=math.nan), ev(200, nc1=0.01)]))
    assert with_gap.status == PENDING and with_gap.text == "2/3 evaluations with NC1"
    assert judge_collapse([]).status == PENDING


def test_collapse_to_exactly_zero_holds_and_a_run_without_nc4_is_judged_on_nc1() -> None:
    verdict = judge_collapse(recorded([ev(0, nc1=0.5), ev(100, nc1=0.01), ev(200, nc1=0.0)]))
    assert verdict.status == HOLDS and verdict.text == "NC1 0.50 → 0 (∞×)"
    assert verdict.numbers["factor"] is None and verdict.numbers["nc4"] is None


# --- low rank -------------------------------------------------------------------------------


def test_low_rank_holds_when_hidden_ranks_end_near_c() -> None:
    evals = recorded([ev(0, ranks=[256, 256, 256]), ev(100, ranks=[40, 30, 35]), ev(200, ranks=[11, 8, 11])])
    verdict = judge_low_rank(evals, C)
    assert verdict.status == HOLDS
    assert verdict.text == "fc1 256 → 11, fc2 → 8, fc3 → 11 (C = 10)"
    assert verdict.numbers["mean_rank"] == pytest.approx(10.0) and verdict.numbers["mean_full"] == 256
    assert verdict.numbers["fc2.rank_first"] == 256 and verdict.numbers["fc2.rank"] == 8
    assert verdict.numbers["fc3.full"] == 256


def test_low_rank_fails_when_ranks_stay_far_above_c() -> None:
    evals = recorded([ev(0, ranks=[256, 256, 256]), ev(100, ranks=[60, 50, 50]), ev(200, ranks=[40, 40, 40])])
    verdict = judge_low_rank(evals, C)
    assert verdict.status == FAILS
    assert verdict.text == "fc1 256 → 40, fc2 → 40, fc3 → 40 (C = 10), mean 40 > 3C"
    assert judge_low_rank(evals, C, Thresholds(rank_multiple=4.0)).status == HOLDS


def test_low_rank_fails_on_a_narrow_net_that_keeps_its_full_rank() -> None:
    """Width 16 < 3C: a rank of 14 is 'near C' but not low for a 16-wide matrix."""
    evals = recorded([ev(s, ranks=[16, 14], width=16) for s in (0, 100, 200)])
    verdict = judge_low_rank(evals, C)
    assert verdict.status == FAILS and verdict.text.endswith("mean 15 > 0.5·16")


def test_low_rank_pending_without_hidden_layers_or_evaluations() -> None:
    assert judge_low_rank(recorded([ev(0, ranks=[256]), ev(100, ranks=[11])]), C).status == PENDING
    only_classifier = recorded([ev(s, ranks=[]) for s in (0, 100, 200)])
    assert judge_low_rank(only_classifier, C).status == PENDING


# --- noise ----------------------------------------------------------------------------------


def test_noise_holds_with_weight_decay_and_a_drift_that_stays() -> None:
    evals = run([None, 5e-3, 1e-3, 2.2e-4, 2.0e-4, 2.1e-4, 1.9e-4, 2.0e-4, 2.1e-4, 2.0e-4], "drift")
    verdict = judge_noise(evals, WD)
    assert verdict.status == HOLDS
    assert verdict.text == "drift 2.0e-4/step, not decaying"
    assert verdict.numbers["ratio"] == pytest.approx(2.05e-4 / 2.0e-4, rel=0.05)


def test_noise_fails_when_the_drift_decays_towards_zero() -> None:
    evals = run([None] + [1e-3 * 0.5 ** i for i in range(9)], "drift")
    verdict = judge_noise(evals, WD)
    assert verdict.status == FAILS
    assert "decaying (×" in verdict.text
    assert verdict.numbers["ratio"] < 0.5


def test_noise_without_weight_decay_fails_either_way() -> None:
    no_wd = {"train": {**WD["train"], "weight_decay": 0.0}}
    decaying = judge_noise(run([None] + [1e-3 * 0.5 ** i for i in range(9)], "drift"), no_wd)
    assert decaying.status == FAILS and decaying.text.startswith("no weight decay: ")
    assert decaying.text.endswith("as predicted without it")
    steady = judge_noise(run([None] + [2e-4] * 9, "drift"), no_wd)
    assert steady.status == FAILS and steady.text == "no weight decay: drift 2.0e-4/step, not decaying"


def test_noise_divides_by_the_learning_rate_of_the_schedule() -> None:
    """lr drops 10x at epoch 6 (in the last third): the drift drops with it, which is not decay."""
    schedule = {"train": {**WD["train"], "milestones": [6]}}
    drifts = [None, 2e-4, 2e-4, 2e-4, 2e-4, 2e-4, 2e-5, 2e-5, 2e-5, 2e-5]
    evals = run(drifts, "drift")
    assert lr_at(schedule, 5.99) == pytest.approx(0.1) and lr_at(schedule, 6.0) == pytest.approx(0.01)
    verdict = judge_noise(evals, schedule)
    assert verdict.status == HOLDS and verdict.numbers["per_lr"] is True
    assert judge_noise(evals, {"train": {"weight_decay": 1e-2}}).status == FAILS  # no lr known: raw drift


def test_noise_thirds_are_thirds_of_the_steps_not_of_the_evaluations() -> None:
    """Log-spaced early evaluations (large early drift) must not count as the middle of the run."""
    steps = [0, 2, 4, 8, 16, 32, 64, 128, 1000, 2000, 3000]
    drifts = [None, 1e-1, 5e-2, 2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 2e-4, 2e-4, 2e-4]
    verdict = judge_noise(run(drifts, "drift", steps=steps), WD)
    assert verdict.status == HOLDS
    assert verdict.numbers["middle_median"] == pytest.approx(2e-4 / 0.1)


def test_noise_pending_until_both_late_thirds_have_a_drift() -> None:
    assert judge_noise(run([None, 1e-4, 1e-4], "drift"), WD).status == PENDING
    late_gap = judge_noise(run([None, 1e-4, 1e-4, 1e-4], "drift", steps=[0, 10, 20, 900]), WD)
    assert late_gap.status == PENDING and "too few evaluations late in the run" in late_gap.text


def test_drift_series_averages_the_layers_and_skips_what_is_not_a_number() -> None:
    evals = recorded([EvalRecord(step=5, epoch=0.0, elapsed=0.0,
                                 layers=[{"drift": 1e-3}, {"drift": 3e-3}, {"drift": math.inf}, "junk"]),
                      EvalRecord(step=6, epoch=0.0, elapsed=0.0, layers=[{"drift": None}])])
    assert drift_series(evals) == [(5.0, pytest.approx(2e-3)), (6.0, None)]


# --- bound ----------------------------------------------------------------------------------


def bounds(dense: float | None, gap: float = 0.001, local: float | None = None) -> dict:
    return {"gap_bound_dense": dense, "gap_bound_local": local, "gap": gap, "test_error": 0.02,
            "bound_dense": None if dense is None else 0.9 + dense, "audit": {"convention": "nctui"}}


def test_bound_holds_when_the_gap_bound_is_below_one() -> None:
    evals = run([bounds(2 ** 6), bounds(2 ** 2), bounds(2 ** -0.4)], "bounds")
    verdict = judge_bound(evals)
    assert verdict.status == HOLDS
    assert verdict.text == "gap bound 2^-0.4 vs gap 0.1%"
    assert verdict.numbers["log2_gap_bound"] == pytest.approx(-0.4)
    assert verdict.numbers["kind"] == "dense" and verdict.numbers["convention"] == "nctui"
    assert verdict.numbers["non_vacuous_step"] == 200


def test_bound_fails_while_the_gap_bound_is_vacuous() -> None:
    verdict = judge_bound(run([bounds(2 ** 9), bounds(2 ** 7), bounds(2 ** 5.2)], "bounds"))
    assert verdict.status == FAILS
    assert verdict.text == "gap bound 2^5.2 vs gap 0.1%"
    assert verdict.numbers["non_vacuous_step"] is None
    assert judge_bound(run([bounds(2 ** 9), bounds(2 ** 7), bounds(2 ** 5.2)], "bounds"),
                       Thresholds(bound_max=64)).status == HOLDS


def test_bound_uses_the_local_bound_of_a_cnn() -> None:
    evals = run([bounds(2 ** 30, local=2 ** 3), bounds(2 ** 28, local=2 ** 0.5), bounds(2 ** 27, local=0.5)],
                "bounds")
    verdict = judge_bound(evals)
    assert verdict.status == HOLDS and verdict.numbers["kind"] == "local"
    assert verdict.text == "local gap bound 2^-1.0 vs gap 0.1%"
    assert [y for _, y in gap_bound_series(evals)] == [2 ** 3, 2 ** 0.5, 0.5]


def test_bound_of_a_run_recorded_before_gap_bounds_stays_pending() -> None:
    old = run([{"bound_dense": 3.0, "test_error": 0.1, "gap": 0.01}] * 4, "bounds")
    verdict = judge_bound(old)
    assert verdict.status == PENDING and "recorded before gap bounds" in verdict.text
    assert judge_bound(old[:1]).status == PENDING


# --- all four -------------------------------------------------------------------------------


def start(config: dict) -> StartRecord:
    return StartRecord(run="r", time=0.0, device="cpu", dataset="synthetic", model="FC", num_classes=C,
                       layers=["fc1", "fc2", "out"], epochs=10, steps_per_epoch=100, total_steps=1000,
                       train_samples=1000, config=config)


def good_run(count: int = 10) -> list[EvalRecord]:
    out = []
    for i in range(count):
        t = i / (count - 1)
        record = ev(100 * i, nc1=0.5 * 10 ** (-2 * t), nc4=0.3 * (1 - t), ranks=[round(256 - 245 * t)] * 2,
                    drift=None if i == 0 else 2e-4, bounds=bounds(2 ** (8 - 8.4 * t)))
        out.append(record)
    return recorded(out)


def test_judge_gives_the_four_claims_in_order_and_all_hold_on_a_good_run() -> None:
    verdicts = judge(good_run(), start(WD))
    assert [v.claim for v in verdicts] == list(CLAIMS)
    assert [v.status for v in verdicts] == [HOLDS] * 4, [v.line() for v in verdicts]
    assert all_hold(verdicts)
    assert verdicts[1].numbers["num_classes"] == C
    assert not all_hold(judge(good_run()[:2], start(WD)))
    assert not all_hold([])


def test_judge_at_an_early_moment_mixes_pending_and_failing() -> None:
    verdicts = judge(good_run()[:3], start(WD))
    assert [v.status for v in verdicts] == [FAILS, FAILS, PENDING, FAILS]


def test_hostile_numbers_never_raise() -> None:
    nan, inf = math.nan, math.inf
    junk = [EvalRecord(step=s, epoch=nan, elapsed=inf,
                       geometry={"nc1": nan, "nc4": "junk"},
                       layers=[{"rank": inf, "sv": "junk", "drift": -inf}, "not a dict", {"rank": None}],
                       bounds={"gap_bound_dense": 0.0, "gap_bound_local": -1.0, "gap": nan, "audit": "junk"})
            for s in (0, 1, 2, 3)]
    junk.append(EvalRecord(step=4, epoch=0.0, elapsed=0.0, geometry="junk", layers="junk",  # type: ignore[arg-type]
                           bounds=None))  # type: ignore[arg-type]
    bad_start = dataclasses.replace(start({"train": "junk"}), num_classes=math.nan)  # type: ignore[arg-type]
    verdicts = judge(junk, bad_start)
    assert [v.status for v in verdicts] == [PENDING] * 4
    assert all(isinstance(v, Verdict) and v.text for v in verdicts)
    assert [v.status for v in judge(junk, None)] == [PENDING] * 4


def test_verdicts_import_neither_torch_nor_textual() -> None:
    code = ("import sys, nctui.analysis.verdicts\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'rich')]\n"
            "sys.exit(1 if bad else 0)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
