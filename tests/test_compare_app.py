"""Compare mode driven by keys on the recorded 2 x 2-seed sweep (compare_fixtures): what the
header, sidebar, plots and strip show, every key, opening one run in the monitor and back,
and following runs still being written (and a sweep point that starts meanwhile)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import ContentSwitcher, Input

from compare_fixtures import (accuracy, append, config, eval_for, gap_bound, mean_std, nc1, rank, run_records,
                              write_run, write_sweep)
from nctui.analysis.runs import load_runs
from nctui.tui.app import NctuiApp
from nctui.tui.compare.app import CompareApp
from nctui.tui.compare.plot import Band
from nctui.tui.compare.screen import CompareScreen
from nctui.tui.compare.sidebar import RunsSidebar
from nctui.tui.compare.timeplot import TimePane, time_data
from nctui.tui.compare.vsparam import VsParamPane, vs_data
from nctui.tui.format import fmt_num
from nctui.tui.widgets.item_row import ItemRow
from nctui.viewer import open_viewer
from tui_fixtures import EVAL_STEPS

T = [i / 8 for i in range(9)]   # the fixture's t at each evaluation


async def press(pilot: Pilot, *keys: str) -> None:
    await pilot.press(*keys)
    await pilot.pause()


async def ready(app: CompareApp, pilot: Pilot, until=None) -> None:
    """Wait (up to 5 s) for the compare screen, and for `until` if given."""
    for _ in range(500):
        if isinstance(app.screen, CompareScreen) and (until is None or until()):
            break
        await pilot.pause(0.01)
    assert isinstance(app.screen, CompareScreen) and (until is None or until())
    app.screen.redraw(force=True)
    await pilot.pause()


def shown(app: CompareApp, selector: str) -> str:
    return app.screen.query_one(selector, ItemRow).render().plain


def sidebar(app: CompareApp) -> list[str]:
    return app.screen.query_one(RunsSidebar).render().plain.splitlines()


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return write_sweep(tmp_path)


async def test_a_sweep_opens_in_compare_mode_with_what_varies_and_each_points_mean(sweep: Path) -> None:
    app, warnings = open_viewer([sweep])
    assert isinstance(app, CompareApp) and warnings == [] and app.mode == "replay"
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        header = shown(app, "#cmp-header")
        for part in ("compare", "wd-sweep", "4 runs", "varying λ {0, 1e-2}", "seeds 0, 1", "✔ 4/4 completed"):
            assert part in header
        assert [line.split()[-3:] for line in sidebar(app)] == [["λ=0", "s0", "✔"], ["λ=0", "s1", "✔"],
                                                              ["λ=1e-2", "s0", "✔"], ["λ=1e-2", "s1", "✔"]]
        mean, sd = mean_std([nc1(0.01, 0, 1.0), nc1(0.01, 1, 1.0)])
        assert f"λ=1e-2 {fmt_num(mean)}±{fmt_num(sd)}" in shown(app, "#cmp-summary")
        plot = app.screen.query_one(TimePane)
        assert plot.border_title.startswith("NC1") and "mean ± sd over seeds" in plot.border_title
        assert "λ=0" in plot.border_subtitle and "±1 sd" in plot.border_subtitle


async def test_the_seeds_of_a_point_are_a_mean_and_band_until_s_shows_each(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        data, banded = time_data(app.compare)
        bands = [s for s in data.series if isinstance(s, Band)]
        means = [s for s in data.series if not isinstance(s, Band)]
        assert banded and len(bands) == 2 and [s.label for s in means] == ["λ=0", "λ=1e-2"]
        expected = [mean_std([nc1(0.01, 0, t), nc1(0.01, 1, t)]) for t in T]
        assert [y for _, y in means[1].points] == pytest.approx([m for m, _ in expected])
        assert [y for _, y in bands[1].high] == pytest.approx([m + s for m, s in expected])
        await press(pilot, "s")
        data, banded = time_data(app.compare)
        assert not banded and [s.label for s in data.series] == ["wd=0_s0", "wd=0_s1", "wd=1e-2_s0", "wd=1e-2_s1"]
        assert data.series[3].points[-1] == (400.0, pytest.approx(nc1(0.01, 1, 1.0)))


async def test_quantity_and_layer_keys(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        plot = app.screen.query_one(TimePane)
        await press(pilot, "2")
        assert plot.border_title.startswith("rank · mean of hidden layers (log)")
        hidden = [sum(rank(0.01, 1, t, k) for k in range(3)) / 3 for t in T]
        await press(pilot, "s")
        assert [y for _, y in time_data(app.compare)[0].series[3].points] == pytest.approx(hidden)
        await press(pilot, "l", "l")
        assert plot.border_title.startswith("rank · fc2")
        assert [y for _, y in time_data(app.compare)[0].series[3].points] == [rank(0.01, 1, t, 1) for t in T]
        await press(pilot, "3")
        assert plot.border_title == "test accuracy"
        assert time_data(app.compare)[0].series[0].points[-1][1] == pytest.approx(accuracy(0.0, 0, 1.0))
        await press(pilot, "l")   # no layers: says so, changes nothing
        assert plot.border_title == "test accuracy"
        await press(pilot, "6")
        assert plot.border_title.startswith("gap bound vs gap (log₂)")
        curves = time_data(app.compare)[0].series
        assert [(s.label, s.style) for s in curves] == [("wd=0_s0", 0), ("wd=0_s1", 0), ("wd=0_s0", 2), ("wd=0_s1", 2),
                                                       ("wd=1e-2_s0", 0), ("wd=1e-2_s1", 0), ("wd=1e-2_s0", 2),
                                                       ("wd=1e-2_s1", 2)]   # bound solid, gap dotted
        assert curves[4].points[4][1] == pytest.approx(gap_bound(0.01, 0.5))
        assert "bound" in plot.border_subtitle and "gap" in plot.border_subtitle
        await press(pilot, "m")   # wraps to the first quantity
        assert plot.border_title.startswith("NC1")


async def test_the_scrubber_moves_every_run_to_one_step(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        await press(pilot, "left_square_bracket", "left_square_bracket")
        assert app.compare.scrub == 300 and shown(app, "#cmp-summary").startswith("@ step 300")
        assert time_data(app.compare)[0].marker == 300.0
        mean, sd = mean_std([nc1(0.0, 0, 6 / 8), nc1(0.0, 1, 6 / 8)])
        assert f"λ=0 {fmt_num(mean)}±{fmt_num(sd)}" in shown(app, "#cmp-summary")
        await press(pilot, "home")
        assert app.compare.scrub == 0
        await press(pilot, "left_square_bracket", "right_square_bracket")
        assert app.compare.scrub == 50
        await press(pilot, "end")
        assert app.compare.scrub is None and shown(app, "#cmp-summary").startswith("@ newest")
        await press(pilot, "left_square_bracket", "right_square_bracket")
        assert app.compare.scrub is None


async def test_the_vs_parameter_view_plots_each_points_value_against_the_varying_key(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        await press(pilot, "v", "left_square_bracket")
        pane = app.screen.query_one(VsParamPane)
        assert pane.display and not app.screen.query_one(TimePane).display
        assert pane.border_title == "NC1  Tr(ΣW ΣB⁺)/C (log) vs λ · step 350"
        data, labels, _, _ = vs_data(app.compare)
        (line,) = [s for s in data.series if s.label == "" and len(s.points) == 2 and s.points[0][0] != s.points[1][0]]
        means = [mean_std([nc1(wd, 0, 7 / 8), nc1(wd, 1, 7 / 8)]) for wd in (0.0, 0.01)]
        assert line.points == [(0.0, pytest.approx(means[0][0])), (0.01, pytest.approx(means[1][0]))]
        bars = [s.points for s in data.series if s.points[0][0] == s.points[-1][0] and len(s.points) == 2]
        assert bars[1] == [(0.01, pytest.approx(means[1][0] - means[1][1])), (0.01, pytest.approx(sum(means[1])))]
        assert labels == [(0.0, "0"), (0.01, "1e-2")]
        await press(pilot, "s")
        assert "seeds" in pane.border_subtitle
        await press(pilot, "v")
        assert app.screen.query_one(TimePane).display


async def test_the_sidebar_hides_pins_and_filters_runs(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        await press(pilot, "down", "space")
        assert [r.name for r in app.compare.visible()] == ["wd=0_s0", "wd=1e-2_s0", "wd=1e-2_s1"]
        assert "□" in sidebar(app)[1]
        data, _ = time_data(app.compare)
        assert len([s for s in data.series if isinstance(s, Band)]) == 1   # λ=0 has one seed shown: no band
        await press(pilot, "space", "up", "p")
        assert sidebar(app)[0].startswith("▸◆")
        await press(pilot, "slash")
        app.screen.query_one(Input).value = "weight_decay>0"
        await press(pilot, "enter")
        assert [line.split()[-3:] for line in sidebar(app)] == [["λ=0", "s0", "✔"], ["λ=1e-2", "s0", "✔"],
                                                              ["λ=1e-2", "s1", "✔"]]   # the pinned run stays
        assert app.screen.query_one(RunsSidebar).border_subtitle == "filter: weight_decay>0"
        await press(pilot, "slash", "ctrl+u", "=", "1", "enter")
        assert app.compare.filter_text == "weight_decay>0"   # refused: the filter stays
        await press(pilot, "escape")
        await press(pilot, "slash", "ctrl+u", "enter")
        assert len(sidebar(app)) == 4 and app.focused is None


async def test_enter_opens_the_selected_run_in_the_monitor_at_the_scrubbed_step_and_c_comes_back(sweep: Path) -> None:
    app, _ = open_viewer([sweep])
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        await press(pilot, "down", "down", "down", "left_square_bracket", "left_square_bracket", "enter")
        assert not isinstance(app.screen, CompareScreen)
        assert app.title == "wd=1e-2_s1" and app.mode == "replay"
        assert app.view.current.step == 300 and len(app.state.evals) == len(EVAL_STEPS)
        assert app.state.start.config["train"]["weight_decay"] == 0.01
        await press(pilot, "2")   # the monitor's keys work on that run
        assert app.query_one("#panes", ContentSwitcher).current == "geometry"
        assert "wd=1e-2_s1" in app.query_one("#header", ItemRow).render().plain
        await press(pilot, "c")
        assert isinstance(app.screen, CompareScreen) and app.compare.scrub == 300
        await press(pilot, "enter", "escape")
        assert isinstance(app.screen, CompareScreen)
        await press(pilot, "question_mark")
        assert type(app.screen).__name__ == "CompareHelp"
        await press(pilot, "escape", "q")
    assert app.return_code == 0


async def test_compare_mode_follows_runs_being_written_and_a_point_that_starts(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path, started=3, ended=False, upto=200)
    runs = load_runs([sweep_dir], pending=True)
    app = CompareApp(runs, title="wd-sweep", poll_seconds=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        assert app.mode == "following"
        header = shown(app, "#cmp-header")
        assert "3 running" in header and "1 pending" in header
        await press(pilot, "down", "enter")   # follow wd=0_s1 in the monitor meanwhile
        assert len(app.state.evals) == 5
        append(sweep_dir / "wd=0_s1", [eval_for(5, 0.0, 1)])
        write_run(sweep_dir / "wd=1e-2_s1", config(0.01, 1), run_records(0.01, 1, upto=100, ended=False))
        for _ in range(500):
            if app.compare.runs[3].status == "running" and len(app.state.evals) == 6:
                break
            await pilot.pause(0.01)
        assert len(app.state.evals) == 6 and app.state.evals[-1].step == 250
        await press(pilot, "c")
        await ready(app, pilot)
        assert "4 running" in shown(app, "#cmp-header")
        assert app.compare.runs[3].config["model"]["width"] == 32 and len(app.compare.runs[3].evals) == 3
        assert app.compare.keys == ["train.weight_decay"]
        await press(pilot, "q")


async def test_one_run_opens_the_monitor_and_two_runs_compare_mode(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", config(0.0, 0, lr=0.1), run_records(0.0, 0))
    b = write_run(tmp_path / "b", config(0.0, 0, lr=0.01), run_records(0.0, 0))
    single, _ = open_viewer([a])
    assert type(single) is NctuiApp and type(open_viewer([a, tmp_path / "a"])[0]) is NctuiApp
    app, _ = open_viewer([a, b])
    assert isinstance(app, CompareApp)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        assert "2 runs" in shown(app, "#cmp-header") and "varying lr {1e-2, 0.1}" in shown(app, "#cmp-header")
        assert [line.split()[-2:] for line in sidebar(app)] == [["lr=1e-2", "✔"], ["lr=0.1", "✔"]]
        await press(pilot, "g")   # one key varies: nothing else to group by
        assert app.compare.keys == ["train.lr"]


async def test_a_run_that_turns_unreadable_is_reported_once_and_the_others_still_followed(tmp_path: Path) -> None:
    sweep_dir = write_sweep(tmp_path, started=2, ended=False, upto=200)
    app = CompareApp(load_runs([sweep_dir], pending=True), title="wd-sweep", poll_seconds=0.02)
    said: list[str] = []
    app.notify = lambda message, **_: said.append(message)   # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot)
        metrics = sweep_dir / "wd=0_s0" / "metrics.jsonl"
        metrics.unlink()
        metrics.mkdir()   # opening it now fails
        append(sweep_dir / "wd=0_s1", [eval_for(5, 0.0, 1)])
        await ready(app, pilot, lambda: len(app.compare.runs[1].evals) == 6)
        await pilot.pause(0.2)   # several more polls
        assert said == [f"{metrics}: cannot read (Is a directory)"] and app.feed_error is None
        assert len(app.compare.runs[0].evals) == 5
        await press(pilot, "q")
