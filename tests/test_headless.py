"""The headless front end: stdout carries exactly the metrics.jsonl lines, stderr the progress."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

from nctui.headless import ProgressLine
from nctui.records import EndRecord, EvalRecord, StartRecord, StepRecord
from run_fixtures import SUBPROCESS_ENV, nctui_command, settings


def test_progress_on_a_terminal_while_stdout_stays_json_lines(tmp_path: Path) -> None:
    """stderr on a pseudo-terminal gets a live line redrawn in place; stdout (a pipe) is pure JSON."""
    leader, follower = os.openpty()
    out = tmp_path / "runs"
    with open(tmp_path / "stdout", "wb") as stdout_file:   # a file, not a pipe nobody reads while we read the pty
        process = subprocess.Popen(nctui_command("run", "quickstart", "--headless", "--out", str(out),
                                                 *settings(train__epochs=10)),
                                   stdout=stdout_file, stderr=follower, env=SUBPROCESS_ENV)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:   # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    process.wait(timeout=120)
    os.close(leader)
    assert process.returncode == 0, screen.decode(errors="replace")
    stdout = (tmp_path / "stdout").read_text()
    records = [json.loads(line) for line in stdout.splitlines()]
    (run_dir,) = out.iterdir()
    assert stdout == (run_dir / "metrics.jsonl").read_text()
    assert records[0]["type"] == "start" and records[-1]["type"] == "end"
    text = screen.decode(errors="replace")
    redraws = [part for part in text.split("\r") if f"{run_dir.name}: step " in part]
    assert len(redraws) >= 2 and "step 100/100" in text and "NC1 " in text and "test acc " in text
    assert "it/s" in text and "ETA " in text


def test_plain_lines_every_progress_seconds_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, every_seconds=3600, live=False)
    progress(StartRecord(run="r", time=0.0, device="cpu", dataset="d", model="m", num_classes=2, layers=["a"],
                         epochs=2, steps_per_epoch=50, total_steps=100, train_samples=10))
    progress(StepRecord(step=10, epoch=0.2, loss=0.5, lr=0.1, samples_per_s=1.0, elapsed=1.0))
    progress(EvalRecord(step=20, epoch=0.4, elapsed=2.0, geometry={"nc1": 0.25}, test={"acc": 0.875}))
    progress(StepRecord(step=30, epoch=0.6, loss=0.5, lr=0.1, samples_per_s=1.0, elapsed=3.0))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r: step 10/100  ep 0/2")   # none more until an hour has passed
    progress._shown_at = time.monotonic() - 3601
    progress(StepRecord(step=60, epoch=1.2, loss=0.5, lr=0.1, samples_per_s=1.0, elapsed=6.0))
    progress(EndRecord(step=100, status="completed", reason="done", elapsed=9.0))
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("r: step 60/100  ep 1/2") and "NC1 0.25  test acc 87.5%" in lines[1]
    assert lines[2].startswith("r: step 100/100  ep 2/2")   # the end is always shown
