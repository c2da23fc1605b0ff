"""What compare mode knows and what the user chose: the runs (copies fed by the poller's
messages), the keys that vary across them, which runs are shown, pinned or filtered, which
quantity, which layer, which step. Owned by the UI thread; the panes only read it.

Colour and line style follow the varying keys, computed over all runs (not only the shown
ones), so a run keeps its colour while filters change: with one varying key each value has a
colour; with two, the second is the line style when it takes at most three values (a
quantity pair such as gap bound and gap takes the styles for itself), and every other key
combination has a colour.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nctui.analysis.runs import (Condition, RunData, aggregate, final, free_keys, group_runs, hashable, label,
                                 matches, parse_filter, seeds, sort_key, value_of)
from nctui.records import EvalRecord, Record
from nctui.tui.compare.metrics import METRICS, Metric
from nctui.tui.compare.plot import STYLE_MARKS
from nctui.tui.widgets.plot import PALETTE

ENDED = ("completed", "stopped", "diverged", "failed")


@dataclass
class CompareState:
    """The compared runs and the user's choices; `version` grows with every change."""

    runs: list[RunData]
    metric_index: int = 0
    layer: int | None = None      # None: the mean over the hidden layers
    vs_param: bool = False        # the vs-hyperparameter view instead of the time series
    show_seeds: bool = False      # every run its own curve instead of each point's mean and band
    cursor: int = 0               # the selected row of the sidebar
    hidden: set[int] = field(default_factory=set)   # run indices left out of the plots (space)
    pinned: set[int] = field(default_factory=set)   # run indices listed first and never filtered out
    filter_text: str = ""
    conditions: list[Condition] = field(default_factory=list)
    scrub: int | None = None      # the step every run is shown at; None follows the newest
    version: int = 0
    keys: list[str] = field(init=False)   # the varying config keys, in the user's order (`g` rotates)
    _orders: dict = field(default_factory=dict, repr=False)   # sorted value combinations, until the next change

    def __post_init__(self) -> None:
        self.keys = free_keys(self.runs)

    def touch(self) -> None:
        self.version += 1
        self._orders.clear()

    def _order(self, keys: tuple[str, ...]) -> list[tuple]:
        """The distinct combinations of `keys` over all runs, sorted (cached until the next change)."""
        if keys not in self._orders:
            combos = {tuple(hashable(value_of(run, k)) for k in keys) for run in self.runs}
            self._orders[keys] = sorted(combos, key=lambda combo: tuple(map(sort_key, combo)))
        return self._orders[keys]

    # --- records from the poller ----------------------------------------------------------

    def update(self, index: int, records: list[Record], status: str, config: dict | None) -> None:
        """New records and the status of run `index`; its full config once a pending run starts
        (the varying keys are then found again, keeping the user's order)."""
        run = self.runs[index]
        run.add(records)
        run.status = status
        if config is not None:
            run.config, run.seed = config, config.get("seed", run.seed)
            found = free_keys(self.runs)
            self.keys = [k for k in self.keys if k in found] + [k for k in found if k not in self.keys]
        self.touch()

    # --- which runs ------------------------------------------------------------------------

    @property
    def metric(self) -> Metric:
        return METRICS[self.metric_index]

    @property
    def seeds(self) -> list[Any]:
        return seeds(self.runs)

    def values(self, run: RunData) -> tuple:
        return tuple(hashable(value_of(run, key)) for key in self.keys)

    def rows(self) -> list[int]:
        """Run indices as the sidebar lists them: pinned first, then those the filter lets
        through, each by point, then seed."""
        shown = [i for i, run in enumerate(self.runs) if i in self.pinned or matches(run, self.conditions)]
        return sorted(shown, key=lambda i: (i not in self.pinned, tuple(map(sort_key, self.values(self.runs[i]))),
                                            sort_key(hashable(self.runs[i].seed)), i))

    @property
    def selected(self) -> int | None:
        """The run index under the sidebar's cursor."""
        rows = self.rows()
        return rows[min(max(self.cursor, 0), len(rows) - 1)] if rows else None

    def visible(self) -> list[RunData]:
        """The runs the plots show: listed and not hidden, pinned ones last (drawn on top)."""
        rows = [i for i in self.rows() if i not in self.hidden]
        return [self.runs[i] for i in sorted(rows, key=lambda i: i in self.pinned)]

    def set_filter(self, text: str) -> None:
        """Filter the runs (analysis.runs.parse_filter syntax); FilterError leaves it unchanged."""
        self.conditions = parse_filter(text, self.runs)
        self.filter_text = text.strip()
        self.cursor = 0
        self.touch()

    # --- colours and styles ------------------------------------------------------------------

    @property
    def style_key(self) -> str | None:
        """The key drawn as line style: the second varying key, if it takes at most three values
        and the quantity is a single one."""
        if len(self.keys) < 2 or len(self.metric.parts) > 1:
            return None
        return self.keys[1] if len(self._order((self.keys[1],))) <= len(STYLE_MARKS) else None

    @property
    def colour_keys(self) -> list[str]:
        return [key for key in self.keys if key != self.style_key]

    def colour(self, run: RunData) -> str:
        keys = tuple(self.colour_keys)
        return PALETTE[self._order(keys).index(tuple(hashable(value_of(run, k)) for k in keys)) % len(PALETTE)]

    def style(self, run: RunData) -> int:
        key = self.style_key
        return 0 if key is None else self._order((key,)).index((hashable(value_of(run, key)),))

    def point_label(self, run: RunData, keys: list[str] | None = None) -> str:
        """The run's point, e.g. `λ=1e-2`; its name when nothing varies."""
        keys = self.keys if keys is None else keys
        return label(keys, [value_of(run, k) for k in keys]) or run.name

    # --- groups, steps, values -------------------------------------------------------------

    def groups(self) -> list[list[RunData]]:
        """The visible runs by point (same values of every varying key; the seeds of a setting)."""
        return list(group_runs(self.visible(), self.keys).values())

    def paths(self, run: RunData) -> list[tuple]:
        return self.metric.resolve(run, self.layer)

    def eval_steps(self) -> list[int]:
        """Every evaluation step of the visible runs, sorted: where the scrubber stops."""
        return sorted({ev.step for run in self.visible() for ev in run.evals if isinstance(ev.step, int)})

    def value(self, runs: list[RunData], part: int = 0) -> tuple[float | None, float, int]:
        """(mean, std, n) over `runs` of the quantity at the scrubbed step (or the newest)."""
        step = self.scrub if self.scrub is not None else 0
        rows = aggregate([[(step, final(run, self.paths(run)[part], self.scrub))] for run in runs])
        return rows[0][1:] if rows else (None, 0.0, 0)

    # --- the user's moves -------------------------------------------------------------------

    def scrub_by(self, delta: int) -> None:
        """Move every run to the previous / next evaluation step; past the newest follows it again."""
        steps = self.eval_steps()
        if not steps:
            return
        here = len(steps) - 1 if self.scrub is None else max(bisect.bisect_right(steps, self.scrub) - 1, 0)
        index = here + delta
        self.scrub = None if delta > 0 and index >= len(steps) - 1 else steps[min(max(index, 0), len(steps) - 1)]
        self.touch()

    def scrub_to(self, first: bool) -> None:
        steps = self.eval_steps()
        self.scrub = steps[0] if first and steps else None
        self.touch()

    def layer_names(self) -> list[str]:
        """Layer names from the first run that has a start record (else from an evaluation)."""
        for run in self.runs:
            if run.start is not None and run.start.layers:
                return [str(name) for name in run.start.layers]
        for run in self.runs:
            if run.evals:
                return [str(layer.get("name", k)) if isinstance(layer, dict) else str(k)
                        for k, layer in enumerate(run.evals[-1].layers)]
        return []

    def cycle_layer(self, delta: int) -> None:
        """Hidden mean, then each layer, round."""
        choices: list[int | None] = [None, *range(len(self.layer_names()))]
        self.layer = choices[(choices.index(self.layer if self.layer in choices else None) + delta) % len(choices)]
        self.touch()

    def rotate_keys(self) -> None:
        """The next varying key becomes the colour (and the x of the vs-parameter view)."""
        self.keys = self.keys[1:] + self.keys[:1]
        self.touch()

    def status_counts(self) -> Counter:
        return Counter(run.status for run in self.runs)


def eval_at(evals: list[EvalRecord], step: int | None) -> int | None:
    """Index of the last evaluation at or before `step` (None: the newest is followed)."""
    if step is None:
        return None
    below = [i for i, ev in enumerate(evals) if ev.step <= step]
    return below[-1] if below else 0
