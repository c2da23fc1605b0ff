"""The `nctui` command: run a preset live or headless, list presets, reopen runs.

Exit codes (DESIGN.md): 0 completed, 1 failure, 2 usage or config error, 3 diverged,
130 interrupted (Ctrl+C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

import click

from nctui import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


def _say(message: str) -> None:
    """Human progress: always stderr, so stdout stays pure JSON lines."""
    click.echo(message, err=True)


def _fail(message: str, code: int = EXIT_USAGE) -> "click.exceptions.Exit":
    _say(f"nctui: error: {message}")
    return click.exceptions.Exit(code)


def _find_presets_dir() -> Path:
    """presets/ of the source checkout, or of the current directory."""
    for candidate in (PRESETS_DIR, Path.cwd() / "presets"):
        if candidate.is_dir():
            return candidate
    return PRESETS_DIR


def _resolve_config_path(config: str) -> Path:
    """A path, or a preset name such as `quickstart`."""
    path = Path(config)
    if not path.exists() and not path.suffix:
        preset = _find_presets_dir() / f"{config}.yaml"
        if preset.exists():
            return preset
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nctui")
def main() -> None:
    """Watch a deep classifier learn: neural collapse, low-rank weights, SGD noise, norm bounds.

    Trains a classifier with the square loss, SGD, weight decay and weight normalisation
    (Xu, Rangamani, Liao, Galanti, Poggio 2023) and shows the theory's quantities live.

    \b
    Start here:
      nctui run presets/quickstart.yaml            live monitor, synthetic data, ~1 minute on a CPU
      nctui run quickstart --headless | jq .       JSON lines on stdout, for scripts and clusters
      nctui presets                                the shipped configurations
    """


@main.command()
@click.argument("config", metavar="CONFIG")
@click.option("--headless", is_flag=True, help="No TUI: print the metrics.jsonl lines on stdout.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=0.05 (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where to train (default: the config's train.device, auto = CUDA if present).")
@click.option("--out", type=click.Path(file_okay=False), default="snapshots", show_default=True,
              help="Directory that receives the run directory.")
@click.option("--name", default=None, help="Run name (default: the config's name).")
def run(config: str, headless: bool, overrides: tuple[str, ...], device: str | None, out: str,
        name: str | None) -> None:
    """Train CONFIG (a YAML file or a preset name) and monitor it.

    The run directory <out>/<name>-<UTC time>/ receives run.json, metrics.jsonl and
    snapshots. Without a terminal on stdout, runs headless.
    """
    from nctui.config import ConfigError, load_config

    extra = list(overrides)
    if device:
        extra.append(f"train.device={device}")
    if name:
        extra.append(f"name={name}")
    path = _resolve_config_path(config)
    try:
        cfg = load_config(path, extra)
    except ConfigError as err:
        raise _fail(str(err)) from None
    if not headless and not sys.stdout.isatty():
        _say("nctui: stdout is not a terminal: running headless (JSON lines on stdout)")
        headless = True
    raise click.exceptions.Exit(_run(cfg, out, headless))


def _run(cfg, out: str, headless: bool) -> int:
    """Load data, set up the run directory, train; returns the exit code."""
    import torch

    from nctui.control import Control
    from nctui.data import DataError, load_dataset
    from nctui.records import EndRecord
    from nctui.store.rundir import RunDirError, RunWriter, new_run_dir, write_run_json
    from nctui.train.trainer import Trainer, describe_device, pick_device

    try:
        device = pick_device(cfg.train.device)
    except RuntimeError as err:
        raise _fail(str(err)) from None
    d = cfg.data
    try:
        data = load_dataset(d.name, root=d.root, download=d.download, seed=cfg.seed,
                            train_size=d.train_size, test_size=d.test_size, normalize=d.normalize,
                            synthetic=d.synthetic, progress=sys.stderr.isatty())
    except DataError as err:
        raise _fail(str(err)) from None
    try:
        run_dir = new_run_dir(out, cfg.name)
        write_run_json(run_dir, {
            "name": run_dir.name,
            "config": cfg.to_dict(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "nctui": __version__},
            "device": describe_device(device),
            "data": data.preprocessing,
            "start_time": time.time(),
            "argv": sys.argv,
        })
        writer = RunWriter(run_dir, echo=(lambda line: print(line, flush=True)) if headless else None)
    except RunDirError as err:
        raise _fail(str(err), EXIT_FAILED) from None
    _say(f"nctui: run directory {run_dir}")

    control = Control()
    exit_for_stop = {"code": EXIT_OK}

    def on_signal(signum: int, _frame: object) -> None:
        name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        exit_for_stop["code"] = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        control.request_stop(f"interrupted by {name}")

    try:
        trainer = Trainer(cfg, data, device, run_dir.name, writer.write, control)
    except ValueError as err:   # a model the data cannot feed, e.g. too many conv layers
        writer.close()
        raise _fail(str(err)) from None

    if headless:
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            end: EndRecord = trainer.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    else:
        end, exit_for_stop["code"] = _run_tui(trainer, control, on_signal)
    writer.close()
    _say(f"nctui: {end.status}: {end.reason} (step {end.step}); run directory {run_dir}")
    if end.status == "diverged":
        return EXIT_DIVERGED
    if end.status == "failed":
        return EXIT_FAILED
    return exit_for_stop["code"] if end.status == "stopped" else EXIT_OK


def _run_tui(trainer, control, on_signal):
    """Drive the Textual app; the trainer runs in the app's worker thread and posts records."""
    from nctui.tui.app import NctuiApp

    ended = {}
    write = trainer.emit

    def feed(emit):
        def both(record):
            write(record)
            emit(record)
        trainer.emit = both
        ended["end"] = trainer.run()

    signal.signal(signal.SIGTERM, on_signal)
    app = NctuiApp(feed, control=control, mode="live", title=trainer.run_name)
    code = app.run()
    return ended["end"], code if code is not None else EXIT_OK


def entry() -> None:
    """Console-script entry: an unexpected error is one line and exit 1, not a traceback.

    Set NCTUI_DEBUG=1 to see the traceback.
    """
    try:
        main()
    except Exception as err:  # noqa: BLE001 - the last line of defence for users
        if os.environ.get("NCTUI_DEBUG"):
            raise
        _say(f"nctui: error: {type(err).__name__}: {err} (set NCTUI_DEBUG=1 for the traceback)")
        sys.exit(EXIT_FAILED)


@main.command()
def presets() -> None:
    """List the shipped presets with their one-line descriptions."""
    directory = _find_presets_dir()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise _fail(f"no presets found in {directory}", EXIT_FAILED)
    for path in files:
        first = next((line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        click.echo(f"{path.stem:14s} {first}")
        click.echo(f"{'':14s} {path}")
