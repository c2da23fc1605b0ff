"""The figure families of the papers, drawn from recorded runs with compare mode's analysis.

Each `draw_*` takes runs (`nctui.analysis.runs.RunData`) and returns a matplotlib Figure (never
pyplot: no global state, no window). Runs are grouped as compare mode groups them: one line per
point (the free keys' values), its seeds averaged, the mean drawn with a band of ± one standard
deviation; `group_by` groups by that one key instead (every other difference averaged). What
each figure holds is in its function's docstring (and `nctui plot --help`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nctui.analysis.runs import (RunData, aggregate, final, flatten, format_value, free_keys, group_runs,
                                 is_log_spaced, label, series, short_key)
from nctui.analysis.verdicts import CLAIMS, drift_series, gap_bound_series, judge
from nctui.figures import FigureError
from nctui.figures.style import COLORS
from nctui.records import EVAL_GROUPS

Points = list[tuple[float, "float | None"]]
Getter = Callable[[RunData], Points]


@dataclass(frozen=True)
class Group:
    """The runs drawn as one line, its label and colour."""

    label: str
    runs: list[RunData]
    color: str


def groups(runs: Sequence[RunData], group_by: str | None = None) -> list[Group]:
    """One group per point (the free keys' values), or per value of `group_by`."""
    if group_by is not None:
        check_key(runs, group_by)
    keys = [group_by] if group_by else free_keys(runs)
    result = []
    for index, (values, members) in enumerate(group_runs(runs, keys).items()):
        name = label(keys, values) or (members[0].name if len(members) == 1 else f"mean of {len(members)} runs")
        result.append(Group(name, members, COLORS[index % len(COLORS)]))
    return result


def check_key(runs: Sequence[RunData], key: str) -> None:
    known = {k for run in runs for k in flatten(run.config)} | {"seed"}
    if key not in known:
        raise FigureError(f"--group-by {key}: no run has this config key (e.g. train.weight_decay, seed)")


def _line(ax: Axes, group: Group, getter: Getter, style: str = "-", name: str | None = None) -> None:
    """The group's seed mean of one series, with a ± std band where several seeds have a value."""
    rows = aggregate([getter(run) for run in group.runs])
    if not rows:
        return
    x = [r[0] for r in rows]
    mean = [r[1] for r in rows]
    ax.plot(x, mean, style, color=group.color, label=name if name is not None else group.label)
    if any(r[3] > 1 for r in rows):
        ax.fill_between(x, [m - r[2] for m, r in zip(mean, rows)], [m + r[2] for m, r in zip(mean, rows)],
                        color=group.color, alpha=0.18, linewidth=0)


def _path(*path: Any) -> Getter:
    return lambda run: series(run, path)


def _log(ax: Axes, base: float = 10) -> None:
    ax.set_yscale("log", base=base, nonpositive="mask")


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="best")


def _grid(count: int, columns: int = 3, size: tuple[float, float] = (3.4, 2.7)) -> tuple[Figure, list[Axes]]:
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(size[0] * columns, size[1] * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _need_evals(runs: Sequence[RunData]) -> None:
    if not any(run.evals for run in runs):
        raise FigureError("no evaluation recorded in these runs yet")


def _layer_names(runs: Sequence[RunData]) -> list[str]:
    """Layer names of the newest evaluation of the first run that has layers."""
    for run in runs:
        for record in reversed(run.evals):
            if isinstance(record.layers, list) and record.layers:
                return [str(layer.get("name") or f"layer {k + 1}") for k, layer in enumerate(record.layers)]
    raise FigureError("no layer recorded in these runs (no spectra in the evaluations)")


def _num_classes(runs: Sequence[RunData]) -> int | None:
    start = next((run.start for run in runs if run.start is not None), None)
    return start.num_classes if start is not None and isinstance(start.num_classes, int) else None


# --- claims ----------------------------------------------------------------------------------------


def draw_claims(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """The four claims of Xu et al. (2023) in one figure, as the Overview pane: NC1 (log y), the
    hidden layers' mean rank (log y), the drift per step (log y), the gap bound beside the measured
    gap (log2 y); each title gives the verdicts (nctui.analysis.verdicts) of the runs."""
    _need_evals(runs)
    figure, axes = _grid(4, columns=2, size=(4.2, 3.0))
    verdicts = [judge(run.evals, run.start) for run in runs]
    drawn = groups(runs, group_by)
    panels = [
        ("NC1", _path("geometry", "nc1"), "NC1"),
        ("mean hidden rank", _path("layers", "hidden", "rank"), "rank"),
        ("drift per step", lambda run: drift_series(run.evals), "drift / step"),
        ("gap bound", lambda run: gap_bound_series(run.evals), "gap bound (log2)"),
    ]
    for k, (ax, claim, (title, getter, ylabel)) in enumerate(zip(axes, CLAIMS, panels)):
        for group in drawn:
            _line(ax, group, getter)
        if claim == "bound":
            for group in drawn:
                _line(ax, group, _path("bounds", "gap"), "--", name=f"gap {group.label}".strip())
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="1 (non-vacuous below)")
        _log(ax, 2 if claim == "bound" else 10)
        ax.set_title(f"{claim}: {_tally([judged[k] for judged in verdicts])}")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
    _legend(axes[0])
    _legend(axes[3])
    return figure


def _tally(verdicts: list) -> str:
    """'holds' for one run, '3 hold, 1 fails' for several (statuses in a fixed order)."""
    if len(verdicts) == 1:
        return verdicts[0].status
    counts = {status: sum(v.status == status for v in verdicts) for status in ("holds", "fails", "pending")}
    words = {"holds": "hold", "fails": "fail", "pending": "pending"}
    return ", ".join(f"{n} {words[s] if n != 1 else s}" for s, n in counts.items() if n)


# --- nc -----------------------------------------------------------------------------------------


NC_PANELS = (("NC1", "nc1"), ("NC2 (ETF error)", "nc2_etf_error"), ("NC3", "nc3"), ("NC4", "nc4"))


def draw_nc(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """NC1-NC4 vs step, log y (Papyan, Han, Donoho 2020): one panel each, one line per point."""
    _need_evals(runs)
    figure, axes = _grid(4, columns=2, size=(4.0, 2.9))
    drawn = groups(runs, group_by)
    for ax, (title, key) in zip(axes, NC_PANELS):
        for group in drawn:
            _line(ax, group, _path("geometry", key))
        _log(ax)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
    _legend(axes[0])
    return figure


# --- rank ---------------------------------------------------------------------------------------


def draw_rank(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """Rank (solid) and stable rank (dashed) vs step, one panel per layer, log y; the line at C - 1,
    and each point's rank ceiling B m log(2/eps) / (lr λ) where it binds (below min(out, in))."""
    _need_evals(runs)
    names = _layer_names(runs)
    figure, axes = _grid(len(names))
    drawn = groups(runs, group_by)
    num_classes = _num_classes(runs)
    for k, (ax, name) in enumerate(zip(axes, names)):
        for group in drawn:
            _line(ax, group, _path("layers", k, "rank"))
            _line(ax, group, _path("layers", k, "stable_rank"), "--", name=f"stable rank {group.label}".strip())
            ceiling = _binding_ceiling(group.runs, k)
            if ceiling is not None:
                ax.axhline(ceiling, color=group.color, linestyle="-.", linewidth=0.9,
                           label=f"rank ceiling {group.label}".strip())
        if num_classes is not None:
            ax.axhline(num_classes - 1, color="black", linestyle=":", linewidth=0.9, label="C − 1")
        _log(ax)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("rank")
    _legend(axes[0])
    return figure


def _binding_ceiling(runs: Sequence[RunData], k: int) -> float | None:
    """The newest rank ceiling of layer k, averaged over the runs, when it is below min(out, in)."""
    ceilings, widths = [], []
    for run in runs:
        ceiling = final(run, ("layers", k, "rank_ceiling"))
        sv = run.evals[-1].layers[k].get("sv") if run.evals and len(run.evals[-1].layers) > k else None
        if ceiling is not None and isinstance(sv, list) and sv:
            ceilings.append(ceiling)
            widths.append(len(sv))
    if not ceilings or statistics.fmean(ceilings) >= min(widths):
        return None
    return statistics.fmean(ceilings)


# --- spectrum -------------------------------------------------------------------------------------


def draw_spectrum(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """The final singular values sigma_i / ||W||_F of each layer vs i, log y, one panel per layer,
    seeds averaged index by index; the rank tolerance (monitor.rank_tol) as a line."""
    _need_evals(runs)
    names = _layer_names(runs)
    figure, axes = _grid(len(names))
    drawn = groups(runs, group_by)
    tolerances = {t for run in runs if isinstance(t := flatten(run.config).get("monitor.rank_tol"), (int, float))}
    for k, (ax, name) in enumerate(zip(axes, names)):
        for group in drawn:
            spectra = [sv for run in group.runs if (sv := _final_sv(run, k))]
            if not spectra:
                continue
            length = min(len(sv) for sv in spectra)
            mean = [statistics.fmean(sv[i] for sv in spectra) for i in range(length)]
            ax.plot(range(1, length + 1), mean, color=group.color, label=group.label)
        for tol in sorted(tolerances):
            ax.axhline(tol, color="black", linestyle=":", linewidth=0.9, label=f"tol {format_value(float(tol))}")
        _log(ax)
        ax.set_title(name)
        ax.set_xlabel("i")
        ax.set_ylabel("σ_i / ‖W‖_F")
    _legend(axes[0])
    return figure


def _final_sv(run: RunData, k: int) -> list[float]:
    """Layer k's singular values at the newest evaluation that has them ([] if none or not numbers)."""
    for record in reversed(run.evals):
        layers = record.layers if isinstance(record.layers, list) else []
        sv = layers[k].get("sv") if len(layers) > k and isinstance(layers[k], dict) else None
        if isinstance(sv, list) and sv and all(isinstance(x, (int, float)) for x in sv):
            return [float(x) for x in sv]
    return []


# --- noise ----------------------------------------------------------------------------------------


def draw_noise(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """The SGD noise vs step, log y: the weight drift per step (mean over the layers, as the noise
    claim and the "dist" curves of Galanti et al. 2022) and the gradient noise ||g_b - g||^2/||g||^2."""
    _need_evals(runs)
    figure, axes = _grid(2, columns=2, size=(4.2, 3.0))
    drawn = groups(runs, group_by)
    for ax, (title, getter, ylabel) in zip(axes, (("weight drift", lambda run: drift_series(run.evals), "drift / step"),
                                                  ("gradient noise", _path("noise", "grad_noise"), "grad noise"))):
        for group in drawn:
            _line(ax, group, getter)
        _log(ax)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
    _legend(axes[0])
    return figure


# --- bounds ---------------------------------------------------------------------------------------


BOUND_SERIES = (("gap_bound_dense", "dense gap bound", "-"), ("gap_bound_local", "local gap bound", "-"),
                ("gap", "measured gap", "--"), ("test_error", "test error", ":"))


def draw_bounds(runs: Sequence[RunData], group_by: str | None = None) -> Figure:
    """As NeurIPS 2023 Fig. 1, one panel per point: the dense and local gap bounds, the measured gap
    and the test error vs step on a log2 axis, and the line at 1 (a bound below it is non-vacuous)."""
    _need_evals(runs)
    drawn = groups(runs, group_by)
    figure, axes = _grid(len(drawn), size=(3.6, 2.9))
    for ax, group in zip(axes, drawn):
        for index, (key, name, style) in enumerate(BOUND_SERIES):
            shade = Group(group.label, group.runs, COLORS[index])
            _line(ax, shade, _path("bounds", key), style, name=name)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="1")
        _log(ax, 2)
        ax.set_title(group.label or "bounds")
        ax.set_xlabel("step")
        ax.set_ylabel("log2 scale")
    _legend(axes[0])
    return figure


# --- vs-param ------------------------------------------------------------------------------------


def metric_path(metric: str) -> tuple[Any, ...]:
    """A --metric as a path into the evaluations: a dotted path (geometry.nc1, layers.hidden.rank,
    layers.0.rank, bounds.gap) or a bare key of one group (nc1, gap_bound_local; a group's key wins
    over a layer's); a key only layers have (rank, stable_rank) is the hidden layers' mean.
    FigureError when unknown or ambiguous."""
    parts = metric.split(".")
    if len(parts) > 1:
        if parts[0] not in EVAL_GROUPS:
            raise FigureError(f"--metric {metric}: {parts[0]} is not a group of the eval records "
                              f"({', '.join(EVAL_GROUPS)})")
        return tuple(int(p) if p.isdigit() else p for p in parts)
    owners = [group for group, kind in EVAL_GROUPS.items() if metric in getattr(kind, "__annotations__", {})]
    if owners == ["layers"]:
        return ("layers", "hidden", metric)
    owners = [group for group in owners if group != "layers"]    # nc1: the penultimate features', not a layer's
    if len(owners) != 1:
        choices = ", ".join(f"{group}.{metric}" for group in owners) or "e.g. rank, nc1, bounds.gap"
        raise FigureError(f"--metric {metric}: " + ("ambiguous: " if owners else "unknown; ") + choices)
    return (owners[0], metric)


def draw_vs_param(runs: Sequence[RunData], group_by: str | None = None, metric: str = "rank") -> Figure:
    """The final value of `metric` vs the varying key (`group_by`, default the first free key), seed
    mean ± std as error bars, one line per value of the other free keys (NeurIPS 2023 Figs. 2-4,
    Galanti et al. 2022 Fig. 1). Log x when the key's values are log-spaced (symlog when one is 0)."""
    path = metric_path(metric)
    free = free_keys(runs)
    key = group_by or (free[0] if free else None)
    if key is None:
        raise FigureError("vs-param needs runs that differ in a config key (a sweep), or --group-by KEY")
    check_key(runs, key)
    others = [k for k in free if k != key]
    figure = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = figure.add_subplot()
    xs: list[float] = []
    ys: list[float] = []
    for index, (values, members) in enumerate(group_runs(runs, others).items()):
        points = []
        for (x,), point_runs in group_runs(members, [key]).items():
            finals = [v for v in (final(run, path) for run in point_runs) if v is not None]
            if finals and isinstance(x, (int, float)) and not isinstance(x, bool):
                std = statistics.stdev(finals) if len(finals) > 1 else 0.0
                points.append((float(x), statistics.fmean(finals), std))
        if not points:
            continue
        points.sort()
        xs += [p[0] for p in points]
        ys += [p[1] for p in points]
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    capsize=3, color=COLORS[index % len(COLORS)], label=label(others, values) or None)
    if not xs:
        raise FigureError(f"no run has a final {'.'.join(map(str, path))} at a numeric {key}")
    positive = sorted({x for x in xs if x > 0})
    if positive and is_log_spaced(positive) and len(positive) < len(set(xs)):
        ax.set_xscale("symlog", linthresh=positive[0])
    elif is_log_spaced(xs):
        ax.set_xscale("log")
    if is_log_spaced([y for y in ys if y > 0]) and all(y > 0 for y in ys):
        ax.set_yscale("log")
    ax.set_xlabel(f"{short_key(key)} ({key})" if short_key(key) != key else key)
    ax.set_ylabel(".".join(map(str, path)))
    ax.set_title(f"final {'.'.join(map(str, path))} vs {short_key(key)}")
    _legend(ax)
    return figure
