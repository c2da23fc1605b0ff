"""The app driven by a pilot: what each pane shows, the keys, quitting, and hostile input."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

import pytest
from textual.widgets import ContentSwitcher

from nctui.control import Control
from nctui.records import EndRecord, Record, StepRecord
from nctui.tui import NctuiApp
from nctui.tui.app import PANES
from nctui.tui.chrome import Timeline
from nctui.tui.format import fmt_num, fmt_pct
from nctui.tui.help import HelpScreen
from nctui.tui.widgets.bars import Bars
from nctui.tui.widgets.heatmap import Heatmap
from nctui.tui.widgets.plot import Plot
from nctui.tui.widgets.item_row import ItemRow
from tui_fixtures import (EVAL_STEPS, eval_record, full_run, hostile_eval, live_feed, press, replay_feed,
                          settle, start_record, step_record)

LAST = eval_record(len(EVAL_STEPS) - 1)
PANE_IDS = [pane.TITLE.lower() for pane in PANES]


def summary(app: NctuiApp, pane: str) -> str:
    return app.query_one(f"#{pane} .summary", ItemRow).render().plain


def header(app: NctuiApp) -> str:
    return app.query_one("#header", ItemRow).render().plain


def replay_app(records: list[Record] | None = None) -> NctuiApp:
    return NctuiApp(replay_feed(records if records is not None else full_run()), mode="replay")


async def test_each_pane_shows_the_latest_evaluation() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        g, b, layer0 = LAST.geometry, LAST.bounds, LAST.layers[0]
        expected = {
            "overview": [f"loss {fmt_num(LAST.train['loss'])}", f"test acc {fmt_pct(LAST.test['acc'])}",
                         f"lr {fmt_num(step_record(400).lr)}"],
            "geometry": [f"NC1 {fmt_num(g['nc1'])} ▼", f"ETF err {fmt_num(g['nc2_etf_error'])}",
                         f"NC3 {fmt_num(g['nc3'])}", f"CDNV {fmt_num(g['cdnv'])}"],
            "spectra": ["layer fc1 1/4", f"rank {fmt_num(layer0['rank'])}",
                        f"stable {fmt_num(layer0['stable_rank'])}", "ceiling not binding"],
            "noise": [f"grad noise {fmt_num(LAST.noise['grad_noise'])}",
                      f"drift/step {fmt_num(layer0['drift'])}"],
            "bounds": [f"dense bound {fmt_num(b['bound_dense'])} ▼", "non-vacuous",
                       f"test err {fmt_pct(b['test_error'])}", f"err_γ {fmt_pct(LAST.margins['err_gamma'])}"],
        }
        for key, pane in enumerate(PANE_IDS, start=1):
            await press(pilot, str(key))
            text = summary(app, pane)
            for part in expected[pane]:
                assert part in text, (pane, part, text)
            assert "local bound" not in text
        await press(pilot, "2")
        geometry = app.query_one("#geometry")
        heatmap = geometry.query_one(Heatmap)
        assert heatmap.matrix == g["cosine"]
        await pilot.hover(heatmap, offset=(1 + 2 + 2 * 3 + 1, 1 + 1 + 2))  # border, labels, column 3, row 2
        assert heatmap.hover == (2, 3)
        assert f"cos(μ2, μ3) = {fmt_num(g['cosine'][2][3])}" in heatmap.render().plain
        assert geometry.query_one(Bars).values == g["mean_norms"]
        nc1 = geometry.query_one("#geo-nc1", Plot)
        assert [y for _, y in nc1.data.series[0].points] == pytest.approx(
            [eval_record(i).geometry["nc1"] for i in range(len(EVAL_STEPS))])
        assert "replay" in header(app) and "completed" in header(app)


async def test_scrubbing_moves_every_pane_to_that_evaluation() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await press(pilot, "2", "left_square_bracket", "left_square_bracket")
        picked = eval_record(6)
        assert app.view.index == 6
        assert "eval 7/9" in app.query_one(Timeline).render().plain
        assert app.query_one(Heatmap).matrix == picked.geometry["cosine"]
        assert app.query_one("#geo-nc1", Plot).data.marker == float(picked.step)
        assert f"NC1 {fmt_num(picked.geometry['nc1'])}" in summary(app, "geometry")
        await press(pilot, "3")
        assert app.query_one("#sp-sv", Plot).data.series[0].points[0][1] == picked.layers[0]["sv"][0]
        await pilot.press("home")
        assert app.view.index == 0
        await pilot.press("right_square_bracket")
        assert app.view.index == 1
        await pilot.press("end")
        assert app.view.cursor is None and app.view.index == 8


async def test_pane_keys_tab_and_layer_cycling() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        switcher = app.query_one("#panes", ContentSwitcher)
        for key, pane in enumerate(PANE_IDS, start=1):
            await pilot.press(str(key))
            assert switcher.current == pane
        await pilot.click("#panebar", offset=(1 + 13 + 2, 0))  # padding, " 1 Overview  ", inside " 2 Geometry "
        assert switcher.current == "geometry"
        await pilot.press("5", "tab")
        assert switcher.current == "overview"
        await pilot.press("shift+tab")
        assert switcher.current == "bounds"
        await press(pilot, "3", "l")
        assert "fc2 2/4" in str(app.query_one("#sp-sv", Plot).border_title)
        assert "layer fc2" in summary(app, "spectra")
        await press(pilot, "L", "L")
        assert "fc4 4/4" in str(app.query_one("#sp-sv", Plot).border_title)


async def test_pause_snapshot_and_quit_drive_the_control() -> None:
    control = Control()
    app = NctuiApp(live_feed(control), control, mode="live")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot, lambda: len(app.state.evals) == 5)
        assert "running" in header(app)
        assert not app.query_one(Timeline).display
        await press(pilot, "p")
        assert control.paused and "paused" in header(app)
        await pilot.press("p")
        assert not control.paused
        await pilot.press("s")
        assert control.take_snapshot_request()
        await press(pilot, "left_square_bracket")
        assert app.query_one(Timeline).display
        await pilot.press("q")
        assert control.stop_requested
        await settle(app, pilot, lambda: not app.is_running)
    assert app.return_value == 0
    assert app.state.end is not None and app.state.end.status == "stopped"
    assert app.state.snapshots[-1].reason == "final"


async def test_ctrl_c_waits_for_the_trainer_and_returns_130() -> None:
    control = Control()
    app = NctuiApp(live_feed(control), control)
    async with app.run_test() as pilot:
        await settle(app, pilot, lambda: len(app.state.evals) == 5)
        await pilot.press("ctrl+c")
        await settle(app, pilot, lambda: not app.is_running)
    assert app.return_value == 130 and app.return_code == 130
    assert app.state.end is not None


async def test_second_quit_leaves_without_waiting() -> None:
    """A trainer that does not stop: the first q asks, the second one leaves."""
    control, released = Control(), threading.Event()

    def stubborn(emit: Callable[[Record], None]) -> None:
        emit(start_record())
        released.wait(10)

    app = NctuiApp(stubborn, control)
    try:
        async with app.run_test() as pilot:
            await settle(app, pilot, lambda: app.state.start is not None)
            await press(pilot, "q")
            assert app.is_running and "stopping" in header(app)
            await pilot.press("q")
            await settle(app, pilot, lambda: not app.is_running)
    finally:
        released.set()
    assert app.return_value == 0


async def test_quit_after_the_feed_ended_is_immediate_and_replay_refuses_commands() -> None:
    app = replay_app()
    said: list[str] = []
    app.notify = lambda message, **kwargs: said.append(str(message))  # type: ignore[method-assign]
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("s", "p")
        assert said == ["snapshot is not available in replay mode", "pause is not available in replay mode"]
        await pilot.press("q")
        await settle(app, pilot, lambda: not app.is_running)
    assert app.return_value == 0


async def test_help_screen_lists_keys_and_every_pane() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
    from nctui.tui.help import help_table
    from rich.console import Console
    console = Console(width=160, record=True)
    console.print(help_table(PANES))
    text = console.export_text()
    for pane in PANES:
        assert pane.TITLE in text
        assert all(name in text for name, _ in pane.HELP)
    assert "ctrl+c" in text


def hostile_run(classes: int = 10) -> list[Record]:
    start = dataclasses.replace(start_record(), num_classes=classes, config={"monitor": {"rank_tol": "junk"}})
    good = eval_record(3)
    cosine = [[1.0 if i == j else -1 / (classes - 1) for j in range(classes)] for i in range(classes)]
    sized = dataclasses.replace(good, step=200, geometry={**good.geometry, "cosine": cosine,
                                                          "mean_norms": [1.0] * classes})
    return [
        start,
        StepRecord(step=1, epoch=float("nan"), loss=float("inf"), lr=0.0, samples_per_s=None, elapsed=float("nan")),
        hostile_eval(10),
        dataclasses.replace(hostile_eval(20), layers=[], geometry={}, bounds={}, margins={}, noise={}),
        hostile_eval(30),
        sized,
        EndRecord(step=200, status="diverged", reason="loss is NaN at step 200", elapsed=float("nan")),
    ]


@pytest.mark.parametrize("size, classes", [((80, 24), 10), ((200, 60), 100), ((20, 10), 2), ((120, 40), 2)])
async def test_hostile_records_render_on_every_pane(size: tuple[int, int], classes: int) -> None:
    app = replay_app(hostile_run(classes))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for scrub in ("home", "right_square_bracket", "end"):  # hostile, empty groups, C-sized
            await pilot.press(scrub, "l")
            for key in "12345":
                await press(pilot, key)
        assert app.state.status == "diverged"
        assert "loss is NaN at step 200" in header(app) or size[0] < 60


async def test_empty_feed_and_a_feed_that_raises() -> None:
    def broken(emit: Callable[[Record], None]) -> None:
        emit(start_record())
        raise RuntimeError("disk on fire")

    app = NctuiApp(broken)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await press(pilot, *"12345")
        assert isinstance(app.feed_error, RuntimeError)
        assert "failed: RuntimeError: disk on fire" in header(app)
    empty = replay_app([])
    async with empty.run_test() as pilot:
        await settle(empty, pilot)
        assert "waiting for the first evaluation" in summary(empty, "overview")


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_both_sizes_draw_every_pane(size: tuple[int, int]) -> None:
    app = replay_app()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        for key, pane in enumerate(PANE_IDS, start=1):
            await press(pilot, str(key))
            plots = [p for p in app.query_one(f"#{pane}").query(Plot) if p.display]
            assert plots, pane
            for plot in plots:
                rows = plot.render().plain.split("\n")
                assert len(rows) == plot.content_size.height, (pane, plot.id)


async def test_a_flood_of_step_records_loses_nothing_and_never_waits() -> None:
    count = 20_000
    timing: dict[str, float] = {}

    def flood(emit: Callable[[Record], None]) -> None:
        emit(start_record())
        began = time.perf_counter()
        for i in range(count):
            emit(StepRecord(step=i + 1, epoch=0.0, loss=1.0 / (i + 1), lr=0.1, samples_per_s=1e5, elapsed=i * 1e-4))
            if i % 1000 == 0:
                emit(dataclasses.replace(eval_record(1), step=i + 1))
        timing["emit"] = time.perf_counter() - began

    app = NctuiApp(flood)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        assert len(app.state.steps) == count
        assert [r.step for r in app.state.steps[:3]] == [1, 2, 3]
        assert [ev.step for ev in app.state.evals] == list(range(1, count + 1, 1000))
    assert timing["emit"] < 1.0  # about 4 µs a step here; a UI round trip per step would take seconds


async def test_following_mode_labels_itself_and_an_unknown_mode_is_refused() -> None:
    control = Control()
    app = NctuiApp(live_feed(control), control, mode="following")
    said: list[str] = []
    app.notify = lambda message, **kwargs: said.append(str(message))  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot, lambda: len(app.state.evals) == 5)
        assert "following" in header(app)
        assert "following newest" in app.query_one(Timeline).render().plain
        await press(pilot, "p")
        assert not control.paused and said == ["pause is not available in following mode"]
        await press(pilot, "q")
        await settle(app, pilot, lambda: not app.is_running)
    assert control.stop_requested and app.return_value == 0
    with pytest.raises(ValueError, match="mode must be one of"):
        NctuiApp(replay_feed([]), mode="tail")
