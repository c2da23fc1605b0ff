"""Where a trainer's output goes: one sink, handed to the trainer once.

A sink takes records (`record`) and snapshots (`snapshot`, which returns the file name it
wrote, or None when it keeps none). The runner builds the one sink a run has: a `Tee` of the
run writer (which stores records and snapshots) and the watchers that only see records (the
TUI's `record`, the stdout JSON lines, the stderr progress line).
"""

from __future__ import annotations

from typing import Callable, Protocol

from nctui.records import Checkpoint, Record

Watcher = Callable[[Record], None]


class Sink(Protocol):
    def record(self, record: Record) -> None: ...

    def snapshot(self, checkpoint: Checkpoint) -> str | None: ...


class Tee:
    """Records to the store first (so what is shown is what was written), then to each watcher;
    snapshots to the store only."""

    def __init__(self, store: Sink, *watchers: Watcher) -> None:
        self.store, self.watchers = store, watchers

    def record(self, record: Record) -> None:
        self.store.record(record)
        for watch in self.watchers:
            watch(record)

    def snapshot(self, checkpoint: Checkpoint) -> str | None:
        return self.store.snapshot(checkpoint)


class NullSink:
    """Keeps nothing: for benchmarks and tests that only drive the loop."""

    def record(self, record: Record) -> None:
        pass

    def snapshot(self, checkpoint: Checkpoint) -> str | None:
        return None


class ListSink(NullSink):
    """Keeps the records in a list: for tests and tools that read a run in process."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def record(self, record: Record) -> None:
        self.records.append(record)
