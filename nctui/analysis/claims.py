"""What `nctui verify` judges: the four claims on every run, and the comparative claims of a sweep.

The four claims (collapse, low rank, noise, bound) are judged on each run by
`nctui.analysis.verdicts.judge`, the Overview pane's code. A sweep also tests what the theory
predicts when a key varies (Galanti, Siegel, Gupte, Poggio 2022; Xu et al. 2023; Galanti, Xu,
Galanti, Poggio 2023). A comparative claim applies only when the runs vary its key (the free
keys of `nctui.analysis.runs`); the others are listed as n/a and never counted.

The numbers compared are final values (`runs.final`, the newest evaluation), averaged over the
seeds of a point (a point: the runs that share every free key's value):
  rank      the mean rank of the hidden layers (every layer but the classifier)
  nc1       geometry.nc1
  gap bound bounds.gap_bound_local for a CNN, else bounds.gap_bound_dense
  gap       bounds.gap, the measured test error - train error

Trend claims (rank and NC1 fall as weight decay grows; rank falls with smaller batches; rank
falls with larger learning rates) compare the points pairwise: two points are a pair when they
differ in the claim's key and agree on every other free key, so a grid of lr x weight decay
judges weight decay at each lr. A pair is concordant when the metric moves the predicted way,
discordant when it moves the other way, tied when it is equal; the statistic is Goodman and
Kruskal's gamma = (concordant - discordant) / (concordant + discordant), from -1 to 1, ties
left out. The claim holds when gamma >= `trend_min` (0.6): with three values of the key, every
pair must agree; with five, one pair in ten may disagree. All pairs tied: pending. The batch
size and learning-rate claims compare only runs with weight decay > 0: without it the theory
predicts no rank bias at all (Galanti et al. 2022), so a weight-decay-0 run's rank has no
direction to move in.

The noise claim (the SGD noise does not vanish with weight decay > 0) applies when the runs vary
train.weight_decay: it holds when at least `noise_fraction` (1.0: all) of the runs with weight
decay > 0 whose noise verdict is decided have a drift that is not decaying (verdicts.judge_noise);
the median last/middle-third drift ratio of the runs without weight decay is shown beside it.

The bound claim (the gap bound moves with the measured gap across the varying key) applies when
any key other than the seed varies: the pairs are the points that differ in exactly one free key;
a pair is concordant when the gap bound and the measured gap change in the same direction,
discordant when in opposite ones; holds when gamma >= `trend_min`. A pair whose bound does not
change, or whose gaps differ by less than `gap_resolution` (0.002, two test samples in a
thousand), is tied. When every pair is tied because the measured gap does not change (every run
generalises alike, as on an easy data set), there is no gap to follow: n/a, not counted.

Which verdicts count for the exit code: when the runs vary a config key (a sweep), the
applicable comparative claims; the four claims of each run are shown beside them, not counted,
because a sweep deliberately holds settings where the theory predicts that a claim does not
hold (no weight decay, a large batch, a small learning rate: the contrast the comparative claims
judge). When the runs vary nothing but the seed (one run, or the seeds of one setting), the four
claims of every run count. A pending verdict (too little evidence) counts as not holding;
`skip` leaves a claim out.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from nctui.analysis.runs import RunData, final, format_value, free_keys, group_runs, short_key, value_of
from nctui.analysis.verdicts import (CLAIMS, FAILS, HOLDS, MARKS, PENDING, Thresholds, Verdict, gap_bound_kind, judge,
                                     judge_noise)

NOT_APPLICABLE = "n/a"
WEIGHT_DECAY = "train.weight_decay"
Number = float | int | str | bool | None


@dataclass(frozen=True)
class ComparativeThresholds:
    """The thresholds of the comparative claims (module docstring); `dataclasses.replace` to change one."""

    trend_min: float = 0.6           # gamma of the pairs must reach this
    noise_fraction: float = 1.0      # fraction of the runs with weight decay > 0 whose noise must stay
    gap_resolution: float = 0.002    # measured gaps closer than this are equal (a pair tied)


DEFAULT_COMPARATIVE = ComparativeThresholds()


@dataclass(frozen=True)
class Trend:
    """A trend claim: `metric` moves `direction` (-1 falls, +1 grows) as `key` grows."""

    id: str
    title: str
    key: str
    metric: str
    direction: int


TRENDS = (
    Trend("rank-weight-decay", "rank falls as weight decay grows", WEIGHT_DECAY, "rank", -1),
    Trend("nc1-weight-decay", "NC1 falls as weight decay grows", WEIGHT_DECAY, "nc1", -1),
    Trend("rank-batch-size", "rank falls with smaller batches", "train.batch_size", "rank", +1),
    Trend("rank-lr", "rank falls with larger learning rates", "train.lr", "rank", -1),
)
NOISE_ID, BOUND_ID = "noise-weight-decay", "bound-gap"
COMPARATIVE_IDS = (*(t.id for t in TRENDS), NOISE_ID, BOUND_ID)
METRIC_NAMES = {"rank": "mean hidden rank", "nc1": "NC1"}


@dataclass(frozen=True)
class Comparison:
    """One comparative claim judged on the runs: status holds, fails, pending or n/a."""

    id: str
    title: str
    status: str
    text: str
    rule: str
    numbers: dict[str, Number] = field(default_factory=dict)

    @property
    def applies(self) -> bool:
        return self.status != NOT_APPLICABLE

    @property
    def holds(self) -> bool:
        return self.status == HOLDS

    @property
    def mark(self) -> str:
        return MARKS.get(self.status, "–")


@dataclass(frozen=True)
class RunVerdicts:
    """The four verdicts of one run."""

    run: RunData
    verdicts: list[Verdict]


@dataclass(frozen=True)
class Report:
    """Everything `nctui verify` prints: per-run verdicts, comparative claims, what counted."""

    runs: list[RunVerdicts]
    comparisons: list[Comparison]
    free: list[str]
    skipped: tuple[str, ...] = ()

    @property
    def compares(self) -> bool:
        """Whether the runs vary a config key, so that the comparative claims decide."""
        return bool(self.free)

    def counted(self) -> list[Verdict | Comparison]:
        """The verdicts the exit code is decided on (module docstring)."""
        if self.compares:
            return [c for c in self.comparisons if c.applies and c.id not in self.skipped]
        return [v for r in self.runs for v in r.verdicts if v.claim not in self.skipped]

    @property
    def holds(self) -> bool:
        """True when every counted verdict holds (vacuously when none counts)."""
        return all(v.holds for v in self.counted())


# --- the numbers compared ----------------------------------------------------------------------


def gap_bound_final(run: RunData) -> float | None:
    """The run's final gap bound, local for a CNN, else dense (the bound claim's choice)."""
    return final(run, ("bounds", f"gap_bound_{gap_bound_kind(run.evals)}"))


def final_metric(run: RunData, metric: str) -> float | None:
    """rank (mean over the hidden layers), nc1, gap_bound or gap at the run's newest evaluation."""
    if metric == "gap_bound":
        return gap_bound_final(run)
    path = {"rank": ("layers", "hidden", "rank"), "nc1": ("geometry", "nc1"), "gap": ("bounds", "gap")}[metric]
    return final(run, path)


def point_means(runs: Sequence[RunData], keys: Sequence[str], metric: str) -> dict[tuple, float]:
    """Seed mean of a final metric per point (the free keys' values); points without a value left out."""
    means = {}
    for values, members in group_runs(runs, keys).items():
        present = [x for x in (final_metric(run, metric) for run in members) if x is not None]
        if present:
            means[values] = statistics.fmean(present)
    return means


def gamma(concordant: int, discordant: int) -> float | None:
    """Goodman and Kruskal's gamma; None when every pair is tied."""
    decided = concordant + discordant
    return (concordant - discordant) / decided if decided else None


def _orderable(value: Any) -> tuple[float, ...] | None:
    """A key's value as something to order by: a number, or a list of numbers (channels [200, 200])."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (float(value),)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                           for v in value):
        return tuple(float(v) for v in value)
    return None


# --- trend claims --------------------------------------------------------------------------------


def judge_trend(trend: Trend, runs: Sequence[RunData], free: Sequence[str],
                thresholds: ComparativeThresholds = DEFAULT_COMPARATIVE) -> Comparison:
    """Does the metric move the predicted way as the key grows, at fixed values of the other keys?"""
    t = thresholds
    rule = f"gamma of the pairs of points differing only in {short_key(trend.key)} ≥ {t.trend_min:g}"
    if trend.key not in free:
        return Comparison(trend.id, trend.title, NOT_APPLICABLE, f"the runs do not vary {trend.key}", rule)
    index = list(free).index(trend.key)
    if trend.key != WEIGHT_DECAY:
        runs = [run for run in runs if value_of(run, WEIGHT_DECAY) != 0]
    means = point_means(runs, free, trend.metric)
    if any(_orderable(values[index]) is None for values in means):
        return Comparison(trend.id, trend.title, NOT_APPLICABLE, f"{trend.key} is not a number", rule)
    concordant = discordant = ties = 0
    for (a, ya), (b, yb) in itertools.combinations(means.items(), 2):
        if a[index] == b[index] or any(a[k] != b[k] for k in range(len(a)) if k != index):
            continue
        if _orderable(a[index]) > _orderable(b[index]):
            ya, yb = yb, ya
        change = (yb - ya) * trend.direction    # > 0: moved as predicted from the smaller key to the larger
        concordant, discordant, ties = concordant + (change > 0), discordant + (change < 0), ties + (change == 0)
    ends = _ends(means, index)
    numbers: dict[str, Number] = {"key": trend.key, "metric": trend.metric, "concordant": concordant,
                                  "discordant": discordant, "ties": ties, "points": len(means), **ends}
    g = gamma(concordant, discordant)
    numbers["gamma"] = g
    pairs = concordant + discordant + ties
    if g is None:
        what = "no pair of points" if pairs == 0 else f"all {pairs} pairs tied"
        return Comparison(trend.id, trend.title, PENDING, f"{what} ({len(means)} points with a {trend.metric})",
                          rule, numbers)
    text = f"gamma {g:+.2f} over {pairs} pair{'s' if pairs != 1 else ''} ({concordant} agree, {discordant} disagree"
    text += f", {ties} tied)" if ties else ")"
    if ends:
        text += (f"; {METRIC_NAMES.get(trend.metric, trend.metric)} {_fmt(ends['first'])} at "
                 f"{short_key(trend.key)}={format_value(ends['first_value'])} → {_fmt(ends['last'])} at "
                 f"{format_value(ends['last_value'])}")
    return Comparison(trend.id, trend.title, HOLDS if g >= t.trend_min else FAILS, text, rule, numbers)


def _ends(means: dict[tuple, float], index: int) -> dict[str, Number]:
    """The metric at the smallest and the largest value of the key, averaged over the other keys."""
    by_value: dict[tuple, list[float]] = {}
    raw: dict[tuple, Any] = {}
    for values, y in means.items():
        key = _orderable(values[index])
        by_value.setdefault(key, []).append(y)
        raw[key] = values[index]
    if len(by_value) < 2:
        return {}
    low, high = min(by_value), max(by_value)
    return {"first_value": _plain(raw[low]), "first": statistics.fmean(by_value[low]),
            "last_value": _plain(raw[high]), "last": statistics.fmean(by_value[high])}


def _plain(value: Any) -> Number:
    """A key's value as a JSON-able number or text (tuples from `hashable` back to a label)."""
    return value if isinstance(value, (int, float, str)) else format_value(list(value))


# --- noise ---------------------------------------------------------------------------------------


def judge_noise_with_weight_decay(runs: Sequence[RunData], free: Sequence[str],
                                  thresholds: ComparativeThresholds = DEFAULT_COMPARATIVE,
                                  run_thresholds: Thresholds = Thresholds()) -> Comparison:
    """With weight decay > 0 every run keeps its SGD noise (its drift is not decaying)."""
    t = thresholds
    title = "the noise does not vanish with weight decay > 0"
    rule = (f"≥ {t.noise_fraction:.0%} of the runs with weight decay > 0 keep a drift that is not decaying "
            f"(last/middle-third ratio ≥ {run_thresholds.noise_ratio:g})")
    if WEIGHT_DECAY not in free:
        return Comparison(NOISE_ID, title, NOT_APPLICABLE, f"the runs do not vary {WEIGHT_DECAY}", rule)
    with_wd, without = [], []
    for run in runs:
        wd = value_of(run, WEIGHT_DECAY)
        if isinstance(wd, (int, float)) and not isinstance(wd, bool):
            verdict = judge_noise(run.evals, run.config, run_thresholds)
            (with_wd if wd > 0 else without).append(verdict)
    decided = [v for v in with_wd if v.status != PENDING]
    staying = [v for v in decided if v.holds]
    ratios = [v.numbers["ratio"] for v in decided if isinstance(v.numbers.get("ratio"), (int, float))]
    control = [v.numbers["ratio"] for v in without if isinstance(v.numbers.get("ratio"), (int, float))]
    numbers: dict[str, Number] = {
        "runs": len(with_wd), "decided": len(decided), "staying": len(staying),
        "min_ratio": min(ratios) if ratios else None,
        "control_median_ratio": statistics.median(control) if control else None,
    }
    if not decided:
        return Comparison(NOISE_ID, title, PENDING, f"no run with weight decay > 0 has a decided noise verdict "
                          f"({len(with_wd)} runs)", rule, numbers)
    fraction = len(staying) / len(decided)
    text = f"{len(staying)}/{len(decided)} runs with weight decay keep their noise"
    if ratios:
        text += f" (drift ratio ≥ {_fmt(min(ratios))})"
    if control:
        text += f"; without weight decay the drift ratio is {_fmt(statistics.median(control))}"
    return Comparison(NOISE_ID, title, HOLDS if fraction >= t.noise_fraction else FAILS, text, rule, numbers)


# --- bound vs gap --------------------------------------------------------------------------------


def judge_bound_tracks_gap(runs: Sequence[RunData], free: Sequence[str],
                           thresholds: ComparativeThresholds = DEFAULT_COMPARATIVE) -> Comparison:
    """Across points that differ in one key, the gap bound and the measured gap move together."""
    t = thresholds
    title = "the gap bound moves with the measured gap"
    rule = (f"gamma of (Δ gap bound, Δ gap) over the pairs of points differing in one key ≥ {t.trend_min:g}; "
            f"gaps within {t.gap_resolution:g} tie")
    if not free:
        return Comparison(BOUND_ID, title, NOT_APPLICABLE, "the runs vary no key but the seed", rule)
    bounds, gaps = point_means(runs, free, "gap_bound"), point_means(runs, free, "gap")
    points = {k: (bounds[k], gaps[k]) for k in bounds if k in gaps}
    concordant = discordant = ties = flat_gap = 0
    for (a, (ba, ga)), (b, (bb, gb)) in itertools.combinations(points.items(), 2):
        if sum(x != y for x, y in zip(a, b)) != 1:
            continue
        flat_gap += abs(gb - ga) < t.gap_resolution
        product = (bb - ba) * (gb - ga) if abs(gb - ga) >= t.gap_resolution else 0.0
        concordant, discordant, ties = concordant + (product > 0), discordant + (product < 0), ties + (product == 0)
    g = gamma(concordant, discordant)
    gaps = [gap for _, gap in points.values()]
    numbers: dict[str, Number] = {"concordant": concordant, "discordant": discordant, "ties": ties,
                                  "points": len(points), "gamma": g, "min_gap": min(gaps, default=None),
                                  "max_gap": max(gaps, default=None)}
    pairs = concordant + discordant + ties
    if g is None and pairs and flat_gap == pairs:
        return Comparison(BOUND_ID, title, NOT_APPLICABLE,
                          f"the measured gap does not change across the runs ({_fmt(min(gaps))} to {_fmt(max(gaps))}, "
                          f"within {t.gap_resolution:g}): no gap for the bound to follow", rule, numbers)
    if g is None:
        what = "no pair of points" if pairs == 0 else f"all {pairs} pairs tied (the bound does not change)"
        return Comparison(BOUND_ID, title, PENDING, f"{what}; {len(points)} points with a gap bound and a gap",
                          rule, numbers)
    text = f"gamma {g:+.2f} over {pairs} pair{'s' if pairs != 1 else ''} ({concordant} agree, {discordant} disagree"
    text += f", {ties} tied)" if ties else ")"
    return Comparison(BOUND_ID, title, HOLDS if g >= t.trend_min else FAILS, text, rule, numbers)


# --- the report ----------------------------------------------------------------------------------


def judge_sweep(runs: Sequence[RunData], thresholds: ComparativeThresholds = DEFAULT_COMPARATIVE,
                run_thresholds: Thresholds = Thresholds()) -> list[Comparison]:
    """Every comparative claim, in COMPARATIVE_IDS order (n/a where the runs do not vary its key)."""
    free = free_keys(runs)
    return [*(judge_trend(trend, runs, free, thresholds) for trend in TRENDS),
            judge_noise_with_weight_decay(runs, free, thresholds, run_thresholds),
            judge_bound_tracks_gap(runs, free, thresholds)]


def build_report(runs: Sequence[RunData], thresholds: Thresholds = Thresholds(),
                 comparative: ComparativeThresholds = DEFAULT_COMPARATIVE, skip: Sequence[str] = ()) -> Report:
    """The four claims on every run and the comparative claims on all of them together."""
    free = free_keys(runs)
    per_run = [RunVerdicts(run, judge(run.evals, run.start, thresholds)) for run in runs]
    comparisons = judge_sweep(runs, comparative, thresholds) if len(runs) > 1 else []
    return Report(per_run, comparisons, free, tuple(skip))


SKIPPABLE = (*CLAIMS, *COMPARATIVE_IDS)


def parse_thresholds(items: Sequence[str]) -> tuple[Thresholds, ComparativeThresholds]:
    """`name=value` items (fields of verdicts.Thresholds and ComparativeThresholds) applied to the
    defaults; ValueError with one line naming the item and the known names."""
    run_fields = {f.name: f for f in dataclasses.fields(Thresholds)}
    sweep_fields = {f.name: f for f in dataclasses.fields(ComparativeThresholds)}
    run_changes: dict[str, Any] = {}
    sweep_changes: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        spec = run_fields.get(name) or sweep_fields.get(name)
        if not sep or spec is None:
            known = ", ".join([*run_fields, *sweep_fields])
            raise ValueError(f"--threshold {item!r}: expected NAME=VALUE with NAME one of {known}")
        try:
            value = int(text) if spec.type in (int, "int") else float(text)
        except ValueError:
            raise ValueError(f"--threshold {item!r}: {text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--threshold {item!r}: must be a finite number >= 0")
        (run_changes if name in run_fields else sweep_changes)[name] = value
    return Thresholds(**run_changes), ComparativeThresholds(**sweep_changes)


def report_json(report: Report, thresholds: Thresholds, comparative: ComparativeThresholds) -> dict:
    """The report as JSON-able data (`nctui verify --json`)."""
    counted = {id(v) for v in report.counted()}
    return {
        "holds": report.holds,
        "free_keys": report.free,
        "skipped": list(report.skipped),
        "thresholds": {**dataclasses.asdict(thresholds), **dataclasses.asdict(comparative)},
        "runs": [{"run": r.run.name, "path": str(r.run.path), "values": r.run.values, "status": r.run.status,
                  "verdicts": [{"claim": v.claim, "status": v.status, "counted": id(v) in counted, "text": v.text,
                                "rule": v.rule, "numbers": _json_numbers(v.numbers)} for v in r.verdicts]}
                 for r in report.runs],
        "comparative": [{"id": c.id, "claim": c.title, "status": c.status, "counted": id(c) in counted,
                         "text": c.text, "rule": c.rule, "numbers": _json_numbers(c.numbers)}
                        for c in report.comparisons],
    }


def report_table(report: Report) -> str:
    """The report as an aligned text table, then the rules behind the verdicts."""
    rows = [("run", "claim", "verdict", "the numbers behind it")]
    for r in report.runs:
        name = r.run.name
        for v in r.verdicts:
            status = v.status + (" (skipped)" if v.claim in report.skipped else "")
            rows.append((name, v.claim, f"{v.mark} {status}", v.text))
            name = ""
    if report.comparisons:
        rows.append(("", "", "", ""))
        for c in report.comparisons:
            status = c.status + (" (skipped)" if c.id in report.skipped else "")
            rows.append(("sweep", c.title, f"{c.mark} {status}", c.text))
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3]]).rstrip() for row in rows]
    rules = {v.claim: v.rule for r in report.runs for v in r.verdicts}
    rules.update({c.title: c.rule for c in report.comparisons if c.applies})
    lines += ["", "rules:"] + [f"  {claim}: {rule}" for claim, rule in rules.items()]
    if report.compares:
        lines.append(f"  the runs vary {', '.join(report.free)}: the comparative claims decide; "
                     "the four claims of each run are shown, not counted")
    counted = report.counted()
    failing = sum(not v.holds for v in counted)
    lines.append(f"{len(counted) - failing}/{len(counted)} counted verdicts hold")
    return "\n".join(lines)


def _json_numbers(numbers: dict[str, Number]) -> dict[str, Number]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in numbers.items()}


def _fmt(x: float | None) -> str:
    """Two significant digits (0.035, 4.2, 250)."""
    if x is None:
        return "–"
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}" if abs(x) >= 10 else f"{x:.2g}"
    return f"{x:.1e}"
