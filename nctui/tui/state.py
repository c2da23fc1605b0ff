"""What the app knows about the run: the records seen so far, owned by the UI thread.

Message handlers append records here; panes only read it through a `View`, which adds the
user's choices (which evaluation is selected, which layer) so every pane shows the same
moment of the run.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from nctui.records import EndRecord, EvalRecord, Record, SnapshotRecord, StartRecord, StepRecord, supersedes
from nctui.tui.format import dig, num

Point = tuple[float, "float | None"]


def value_at(record: EvalRecord | None, group: str, *path: str | int) -> Any:
    """record.<group>[path...] of an evaluation, e.g. ("layers", 0, "rank"); None when absent."""
    return None if record is None else dig(getattr(record, group, None), *path)


@dataclass
class RunState:
    """Records received so far.

    `version` grows with every change (a frame redraws only then); `records_version` only
    with records other than steps, so panes that do not plot steps skip the frames that
    merely add a step. Series are cached per path until the next evaluation arrives, and
    step losses and learning rates are kept as points, so a frame costs the same after a
    million steps as after ten.
    """

    start: StartRecord | None = None
    steps: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    end: EndRecord | None = None
    paused: bool = False
    stopping: bool = False
    feed_done: bool = False
    feed_error: str | None = None
    version: int = 0
    records_version: int = 0
    losses: list[Point] = field(default_factory=list)   # (step, loss) of the step records
    lrs: list[Point] = field(default_factory=list)      # (step, lr) of the step records
    _histories: dict[tuple, list[Point]] = field(default_factory=dict, repr=False)

    def add(self, record: Record) -> None:
        """Take one record from the feed; a record whose step is not a number is ignored."""
        if not isinstance(record, StartRecord) and num(getattr(record, "step", None)) is None:
            return
        if isinstance(record, StepRecord):
            self.steps.append(record)
            self.losses.append((float(record.step), num(record.loss)))
            self.lrs.append((float(record.step), num(record.lr)))
            self.touch()
            return
        if isinstance(record, EvalRecord):
            self.evals.append(record)
            self._histories.clear()
        elif isinstance(record, StartRecord):
            self._splice(record)
            self.start = record
        elif isinstance(record, SnapshotRecord):
            self.snapshots.append(record)
        elif isinstance(record, EndRecord):
            self.end = record
            self.paused = False
        self.records_version += 1
        self.touch()

    def _splice(self, start: StartRecord) -> None:
        """A resumed segment supersedes what the run wrote after the step it resumed from
        (records.supersedes, as the run reader splices): drop it, so what is shown while
        following a resume equals what an uninterrupted run shows."""
        if not isinstance(start.resumed_from, int):
            return
        self.steps = [r for r in self.steps if not supersedes(start, r)]
        self.evals = [r for r in self.evals if not supersedes(start, r)]
        self.snapshots = [r for r in self.snapshots if not supersedes(start, r)]
        if self.end is not None:
            self.end = None
        self.losses = [(float(r.step), num(r.loss)) for r in self.steps]
        self.lrs = [(float(r.step), num(r.lr)) for r in self.steps]
        self._histories.clear()

    def touch(self) -> None:
        """Mark the state changed so the next frame redraws."""
        self.version += 1

    @property
    def status(self) -> str:
        """waiting, running, paused, stopping, an end status, or failed (feed crashed)."""
        if self.end is not None:
            return self.end.status
        if self.feed_error is not None:
            return "failed"
        if self.feed_done:
            return "ended" if self.start is not None else "empty"
        if self.stopping:
            return "stopping"
        if self.paused:
            return "paused"
        return "running" if self.start is not None else "waiting"

    @property
    def step(self) -> int | None:
        """The newest optimizer step any record reported."""
        steps = [r.step for r in (self.end, self.latest_step, self.latest_eval) if r is not None]
        return max(steps) if steps else None

    @property
    def elapsed(self) -> float | None:
        """Seconds of training, from the records only (never the wall clock: replays stay fixed)."""
        values = [num(r.elapsed) for r in (self.end, self.latest_step, self.latest_eval) if r is not None]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    @property
    def latest_step(self) -> StepRecord | None:
        return self.steps[-1] if self.steps else None

    @property
    def latest_eval(self) -> EvalRecord | None:
        return self.evals[-1] if self.evals else None

    @property
    def num_classes(self) -> int | None:
        return self.start.num_classes if self.start is not None else None

    def history(self, group: str, *path: str | int) -> list[Point]:
        """(step, value) of one quantity over all evaluations (see `value_at`), cached."""
        key = (group, *path)
        points = self._histories.get(key)
        if points is None:
            points = [(float(ev.step), num(value_at(ev, group, *path))) for ev in self.evals]
            self._histories[key] = points
        return points

    def config(self, *path: str) -> Any:
        """A value of the resolved config in the start record, or None."""
        return dig(self.start.config, *path) if self.start is not None else None

    def layer_names(self) -> list[str]:
        """Layer names from the start record, else from the newest evaluation."""
        if self.start is not None and self.start.layers:
            return [str(name) for name in self.start.layers]
        layers = self.latest_eval.layers if self.latest_eval is not None else []
        return [str(dig(layer, "name") or f"layer {i + 1}") for i, layer in enumerate(layers)]


@dataclass(frozen=True)
class View:
    """The state as the user is looking at it: one selected evaluation and one layer."""

    state: RunState
    cursor: int | None = None   # index of the selected evaluation; None follows the newest
    layer: int = 0              # selected layer in the spectra pane

    @property
    def index(self) -> int | None:
        """The effective selected evaluation index, None when there are no evaluations."""
        count = len(self.state.evals)
        if count == 0:
            return None
        if self.cursor is None:
            return count - 1
        return min(max(self.cursor, 0), count - 1)

    @property
    def current(self) -> EvalRecord | None:
        return None if self.index is None else self.state.evals[self.index]

    @property
    def previous(self) -> EvalRecord | None:
        """The evaluation before the selected one: the reference for trend arrows."""
        return None if not self.index else self.state.evals[self.index - 1]

    @property
    def marker(self) -> float | None:
        """Step to mark on history plots: only while scrubbing away from the newest."""
        return None if self.cursor is None or self.current is None else float(self.current.step)

    @property
    def step_record(self) -> StepRecord | None:
        """The newest step record at or before the selected moment."""
        steps = self.state.steps
        if self.marker is None:
            return steps[-1] if steps else None
        i = bisect.bisect_right(steps, self.marker, key=lambda r: r.step)
        return steps[i - 1] if i else None

    def pair(self, group: str, *path: str | int) -> tuple[Any, Any]:
        """(selected, previous) values of one quantity, for a summary item with a trend arrow."""
        return value_at(self.current, group, *path), value_at(self.previous, group, *path)

    def layer_count(self) -> int:
        """Number of layers, from the start record or the selected evaluation."""
        current = self.current
        return max(len(self.state.layer_names()), len(current.layers) if current is not None else 0)

    @property
    def layer_index(self) -> int:
        """The selected layer, wrapped into the layers there are."""
        count = self.layer_count()
        return self.layer % count if count else 0

    def layer_name(self, k: int) -> str:
        names = self.state.layer_names()
        name = dig(self.current.layers, k, "name") if self.current is not None else None
        return str(name) if name is not None else (names[k] if k < len(names) else f"layer {k + 1}")
