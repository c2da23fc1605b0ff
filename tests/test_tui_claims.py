"""The claims on screen: Overview verdicts, the Bounds pane and its audit, the Spectra ceiling and lines."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console
from textual.color import Color

from nctui.analysis.verdicts import judge
from nctui.records import EvalRecord, Record
from nctui.tui import NctuiApp
from nctui.tui.panes.bounds import AuditScreen
from nctui.tui.panes.overview import STATUS_COLORS
from nctui.tui.widgets.item_row import ItemRow
from nctui.tui.widgets.plot import Plot
from tui_fixtures import C, EVAL_STEPS, full_run, press, replay_feed, settle, start_record

CLAIM_PLOTS = ("#ov-collapse", "#ov-rank", "#ov-noise", "#ov-bound")


def replay(records: list[Record] | None = None) -> NctuiApp:
    return NctuiApp(replay_feed(records if records is not None else full_run()), mode="replay")


def evals_of(records: list[Record]) -> list[EvalRecord]:
    return [r for r in records if isinstance(r, EvalRecord)]


def with_evals(change) -> list[Record]:
    """The fixed run with `change(eval_record) -> eval_record` applied to every evaluation."""
    return [change(r) if isinstance(r, EvalRecord) else r for r in full_run()]


def plain(app: NctuiApp, selector: str) -> str:
    """What a Static shows, as plain text (rich tables included)."""
    console = Console(width=160, file=io.StringIO(), record=True)
    console.print(app.screen.query_one(selector).content)
    return console.export_text()


def summary(app: NctuiApp, pane: str) -> str:
    return app.query_one(f"#{pane} .summary", ItemRow).render().plain


async def test_overview_shows_the_four_verdicts_of_the_analysis_code() -> None:
    app = replay()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        expected = judge(evals_of(full_run()), start_record())
        assert [v.status for v in expected] == ["holds"] * 4
        for selector, verdict in zip(CLAIM_PLOTS, expected):
            plot = app.query_one(selector, Plot)
            subtitle = str(plot.border_subtitle)
            assert "✔" in subtitle and verdict.text in subtitle, (selector, subtitle)
            assert plot.styles.border_top[1] == Color.parse(STATUS_COLORS["holds"]).with_alpha(0.7)
        assert "NC1 10 → 0.010 (1000×), NC4 0" in str(app.query_one("#ov-collapse", Plot).border_subtitle)
        assert "gap bound 2^-0.4 vs gap 3.0%" in str(app.query_one("#ov-bound", Plot).border_subtitle)
        # the curves are those the verdicts judge, and the guide lines are where the rules put them
        rank = app.query_one("#ov-rank", Plot)
        assert [s.label for s in rank.data.series] == ["fc1", "fc2", "fc3"]
        assert [line.at for line in rank.data.lines] == [C - 1]
        collapse = app.query_one("#ov-collapse", Plot)
        assert collapse.data.lines[0].at == pytest.approx(evals_of(full_run())[0].geometry["nc1"] / 10)
        assert [line.at for line in app.query_one("#ov-bound", Plot).data.lines] == [1.0]
        assert app.query_one("#ov-loss", Plot).display  # loss and accuracy plots on a tall screen
        for part in ("loss 2.8e-3", "test acc 95.0%", "acc 98.0%"):
            assert part in summary(app, "overview")


async def test_scrubbing_back_shows_failing_and_pending_verdicts_as_loudly() -> None:
    app = replay()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await press(pilot, *["left_square_bracket"] * 6)   # the third evaluation (step 100)
        assert app.view.index == 2
        marks = [str(app.query_one(s, Plot).border_subtitle) for s in CLAIM_PLOTS]
        assert ["✗" in marks[0], "✗" in marks[1], "…" in marks[2], "✗" in marks[3]] == [True] * 4
        assert "needs 10×" in marks[0]
        failing = app.query_one("#ov-collapse", Plot)
        assert failing.styles.border_top[1] == Color.parse(STATUS_COLORS["fails"]).with_alpha(0.7)
        assert not app.query_one("#ov-loss", Plot).display   # 24 rows: the claims, the strip keeps loss/acc
        assert "loss" in summary(app, "overview") and "test acc" in summary(app, "overview")


async def test_a_tiny_terminal_still_lists_the_four_verdicts() -> None:
    app = replay()
    async with app.run_test(size=(80, 18)) as pilot:
        await settle(app, pilot)
        lines = plain(app, "#ov-verdicts").splitlines()
        assert [line.split(":")[0] for line in lines] == ["✔ collapse", "✔ low rank", "✔ noise", "✔ bound"]
        assert app.query_one("#ov-verdicts").display and not app.query_one("OverviewPane > .claims").display


def old_record(ev: EvalRecord) -> EvalRecord:
    """An evaluation as runs recorded it before gap bounds and the audit existed."""
    kept = {k: v for k, v in ev.bounds.items() if k in ("bound_dense", "bound_local", "test_error", "train_error",
                                                        "gap", "rho", "rho_over_sqrt_m")}
    return dataclasses.replace(ev, bounds=kept)


async def test_an_old_run_without_gap_bounds_leaves_the_bound_pending_and_draws() -> None:
    records = with_evals(old_record)
    records[0] = dataclasses.replace(start_record(), config={})
    app = replay(records)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        bound = str(app.query_one("#ov-bound", Plot).border_subtitle)
        assert "…" in bound and "recorded before gap bounds" in bound
        await press(pilot, "5")
        gap = app.query_one("#bo-gap", Plot)
        assert [s.label for s in gap.data.series] == ["gap", "ρ/√m"]
        assert str(gap.border_title) == "gap bounds vs gap (log₂)"   # no convention to name
        stats = plain(app, "#bo-stats")
        assert "γ=–" in stats   # neither the audit nor the config says: nothing is made up
        await press(pilot, "3")
        assert app.query_one("#sp-sv", Plot).data.lines == []   # no rank_tol recorded: no line


async def test_bounds_pane_plots_each_bound_against_what_it_bounds() -> None:
    app = replay()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await press(pilot, "5")
        gap, err = app.query_one("#bo-gap", Plot), app.query_one("#bo-err", Plot)
        assert [s.label for s in gap.data.series] == ["dense gap bound", "gap", "ρ/√m"]
        assert [s.label for s in err.data.series] == ["dense bound", "test err", "err_γ"]
        assert gap.scale == err.scale == "log2"
        assert 1.0 in [line.at for line in gap.data.lines if not line.vertical]
        assert 1.0 in [line.at for line in err.data.lines]
        last = evals_of(full_run())[-1]
        assert gap.data.series[0].points[-1][1] == last.bounds["gap_bound_dense"]
        assert str(gap.border_title).endswith("· nctui")
        first_below = next(ev.step for ev in evals_of(full_run()) if ev.bounds["gap_bound_dense"] < 1)
        assert [line.at for line in gap.data.lines if line.vertical] == [first_below]
        assert "γ=1, 2,000 training samples" in plain(app, "#bo-stats")


async def test_gamma_comes_from_the_audit_not_from_a_default() -> None:
    def gamma_2(ev: EvalRecord) -> EvalRecord:
        return dataclasses.replace(ev, bounds={**ev.bounds, "audit": {**ev.bounds["audit"], "gamma": 2.5,
                                                                       "convention": "authors"}})
    app = replay(with_evals(gamma_2))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await press(pilot, "5")
        assert "γ=2.5" in plain(app, "#bo-stats")
        assert str(app.query_one("#bo-gap", Plot).border_title).endswith("· authors")


async def test_a_opens_the_audit_of_the_selected_evaluation_only_on_the_bounds_pane() -> None:
    app = replay()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await press(pilot, "1", "a")
        assert not isinstance(app.screen, AuditScreen)
        await press(pilot, "5", "left_square_bracket", "a")
        assert isinstance(app.screen, AuditScreen)
        text = plain(app, "#audit Static")
        picked = evals_of(full_run())[-2]
        for part in ("convention nctui", f"@ step {picked.step:,}", "m 2,000", "γ 1", "δ 1.0e-3", "L 4",
                     "Lg  log term", "5.08", "D  data term", "1.25k", "ρ_k fc1"):
            assert part in text, part
        await press(pilot, "escape")
        assert not isinstance(app.screen, AuditScreen)
        await press(pilot, "a")
        assert isinstance(app.screen, AuditScreen)   # the pane has the focus back


async def test_spectra_says_not_binding_and_draws_c_minus_1_and_the_recorded_tolerance() -> None:
    def binding_fc2(ev: EvalRecord) -> EvalRecord:
        layers = [dict(layer) for layer in ev.layers]
        layers[1]["rank_ceiling"] = 12.0   # below fc2's 32 singular values: binds
        return dataclasses.replace(ev, layers=layers)
    records = with_evals(binding_fc2)
    records[0] = dataclasses.replace(start_record(), config={"monitor": {"rank_tol": 1e-2}})
    app = replay(records)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await press(pilot, "3")
        table = plain(app, "#sp-table")
        assert table.count("not binding") == 3 and " 12 " in table
        assert "ceiling not binding" in summary(app, "spectra")
        assert [(line.at, line.label) for line in app.query_one("#sp-rank", Plot).data.lines] == [(C - 1, "C−1")]
        assert [line.at for line in app.query_one("#sp-sv", Plot).data.lines] == [1e-2]
        await press(pilot, "l")
        assert "ceiling 12" in summary(app, "spectra")


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (40, 12)])
async def test_odd_numbers_never_crash_the_claim_panes(size: tuple[int, int]) -> None:
    nan, inf = float("nan"), float("inf")

    def odd(ev: EvalRecord) -> EvalRecord:
        i = EVAL_STEPS.index(ev.step)
        bounds = {**ev.bounds, "gap_bound_dense": [0.0, nan, inf, -1.0, None][i % 5], "gap": [0.0, -0.1, nan][i % 3],
                  "audit": "junk" if i % 2 else {"gamma": "junk", "kernel_areas": "junk", "m": nan}}
        layers = [{**layer, "rank_ceiling": [inf, 0.0, None][i % 3], "sv": [0.0, nan] if i % 2 else "junk",
                   "rank": [nan, 0, None][i % 3], "drift": [0.0, -1.0, inf][i % 3]} for layer in ev.layers]
        geometry = {**ev.geometry, "nc1": [0.0, nan, -1.0][i % 3], "nc4": inf}
        return dataclasses.replace(ev, bounds=bounds, layers=layers, geometry=geometry)

    records = with_evals(odd)
    records[0] = dataclasses.replace(start_record(), num_classes=0, config={"monitor": "junk", "train": None})
    app = replay(records)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for keys in (("1",), ("3", "l"), ("5", "a"), ("escape", "home", "1"), ("5",)):
            await press(pilot, *keys)
        assert app.is_running
