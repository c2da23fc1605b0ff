"""The `nctui` command line: argument parsing and messages; the work is done elsewhere.

A run is assembled by nctui/runner.py, a run directory read by nctui/store/reader.py, the
viewer put together by nctui/viewer.py. Errors the user can fix are one line
(`nctui: error: ...`) and an exit code (records.py: 0 completed, 1 failure, 2 usage or
config error, 3 diverged, 130 interrupted, 143 terminated), never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from nctui import __version__
from nctui.presets import find_presets_dir, preset_path
from nctui.records import EXIT_FAILED, EXIT_OK, EXIT_USAGE

def say(message: str) -> None:
    """Human messages: always stderr, so stdout stays pure JSON lines."""
    click.echo(message, err=True)


def fail(message: str, code: int = EXIT_USAGE) -> click.exceptions.Exit:
    """The exception that ends a command with one line on stderr: `raise fail(...)`."""
    say(f"nctui: error: {message}")
    return click.exceptions.Exit(code)


def resolve_config_path(config: str) -> Path:
    """A path, or a preset name such as `quickstart`."""
    path = Path(config)
    if not path.exists() and not path.suffix:
        return preset_path(config) or path
    return path


class LazyGroup(click.Group):
    """Commands that live in their own modules, imported only when called (or listed by --help),
    so `nctui ls` or `nctui open` never pay for torch."""

    LAZY = {"sweep": "nctui.sweep.command:sweep", "serve": "nctui.serve:serve",
            "export": "nctui.report_commands:export", "plot": "nctui.report_commands:plot",
            "verify": "nctui.report_commands:verify", "pack": "nctui.pack_command:pack"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, _, attribute = self.LAZY[name].partition(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nctui")
def main() -> None:
    """Watch a deep classifier learn: neural collapse, low-rank weights, SGD noise, norm bounds.

    Trains a classifier with the square loss, SGD, weight decay and weight normalisation
    (Xu, Rangamani, Liao, Galanti, Poggio 2023) and shows the theory's quantities live.

    \b
    Start here:
      nctui run presets/quickstart.yaml            live monitor, synthetic data, ~20 s on a CPU
      nctui run quickstart --headless | jq .       JSON lines on stdout, for scripts and clusters
      nctui open snapshots/<run>                   replay a run, or follow one still training
      nctui run --resume snapshots/<run>           continue a run from its newest snapshot
      nctui ls                                     the runs under snapshots/
      nctui presets                                the shipped configurations
    """


@main.command()
@click.argument("config", metavar="[CONFIG]", required=False)
@click.option("--resume", "resume_dir", metavar="RUN_DIR", type=click.Path(file_okay=False), default=None,
              help="Continue the run in RUN_DIR from its newest readable snapshot (instead of CONFIG).")
@click.option("--headless", is_flag=True,
              help="No TUI: the metrics.jsonl lines on stdout, a progress line on stderr.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=0.05 (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where to train (default: the config's train.device, auto = CUDA if present).")
@click.option("--out", type=click.Path(file_okay=False), default="snapshots", show_default=True,
              help="Directory that receives the run directory.")
@click.option("--name", default=None, help="Run name (default: the config's name).")
@click.option("--run-dir", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Use exactly this (new or empty) directory as the run directory, instead of <out>/<name>-<UTC>.")
def run(config: str | None, resume_dir: str | None, headless: bool, overrides: tuple[str, ...],
        device: str | None, out: str, name: str | None, run_dir: str | None) -> None:
    """Train CONFIG and monitor it, or resume a run.

    CONFIG is a YAML file or a preset name. The run directory <out>/<name>-<UTC time>/ receives
    run.json, metrics.jsonl and snapshots. Without a terminal on stdout, runs headless.

    With --resume RUN_DIR (and no CONFIG) the run continues from its newest readable snapshot
    and appends to its metrics.jsonl; --set may then change only the plan and the bookkeeping
    (train.epochs to extend the run, train.device, train.cuda_graph, train.threads, and the
    monitor's cadences and snapshot settings).
    """
    from nctui.config import ConfigError, load_config
    from nctui.runner import RunError, resume_run, start_run

    if (config is None) == (resume_dir is None):
        raise fail("give CONFIG (a YAML file or preset name) for a new run, or --resume RUN_DIR to "
                   "continue one" + (", not both" if config else ""))
    extra = list(overrides) + ([f"train.device={device}"] if device else [])
    if not headless and not sys.stdout.isatty():
        say("nctui: stdout is not a terminal: running headless (JSON lines on stdout)")
        headless = True
    try:
        if resume_dir is not None:
            out_given = click.get_current_context().get_parameter_source("out") == ParameterSource.COMMANDLINE
            if name or run_dir or out_given:
                raise fail("--name, --out and --run-dir do not apply to --resume: the run keeps its directory")
            code = resume_run(Path(resume_dir), extra, headless)
        else:
            path = resolve_config_path(config)
            if not path.exists() and not path.suffix:
                raise fail(f"{config}: no such file or preset (`nctui presets` lists the presets)")
            cfg = load_config(path, extra + ([f"name={name}"] if name else []))
            code = start_run(cfg, out=out, run_dir=run_dir, headless=headless)
    except (ConfigError, RunError) as err:
        raise fail(str(err), getattr(err, "code", EXIT_USAGE)) from None
    raise click.exceptions.Exit(code)


@main.command()
def presets() -> None:
    """List the shipped presets (and sweep presets) with their one-line descriptions."""
    directory = find_presets_dir()
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("sweeps/*.yaml"))
    if not files:
        raise fail(f"no presets found in {directory}", EXIT_FAILED)
    for path in files:
        first = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        label = path.stem if path.parent == directory else f"sweeps/{path.stem}"
        click.echo(f"{label:24s} {first}")
        click.echo(f"{'':24s} {path}")


@main.command("open")
@click.argument("paths", metavar="RUN_DIR... | SWEEP_DIR", nargs=-1, required=True, type=click.Path())
def open_run(paths: tuple[str, ...]) -> None:
    """Replay a run in the monitor, follow one still being written, or compare several.

    A finished run opens as a replay with a timeline to scrub ([ and ]); a run with no end
    record yet (a headless run in another terminal, a cluster job) is followed live. Several
    run directories, or a sweep directory, open compare mode: the runs overlaid, coloured by
    the config keys that differ, the seeds of a point as mean and band (? lists the keys).
    """
    from nctui.store.rundir import RunDirError
    from nctui.store.sweepdir import SweepDirError
    from nctui.viewer import open_viewer

    try:
        app, warnings = open_viewer([Path(path) for path in paths])
    except (RunDirError, SweepDirError) as err:
        raise fail(str(err)) from None
    if not sys.stdout.isatty():
        raise fail("nctui open needs a terminal; for scripts read metrics.jsonl (e.g. with jq)")
    for warning in warnings:
        say(f"nctui: warning: {warning}")
    code = app.run()
    raise click.exceptions.Exit(code if code is not None else EXIT_OK)


@main.command("ls")
@click.argument("directory", metavar="[DIR]", default="snapshots", type=click.Path())
def list_runs(directory: str) -> None:
    """List the sweeps and runs in DIR (default snapshots/), one line each.

    A sweep's line: name, points done of total, the keys it varies. A run's line: name,
    status, steps done of planned, last NC1, last test accuracy, size. Status is the end record's (completed, stopped, diverged, failed); without one, "running" while a
    process writes the run (or its metrics.jsonl changed in the last two minutes), else
    "unfinished" (a killed run: resume it).
    """
    from nctui.sweep import is_sweep_dir, sweep_summary

    base = Path(directory)
    if not base.is_dir():
        raise fail(f"{base}: no such directory")
    runs = [base] if (base / "run.json").is_file() else sorted(
        p for p in base.iterdir() if p.is_dir() and ((p / "run.json").is_file() or (p / "metrics.jsonl").is_file()))
    sweeps = [base] if is_sweep_dir(base) else sorted(p for p in base.iterdir() if p.is_dir() and is_sweep_dir(p))
    if not runs and not sweeps:
        say(f"nctui: no runs in {base}")
    for rows in ([sweep_summary(path) for path in sweeps], [run_summary(path) for path in runs]):
        widths = [max(len(cell) for cell in column) for column in zip(*rows)]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def run_summary(run_dir: Path) -> tuple[str, ...]:
    """(name, status, steps, nc1, test acc, size) of one run, or its name and why it is unreadable."""
    from nctui.store.reader import RunReader, dir_size
    from nctui.store.rundir import RunDirError

    size = human_size(dir_size(run_dir))
    try:
        reader = RunReader(run_dir).read()
    except RunDirError as err:
        say(f"nctui: warning: {err}")
        return (run_dir.name, "unreadable", "", "", "", size)
    start, evals = reader.start, reader.evals
    nc1 = evals[-1].geometry.get("nc1") if evals else None
    acc = evals[-1].test.get("acc") if evals else None
    return (run_dir.name, reader.status, f"{reader.step}/{start.total_steps if start else '?'} steps",
            f"nc1 {nc1:.3g}" if isinstance(nc1, (int, float)) else "nc1 -",
            f"test acc {acc:.3f}" if isinstance(acc, (int, float)) else "test acc -",
            size)


def human_size(size: float) -> str:
    """Bytes as 812B, 14.2K, 3.1M, 1.2G."""
    exponent = 0
    while size >= 1024 and exponent < 3:
        size, exponent = size / 1024, exponent + 1
    return f"{size:.0f}B" if exponent == 0 else f"{size:.1f}{'KMG'[exponent - 1]}"


def entry() -> None:
    """Console-script entry: an unexpected error is one line and exit 1, not a traceback.

    Set NCTUI_DEBUG=1 to see the traceback.
    """
    try:
        main()
    except Exception as err:  # noqa: BLE001 - the last line of defence for users
        if os.environ.get("NCTUI_DEBUG"):
            raise
        say(f"nctui: error: {type(err).__name__}: {err} (set NCTUI_DEBUG=1 for the traceback)")
        sys.exit(EXIT_FAILED)
