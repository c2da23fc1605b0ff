"""The headless front end: metrics.jsonl lines on stdout, human progress on stderr.

Stdout carries exactly the lines of metrics.jsonl (so `| jq` works); stderr gets a live
progress line when it is a terminal (redrawn at most 4 times a second) and otherwise a plain
line every `monitor.progress_seconds`, so a cluster log shows the run moving.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nctui.records import EvalRecord, Record, StartRecord, record_to_json

REDRAW_SECONDS = 0.25


def print_json_line(record: Record) -> None:
    """The stdout watcher: one metrics.jsonl line per record, flushed."""
    print(record_to_json(record), flush=True)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


class ProgressLine:
    """The stderr watcher: step/total, epoch, steps/s, ETA, last NC1 and test accuracy."""

    def __init__(self, stream: TextIO = sys.stderr, every_seconds: float = 30.0, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.interval = REDRAW_SECONDS if self.live else every_seconds
        self.start: StartRecord | None = None
        self.last_eval: EvalRecord | None = None
        self.step = 0
        self._shown_at = -float("inf")
        self._rate_from: tuple[float, int] | None = None   # (monotonic time, step) at the segment's start
        self._width = 0

    def __call__(self, record: Record) -> None:
        if record.type == "start":
            self.start, self.step = record, record.resumed_from or 0
            self._rate_from = (time.monotonic(), self.step)
            return
        if record.type == "eval":
            self.last_eval = record
        step = getattr(record, "step", None)
        if isinstance(step, int):
            self.step = step
        if record.type == "end":
            self._show(force=True)
            if self.live:
                self.stream.write("\n")
                self.stream.flush()
            return
        self._show()

    def text(self) -> str:
        """The progress line as it would be shown now."""
        total = self.start.total_steps if self.start is not None else 0
        parts = [f"step {self.step:,}/{total:,}"]
        if self.start is not None and self.start.steps_per_epoch:
            parts.append(f"ep {self.step // self.start.steps_per_epoch}/{self.start.epochs}")
        if self._rate_from is not None:
            seconds, steps = time.monotonic() - self._rate_from[0], self.step - self._rate_from[1]
            if seconds > 0 and steps > 0:
                rate = steps / seconds
                parts.append(f"{rate:,.0f} it/s")
                parts.append(f"ETA {_duration((total - self.step) / rate)}")
        if self.last_eval is not None:
            nc1 = self.last_eval.geometry.get("nc1")
            acc = self.last_eval.test.get("acc")
            parts.append(f"NC1 {nc1:.3g}" if isinstance(nc1, (int, float)) else "NC1 -")
            parts.append(f"test acc {acc:.1%}" if isinstance(acc, (int, float)) else "test acc -")
        name = self.start.run if self.start is not None else "nctui"
        return f"{name}: " + "  ".join(parts)

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        line = self.text()
        if self.live:   # redraw in place, padding over a longer previous line
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
