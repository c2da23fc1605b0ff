"""The one place a run is assembled: data, trainer, run directory, sink, front end, signals.

`nctui run` (cli.py), a sweep's child processes, bench/ and the tests all come through here.
A record's whole path: the Trainer hands each record to its sink (`Trainer.run(sink)`); the
sink built here is a `Tee` that appends it to metrics.jsonl (`RunWriter.record`) and then
hands it to the front end — `NctuiApp.record` (posts a Textual message; the app's handler adds
it to `RunState`, the next frame draws the visible pane) or, headless, `print_json_line` on
stdout and `ProgressLine` on stderr. Snapshots take the same sink: the trainer's `Checkpoint`
goes to `RunWriter.snapshot`, and a snapshot record follows it.

Under torchrun (nctui/train/distributed.py) every rank comes through here too: each joins the
world first, rank 0 alone reads and writes the run directory (`World.from_main`, `on_main`)
and has the front end, always headless; the other ranks train with a `NullSink`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from nctui import __version__
from nctui.config import Config, ConfigError, build_config
from nctui.records import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, RNG_SCHEME,
                           EndRecord, exit_code_for)
from nctui.store.rundir import (RunDirError, RunWriter, create_run_dir, end_torn_line, new_run_dir, read_run_json,
                               remove_new_run_dir, write_run_json)
from nctui.store.snapshot import SnapshotError, list_snapshots, read_checkpoint
from nctui.train.sink import NullSink, Tee

if TYPE_CHECKING:   # torch is imported only once a run is assembled
    from nctui.train.distributed import World

# what `run --resume --set` may change: the plan and the bookkeeping, never the model, data or optimizer
RESUMABLE_KEYS = ("train.epochs", "train.device", "train.cuda_graph", "train.threads", "monitor.log_every",
                  "monitor.eval_every", "monitor.snapshot_every", "monitor.snapshot_minutes",
                  "monitor.keep_snapshots", "monitor.progress_seconds")


class RunError(Exception):
    """A run that cannot start or go on: one line for the user and the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple:   # whole when rank 0 passes it to the other ranks
        return RunError, (str(self), self.code)


def say(message: str) -> None:
    """Human progress: always stderr, so stdout stays pure JSON lines."""
    print(message, file=sys.stderr, flush=True)


# --- a new run -------------------------------------------------------------------------------


def start_run(cfg: Config, *, out: str | Path = "snapshots", run_dir: str | Path | None = None,
              headless: bool = True) -> int:
    """Train `cfg` in a new run directory (`run_dir` exactly, else <out>/<name>-<UTC>); the exit code.

    Under torchrun rank 0 creates the directory and the other ranks learn its path from it."""
    world = _join_world(cfg)
    try:
        return _start(cfg, world, out, run_dir, headless)
    finally:
        world.leave()


def _start(cfg: Config, world: World, out: str | Path, run_dir: str | Path | None, headless: bool) -> int:
    device, data = world.device, _load_data(cfg)
    info = {"config": cfg.to_dict(), "versions": _versions(), "device": _describe_device(device),
            "world_size": world.size, "backend": world.backend, "data": data.preprocessing,
            "rng_scheme": RNG_SCHEME, "start_time": time.time(), "argv": sys.argv}
    try:
        path = world.from_main(lambda: create_run_dir(Path(run_dir), info) if run_dir is not None
                               else new_run_dir(out, cfg.name, info))
    except RunDirError as err:
        raise RunError(str(err), EXIT_FAILED) from None
    try:
        trainer = _build_trainer(cfg, data, device, path.name, world)
        writer = world.on_main(lambda: _open_writer(path, cfg))
    except RunError:
        if world.is_main:
            remove_new_run_dir(path)   # a config that cannot start leaves no run behind
        raise
    if world.is_main:
        say(f"nctui: run directory {path}")
    return _train(trainer, writer, path, headless)


# --- resuming --------------------------------------------------------------------------------


def resume_run(run_dir: str | Path, overrides: list[str], headless: bool = True) -> int:
    """Continue a run from its newest readable snapshot, appending to its metrics.jsonl.

    The config is run.json's with the --set of earlier resumes (listed in run.json's
    "resumes") and `overrides` (RESUMABLE_KEYS only) applied; every snapshot is checked
    against the model that config builds, and one that fails is named on stderr before the
    next older one is tried.

    Under torchrun every rank reads run.json (the run directory must be on a file system every
    node sees); rank 0 reads the snapshot and gives it to the others, and alone writes.
    """
    run_dir = Path(run_dir)
    info, cfg = read_resumable(run_dir, overrides)
    world = _join_world(cfg)
    try:
        return _resume(run_dir, info, cfg, overrides, world, headless)
    finally:
        world.leave()


def _resume(run_dir: Path, info: dict, cfg: Config, overrides: list[str], world: World, headless: bool) -> int:
    device, data = world.device, _load_data(cfg)
    if _data_facts(data.preprocessing) != _data_facts(info.get("data")):
        raise RunError(f"{run_dir / 'run.json'}: the training data differ from those the run started with "
                       "(per-class counts or normalisation); refusing to resume on other data")
    trainer = _build_trainer(cfg, data, device, run_dir.name, world)
    checkpoint, path = world.from_main(lambda: _restore_newest(trainer, run_dir))
    if not world.is_main:   # rank 0 read the snapshot and restored from it: the others take the same
        trainer.restore(checkpoint)
    if trainer.progress.step >= trainer.total_steps:
        if _end_missing(run_dir):   # every rank reads it; rank 0 alone writes
            return _write_missing_end(run_dir, cfg, trainer.progress.step) if world.is_main else EXIT_OK
        raise RunError(f"{path}: the run has already trained all {trainer.total_steps} steps of "
                       f"{cfg.train.epochs} epochs; extend it with --set train.epochs=N")
    info["resumes"] = [*info.get("resumes", []), {"step": trainer.progress.step, "snapshot": path.name,
                                                   "time": time.time(), "set": overrides, "argv": sys.argv,
                                                   "world_size": world.size, "backend": world.backend}]
    writer = world.on_main(lambda: _reopen(run_dir, cfg, info))
    if world.is_main:
        say(f"nctui: resuming {run_dir} from {path.name} (step {trainer.progress.step} of {trainer.total_steps})")
    return _train(trainer, writer, run_dir, headless)


def _end_missing(run_dir: Path) -> bool:
    """Whether the run's records stop without an end record (it was killed)."""
    from nctui.store.reader import RunReader

    try:
        return RunReader(run_dir).read().end is None
    except RunDirError:
        return False


def _write_missing_end(run_dir: Path, cfg: Config, step: int) -> int:
    """A run killed after its final snapshot but before its end record has every step and its
    last evaluation recorded: end it as completed, saying so, rather than refuse to resume it."""
    from nctui.store.reader import RunReader

    writer = _open_writer(run_dir, cfg)   # refused while another process writes the run
    try:
        end_torn_line(run_dir / "metrics.jsonl")
        records = RunReader(run_dir).read().records
        elapsed = next((r.elapsed for r in reversed(records) if isinstance(getattr(r, "elapsed", None), float)), 0.0)
        writer.record(EndRecord(step=step, status="completed", elapsed=elapsed,
                                reason=f"trained {cfg.train.epochs} epochs (end record written on resume: the run "
                                       "was killed after its final snapshot)"))
    except (RunDirError, OSError) as err:
        raise RunError(str(err), EXIT_FAILED) from None
    finally:
        writer.close()
    say(f"nctui: {run_dir} had trained all its steps and was killed before its end record; wrote it (completed)")
    return EXIT_OK


def _restore_newest(trainer, run_dir: Path) -> tuple:
    """Restore `trainer` from the newest snapshot that fits it, naming each one that fails on
    stderr; returns (the checkpoint, its path)."""
    layout = trainer.layout()
    for _, path in reversed(list_snapshots(run_dir)):
        try:
            checkpoint = read_checkpoint(path, layout)
            trainer.restore(checkpoint)
            return checkpoint, path
        except SnapshotError as err:
            say(f"nctui: warning: {err}; trying the next older snapshot")
        except ValueError as err:
            say(f"nctui: warning: {path}: {err}; trying the next older snapshot")
    raise RunError(f"{run_dir}: no readable snapshot (snap-<step>.safetensors) to resume from")


def _reopen(run_dir: Path, cfg: Config, info: dict) -> RunWriter:
    """The writer of a resumed run, with run.json listing this resume and a torn last line ended."""
    writer = _open_writer(run_dir, cfg)   # first: refused while another process writes the run
    try:
        write_run_json(run_dir, info)
        end_torn_line(run_dir / "metrics.jsonl")
    except (RunDirError, OSError) as err:
        writer.close()
        raise RunError(str(err), EXIT_FAILED) from None
    return writer


def _data_facts(preprocessing: object) -> tuple:
    """What must not change between a run and its resume: the class counts and the normalisation."""
    if not isinstance(preprocessing, dict):
        return ()
    return tuple(preprocessing.get(key) for key in ("dataset", "input_shape", "train_per_class", "normalize"))


# --- the pieces ------------------------------------------------------------------------------


def _versions() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "nctui": __version__}


def _describe_device(device) -> str:
    from nctui.train.trainer import describe_device

    return describe_device(device)


def _join_world(cfg: Config) -> World:
    """The device a config asks for and this process's place among the ranks (train/distributed.py):
    one process, or one rank under torchrun. RunError: exit 2 for what the user can fix (no CUDA,
    a batch the ranks cannot share), 1 when the other ranks cannot be reached."""
    from nctui.train.distributed import CollectiveError, WorldError, join_world
    from nctui.train.trainer import pick_device

    try:
        return join_world(pick_device(cfg.train.device), cfg.train.batch_size)
    except CollectiveError as err:
        raise RunError(str(err), EXIT_FAILED) from None
    except (RuntimeError, WorldError) as err:   # pick_device: cuda asked for, none there
        raise RunError(str(err)) from None


def _load_data(cfg: Config):
    """The data set a config asks for; RunError (exit 2) if unavailable."""
    from nctui.data import DataError, load_dataset

    try:
        return load_dataset(cfg.data, cfg.seed, progress=sys.stderr.isatty())
    except DataError as err:
        raise RunError(str(err)) from None


def _build_trainer(cfg: Config, data, device, run_name: str, world: World):
    from nctui.train.trainer import Trainer

    try:
        return Trainer(cfg, data, device, run_name, world.new_control(), world)
    except ValueError as err:   # a model the data cannot feed, e.g. too many conv layers
        raise RunError(str(err)) from None
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        m = cfg.model
        raise RunError(f"not enough memory for this model ({m.kind}, width {m.width}, depth {m.depth}, "
                       f"channels {m.channels}); make it smaller") from None


def _out_of_memory(err: BaseException) -> bool:
    """torch reports a failed allocation as a RuntimeError on the CPU (OutOfMemoryError, a subclass, on CUDA)."""
    return isinstance(err, MemoryError) or "out of memory" in str(err) or "can't allocate memory" in str(err)


def _open_writer(run_dir: Path, cfg: Config) -> RunWriter:
    try:
        return RunWriter(run_dir, keep_snapshots=cfg.monitor.keep_snapshots)
    except RunDirError as err:
        raise RunError(str(err), EXIT_FAILED) from None


def set_threads(threads: int, headless: bool) -> None:
    """torch's CPU threads: train.threads when set; 0 leaves torch's default headless and one
    core fewer beside the TUI, whose thread needs a core and the GIL between the trainer's ops
    (2 cores: the quickstart trains ~25% faster beside the TUI with 1 thread than with 2)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif not headless:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - 1)))


def _train(trainer, writer: RunWriter | None, run_dir: Path, headless: bool) -> int:
    """Train with the front end chosen, the records going to the writer first; returns the exit code.
    Under torchrun: headless, and only rank 0 has a writer (the others None)."""
    world = trainer.world
    if world.distributed and not headless:
        if world.is_main:
            say(f"nctui: under torchrun: running headless (no TUI); follow the run with `nctui open {run_dir}`")
        headless = True
    set_threads(trainer.cfg.train.threads, headless)
    try:
        if headless:
            end, stop_code = _train_headless(trainer, writer)
        else:
            end, stop_code = _train_in_app(trainer, writer)
    except RunDirError as err:   # metrics.jsonl cannot be written (disk full, directory gone): nothing to go on with
        raise RunError(f"{err}; the run stopped at step {trainer.progress.step} (the snapshots written before "
                       "are intact)", EXIT_FAILED) from None
    finally:
        if writer is not None:
            writer.close()
    if world.is_main:
        say(f"nctui: {end.status}: {end.reason} (step {end.step}); run directory {run_dir}")
    elif end.status == "failed":   # its own records go nowhere: its error is the clue to rank 0's
        say(f"nctui: rank {world.rank}: {end.status}: {end.reason} (step {end.step})")
    return exit_code_for(end.status, stop_code)


def _train_headless(trainer, writer: RunWriter | None) -> tuple[EndRecord, int]:
    """JSON lines on stdout, progress on stderr; SIGINT and SIGTERM stop the run cleanly.
    Without a writer (a rank other than 0) nothing is written or printed."""
    from nctui.headless import ProgressLine, print_json_line

    sink = NullSink() if writer is None else Tee(
        writer, print_json_line, ProgressLine(sys.stderr, every_seconds=trainer.cfg.monitor.progress_seconds))
    with _signals_stop(trainer.control) as stop:
        end = trainer.run(sink)
    return end, stop.code


class _SignalStop:
    """The exit code a SIGINT or SIGTERM asked for (EXIT_OK while none came)."""

    code: int = EXIT_OK


@contextlib.contextmanager
def _signals_stop(control) -> Iterator[_SignalStop]:
    """While inside, SIGINT and SIGTERM ask `control` to stop: the run ends cleanly at its next
    step (final snapshot, end record `stopped`); the handlers before are put back after."""
    stop = _SignalStop()

    def on_signal(signum: int, _frame: object) -> None:
        stop.code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        control.request_stop(f"interrupted by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _train_in_app(trainer, writer: RunWriter) -> tuple[EndRecord, int]:
    """The Textual app in front; the trainer runs in its worker thread, records reach the app
    through `app.record`. SIGINT and SIGTERM quit the app as ctrl+c does (130, 143)."""
    from nctui.tui.app import NctuiApp

    ended: list[EndRecord] = []
    app = NctuiApp(lambda show: ended.append(trainer.run(Tee(writer, show))), control=trainer.control,
                   mode="live", title=trainer.run_name)
    code = app.run()
    if not ended:   # the trainer raised: only its writer's errors get past it
        raise app.feed_error or RuntimeError("the monitor exited before the run ended")
    return ended[0], code if code is not None else EXIT_OK


# --- packs: runs trained together as one stacked model (nctui/train/packed.py) ---------------


def start_pack(configs: list[Config], run_dirs: list[str | Path]) -> int:
    """Train `configs` headless as one pack, member k in the new run directory run_dirs[k]; the
    exit code (the worst member's). Each member directory is an ordinary run (`nctui run --resume`
    continues it alone, `resume_pack` with the others). The configs must pack
    (nctui.sweep.packing.pack_key), else RunError before anything is written."""
    run_dirs = [Path(path) for path in run_dirs]
    _check_pack(configs, run_dirs)
    device = _pack_device(configs[0])
    datasets = _pack_data(configs, device)
    created: list[Path] = []
    try:
        trainers = []
        for cfg, data, path in zip(configs, datasets, run_dirs):
            info = {"config": cfg.to_dict(), "versions": _versions(), "device": _describe_device(device),
                    "world_size": 1, "backend": None, "data": data.preprocessing, "rng_scheme": RNG_SCHEME,
                    "start_time": time.time(), "argv": sys.argv, "packed_with": _others(run_dirs, path)}
            try:
                created.append(create_run_dir(path, info))
            except RunDirError as err:
                raise RunError(str(err), EXIT_FAILED) from None
            trainers.append(_build_trainer(cfg, data, device, path.name, _single_world(device)))
        writers = []
        for cfg, path in zip(configs, run_dirs):
            writers.append(_open_writer(path, cfg))
    except RunError:
        for path in created:   # a pack that cannot start leaves no run behind
            remove_new_run_dir(path)
        raise
    say(f"nctui: pack of {len(run_dirs)} runs: {', '.join(str(p) for p in run_dirs)}")
    return _train_pack(trainers, writers, run_dirs)


def resume_pack(run_dirs: list[str | Path], overrides: list[str] | None = None) -> int:
    """Continue runs as one pack from their newest readable snapshots, which must be at one step
    (a pack trains in step; RunError otherwise: resume them alone with `resume_run`)."""
    run_dirs, overrides = [Path(path) for path in run_dirs], list(overrides or [])
    read = [read_resumable(path, overrides) for path in run_dirs]
    configs = [cfg for _, cfg in read]
    _check_pack(configs, run_dirs)
    device = _pack_device(configs[0])
    datasets = _pack_data(configs, device)
    trainers, snapshots = [], []
    for (info, cfg), data, path in zip(read, datasets, run_dirs):
        if _data_facts(data.preprocessing) != _data_facts(info.get("data")):
            raise RunError(f"{path / 'run.json'}: the training data differ from those the run started with "
                           "(per-class counts or normalisation); refusing to resume on other data")
        trainer = _build_trainer(cfg, data, device, path.name, _single_world(device))
        snapshots.append(_restore_newest(trainer, path)[1])
        if trainer.progress.step >= trainer.total_steps:
            raise RunError(f"{snapshots[-1]}: the run has already trained all {trainer.total_steps} steps of "
                           f"{cfg.train.epochs} epochs; extend it with --set train.epochs=N")
        trainers.append(trainer)
    steps = {t.progress.step for t in trainers}
    if len(steps) > 1:
        at = ", ".join(f"{p.name} at step {t.progress.step}" for p, t in zip(run_dirs, trainers))
        raise RunError(f"a pack resumes from one step, but the newest snapshots are {at}; resume them one by one "
                       "(nctui run --resume RUN_DIR)")
    writers = []
    try:
        for (info, cfg), path, snapshot, trainer in zip(read, run_dirs, snapshots, trainers):
            info["resumes"] = [*info.get("resumes", []), {
                "step": trainer.progress.step, "snapshot": snapshot.name, "time": time.time(), "set": overrides,
                "argv": sys.argv, "world_size": 1, "backend": None, "packed_with": _others(run_dirs, path)}]
            writers.append(_reopen(path, cfg, info))
    except RunError:
        for writer in writers:
            writer.close()
        raise
    say(f"nctui: resuming a pack of {len(run_dirs)} runs from step {trainers[0].progress.step} of "
        f"{trainers[0].total_steps}")
    return _train_pack(trainers, writers, run_dirs)


def read_resumable(run_dir: Path, overrides: list[str]) -> tuple[dict, Config]:
    """run.json of a run to resume and the config it resumes with (its earlier resumes' --set and
    `overrides`, RESUMABLE_KEYS only); RunError naming the file or the key otherwise."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise RunError(f"--set {key}: cannot be changed when resuming (only {', '.join(RESUMABLE_KEYS)}); "
                           "start a new run to change the model, the data or the optimizer")
    try:
        info = read_run_json(run_dir)
    except RunDirError as err:
        raise RunError(str(err)) from None
    where = str(run_dir / "run.json")
    if info.get("rng_scheme") != RNG_SCHEME:
        raise RunError(f"{where}: written by an older nctui that drew its batches under another random-number "
                       "scheme; it cannot be resumed exactly (start it again, or open it to look at it)")
    earlier = info.get("resumes", [])
    if not isinstance(earlier, list) or not all(
            isinstance(r, dict) and isinstance(r.get("set"), list)
            and all(isinstance(i, str) and i.partition("=")[0].strip() in RESUMABLE_KEYS for i in r["set"])
            for r in earlier):
        raise RunError(f"{where}: malformed \"resumes\" list")
    try:
        return info, build_config(info["config"], where, [i for r in earlier for i in r["set"]] + overrides)
    except ConfigError as err:
        raise RunError(str(err)) from None


def _check_pack(configs: list[Config], run_dirs: list[Path]) -> None:
    from nctui.sweep.packing import MEMBER_KEYS, pack_key

    if not configs or len(configs) != len(run_dirs):
        raise RunError(f"a pack needs one run directory per config ({len(configs)} configs, {len(run_dirs)} "
                       "directories)")
    if len({path.resolve() for path in run_dirs}) < len(run_dirs):
        raise RunError("a pack's members need run directories of their own (one is given twice)")
    first = pack_key(configs[0].to_dict())
    for cfg, path in zip(configs[1:], run_dirs[1:]):
        if pack_key(cfg.to_dict()) != first:
            raise RunError(f"{path}: its config cannot train in a pack with {run_dirs[0]}'s: members may differ "
                           f"only in {', '.join(MEMBER_KEYS)} (the seed only on data that do not depend on it)")


def _pack_device(cfg: Config):
    from nctui.train.distributed import launched
    from nctui.train.trainer import pick_device

    if launched():
        raise RunError("a pack trains in one process: run it without torchrun")
    try:
        return pick_device(cfg.train.device)
    except RuntimeError as err:
        raise RunError(str(err)) from None


def _single_world(device):
    from nctui.train.distributed import World

    return World.single(device)


def _pack_data(configs: list[Config], device) -> list:
    """Each member's data set, loaded once per seed and checked equal, all sharing the first one's
    tensors, on the device (each keeps its own preprocessing record for its run.json)."""
    import dataclasses

    import torch

    loaded: dict[int, object] = {}
    for cfg in configs:
        if cfg.seed not in loaded:
            loaded[cfg.seed] = _load_data(cfg)
    first = loaded[configs[0].seed]
    tensors = {name: getattr(first, name).to(device) for name in ("train_x", "train_y", "test_x", "test_y")}
    for seed, data in loaded.items():
        if not all(torch.equal(getattr(data, name), getattr(first, name)) for name in tensors):
            raise RunError(f"seeds {configs[0].seed} and {seed} draw different data sets: their runs cannot "
                           "share a pack")
    return [dataclasses.replace(loaded[cfg.seed], **tensors) for cfg in configs]


def _others(run_dirs: list[Path], path: Path) -> list[str]:
    return [other.name for other in run_dirs if other != path]


def _train_pack(trainers: list, writers: list[RunWriter], run_dirs: list[Path]) -> int:
    """Train the pack headless: records to each member's writer (nothing on stdout), the first
    member's progress on stderr; SIGINT and SIGTERM stop every member cleanly."""
    from nctui.headless import ProgressLine
    from nctui.records import EXIT_DIVERGED
    from nctui.train.packed import PackedTrainer

    set_threads(trainers[0].cfg.train.threads, headless=True)
    try:
        pack = PackedTrainer(trainers)
    except ValueError as err:
        for writer in writers:
            writer.close()
        raise RunError(str(err)) from None
    progress = ProgressLine(sys.stderr, every_seconds=trainers[0].cfg.monitor.progress_seconds)
    sinks = [Tee(writer, progress) if k == 0 else Tee(writer) for k, writer in enumerate(writers)]
    try:
        with _signals_stop(pack.control) as stop:
            ends = pack.run(sinks)
    finally:
        for writer in writers:
            writer.close()
    for path, end, error in zip(run_dirs, ends, pack.errors):
        if error is not None:
            say(f"nctui: error: {error}; {path} stopped at step {end.step} (its snapshots are intact)")
        else:
            say(f"nctui: {end.status}: {end.reason} (step {end.step}); run directory {path}")
    codes = {EXIT_FAILED if error is not None else exit_code_for(end.status, stop.code)
             for end, error in zip(ends, pack.errors)}
    return next((code for code in (EXIT_FAILED, EXIT_TERMINATED, EXIT_INTERRUPTED, EXIT_DIVERGED) if code in codes),
                EXIT_OK)
