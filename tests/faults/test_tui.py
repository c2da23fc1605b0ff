"""The TUI in a 20x10 terminal, under a resize storm and a flood of records: it neither crashes
nor makes the trainer wait, in the app driven by a pilot and in a real run on a pseudo-terminal."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Callable

from faults.helpers import ALTERNATE_SCREEN, Child
from nctui.records import Record
from nctui.store.rundir import read_records
from nctui.tui import NctuiApp
from run_fixtures import settings
from tui_fixtures import EVAL_STEPS, eval_record, final_records, press, settle, start_record, step_record

SIZES = [(20, 10), (200, 60), (1, 1), (80, 24), (7, 3), (20, 10), (133, 41)]
BURSTS, BURST = 50, 2000


async def test_a_flood_during_a_resize_storm_at_20x10() -> None:
    """100,000 step records and an evaluation every 2,000, in bursts, while the terminal is resized
    60 times: every record arrives, no burst of emits waits for the UI, every pane still draws."""
    burst_seconds: list[float] = []

    def flood(emit: Callable[[Record], None]) -> None:
        emit(start_record())
        for burst in range(BURSTS):
            began = time.perf_counter()
            for i in range(burst * BURST, (burst + 1) * BURST):
                emit(dataclasses.replace(step_record(20), step=i + 1))
            emit(dataclasses.replace(eval_record(burst % len(EVAL_STEPS)), step=(burst + 1) * BURST))
            burst_seconds.append(time.perf_counter() - began)
            time.sleep(0.005)
        for record in final_records(step=BURSTS * BURST):
            emit(record)

    app = NctuiApp(flood, mode="replay")
    async with app.run_test(size=(20, 10)) as pilot:
        for width, height in itertools.islice(itertools.cycle(SIZES), 60):
            await pilot.resize_terminal(width, height)
        await pilot.resize_terminal(20, 10)
        await settle(app, pilot)
        assert len(app.state.steps) == BURSTS * BURST and len(app.state.evals) == BURSTS
        assert app.state.status == "completed"
        for key in [*"12345", "l", "left_square_bracket", "home", "end", "question_mark", "escape"]:
            await press(pilot, key)
        assert app.is_running and app.size == (20, 10)
    assert max(burst_seconds) < 2.0, max(burst_seconds)   # 2,001 emits; a UI round trip each would take far longer (2 s leaves room for a busy CI core)


def test_a_real_run_in_a_20x10_terminal_survives_a_resize_storm(tmp_path: Path) -> None:
    """`nctui run` on a 20x10 pseudo-terminal, a step record every step, resized every 20 ms until
    the run has ended: it completes, the monitor is still up, and q leaves with exit 0."""
    child = Child(["run", "quickstart", "--out", str(tmp_path), *settings(train__epochs=30, monitor__log_every=1)],
                  terminal=(20, 10))
    try:
        child.wait_for(ALTERNATE_SCREEN)
        (run_dir,) = tmp_path.iterdir()
        deadline = time.monotonic() + 120
        for columns, rows in itertools.cycle(SIZES):
            records = read_records(run_dir)
            if records and records[-1].type == "end" or time.monotonic() > deadline:
                break
            child.resize(columns, rows)
            child.read(0.02)
        assert records[-1].type == "end" and records[-1].status == "completed", records[-1]
        assert [r.step for r in records if r.type == "step"] == list(range(1, 301))
        child.resize(20, 10)
        child.read(0.5)
        assert child.process.poll() is None, child.text[-2000:]   # the monitor stays up after the run
        child.send(b"q")
        assert child.finish() == 0, child.text[-2000:]
    finally:
        child.close()
    assert f"nctui: completed: trained 30 epochs (step 300); run directory {run_dir}" in child.text
