"""The four claims of Xu et al. (2023), judged on one run's evaluation records.

Each claim gets a `Verdict`: holds, fails, or pending (too little evidence yet). The Overview
pane, `nctui verify` and the claims figure call `judge`, so they always say the same thing.
The rules, with the defaults of `Thresholds` (every number below is a field there):

- collapse (Papyan, Han, Donoho 2020): holds when NC1 (geometry.nc1) at the newest
  evaluation is at least `collapse_factor` (10) times below NC1 at the first evaluation, and
  NC4 (the nearest class mean disagrees with the classifier) is at most `collapse_nc4` (0.05).
  A run that recorded no NC4 is judged on NC1 alone.
- low rank (Galanti, Siegel, Gupte, Poggio 2022): on the hidden layers (every layer but the
  classifier), holds when the mean of their newest ranks (layers[k].rank) is at most
  `rank_multiple` (3) times C, and at most `rank_fraction` (0.5) of the mean of min(out, in)
  (the length of layers[k].sv): the rank ends near C and well below what the matrices could
  hold, so a layer narrower than 3C cannot pass by its width alone. Without C (no start
  record) or without the singular values, the condition that needs them is left out.
- noise (Galanti et al. 2022): the drift per step ||W_k(t) - W_k(t')||_F / ||W_k(t')||_F,
  averaged over the layers, divided by the learning rate in force at each evaluation (from
  the config's train.lr, milestones and lr_decay, so a step of the schedule is not read as
  decay; the raw drift when the config gives no lr). The steps from the first to the newest
  evaluation are cut in thirds (by step, not by count, so the log-spaced early evaluations do
  not fill the middle third); holds when weight decay is > 0 and the median over the last
  third is at least `noise_ratio` (0.5) times the median over the middle third: the noise
  is not decaying towards 0. With weight decay 0 the theory predicts
  that the drift decays, and the claim (noise that stays because of weight decay) fails
  whatever the drift does; the text says which way it went. A config without
  train.weight_decay is judged on the drift alone. Pending until both thirds hold a drift.
- bound (Galanti, Xu, Galanti, Poggio 2023): the gap bound, bounds.gap_bound_local for a
  CNN, else bounds.gap_bound_dense, at the newest evaluation that has one; holds when it is
  below `bound_max` (1): the bound is non-vacuous. The text gives its log2 beside the
  measured gap (test error - train error). A run recorded before gap bounds existed stays
  pending.

Every claim is pending until `min_evals` (3) evaluations carry its quantity. A number that is
None, NaN, infinite or not a number is skipped, never raised on: a diverged run or an old
record yields pending or failing verdicts, not an error.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from nctui.records import EvalRecord, StartRecord

CLAIMS = ("collapse", "low rank", "noise", "bound")
HOLDS, FAILS, PENDING = "holds", "fails", "pending"
MARKS = {HOLDS: "✔", FAILS: "✗", PENDING: "…"}

Number = float | int | str | bool | None
Point = tuple[float, float | None]


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the rules in the module docstring; `dataclasses.replace` to change one."""

    min_evals: int = 3               # fewer evaluations carrying a claim's quantity: pending
    collapse_factor: float = 10.0    # NC1 first / NC1 newest must reach this
    collapse_nc4: float = 0.05       # NC4 at the newest evaluation at most this
    rank_multiple: float = 3.0       # mean newest hidden rank <= this * C
    rank_fraction: float = 0.5       # mean newest hidden rank <= this * mean min(out, in)
    noise_ratio: float = 0.5         # last-third median drift / middle-third median at least this
    bound_max: float = 1.0           # the gap bound must be below this (1: non-vacuous)


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Verdict:
    """One claim judged: its status, one line with the numbers, and the numbers themselves."""

    claim: str                       # one of CLAIMS
    status: str                      # HOLDS, FAILS or PENDING
    text: str                        # one line with the numbers, without the claim's name
    rule: str                        # the rule and its thresholds, one line
    numbers: dict[str, Number] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """✔ holds, ✗ fails, … pending."""
        return MARKS[self.status]

    @property
    def holds(self) -> bool:
        return self.status == HOLDS

    def line(self) -> str:
        """The verdict as one line: mark, claim, text."""
        return f"{self.mark} {self.claim}: {self.text}"


def judge(evals: Sequence[EvalRecord], start: StartRecord | None = None,
          thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Verdict]:
    """The four verdicts, in CLAIMS order, on the evaluations so far (C and the config from `start`)."""
    config = start.config if start is not None and isinstance(start.config, dict) else {}
    num_classes = _finite(start.num_classes) if start is not None else None
    return [
        judge_collapse(evals, thresholds),
        judge_low_rank(evals, int(num_classes) if num_classes and num_classes > 0 else None, thresholds),
        judge_noise(evals, config, thresholds),
        judge_bound(evals, thresholds),
    ]


def all_hold(verdicts: Sequence[Verdict]) -> bool:
    """True when every verdict holds (what `nctui verify` exits 0 on)."""
    return bool(verdicts) and all(v.holds for v in verdicts)


# --- collapse -------------------------------------------------------------------------------


def judge_collapse(evals: Sequence[EvalRecord], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """NC1 fell by collapse_factor from the first evaluation, and NC4 is small."""
    t = thresholds
    rule = f"NC1 falls ≥ {t.collapse_factor:g}× from the first evaluation and NC4 ≤ {t.collapse_nc4:g}"
    nc1 = _present(_series(evals, "geometry", "nc1"))
    if len(nc1) < t.min_evals:
        return _pending("collapse", rule, len(nc1), t.min_evals, "NC1")
    (_, first), (step, last) = nc1[0], nc1[-1]
    factor = first / last if last > 0 else (math.inf if first > 0 else None)
    nc4 = _last_present(_series(evals, "geometry", "nc4"))
    fell = factor is not None and factor >= t.collapse_factor
    small_nc4 = nc4 is None or nc4 <= t.collapse_nc4
    factor_text = "∞" if factor == math.inf else "–" if factor is None else _fmt(factor)
    text = f"NC1 {_fmt(first)} → {_fmt(last)} ({factor_text}×"
    text += ")" if fell else f", needs {t.collapse_factor:g}×)"
    if nc4 is not None:
        text += f", NC4 {_fmt(nc4)}" + ("" if small_nc4 else f" > {t.collapse_nc4:g}")
    numbers: dict[str, Number] = {
        "nc1_first": first, "nc1": last, "factor": factor if factor != math.inf else None,
        "nc4": nc4, "evals": len(nc1), "step": step,
    }
    return Verdict("collapse", HOLDS if fell and small_nc4 else FAILS, text, rule, numbers)


# --- low rank -------------------------------------------------------------------------------


def hidden_layer_names(evals: Sequence[EvalRecord]) -> list[str]:
    """Names of the hidden layers (all but the classifier) of the newest evaluation with layers."""
    for ev in reversed(evals):
        layers = ev.layers if isinstance(ev.layers, list) else []
        if layers:
            return [_layer_name(layer, k) for k, layer in enumerate(layers[:-1])]
    return []


def judge_low_rank(evals: Sequence[EvalRecord], num_classes: int | None,
                   thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """The hidden layers' mean rank ends near C and well below min(out, in)."""
    t = thresholds
    rule = (f"mean hidden rank ≤ {t.rank_multiple:g}·C and ≤ {t.rank_fraction:g}·min(out, in)")
    names = hidden_layer_names(evals)
    if not names:
        return Verdict("low rank", PENDING, "no hidden layer recorded yet", rule, {"evals": 0})
    ranked = [(ev, ranks) for ev in evals if (ranks := _hidden_ranks(ev, len(names))) is not None]
    if len(ranked) < t.min_evals:
        return _pending("low rank", rule, len(ranked), t.min_evals, "ranks")
    (_, first), (newest, last) = ranked[0], ranked[-1]
    full = [_sv_length(newest, k) for k in range(len(names))]
    mean_last = statistics.fmean(last)
    known_full = [f for f in full if f is not None]
    mean_full = statistics.fmean(known_full) if len(known_full) == len(full) else None
    near_c = num_classes is None or mean_last <= t.rank_multiple * num_classes
    below_full = mean_full is None or mean_last <= t.rank_fraction * mean_full
    text = _rank_text(names, first, last)
    if num_classes is not None:
        text += f" (C = {num_classes})"
    if not near_c:
        text += f", mean {_fmt(mean_last)} > {t.rank_multiple:g}C"
    elif not below_full:
        text += f", mean {_fmt(mean_last)} > {t.rank_fraction:g}·{_fmt(mean_full)}"
    numbers: dict[str, Number] = {
        "num_classes": num_classes, "mean_rank_first": statistics.fmean(first), "mean_rank": mean_last,
        "mean_full": mean_full, "evals": len(ranked), "step": newest.step,
    }
    for name, r0, r1, f in zip(names, first, last, full):
        numbers.update({f"{name}.rank_first": r0, f"{name}.rank": r1, f"{name}.full": f})
    return Verdict("low rank", HOLDS if near_c and below_full else FAILS, text, rule, numbers)


def _hidden_ranks(ev: EvalRecord, count: int) -> list[float] | None:
    """The ranks of the first `count` layers, or None unless every one is a number."""
    layers = ev.layers if isinstance(ev.layers, list) else []
    if len(layers) <= count:
        return None
    ranks = [_finite(_dig(layers[k], "rank")) for k in range(count)]
    return None if any(r is None for r in ranks) else ranks  # type: ignore[return-value]


def _sv_length(ev: EvalRecord, k: int) -> int | None:
    """min(out, in) of layer k: the number of its singular values."""
    sv = _dig(ev.layers, k, "sv")
    return len(sv) if isinstance(sv, list) and sv else None


def _rank_text(names: list[str], first: list[float], last: list[float]) -> str:
    """'fc1 256 → 11, fc2 → 8': a layer's first rank is left out when it equals the one before."""
    parts, previous = [], None
    for name, r0, r1 in zip(names, first, last):
        parts.append(f"{name} → {_fmt(r1)}" if r0 == previous else f"{name} {_fmt(r0)} → {_fmt(r1)}")
        previous = r0
    return ", ".join(parts)


# --- noise ----------------------------------------------------------------------------------


def drift_series(evals: Sequence[EvalRecord]) -> list[Point]:
    """(step, drift per step averaged over the layers) of every evaluation; None where no layer has one."""
    points: list[Point] = []
    for ev in evals:
        layers = ev.layers if isinstance(ev.layers, list) else []
        drifts = [d for d in (_finite(_dig(layer, "drift")) for layer in layers) if d is not None]
        points.append((_step(ev), statistics.fmean(drifts) if drifts else None))
    return points


def lr_at(config: Mapping[str, Any], epoch: float) -> float | None:
    """The learning rate in force at `epoch` under the config's multistep schedule, None when unknown."""
    lr = _finite(_dig(config, "train", "lr"))
    milestones = _dig(config, "train", "milestones")
    milestones = milestones if isinstance(milestones, list) else []
    decay = _finite(_dig(config, "train", "lr_decay")) if milestones else 1.0
    if lr is None or lr <= 0 or decay is None or decay <= 0:
        return None
    passed = sum(1 for m in milestones if _finite(m) is not None and math.floor(epoch) >= m)
    return lr * decay ** passed


def judge_noise(evals: Sequence[EvalRecord], config: Mapping[str, Any] | None = None,
                thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """With weight decay the drift per step (per unit lr) does not decay over the last third."""
    t = thresholds
    config = config if isinstance(config, Mapping) else {}
    rule = (f"weight decay > 0 and median drift/lr of the last third ≥ {t.noise_ratio:g}× "
            "that of the middle third")
    weight_decay = _finite(_dig(config, "train", "weight_decay"))
    drifts = [(ev, d) for ev, (_, d) in zip(evals, drift_series(evals)) if d is not None]
    if len(drifts) < t.min_evals:
        return _pending("noise", rule, len(drifts), t.min_evals, "a drift")
    lrs = [lr_at(config, _finite(ev.epoch) or 0.0) for ev, _ in drifts]
    per_lr = all(lr is not None for lr in lrs)
    scaled = [(_step(ev), d / lr if per_lr and lr else d) for (ev, d), lr in zip(drifts, lrs)]
    first_step, last_step = _step(evals[0]), _step(evals[-1])
    third = (last_step - first_step) / 3
    middle = [d for s, d in scaled if first_step + third < s <= first_step + 2 * third]
    last = [d for s, d in scaled if s > first_step + 2 * third]
    latest = drifts[-1][1]
    if not middle or not last:
        return Verdict("noise", PENDING, f"drift {_fmt(latest)}/step, too few evaluations late in the run",
                       rule, {"drift": latest, "weight_decay": weight_decay, "evals": len(drifts)})
    middle_median, last_median = statistics.median(middle), statistics.median(last)
    ratio = last_median / middle_median if middle_median > 0 else (math.inf if last_median > 0 else 0.0)
    staying = ratio >= t.noise_ratio
    trend = "not decaying" if staying else f"decaying (×{_fmt(ratio)} over the last third)"
    text = f"drift {_fmt(latest)}/step, {trend}"
    if weight_decay == 0:
        text = f"no weight decay: {text}" + (", as predicted without it" if not staying else "")
    numbers: dict[str, Number] = {
        "drift": latest, "weight_decay": weight_decay, "middle_median": middle_median,
        "last_median": last_median, "ratio": ratio if ratio != math.inf else None,
        "per_lr": per_lr, "evals": len(drifts), "step": drifts[-1][0].step,
    }
    holds = staying and (weight_decay is None or weight_decay > 0)
    return Verdict("noise", HOLDS if holds else FAILS, text, rule, numbers)


# --- bound ----------------------------------------------------------------------------------


def gap_bound_kind(evals: Sequence[EvalRecord]) -> str:
    """'local' when any evaluation has a local gap bound (a CNN), else 'dense'."""
    has_local = any(_positive(_dig(ev.bounds, "gap_bound_local")) is not None for ev in evals)
    return "local" if has_local else "dense"


def gap_bound_series(evals: Sequence[EvalRecord]) -> list[Point]:
    """(step, the gap bound the bound claim judges) of every evaluation; None where there is none."""
    key = f"gap_bound_{gap_bound_kind(evals)}"
    return [(_step(ev), _positive(_dig(ev.bounds, key))) for ev in evals]


def judge_bound(evals: Sequence[EvalRecord], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Verdict:
    """The gap bound (local for CNNs, else dense) of the newest evaluation is non-vacuous."""
    t = thresholds
    kind = gap_bound_kind(evals)
    rule = f"gap bound ({kind}) < {t.bound_max:g}"
    bounds = [(ev, b) for ev, (_, b) in zip(evals, gap_bound_series(evals)) if b is not None]
    if len(bounds) < t.min_evals:
        if evals and not bounds and len(evals) >= t.min_evals:
            return Verdict("bound", PENDING, "no gap bound in these records (recorded before gap bounds)",
                           rule, {"evals": 0})
        return _pending("bound", rule, len(bounds), t.min_evals, "a gap bound")
    ev, bound = bounds[-1]
    gap = _finite(_dig(ev.bounds, "gap"))
    name = "local gap bound" if kind == "local" else "gap bound"
    text = f"{name} 2^{math.log2(bound):.1f} vs gap {_pct(gap)}"
    below = bound < t.bound_max
    if not below and t.bound_max != 1.0:
        text += f" (needs < {t.bound_max:g})"
    first_below = next((e.step for e, b in bounds if b < t.bound_max), None)
    numbers: dict[str, Number] = {
        "gap_bound": bound, "log2_gap_bound": math.log2(bound), "kind": kind, "gap": gap,
        "test_error": _finite(_dig(ev.bounds, "test_error")),
        "bound": _finite(_dig(ev.bounds, f"bound_{kind}")),
        "convention": _dig(ev.bounds, "audit", "convention"),
        "non_vacuous_step": first_below, "evals": len(bounds), "step": ev.step,
    }
    return Verdict("bound", HOLDS if below else FAILS, text, rule, numbers)


# --- helpers --------------------------------------------------------------------------------


def _pending(claim: str, rule: str, have: int, need: int, what: str) -> Verdict:
    return Verdict(claim, PENDING, f"{have}/{need} evaluations with {what}", rule, {"evals": have})


def _finite(value: Any) -> float | None:
    """A finite float, or None for None, NaN, inf, bools and anything not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    """A finite float > 0, else None (a bound is positive; anything else is junk)."""
    x = _finite(value)
    return x if x is not None and x > 0 else None


def _dig(value: Any, *path: str | int) -> Any:
    """Walk nested dicts and lists; None wherever the path does not exist."""
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return None
    return value


def _step(ev: EvalRecord) -> float:
    """The evaluation's step as a float (0 when the record carries junk there)."""
    return _finite(ev.step) or 0.0


def _layer_name(layer: Any, k: int) -> str:
    name = _dig(layer, "name")
    return str(name) if isinstance(name, str) and name else f"layer {k + 1}"


def _series(evals: Sequence[EvalRecord], group: str, *path: str | int) -> list[Point]:
    return [(_step(ev), _finite(_dig(getattr(ev, group, None), *path))) for ev in evals]


def _present(points: list[Point]) -> list[tuple[float, float]]:
    return [(s, y) for s, y in points if y is not None]


def _last_present(points: list[Point]) -> float | None:
    present = _present(points)
    return present[-1][1] if present else None


def _fmt(x: float | None) -> str:
    """Two significant digits below 10 (0.50, 0.035, 4.2), whole numbers as such, 2.1e-4 when tiny."""
    if x is None:
        return "–"
    a = abs(x)
    if a == 0:
        return "0"
    if float(x).is_integer() and a < 1e6:   # ranks, counts
        return str(int(x))
    if a < 1e-2 or a >= 1e6:
        mantissa, exponent = f"{x:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if a < 10:
        return f"{x:#.2g}".rstrip(".")
    return f"{x:.0f}"


def _pct(x: float | None) -> str:
    """A fraction as a percentage: 0.001 -> 0.1%, 0.0004 -> 0.04%."""
    if x is None:
        return "–"
    p = 100 * x
    return f"{p:.1g}%" if 0 < abs(p) < 0.1 else f"{p:.1f}%"
