"""`nctui verify` on recorded runs: each of the four claims and each comparative claim made to hold
and to fail, the n/a and pending cases, controls, thresholds, skips and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nctui.analysis.claims import (ComparativeThresholds, build_report, gamma, judge_sweep, parse_thresholds)
from nctui.analysis.runs import load_runs
from nctui.analysis.verdicts import Thresholds
from nctui.report_commands import verify
from report_fixtures import Finals, write_run, write_sweep

WD = "train.weight_decay"


def run_verify(*args: str) -> tuple[int, dict | str]:
    result = CliRunner().invoke(verify, [str(a) for a in args])
    if "--json" in args and result.exit_code in (0, 1):
        return result.exit_code, json.loads(result.stdout)
    return result.exit_code, result.stdout + result.stderr


def comparison(report: dict, claim_id: str) -> dict:
    return next(c for c in report["comparative"] if c["id"] == claim_id)


# --- the four claims on one run ----------------------------------------------------------------


def test_a_run_where_every_claim_holds_exits_0(tmp_path: Path) -> None:
    run = write_run(tmp_path / "good")
    code, report = run_verify(run, "--json")
    assert code == 0 and report["holds"] is True
    verdicts = {v["claim"]: v for v in report["runs"][0]["verdicts"]}
    assert {c: v["status"] for c, v in verdicts.items()} == {
        "collapse": "holds", "low rank": "holds", "noise": "holds", "bound": "holds"}
    assert verdicts["collapse"]["numbers"]["nc1"] == pytest.approx(0.01)
    assert verdicts["collapse"]["numbers"]["factor"] == pytest.approx(50)
    assert verdicts["low rank"]["numbers"]["mean_rank"] == 10
    assert verdicts["bound"]["numbers"]["gap_bound"] == pytest.approx(0.5)
    assert report["comparative"] == []


@pytest.mark.parametrize("finals, claim, words", [
    (Finals(nc1=0.2), "collapse", "needs 10×"),
    (Finals(rank=60), "low rank", "> 3C"),
    (Finals(decaying_drift=True), "noise", "decaying"),
    (Finals(gap_bound=4.0), "bound", "gap bound 2^2.0"),
])
def test_each_claim_that_fails_makes_verify_exit_1(tmp_path: Path, finals: Finals, claim: str, words: str) -> None:
    run = write_run(tmp_path / "bad", finals=finals)
    code, report = run_verify(run, "--json")
    assert code == 1 and report["holds"] is False
    statuses = {v["claim"]: v["status"] for v in report["runs"][0]["verdicts"]}
    assert statuses[claim] == "fails"
    assert [c for c, s in statuses.items() if s != "holds"] == [claim]
    verdict = next(v for v in report["runs"][0]["verdicts"] if v["claim"] == claim)
    assert words in verdict["text"] and verdict["counted"] is True


def test_the_table_shows_the_numbers_and_the_rules(tmp_path: Path) -> None:
    run = write_run(tmp_path / "bad", finals=Finals(rank=60))
    code, text = run_verify(run)
    assert code == 1
    lines = text.splitlines()
    assert lines[0].split() == ["run", "claim", "verdict", "the", "numbers", "behind", "it"]
    low_rank = next(line for line in lines if "low rank" in line and "fails" in line)
    assert "fc1 64 → 60" in low_rank and "(C = 10)" in low_rank
    assert "  low rank: mean hidden rank ≤ 3·C and ≤ 0.5·min(out, in)" in lines
    assert lines[-1] == "3/4 counted verdicts hold"


def test_thresholds_change_verdicts_and_skip_leaves_a_claim_uncounted(tmp_path: Path) -> None:
    run = write_run(tmp_path / "slow", finals=Finals(nc1=0.1))      # NC1 falls 5x only
    assert run_verify(run)[0] == 1
    assert run_verify(run, "--threshold", "collapse_factor=4")[0] == 0
    code, report = run_verify(run, "--json", "--skip", "collapse")
    assert code == 0 and report["skipped"] == ["collapse"]
    collapse = report["runs"][0]["verdicts"][0]
    assert collapse["status"] == "fails" and collapse["counted"] is False
    code, report = run_verify(run, "--json", "--threshold", "collapse_factor=4", "--threshold", "trend_min=0.9")
    assert report["thresholds"]["collapse_factor"] == 4 and report["thresholds"]["trend_min"] == 0.9


@pytest.mark.parametrize("args, message", [
    (["--threshold", "bogus=1"], "expected NAME=VALUE with NAME one of min_evals"),
    (["--threshold", "trend_min=high"], "'high' is not a number"),
    (["--threshold", "trend_min=-1"], "must be a finite number >= 0"),
    (["--skip", "everything"], "--skip everything: not a claim"),
])
def test_bad_options_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    run = write_run(tmp_path / "run")
    code, text = run_verify(run, *args)
    assert code == 2
    assert text.strip().startswith("nctui: error: ") and message in text and "Traceback" not in text


def test_a_path_that_is_not_a_run_exits_2(tmp_path: Path) -> None:
    code, text = run_verify(tmp_path / "missing")
    assert code == 2 and "no such directory" in text
    (tmp_path / "empty").mkdir()
    code, text = run_verify(tmp_path / "empty")
    assert code == 2 and "run.json" in text


# --- comparative claims --------------------------------------------------------------------------


def sweep_of(tmp_path: Path, key: str, finals_by_value: dict, seeds: tuple = (0, 1), **others) -> Path:
    points = [({key: value, **others, "seed": seed}, finals) for value, finals in finals_by_value.items()
              for seed in seeds]
    return write_sweep(tmp_path, points)


def test_rank_and_nc1_falling_with_weight_decay_hold_and_rising_fail(tmp_path: Path) -> None:
    falling = sweep_of(tmp_path / "a", WD, {1e-3: Finals(rank=30, nc1=0.02, gap_bound=0.8, gap=0.06),
                                            1e-2: Finals(rank=10, nc1=0.01)})
    code, report = run_verify(falling, "--json")
    rank, nc1 = comparison(report, "rank-weight-decay"), comparison(report, "nc1-weight-decay")
    assert rank["status"] == "holds" and nc1["status"] == "holds"
    assert rank["numbers"]["gamma"] == 1.0 and rank["numbers"]["concordant"] == 1
    assert rank["numbers"]["first"] == 30 and rank["numbers"]["last"] == 10
    assert code == 0
    rising = sweep_of(tmp_path / "b", WD, {1e-3: Finals(rank=10, nc1=0.01), 1e-2: Finals(rank=20, nc1=0.02)})
    code, report = run_verify(rising, "--json")
    assert comparison(report, "rank-weight-decay")["status"] == "fails"
    assert comparison(report, "rank-weight-decay")["numbers"]["gamma"] == -1.0
    assert comparison(report, "nc1-weight-decay")["status"] == "fails"
    assert code == 1


def test_rank_falls_with_smaller_batches_in_both_directions(tmp_path: Path) -> None:
    good = sweep_of(tmp_path / "a", "train.batch_size", {8: Finals(rank=8, gap=0.02), 32: Finals(rank=12, gap=0.04),
                                                         128: Finals(rank=20, gap_bound=0.6, gap=0.05)})
    code, report = run_verify(good, "--json")
    claim = comparison(report, "rank-batch-size")
    assert claim["status"] == "holds" and claim["numbers"]["concordant"] == 3 and code == 0
    assert comparison(report, "rank-weight-decay")["status"] == "n/a"
    assert comparison(report, "rank-weight-decay")["counted"] is False
    bad = sweep_of(tmp_path / "b", "train.batch_size", {8: Finals(rank=20), 32: Finals(rank=12), 128: Finals(rank=8)})
    code, report = run_verify(bad, "--json")
    assert comparison(report, "rank-batch-size")["status"] == "fails" and code == 1


def test_rank_falls_with_larger_learning_rates_in_both_directions(tmp_path: Path) -> None:
    good = sweep_of(tmp_path / "a", "train.lr", {0.01: Finals(rank=25), 0.1: Finals(rank=12), 0.5: Finals(rank=9)})
    assert comparison(run_verify(good, "--json")[1], "rank-lr")["status"] == "holds"
    # one pair of three disagrees: gamma 1/3 < 0.6 fails, passes at trend_min 0.3
    mixed = sweep_of(tmp_path / "b", "train.lr", {0.01: Finals(rank=12), 0.1: Finals(rank=25), 0.5: Finals(rank=9)})
    claim = comparison(run_verify(mixed, "--json")[1], "rank-lr")
    assert claim["status"] == "fails" and claim["numbers"]["gamma"] == pytest.approx(1 / 3)
    assert comparison(run_verify(mixed, "--json", "--threshold", "trend_min=0.3")[1], "rank-lr")["status"] == "holds"


def test_pairs_are_compared_only_at_equal_values_of_the_other_keys(tmp_path: Path) -> None:
    """lr 0.1 ranks 30 -> 20 and lr 0.5 ranks 12 -> 8 as weight decay grows: two concordant pairs;
    the cross pairs (30 vs 8, 20 vs 12 at different lr) are not weight-decay pairs."""
    finals = {(0.1, 1e-3): 30, (0.1, 1e-2): 20, (0.5, 1e-3): 12, (0.5, 1e-2): 8}
    points = [({"train.lr": lr, WD: wd, "seed": 0}, Finals(rank=r)) for (lr, wd), r in finals.items()]
    report = build_report(load_runs([write_sweep(tmp_path, points)]))
    by_id = {c.id: c for c in report.comparisons}
    wd = by_id["rank-weight-decay"]
    assert (wd.numbers["concordant"], wd.numbers["discordant"], wd.numbers["ties"]) == (2, 0, 0)
    lr = by_id["rank-lr"]
    assert (lr.numbers["concordant"], lr.numbers["discordant"]) == (2, 0) and lr.holds


def test_batch_size_and_lr_claims_leave_out_runs_without_weight_decay(tmp_path: Path) -> None:
    finals = {(8, 0.0): 30, (128, 0.0): 29, (8, 1e-2): 10, (128, 1e-2): 20}
    points = [({"train.batch_size": b, WD: wd, "seed": 0}, Finals(rank=r)) for (b, wd), r in finals.items()]
    report = build_report(load_runs([write_sweep(tmp_path, points)]))
    batch = next(c for c in report.comparisons if c.id == "rank-batch-size")
    assert (batch.numbers["concordant"], batch.numbers["discordant"], batch.numbers["points"]) == (1, 0, 2)
    assert batch.holds


def test_seeds_are_averaged_before_points_are_compared(tmp_path: Path) -> None:
    points = [({WD: 1e-3, "seed": 0}, Finals(rank=10)), ({WD: 1e-3, "seed": 1}, Finals(rank=30)),
              ({WD: 1e-2, "seed": 0}, Finals(rank=16)), ({WD: 1e-2, "seed": 1}, Finals(rank=16))]
    report = build_report(load_runs([write_sweep(tmp_path, points)]))
    rank = next(c for c in report.comparisons if c.id == "rank-weight-decay")
    assert rank.numbers["first"] == 20 and rank.numbers["last"] == 16 and rank.holds


def test_noise_must_stay_with_weight_decay(tmp_path: Path) -> None:
    staying = sweep_of(tmp_path / "a", WD, {0.0: Finals(decaying_drift=True, rank=60, nc1=0.02, gap_bound=8, gap=0.1),
                                            1e-2: Finals(rank=10, nc1=0.01)})
    code, report = run_verify(staying, "--json")
    noise = comparison(report, "noise-weight-decay")
    assert noise["status"] == "holds" and noise["numbers"]["staying"] == 2 and noise["numbers"]["decided"] == 2
    assert noise["numbers"]["control_median_ratio"] < 0.5
    without = [r for r in report["runs"] if r["values"][WD] == 0.0]
    assert {v["status"] for r in without for v in r["verdicts"] if v["claim"] in ("noise", "low rank")} == {"fails"}
    assert all(not v["counted"] for r in report["runs"] for v in r["verdicts"])
    assert code == 0
    vanishing = sweep_of(tmp_path / "b", WD, {0.0: Finals(rank=60, nc1=0.02),
                                              1e-2: Finals(decaying_drift=True, rank=10, nc1=0.01)})
    code, report = run_verify(vanishing, "--json")
    assert comparison(report, "noise-weight-decay")["status"] == "fails" and code == 1
    assert "0/2 runs with weight decay keep their noise" in comparison(report, "noise-weight-decay")["text"]


def test_the_gap_bound_must_move_with_the_gap(tmp_path: Path) -> None:
    together = sweep_of(tmp_path / "a", WD, {1e-3: Finals(gap_bound=0.8, gap=0.06, rank=12),
                                             1e-2: Finals(gap_bound=0.4, gap=0.03, rank=10)})
    claim = comparison(run_verify(together, "--json")[1], "bound-gap")
    assert claim["status"] == "holds" and claim["numbers"]["concordant"] == 1
    apart = sweep_of(tmp_path / "b", WD, {1e-3: Finals(gap_bound=0.8, gap=0.03, rank=12),
                                          1e-2: Finals(gap_bound=0.4, gap=0.06, rank=10)})
    code, report = run_verify(apart, "--json")
    assert comparison(report, "bound-gap")["status"] == "fails" and code == 1
    flat = sweep_of(tmp_path / "c", WD, {1e-3: Finals(gap_bound=0.8, gap=0.001, rank=12, nc1=0.02),
                                         1e-2: Finals(gap_bound=0.4, gap=0.0, rank=10)})
    code, report = run_verify(flat, "--json")
    claim = comparison(report, "bound-gap")
    assert claim["status"] == "n/a" and "the measured gap does not change" in claim["text"]
    assert claim["counted"] is False and code == 0
    still = sweep_of(tmp_path / "d", WD, {1e-3: Finals(gap_bound=0.4, gap=0.06, rank=12),
                                          1e-2: Finals(gap_bound=0.4, gap=0.03, rank=10)})
    code, report = run_verify(still, "--json")
    claim = comparison(report, "bound-gap")
    assert claim["status"] == "pending" and "the bound does not change" in claim["text"] and code == 1
    resolved = comparison(run_verify(flat, "--json", "--threshold", "gap_resolution=0.0005")[1], "bound-gap")
    assert resolved["status"] == "holds"


def test_in_a_sweep_the_comparative_claims_decide_and_the_run_verdicts_are_shown(tmp_path: Path) -> None:
    """A wd-0 run fails low rank and noise, as the theory predicts: the sweep still holds."""
    sweep = sweep_of(tmp_path, WD, {0.0: Finals(decaying_drift=True, rank=60, nc1=0.02, gap_bound=8, gap=0.1),
                                    1e-2: Finals(rank=10, nc1=0.01)})
    code, text = run_verify(sweep)
    assert code == 0
    assert "the runs vary train.weight_decay: the comparative claims decide" in text
    assert text.splitlines()[-1] == "4/4 counted verdicts hold"     # rank, NC1, noise, bound vs weight decay
    assert sum("✗ fails" in line for line in text.splitlines()) == 6      # two wd-0 runs x (low rank, noise, bound)


def test_seeds_alone_make_no_comparative_claim_apply(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, [({"seed": 0}, Finals()), ({"seed": 1}, Finals())])
    code, report = run_verify(sweep, "--json")
    assert {c["status"] for c in report["comparative"]} == {"n/a"} and code == 0
    assert "the runs vary no key but the seed" in comparison(report, "bound-gap")["text"]


def test_gamma_and_threshold_parsing() -> None:
    assert gamma(3, 1) == 0.5 and gamma(0, 2) == -1.0 and gamma(0, 0) is None
    run, sweep = parse_thresholds(["min_evals=5", "trend_min=0.75", "noise_fraction=0.5"])
    assert run == Thresholds(min_evals=5) and isinstance(run.min_evals, int)
    assert sweep == ComparativeThresholds(trend_min=0.75, noise_fraction=0.5)
    assert judge_sweep([]) and all(not c.applies for c in judge_sweep([]))
