"""The `nctui` command: run a preset live or headless, resume, reopen and list runs, list presets.

Exit codes (DESIGN.md): 0 completed, 1 failure, 2 usage or config error, 3 diverged,
130 interrupted (Ctrl+C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import click
from click.core import ParameterSource

from nctui import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
# what `run --resume --set` may change: the plan and the bookkeeping, never the model, data or optimizer
RESUMABLE_KEYS = ("train.epochs", "train.device", "train.cuda_graph", "train.threads", "monitor.log_every",
                  "monitor.eval_every", "monitor.snapshot_every", "monitor.keep_snapshots")


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
      nctui open snapshots/<run>                   replay a run, or follow one still training
      nctui run --resume snapshots/<run>           continue a run from its newest snapshot
      nctui ls                                     the runs under snapshots/
      nctui presets                                the shipped configurations
    """


@main.command()
@click.argument("config", metavar="[CONFIG]", required=False)
@click.option("--resume", "resume_dir", metavar="RUN_DIR", type=click.Path(file_okay=False), default=None,
              help="Continue the run in RUN_DIR from its newest readable snapshot (instead of CONFIG).")
@click.option("--headless", is_flag=True, help="No TUI: print the metrics.jsonl lines on stdout.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.lr=0.05 (repeatable).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where to train (default: the config's train.device, auto = CUDA if present).")
@click.option("--out", type=click.Path(file_okay=False), default="snapshots", show_default=True,
              help="Directory that receives the run directory.")
@click.option("--name", default=None, help="Run name (default: the config's name).")
def run(config: str | None, resume_dir: str | None, headless: bool, overrides: tuple[str, ...],
        device: str | None, out: str, name: str | None) -> None:
    """Train CONFIG and monitor it, or resume a run.

    CONFIG is a YAML file or a preset name. The run directory <out>/<name>-<UTC time>/ receives run.json, metrics.jsonl and
    snapshots. Without a terminal on stdout, runs headless.

    With --resume RUN_DIR (and no CONFIG) the run continues from its newest readable snapshot
    and appends to its metrics.jsonl; --set may then change only train.epochs (to extend the
    run), train.device, train.cuda_graph, train.threads and the monitor's log_every,
    eval_every, snapshot_every and keep_snapshots.
    """
    from nctui.config import ConfigError, load_config

    if (config is None) == (resume_dir is None):
        raise _fail("give CONFIG (a YAML file or preset name) for a new run, or --resume RUN_DIR to "
                    "continue one" + (", not both" if config else ""))
    extra = list(overrides)
    if device:
        extra.append(f"train.device={device}")
    if resume_dir is not None:
        if name or click.get_current_context().get_parameter_source("out") == ParameterSource.COMMANDLINE:
            raise _fail("--name and --out do not apply to --resume: the run keeps its directory")
        for item in extra:
            key = item.partition("=")[0].strip()
            if key not in RESUMABLE_KEYS:
                raise _fail(f"--set {key}: cannot be changed when resuming (only {', '.join(RESUMABLE_KEYS)}); "
                            "start a new run to change the model, the data or the optimizer")
    if not headless and not sys.stdout.isatty():
        _say("nctui: stdout is not a terminal: running headless (JSON lines on stdout)")
        headless = True
    if resume_dir is not None:
        raise click.exceptions.Exit(_resume(Path(resume_dir), extra, headless))
    if name:
        extra.append(f"name={name}")
    path = _resolve_config_path(config)
    if not path.exists() and not path.suffix:
        raise _fail(f"{config}: no such file or preset (`nctui presets` lists the presets)")
    try:
        cfg = load_config(path, extra)
    except ConfigError as err:
        raise _fail(str(err)) from None
    raise click.exceptions.Exit(_run(cfg, out, headless))


def _device_and_data(cfg):
    """The device and the data set a config asks for; a clear error (exit 2) if unavailable."""
    from nctui.data import DataError, load_dataset
    from nctui.train.trainer import pick_device

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
    return device, data


def _build_trainer(cfg, data, device, run_dir: Path):
    """A trainer that snapshots into `run_dir`; its records go nowhere until `_train` opens the writer."""
    from nctui.control import Control
    from nctui.store.snapshot import save_snapshot
    from nctui.train.trainer import Trainer

    try:
        return Trainer(cfg, data, device, run_dir.name, lambda record: None, Control(),
                       snapshot=functools.partial(save_snapshot, run_dir))
    except ValueError as err:   # a model the data cannot feed, e.g. too many conv layers
        raise _fail(str(err)) from None
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        raise _fail(f"not enough memory for this model ({cfg.model.kind}, width {cfg.model.width}, depth "
                    f"{cfg.model.depth}, channels {cfg.model.channels}); make it smaller") from None


def _out_of_memory(err: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError on the CPU (OutOfMemoryError, a subclass, on CUDA)."""
    return isinstance(err, MemoryError) or "out of memory" in str(err) or "can't allocate memory" in str(err)


def _run(cfg, out: str, headless: bool) -> int:
    """Load data, set up the run directory, train; returns the exit code."""
    import torch

    from nctui.store.rundir import RunDirError, new_run_dir, remove_new_run_dir
    from nctui.train.trainer import describe_device

    device, data = _device_and_data(cfg)
    try:
        run_dir = new_run_dir(out, cfg.name, {
            "config": cfg.to_dict(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "nctui": __version__},
            "device": describe_device(device),
            "data": data.preprocessing,
            "start_time": time.time(),
            "argv": sys.argv,
        })
    except RunDirError as err:
        raise _fail(str(err), EXIT_FAILED) from None
    try:
        trainer = _build_trainer(cfg, data, device, run_dir)
    except click.exceptions.Exit:
        remove_new_run_dir(run_dir)   # a config that cannot start leaves no run behind
        raise
    writer = _open_writer(run_dir, headless)
    _say(f"nctui: run directory {run_dir}")
    return _train(trainer, writer, run_dir, headless)


def _resume(run_dir: Path, overrides: list[str], headless: bool) -> int:
    """Continue a run from its newest readable snapshot, appending to its metrics.jsonl.

    The config is run.json's with the --set of earlier resumes (listed in run.json's
    "resumes") and this one's (`overrides`, RESUMABLE_KEYS only, checked by `run`) applied;
    every snapshot is checked against the model that config builds, and one that fails is
    named on stderr before the next older one is tried.
    """
    from nctui.config import ConfigError, build_config
    from nctui.store.rundir import METRICS, RUN_JSON, RunDirError, read_run_json, write_run_json
    from nctui.store.snapshot import SnapshotError, list_snapshots, read_snapshot

    try:
        info = read_run_json(run_dir)
    except RunDirError as err:
        raise _fail(str(err)) from None
    where = str(run_dir / RUN_JSON)
    earlier = info.get("resumes", [])
    if not isinstance(earlier, list) or not all(
            isinstance(r, dict) and isinstance(r.get("set"), list)
            and all(isinstance(i, str) and i.partition("=")[0].strip() in RESUMABLE_KEYS for i in r["set"])
            for r in earlier):
        raise _fail(f"{where}: malformed \"resumes\" list")
    try:
        cfg = build_config(info["config"], where, [i for r in earlier for i in r["set"]] + overrides)
    except ConfigError as err:
        raise _fail(str(err)) from None
    device, data = _device_and_data(cfg)
    if _data_facts(data.preprocessing) != _data_facts(info.get("data")):
        raise _fail(f"{where}: the training data differ from those the run started with (per-class counts "
                    "or normalisation); refusing to resume on other data")
    trainer = _build_trainer(cfg, data, device, run_dir)
    layout = trainer.checkpoint_layout()
    for _, path in reversed(list_snapshots(run_dir)):
        try:
            snapshot = read_snapshot(path, layout)
            trainer.restore(snapshot.tensors, snapshot.resume, snapshot.eval)
            break
        except SnapshotError as err:
            _say(f"nctui: warning: {err}; trying the next older snapshot")
        except ValueError as err:
            _say(f"nctui: warning: {path}: {err}; trying the next older snapshot")
    else:
        raise _fail(f"{run_dir}: no readable snapshot (snap-<step>.safetensors) to resume from")
    if trainer.progress.step >= trainer.total_steps:
        raise _fail(f"{path}: the run has already trained all {trainer.total_steps} steps of "
                    f"{cfg.train.epochs} epochs; extend it with --set train.epochs=N")
    info["resumes"] = [*earlier, {"step": trainer.progress.step, "snapshot": path.name, "time": time.time(),
                                  "set": overrides, "argv": sys.argv}]
    writer = _open_writer(run_dir, headless)   # first: refused while another process writes the run
    try:
        write_run_json(run_dir, info)
        _end_torn_line(run_dir / METRICS)
    except (RunDirError, OSError) as err:
        writer.close()
        raise _fail(str(err), EXIT_FAILED) from None
    _say(f"nctui: resuming {run_dir} from {path.name} (step {trainer.progress.step} of {trainer.total_steps})")
    return _train(trainer, writer, run_dir, headless)


def _data_facts(preprocessing: object) -> tuple:
    """What must not change between a run and its resume: the class counts and the normalisation."""
    if not isinstance(preprocessing, dict):
        return ()
    return tuple(preprocessing.get(key) for key in ("dataset", "input_shape", "train_per_class", "normalize"))


def _end_torn_line(path: Path) -> None:
    """End a torn last line (a killed run's) so the resumed run's first record starts a line of its own."""
    try:
        with open(path, "rb+") as handle:
            if handle.seek(0, os.SEEK_END) == 0:
                return
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
    except FileNotFoundError:
        pass
    except OSError as err:   # e.g. permissions (a pipe or device was refused by the writer already)
        raise OSError(f"{path}: cannot append to it ({err.strerror or err})") from None


def _open_writer(run_dir: Path, headless: bool):
    """The appender of metrics.jsonl; headless, it echoes each line on stdout."""
    from nctui.store.rundir import RunDirError, RunWriter

    try:
        return RunWriter(run_dir, echo=(lambda line: print(line, flush=True)) if headless else None)
    except RunDirError as err:
        raise _fail(str(err), EXIT_FAILED) from None


def _train(trainer, writer, run_dir: Path, headless: bool) -> int:
    """Train, headless or in the app, the records going to the writer; returns the exit code."""
    from nctui.records import EndRecord
    from nctui.store.rundir import RunDirError

    trainer.emit = writer.write
    control = trainer.control
    _set_threads(trainer.cfg.train.threads, headless)
    exit_for_stop = {"code": EXIT_OK}

    def on_signal(signum: int, _frame: object) -> None:
        name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        exit_for_stop["code"] = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        control.request_stop(f"interrupted by {name}")

    try:
        if headless:
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                end: EndRecord = trainer.run()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        else:
            end, exit_for_stop["code"] = _run_tui(trainer, control)
    except RunDirError as err:   # metrics.jsonl cannot be written (disk full, directory gone): nothing to go on with
        raise _fail(f"{err}; the run stopped at step {trainer.progress.step} (the snapshots written before are "
                    "intact)", EXIT_FAILED) from None
    finally:
        writer.close()
    _say(f"nctui: {end.status}: {end.reason} (step {end.step}); run directory {run_dir}")
    if end.status == "diverged":
        return EXIT_DIVERGED
    if end.status == "failed":
        return EXIT_FAILED
    return exit_for_stop["code"] if end.status == "stopped" else EXIT_OK


def _set_threads(threads: int, headless: bool) -> None:
    """torch's CPU threads: train.threads when set; 0 leaves torch's default headless and one
    core fewer beside the TUI, whose thread needs a core and the GIL between the trainer's ops
    (2 cores: the quickstart trains ~25% faster beside the TUI with 1 thread than with 2)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not headless:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1)))


def _run_tui(trainer, control):
    """Drive the Textual app; the trainer runs in the app's worker thread and posts records.

    SIGINT and SIGTERM quit the app as ctrl+c does, with exit code 130 or 143.
    """
    from nctui.tui.app import NctuiApp

    ended = {}
    write = trainer.emit

    def feed(emit):
        def both(record):
            write(record)
            emit(record)
        trainer.emit = both
        ended["end"] = trainer.run()

    app = NctuiApp(feed, control=control, mode="live", title=trainer.run_name)
    code = app.run()
    if "end" not in ended:   # the trainer raised: only its writer's errors get past it
        raise app.feed_error or RuntimeError("the monitor exited before the run ended")
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


@main.command("open")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path())
def open_run(run_dir: str) -> None:
    """Replay a run in the monitor, or follow one still being written.

    A finished run opens as a replay with a timeline to scrub ([ and ]); a run with no end
    record yet (a headless run in another terminal, a cluster job) is followed live.
    """
    from nctui.store.rundir import RunDirError

    try:
        app, warnings = open_app(Path(run_dir))
    except RunDirError as err:
        raise _fail(str(err)) from None
    if not sys.stdout.isatty():
        raise _fail("nctui open needs a terminal; for scripts read metrics.jsonl (e.g. with jq)")
    for warning in warnings:
        _say(f"nctui: warning: {warning}")
    code = app.run()
    raise click.exceptions.Exit(code if code is not None else EXIT_OK)


def open_app(run_dir: Path):
    """(the monitor fed from `run_dir` as `open_feed` says, warnings); RunDirError if unreadable.

    The feed stops following when the app stops running: asyncio.run joins the feed's thread
    before app.run() returns, so nothing set after it could stop the feed.
    """
    from nctui.tui.app import NctuiApp

    app = None
    mode, feed, warnings = open_feed(run_dir, lambda: app is not None and not app.is_running)
    app = NctuiApp(feed, mode=mode, title=run_dir.resolve().name, notices=warnings)
    return app, warnings


def open_feed(run_dir: Path, should_stop: Callable[[], bool]) -> tuple[str, Callable, list[str]]:
    """(mode, feed, warnings) for `nctui open`: "replay" when the run has ended, else "following".

    The feed emits the records there are (a resumed run's superseded records dropped), then,
    when following, the lines appended since, until an end record or `should_stop()`. Warnings
    name skipped lines and unreadable snapshots; the rest of the run opens regardless.
    """
    from nctui.store.rundir import ReadStats, follow_records, looks_alive, read_records, read_run_json
    from nctui.store.snapshot import SnapshotError, list_snapshots, read_header, splice_resumed

    read_run_json(run_dir)
    stats = ReadStats()
    records = read_records(run_dir, stats)
    warnings = [f"skipped {stats.skipped} unreadable line(s) ({stats.first_error})"] if stats.skipped else []
    for _, snapshot in list_snapshots(run_dir):
        try:
            read_header(snapshot)
        except SnapshotError as err:
            warnings.append(str(err))
    ended = bool(records) and records[-1].type == "end"
    if not ended and not looks_alive(run_dir):
        warnings.append(f"no end record and nothing written for 2 minutes: the run was probably killed "
                        f"(resume it: nctui run --resume {run_dir}); following in case it goes on")

    def feed(emit: Callable) -> None:
        for record in splice_resumed(records):
            emit(record)
        if ended:
            return
        for index, record in enumerate(follow_records(run_dir, should_stop)):
            if index >= len(records):   # the first ones were emitted above
                emit(record)

    return ("replay" if ended else "following"), feed, warnings


@main.command("ls")
@click.argument("directory", metavar="[DIR]", default="snapshots", type=click.Path())
def list_runs(directory: str) -> None:
    """List the runs in DIR (default snapshots/), one line each.

    Each line: name, status, steps done of planned, last NC1, last test accuracy, size. Status
    is the end record's (completed, stopped, diverged, failed); without one, "running" while a
    process writes the run (or its metrics.jsonl changed in the last two minutes), else
    "unfinished" (a killed run: resume it).
    """
    base = Path(directory)
    if not base.is_dir():
        raise _fail(f"{base}: no such directory")
    runs = [base] if (base / "run.json").is_file() else sorted(
        p for p in base.iterdir() if p.is_dir() and ((p / "run.json").is_file() or (p / "metrics.jsonl").is_file()))
    if not runs:
        _say(f"nctui: no runs in {base}")
    rows = [_run_summary(path) for path in runs]
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _run_summary(run_dir: Path) -> tuple[str, ...]:
    """(name, status, steps, nc1, test acc, size) of one run, or its name and why it is unreadable."""
    from nctui.store.rundir import RunDirError, looks_alive, read_records, read_run_json
    from nctui.store.snapshot import splice_resumed

    size = _human_size(_dir_size(run_dir))
    try:
        read_run_json(run_dir)
        records = splice_resumed(read_records(run_dir))
    except RunDirError as err:
        _say(f"nctui: warning: {err}")
        return (run_dir.name, "unreadable", "", "", "", size)
    starts = [r for r in records if r.type == "start"]
    ends = [r for r in records if r.type == "end"]
    evals = [r for r in records if r.type == "eval"]
    steps = [r.step for r in records if r.type != "start" and isinstance(r.step, int)]
    total = starts[-1].total_steps if starts else "?"
    if ends:
        status = ends[-1].status
    else:
        status = "running" if looks_alive(run_dir) else "unfinished"
    nc1 = evals[-1].geometry.get("nc1") if evals else None
    acc = evals[-1].test.get("acc") if evals else None
    return (run_dir.name, status, f"{max(steps, default=0)}/{total} steps",
            f"nc1 {nc1:.3g}" if isinstance(nc1, (int, float)) else "nc1 -",
            f"test acc {acc:.3f}" if isinstance(acc, (int, float)) else "test acc -", size)


def _dir_size(path: Path) -> int:
    """Bytes in the files of `path`; a file renamed or pruned meanwhile (a live run's snapshot) counts 0."""
    total = 0
    for entry in path.iterdir():
        try:
            total += entry.stat().st_size if entry.is_file() else 0
        except OSError:
            pass
    return total


def _human_size(size: float) -> str:
    """Bytes as 812B, 14.2K, 3.1M, 1.2G."""
    exponent = 0
    while size >= 1024 and exponent < 3:
        size, exponent = size / 1024, exponent + 1
    return f"{size:.0f}B" if exponent == 0 else f"{size:.1f}{'KMG'[exponent - 1]}"
