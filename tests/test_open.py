"""`nctui open`: replaying a recorded run, following one being written, and quitting either."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nctui.viewer import open_app, open_feed
from nctui.records import Record, splice
from nctui.store.rundir import RunWriter, read_records, write_run_json
from nctui.store.snapshot import snapshot_name
from nctui.tui.app import NctuiApp
from nctui.tui.widgets.heatmap import Heatmap
from nctui.tui.widgets.item_row import ItemRow
from run_fixtures import (SUBPROCESS_ENV, Terminal, nctui_command, one_thread,  # noqa: F401 - autouse
                          settings, tiny_run)
from tui_fixtures import full_run, press, run_records, settle


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("recorded"))


def unfinished_run(run_dir: Path) -> Path:
    """A run directory whose writer has not finished: records up to step 200, no end record."""
    run_dir.mkdir()
    write_run_json(run_dir, {"name": run_dir.name, "config": {}})
    writer = RunWriter(run_dir)
    for record in run_records(200):
        writer.record(record)
    writer.close()
    return run_dir


def geometry_shown(app: NctuiApp) -> tuple[str, list]:
    return app.query_one("#geometry .summary", ItemRow).render().plain, app.query_one(Heatmap).matrix


async def test_open_replays_a_recorded_run_and_scrubbing_changes_the_panes(recorded: Path) -> None:
    app, warnings = open_app(recorded)
    assert (app.mode, warnings) == ("replay", [])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        evals = [r for r in read_records(recorded) if r.type == "eval"]
        assert [e.step for e in app.state.evals] == [e.step for e in evals] == [0, 10, 20, 30]
        await press(pilot, "2")
        newest = geometry_shown(app)
        assert newest[1] == evals[-1].geometry["cosine"]
        await press(pilot, "left_square_bracket", "left_square_bracket")
        assert app.view.current.step == 10
        scrubbed = geometry_shown(app)
        assert scrubbed != newest and scrubbed[1] == evals[1].geometry["cosine"]
        await press(pilot, "right_square_bracket", "right_square_bracket")
        assert geometry_shown(app) == newest


async def test_open_follows_a_run_still_being_written(tmp_path: Path) -> None:
    run_dir = unfinished_run(tmp_path / "unfinished")
    app, _ = open_app(run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot, lambda: len(app.state.evals) == 5)
        assert app.mode == "following" and app.state.end is None
        writer = RunWriter(run_dir)
        for record in full_run()[len(run_records(200)):]:
            writer.record(record)
        writer.close()
        await settle(app, pilot)
        assert len(app.state.evals) == 9 and app.state.end.status == "completed"


def test_open_says_when_an_unfinished_run_looks_killed(tmp_path: Path) -> None:
    run_dir = unfinished_run(tmp_path / "quiet")
    assert open_feed(run_dir, lambda: True)[::2] == ("following", [])   # just written: alive
    stale = time.time() - 600
    os.utime(run_dir / "metrics.jsonl", (stale, stale))
    mode, _, warnings = open_feed(run_dir, lambda: True)
    assert mode == "following" and warnings == [
        "no end record and nothing written for 2 minutes: the run was probably killed "
        f"(resume it: nctui run --resume {run_dir}); following in case it goes on"]
    writer = RunWriter(run_dir)   # a slow run, quiet but alive
    try:
        assert open_feed(run_dir, lambda: True)[2] == []
    finally:
        writer.close()


def test_open_names_a_corrupt_snapshot_and_opens_the_rest(recorded: Path, tmp_path: Path) -> None:
    bad = recorded / snapshot_name(99)
    bad.write_bytes(b"\x00" * 20)
    try:
        mode, feed, warnings = open_feed(recorded, lambda: False)
    finally:
        bad.unlink()
    assert warnings == [f"{bad}: corrupt header (not JSON)"]
    seen: list[Record] = []
    feed(seen.append)
    assert seen == splice(read_records(recorded)) and seen[-1].type == "end"


def test_follow_sees_new_evaluations_of_a_run_being_written(tmp_path: Path) -> None:
    process = subprocess.Popen(
        nctui_command("run", "quickstart", "--headless", "--out", str(tmp_path), *settings(train__epochs=4)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=SUBPROCESS_ENV)
    try:
        line = process.stderr.readline()
        os.kill(process.pid, signal.SIGSTOP)   # open while the run is surely unfinished
        assert line.startswith("nctui: run directory "), line
        run_dir = Path(line.removeprefix("nctui: run directory ").strip())
        mode, feed, _ = open_feed(run_dir, lambda: False)
        there = [r for r in read_records(run_dir) if r.type == "eval"]   # at least what open saw
        os.kill(process.pid, signal.SIGCONT)
        seen: list[Record] = []
        follower = threading.Thread(target=feed, args=(seen.append,))
        follower.start()
        follower.join(timeout=120)
        assert not follower.is_alive(), "the follower did not stop at the end record"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert mode == "following"
    evals = [r.step for r in seen if r.type == "eval"]
    assert len(evals) > len(there) and evals == list(range(0, 41, 10))
    assert seen[-1].type == "end" and seen == read_records(run_dir)


def test_a_follower_stops_when_asked(tmp_path: Path) -> None:
    run_dir = unfinished_run(tmp_path / "unfinished")
    stop = threading.Event()
    mode, feed, _ = open_feed(run_dir, stop.is_set)
    seen: list[Record] = []
    follower = threading.Thread(target=feed, args=(seen.append,))
    follower.start()
    time.sleep(0.3)
    stop.set()
    follower.join(timeout=5)
    assert mode == "following" and not follower.is_alive() and seen == run_records(200)


def test_open_in_a_terminal_follows_and_quits_at_once(tmp_path: Path) -> None:
    """The real command on a pty: q must end it even while the follower waits for lines
    (asyncio.run joins the feed's thread before app.run() returns)."""
    terminal = Terminal(nctui_command("open", str(unfinished_run(tmp_path / "unfinished"))))
    try:
        terminal.wait_for(b"following")
        terminal.type(b"q")
        assert terminal.wait_exit(timeout=10) == 0
    finally:
        terminal.close()
