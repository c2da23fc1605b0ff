"""A sweep's progress for the person who started it: a live table on a terminal, plain lines
otherwise (one as each point starts and ends, and a summary every so often). Numbers come from
each run's metrics.jsonl, read incrementally."""

from __future__ import annotations

import collections
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nctui.store.reader import RunReader
from nctui.store.rundir import RunDirError

STATUS_STYLES = {"completed": "green", "running": "cyan", "diverged": "yellow", "stopped": "yellow",
                 "failed": "red", "killed": "red", "pending": "dim"}


@dataclass
class Row:
    """One point as the display shows it."""

    index: int
    name: str
    status: str = "pending"
    step: int = 0
    total: int | None = None
    nc1: float | None = None
    rank: float | None = None        # mean rank of the hidden layers (all but the classifier)
    test_acc: float | None = None
    detail: str = ""
    pack: str = ""                   # "2": trained in the sweep's second pack (sweep/packing.py); "" alone


class Follower:
    """Reads one run's new records on each `update` and copies its progress into a Row."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.reader: RunReader | None = None

    def update(self, row: Row) -> None:
        try:
            if self.reader is None:
                self.reader = RunReader(self.run_dir)
            self.reader.poll()
        except RunDirError:   # not created yet, or unreadable: the row keeps what it had
            return
        reader = self.reader
        start = reader.start
        if start is not None and isinstance(start.total_steps, int):
            row.total = start.total_steps
        row.step = reader.step
        evals = reader.evals
        if evals:
            last = evals[-1]
            row.nc1 = _number(last.geometry.get("nc1"))
            ranks = [_number(layer.get("rank")) for layer in last.layers[:-1] if isinstance(layer, dict)]
            ranks = [r for r in ranks if r is not None]
            row.rank = statistics.fmean(ranks) if ranks else None
            row.test_acc = _number(last.test.get("acc"))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def counts(rows: list[Row]) -> str:
    """`2 completed, 1 running, 3 pending`, in a fixed order."""
    tally = collections.Counter(row.status for row in rows)
    order = [s for s in STATUS_STYLES if tally[s]] + sorted(s for s in tally if s not in STATUS_STYLES)
    return ", ".join(f"{tally[s]} {s}" for s in order)


def _numbers(row: Row) -> str:
    """`step 120/300, nc1 0.035, rank 12.3, test acc 0.998`, with what is known."""
    parts = [f"step {row.step}/{row.total if row.total is not None else '?'}"]
    if row.nc1 is not None:
        parts.append(f"nc1 {row.nc1:.3g}")
    if row.rank is not None:
        parts.append(f"rank {row.rank:.3g}")
    if row.test_acc is not None:
        parts.append(f"test acc {row.test_acc:.3f}")
    return ", ".join(parts)


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class PlainDisplay:
    """Lines on a stream that is not a terminal (a log file, a pipe, a cluster job's output)."""

    def __init__(self, stream: TextIO, summary_seconds: float = 30.0) -> None:
        self.stream = stream
        self.summary_seconds = summary_seconds
        self._t0 = self._last_summary = time.monotonic()

    def _say(self, line: str) -> None:
        print(f"nctui: sweep: {line}", file=self.stream, flush=True)

    def started(self, row: Row, verb: str, total: int) -> None:
        packed = f", in pack {row.pack}" if row.pack else ""
        self._say(f"{verb} {row.name} (point {row.index + 1} of {total}{packed})")

    def ended(self, row: Row, seconds: float) -> None:
        detail = f": {row.detail}" if row.detail else ""
        self._say(f"{row.name} {row.status} ({_numbers(row)}; {seconds:.1f} s){detail}")

    def tick(self, rows: list[Row]) -> None:
        now = time.monotonic()
        if now - self._last_summary >= self.summary_seconds:
            self._last_summary = now
            self._say(f"{counts(rows)} ({_elapsed(now - self._t0)})")

    def close(self, rows: list[Row]) -> None:
        pass


class LiveDisplay:
    """A table redrawn in place on a terminal: running points first, then the others by index, as
    many as the terminal has lines for."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self._t0 = time.monotonic()
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.live.start()

    def started(self, row: Row, verb: str, total: int) -> None:
        pass

    def ended(self, row: Row, seconds: float) -> None:
        pass

    def tick(self, rows: list[Row]) -> None:
        self.live.update(self.table(rows), refresh=True)

    def close(self, rows: list[Row]) -> None:
        """The last table stays on the screen; below it, why each point that did not finish ended."""
        self.tick(rows)
        self.live.stop()
        for row in rows:
            if row.detail:
                self.console.print(f"nctui: sweep: {row.name} {row.status}: {row.detail}", markup=False,
                                   highlight=False)

    def table(self, rows: list[Row]) -> Table:
        room = max(3, self.console.size.height - 8)
        shown = sorted(rows, key=lambda r: (r.status != "running", r.index))[:room]
        hidden = len(rows) - len(shown)
        table = Table(title=f"{self.title} · {counts(rows)} · {_elapsed(time.monotonic() - self._t0)}",
                      caption=f"… and {hidden} more" if hidden else None, title_justify="left")
        packed = any(row.pack for row in rows)   # the pack column only when some runs train packed
        headers = ("#", "point", *(("pack",) if packed else ()), "status", "step", "NC1", "hidden rank", "test acc")
        for header in headers:
            table.add_column(header, justify="left" if header in ("point", "status") else "right")
        for row in sorted(shown, key=lambda r: r.index):
            pack = (row.pack or "-",) if packed else ()
            status = Text(row.status, style=STATUS_STYLES.get(row.status, ""))
            table.add_row(str(row.index + 1), row.name, *pack, status,
                          f"{row.step}/{row.total if row.total is not None else '?'}",
                          f"{row.nc1:.3g}" if row.nc1 is not None else "-",
                          f"{row.rank:.3g}" if row.rank is not None else "-",
                          f"{row.test_acc:.3f}" if row.test_acc is not None else "-")
        return table
