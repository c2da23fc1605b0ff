"""`nctui export`, `nctui plot`, `nctui verify`: argument parsing and messages; the work is in
nctui.analysis (export, claims, runs) and nctui.figures. The lead registers the three commands
in cli.py. Errors the user can fix are one line (`nctui: error: ...`) and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import click

from nctui.records import EXIT_FAILED, EXIT_OK, EXIT_USAGE

PATHS_HELP = "RUN_OR_SWEEP: run directories and sweep directories (a sweep stands for its runs)."


def _say(message: str) -> None:
    click.echo(message, err=True)


def _fail(message: str, code: int = EXIT_USAGE) -> click.exceptions.Exit:
    _say(f"nctui: error: {message}")
    return click.exceptions.Exit(code)


def _load(paths: Sequence[str]) -> list:
    """The runs of the paths (sweeps expanded), warnings said; exit 2 on an unreadable path or no run."""
    from nctui.analysis.runs import load_runs
    from nctui.store.rundir import RunDirError
    from nctui.store.sweepdir import SweepDirError

    for path in paths:
        if not Path(path).is_dir():
            raise _fail(f"{path}: no such directory (give run or sweep directories)")
    try:
        runs = load_runs(paths)
    except (RunDirError, SweepDirError) as err:
        raise _fail(str(err)) from None
    if not runs:
        raise _fail(f"{', '.join(paths)}: no run has started yet (a sweep's runs appear as they start)")
    for run in runs:
        for warning in run.warnings:
            _say(f"nctui: warning: {run.name}: {warning}")
    return runs


paths_argument = click.argument("paths", nargs=-1, required=True, metavar="RUN_OR_SWEEP...",
                                type=click.Path())


@click.command("export")
@paths_argument
@click.option("--csv", "csv_path", required=True, metavar="FILE", help="Where the CSV goes; - for stdout.")
@click.option("--metric", "metrics", multiple=True, metavar="PATTERN",
              help="Only metrics matching this shell pattern, e.g. 'geometry.*' or layers.rank (repeatable).")
def export(paths: tuple[str, ...], csv_path: str, metrics: tuple[str, ...]) -> None:
    """Write every number of the runs' step and eval records as tidy long CSV rows.

    Columns: run, the config keys that differ between the runs (then seed), step, epoch,
    metric, layer, index, value (docs/records.md, "Exporting to CSV"). Reads with the csv
    module, pandas.read_csv or R's read.csv.

    \b
      nctui export snapshots/wd_sweep-20250101T120000Z --csv runs.csv
      nctui export snapshots/quickstart-* --csv - --metric 'geometry.nc*' | head
    """
    from nctui.analysis.export import write_csv

    runs = _load(paths)
    if csv_path == "-":
        count = write_csv(runs, sys.stdout, metrics)
    else:
        try:
            with open(csv_path, "w", newline="", encoding="utf-8") as handle:
                count = write_csv(runs, handle, metrics)
        except OSError as err:
            raise _fail(f"{csv_path}: cannot write ({err.strerror or err})") from None
        _say(f"nctui: export: {count} rows from {len(runs)} runs to {csv_path}")
    if count == 0:
        _say("nctui: warning: no row" + (f" matches --metric {' '.join(metrics)}" if metrics else " (no records yet)"))


@click.command("plot")
@paths_argument
@click.option("--figure", "figure_name", required=True, metavar="NAME",
              help="claims | nc | rank | spectrum | noise | bounds | vs-param (see below).")
@click.option("--out", required=True, metavar="FILE", help="The figure file: .pdf, .png or .svg.")
@click.option("--group-by", metavar="KEY", default=None,
              help="Group the runs by this config key alone (others averaged); for vs-param, the x axis.")
@click.option("--metric", metavar="PATH", default=None,
              help="vs-param only: the final value plotted (rank, nc1, bounds.gap, layers.0.rank, ...; default rank).")
def plot(paths: tuple[str, ...], figure_name: str, out: str, group_by: str | None, metric: str | None) -> None:
    """Draw a figure family of the papers from the runs (needs the extra: pip install -e ".[plot]").

    Runs are grouped as compare mode groups them: one line per setting, its seeds averaged
    (mean and a band of ± one standard deviation).

    \b
      claims    the four claims in one figure, with their verdicts
      nc        NC1-NC4 vs step, log y
      rank      rank and stable rank vs step per layer, log y, the C-1 line and binding rank ceilings
      spectrum  final singular values / ||W|| per layer, log y, the rank tolerance
      noise     weight drift and gradient noise vs step, log y
      bounds    gap bounds, measured gap and test error vs step, log2 (NeurIPS 2023 Fig. 1)
      vs-param  final --metric vs the varying key, seed mean ± std (NeurIPS 2023 Figs. 2-4)
    """
    from nctui.figures import FIGURES, FigureError, MissingMatplotlib, draw, file_format, require_matplotlib, save

    if figure_name not in FIGURES:
        raise _fail(f"--figure {figure_name}: not a figure; one of {', '.join(FIGURES)}")
    try:
        file_format(out)
        require_matplotlib()
    except (ValueError, MissingMatplotlib) as err:
        raise _fail(str(err)) from None
    runs = _load(paths)
    try:
        figure = draw(figure_name, runs, group_by, metric)
    except FigureError as err:
        raise _fail(str(err)) from None
    try:
        save(figure, out)
    except OSError as err:
        raise _fail(f"{out}: cannot write ({err.strerror or err})") from None
    _say(f"nctui: plot: {figure_name} of {len(runs)} runs to {out}")


@click.command("verify")
@paths_argument
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object instead of a table.")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Change a threshold, e.g. collapse_factor=5 or trend_min=0.8 (repeatable).")
@click.option("--skip", "skipped", multiple=True, metavar="CLAIM",
              help="Judge but do not count this claim: collapse, low-rank, noise, bound, or a comparative "
                   "claim's id (repeatable).")
def verify(paths: tuple[str, ...], as_json: bool, thresholds: tuple[str, ...], skipped: tuple[str, ...]) -> None:
    """Judge the four claims on every run and, for several runs, the comparative claims.

    The four claims (collapse, low rank, noise, bound) are the Overview pane's verdicts. Across
    runs that vary a key: rank and NC1 fall as weight decay grows (rank-weight-decay,
    nc1-weight-decay), rank falls with smaller batches (rank-batch-size) and larger learning
    rates (rank-lr), the noise does not vanish with weight decay > 0 (noise-weight-decay), the
    gap bound moves with the measured gap (bound-gap). A comparative claim applies only when
    the runs vary its key. Runs with weight decay 0 among runs that vary it are controls: shown,
    not counted. Rules and thresholds: nctui/analysis/verdicts.py and claims.py; every
    threshold is printed with --json.

    Exit code: 0 when every counted verdict holds, 1 when one fails or is pending, 2 for bad
    arguments or unreadable runs.
    """
    from nctui.analysis.claims import SKIPPABLE, build_report, parse_thresholds, report_json, report_table

    try:
        run_thresholds, comparative = parse_thresholds(thresholds)
    except ValueError as err:
        raise _fail(str(err)) from None
    names = []
    for claim in skipped:
        name = claim.replace("-", " ") if claim.replace("-", " ") in SKIPPABLE else claim
        if name not in SKIPPABLE:
            raise _fail(f"--skip {claim}: not a claim; one of collapse, low-rank, noise, bound, "
                        + ", ".join(SKIPPABLE[4:]))
        names.append(name)
    runs = _load(paths)
    report = build_report(runs, run_thresholds, comparative, names)
    if as_json:
        click.echo(json.dumps(report_json(report, run_thresholds, comparative), indent=1, allow_nan=False))
    else:
        click.echo(report_table(report))
    raise click.exceptions.Exit(EXIT_OK if report.holds else EXIT_FAILED)
