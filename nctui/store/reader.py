"""`RunReader`: a run directory as its readers see it (stdlib only).

Every tool that reads a run (open, ls, compare mode, export, plot, verify, serve) reads it
here: run.json once, metrics.jsonl from a byte offset, so following a run being written costs
only the new bytes. A partial last line is held back until its newline arrives (a line being
written is not a torn one); a garbled line is skipped and counted in `warnings`. A resumed
segment's start record supersedes what the earlier segments wrote after its step
(records.splice): `records` is always the run as it continued, never a superseded record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

from nctui.records import EndRecord, EvalRecord, Record, StartRecord, supersedes
from nctui.store.rundir import (METRICS, ReadStats, RunDirError, being_written, check_regular, looks_alive,
                               parse_lines, read_run_json)


class RunReader:
    """One run directory: its run.json, and its records read incrementally and spliced."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.info = read_run_json(self.run_dir)   # RunDirError, naming the file, if it is not a run
        self.name = self.run_dir.resolve().name
        self.config: dict = self.info["config"]
        self.path = self.run_dir / METRICS
        self.records: list[Record] = []
        self.stats = ReadStats()
        self._offset = 0
        self._line = 0
        self._pending = b""

    # --- reading -------------------------------------------------------------------------

    def poll(self) -> list[Record]:
        """The records appended since the last call (all of them the first time), in order.

        Each is also added to `records`; a resumed segment's start record first drops from
        `records` what it supersedes, so a consumer that mirrors `records` applies
        `records.supersedes` the same way (tui.state does).
        """
        check_regular(self.path)
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            raise RunDirError(f"{self.path}: missing (is {self.run_dir} a run directory?)") from None
        except OSError as err:
            raise RunDirError(f"{self.path}: cannot read ({err.strerror})") from None
        self._offset += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        new = []
        for record in parse_lines(iter(lines), self.path, self.stats, self._line + 1):
            if record.type == "start":
                self.records = [r for r in self.records if not supersedes(record, r)]
            self.records.append(record)
            new.append(record)
        self._line += len(lines)
        return new

    @property
    def warnings(self) -> list[str]:
        """What reading skipped, as lines a viewer can show."""
        stats = self.stats
        return [f"skipped {stats.skipped} unreadable line(s) ({stats.first_error})"] if stats.skipped else []

    def read(self) -> RunReader:
        """Read everything there is now, counting a torn last line as skipped when no writer holds the
        run (a killed run's; a line a live writer is still writing is held back); returns self."""
        self.poll()
        if self._pending.strip() and not being_written(self.run_dir):
            self.stats.skipped += 1
            self.stats.first_error = self.stats.first_error or f"{self.path}:{self._line + 1}: torn last line"
            self._pending = b""
        return self

    def follow(self, should_stop: Callable[[], bool], poll: float = 0.25) -> Iterator[Record]:
        """Yield records as they are appended (after those already read), until an end record or
        `should_stop()`."""
        while not should_stop():
            new = self.poll()
            if not new:
                time.sleep(poll)
                continue
            for record in new:
                yield record
                if record.type == "end":
                    return

    # --- what the records say --------------------------------------------------------------

    @property
    def start(self) -> StartRecord | None:
        starts = [r for r in self.records if r.type == "start"]
        return starts[-1] if starts else None

    @property
    def evals(self) -> list[EvalRecord]:
        return [r for r in self.records if r.type == "eval"]

    @property
    def end(self) -> EndRecord | None:
        return self.records[-1] if self.records and self.records[-1].type == "end" else None

    @property
    def step(self) -> int:
        """The newest optimizer step any record reports."""
        return max((r.step for r in self.records if r.type != "start" and isinstance(r.step, int)), default=0)

    def alive(self) -> bool:
        """Whether something still writes this run (its writer's lock, or a recent change)."""
        return looks_alive(self.run_dir)

    @property
    def status(self) -> str:
        """The end record's status; without one "running" while something writes the run, else
        "unfinished" (a killed run: resume it)."""
        if self.end is not None:
            return self.end.status
        return "running" if self.alive() else "unfinished"


def dir_size(path: str | Path) -> int:
    """Bytes in the files of a directory; a file renamed or pruned meanwhile (a live run's snapshot) counts 0."""
    total = 0
    for entry in os.scandir(path):
        try:
            total += entry.stat().st_size if entry.is_file() else 0
        except OSError:
            pass
    return total
