"""`nctui sweep`: argument parsing and messages (the lead registers `sweep` in cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from nctui.records import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def _say(message: str) -> None:
    """Human messages go to stderr; stdout carries only what --executor print and --dry-run list."""
    click.echo(message, err=True)


def _fail(message: str, code: int = EXIT_USAGE) -> click.exceptions.Exit:
    _say(f"nctui: error: {message}")
    return click.exceptions.Exit(code)


@click.command("sweep")
@click.argument("spec", metavar="[SPEC]", required=False)
@click.option("--resume", "resume_dir", metavar="SWEEP_DIR", default=None,
              help="Finish the sweep in SWEEP_DIR: resume stopped or killed runs, start unstarted ones.")
@click.option("--out", type=click.Path(file_okay=False), default="snapshots", show_default=True,
              help="Directory that receives the sweep directory.")
@click.option("--jobs", type=click.IntRange(1, 4096), default=None,
              help="Runs (or packs) at a time (local executor); the CPU cores are divided between them "
                   "(default: with packing on a CPU one a core, up to 8; else 1).")
@click.option("--executor", type=click.Choice(["local", "print", "slurm"]), default="local", show_default=True,
              help="local: run the points here; print: print one `nctui run` command per point to run; "
                   "slurm: write an sbatch array script (task i runs point i) and print the sbatch command.")
@click.option("--dry-run", is_flag=True, help="Expand and validate, list the points, write nothing.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where every run trains (default: the config's train.device).")
@click.option("--pack", "most", type=click.IntRange(1, 4096), default=None, metavar="K",
              help="Train up to K compatible points (differing only in lr, weight decay, momentum, target scale "
                   "or seed) as one packed model, each still its own run directory (default: sized from the "
                   "device: the points spread over the jobs, up to 8 a pack on a CPU, 32 on a GPU; local and "
                   "print executors).")
@click.option("--no-pack", is_flag=True, help="Train every point alone, one process each.")
@click.option("--slurm", "slurm_items", multiple=True, metavar="KEY=VALUE",
              help="With --executor slurm: an sbatch option (partition=gpu, time=02:00:00, gpus-per-task=2, ...) "
                   "or nproc_per_run=N (each point as N torchrun processes); repeatable.")
def sweep(spec: str | None, resume_dir: str | None, out: str, jobs: int | None, executor: str, dry_run: bool,
          device: str | None, most: int | None, no_pack: bool, slurm_items: tuple[str, ...]) -> None:
    """Run every point of a sweep spec, each an ordinary run directory inside one sweep directory.

    SPEC (YAML; docs/sweeps.md) names a base config (a preset or a file) and the values to vary:
    `grid` (Cartesian product), `zip` (lists that vary together), `seeds`, plus `set` for every
    run. Every point's config is validated before anything starts. The sweep directory
    <out>/<name>-<UTC time>/ holds sweep.json, base.yaml, logs/ and one run directory per point,
    named from its values (e.g. wd=1e-3_s0).

    Ctrl+C or SIGTERM stops every run cleanly (each writes its final snapshot); `--resume
    SWEEP_DIR` later resumes stopped or killed runs from their snapshots and starts the rest.
    Exit code: 0 when every point completed (or diverged), 1 when one failed, 2 for a bad spec,
    130 or 143 when interrupted.
    """
    if (spec is None) == (resume_dir is None):
        raise _fail("give SPEC (a sweep spec YAML file) for a new sweep, or --resume SWEEP_DIR to finish one"
                    + (", not both" if spec else ""))
    if resume_dir is not None and click.get_current_context().get_parameter_source("out") == ParameterSource.COMMANDLINE:
        raise _fail("--out does not apply to --resume: the sweep keeps its directory")
    slurm = _slurm_settings(executor, slurm_items)
    if no_pack and most is not None:
        raise _fail("--pack and --no-pack contradict each other")
    if most is not None and executor == "slurm":
        raise _fail("--pack applies to the local and print executors (a Slurm array task runs one point)")
    packing = 1 if no_pack or executor == "slurm" else most   # 1: alone; None: sized from the device
    try:
        if resume_dir is not None:
            code = _resume(Path(resume_dir), jobs, executor, dry_run, device, slurm, packing)
        else:
            code = _new(Path(spec), out, jobs, executor, dry_run, device, slurm, packing)
    except KeyboardInterrupt:   # before any run started: nothing to stop
        _say("nctui: sweep: interrupted")
        code = EXIT_INTERRUPTED
    raise click.exceptions.Exit(code)


def _slurm_settings(executor: str, items: tuple[str, ...]) -> dict[str, str]:
    from nctui.sweep.slurm import SlurmError, parse_settings

    if items and executor != "slurm":
        raise _fail("--slurm applies to --executor slurm only")
    try:
        return parse_settings(items)
    except SlurmError as err:
        raise _fail(str(err)) from None


def _new(spec_path: Path, out: str, jobs: int | None, executor: str, dry_run: bool, device: str | None,
         slurm: dict[str, str], packing: int | None) -> int:
    from nctui.store.sweepdir import SweepDirError
    from nctui.sweep.engine import create, default_threads
    from nctui.sweep.spec import SpecError, load_spec, plan

    try:
        the_plan = plan(load_spec(spec_path))
    except SpecError as err:
        raise _fail(str(err)) from None
    varying = ", ".join(the_plan.varying) or "nothing"
    if dry_run:
        _, most = _sized(jobs, packing, device or the_plan.base_config["train"]["device"], len(the_plan.points))
        packs = _planned_packs(the_plan, most)
        for point in the_plan.points:
            pack = f"[pack {packs[point.index]}]  " if point.index in packs else ""
            click.echo(f"{point.name}  {pack}" + " ".join(f"--set {item}" for item in point.overrides))
        _say(f"nctui: sweep {the_plan.spec.name}: {len(the_plan.points)} points, varying {varying}; "
             "dry run: nothing written")
        return EXIT_OK
    try:
        sweep_dir, lock, manifest = create(the_plan, out)
    except SweepDirError as err:
        raise _fail(str(err), EXIT_FAILED) from None
    _say(f"nctui: sweep {sweep_dir}: {len(the_plan.points)} points, varying {varying}")
    jobs, packing = _sized(jobs, packing, device or the_plan.base_config["train"]["device"], len(the_plan.points))
    threads = default_threads(the_plan.base_config["train"]["threads"], jobs)
    return _execute(sweep_dir, manifest, lock, _all_tasks(manifest), jobs, executor, device, threads, slurm,
                    packing)


def _sized(jobs: int | None, packing: int | None, device: str, count: int) -> tuple[int, int]:
    """(jobs, most points a pack): what was given, the rest sized from the device (sweep/packing.py)."""
    from nctui.sweep.packing import size

    return size(device, jobs, packing, count)


def _planned_packs(the_plan, most: int) -> dict[int, int]:
    """Point index -> the number of the pack it would train in (1, 2, ...), as the sweep will
    group them (sweep/packing.py); points that would train alone are left out."""
    from nctui.config import build_config
    from nctui.sweep.executors import Task
    from nctui.sweep.packing import group
    from nctui.sweep.state import START

    if most <= 1 or len(the_plan.points) < 2:
        return {}
    tasks = [Task(index=p.index, point={"name": p.name}, action=START) for p in the_plan.points]
    configs = [build_config(the_plan.base_config, the_plan.spec.name, p.overrides).to_dict() for p in the_plan.points]
    packs = [task for task in group(tasks, configs, most) if task.members]
    return {member.index: number for number, task in enumerate(packs, 1) for member in task.members}


def _all_tasks(manifest: dict) -> list:
    from nctui.sweep.executors import Task
    from nctui.sweep.state import START

    return [Task(index=i, point=p, action=START) for i, p in enumerate(manifest["points"])]


def _resume(sweep_dir: Path, jobs: int | None, executor: str, dry_run: bool, device: str | None,
            slurm: dict[str, str], packing: int | None) -> int:
    from nctui.config import ConfigError
    from nctui.store.sweepdir import SweepBusyError, SweepDirError
    from nctui.sweep.engine import default_threads, prepare_resume
    from nctui.sweep.state import KEEP

    try:
        resumption = prepare_resume(sweep_dir)
    except SweepBusyError as err:
        raise _fail(str(err), EXIT_FAILED) from None
    except (SweepDirError, ConfigError) as err:
        raise _fail(str(err)) from None
    manifest, states = resumption.manifest, resumption.states
    if dry_run:
        for point, state in zip(manifest["points"], states):
            action = "untouched" if state.action == KEEP else state.action
            click.echo(f"{point['name']}  {state.status}  {action}" + (f" ({state.detail})" if state.detail else ""))
        resumption.lock.release()
        _say(f"nctui: sweep {sweep_dir}: dry run: nothing changed")
        return EXIT_OK
    for point, state in zip(manifest["points"], states):
        if state.detail and state.action != KEEP:
            _say(f"nctui: sweep: {point['name']} {state.status}: {state.detail}")
    tasks = resumption.tasks
    try:
        resumption.clear_restarts()
    except (OSError, SweepDirError) as err:
        resumption.lock.release()
        raise _fail(str(err), EXIT_FAILED) from None
    _say(f"nctui: sweep {sweep_dir}: {len(manifest['points']) - len(tasks)} points finished, {len(tasks)} to run")
    jobs, packing = _sized(jobs, packing, device or resumption.base.train.device, len(tasks))
    threads = default_threads(resumption.base.train.threads, jobs)
    return _execute(sweep_dir, manifest, resumption.lock, tasks, jobs, executor, device, threads, slurm, packing)


def _execute(sweep_dir: Path, manifest: dict, lock, tasks: list, jobs: int, executor: str, device: str | None,
             threads: int | None, slurm: dict[str, str], packing: int) -> int:
    """Run or print the tasks, holding the sweep's lock, compatible ones in packs of at most
    `packing` points; then say how the sweep stands."""
    from nctui.config import ConfigError
    from nctui.store.sweepdir import SweepDirError
    from nctui.sweep.executors import print_commands, run_local
    from nctui.sweep.packing import pack_tasks
    from nctui.sweep.progress import Row, counts

    try:
        if packing != 1:
            try:
                tasks = pack_tasks(sweep_dir, manifest, tasks, packing)
            except ConfigError as err:
                raise _fail(str(err)) from None
            packs = [task for task in tasks if task.members]
            if packs:
                _say(f"nctui: sweep: {sum(len(t.members) for t in packs)} points train in {len(packs)} "
                     f"pack{'s' if len(packs) > 1 else ''} "
                     f"(of up to {max(len(t.members) for t in packs)}); --no-pack trains each alone")
        if executor == "print":
            print_commands(sweep_dir, manifest, tasks, device, threads, sys.stdout)
            _say(f"nctui: sweep {sweep_dir}: {len(tasks)} commands printed; afterwards `nctui sweep --resume "
                 f"{sweep_dir}` reruns whatever they left unfinished")
            return EXIT_OK
        if executor == "slurm":
            from nctui.sweep.slurm import prepare_submission

            try:
                command, note = prepare_submission(sweep_dir, manifest, tasks, slurm, device)
            except SweepDirError as err:
                raise _fail(str(err), EXIT_FAILED) from None
            if command:
                click.echo(command)
            _say(note)
            return EXIT_OK
        display = _display(sweep_dir.name)
        try:
            code = run_local(sweep_dir, manifest, tasks, jobs, device, threads, display)
        except SweepDirError as err:   # sweep.json could not be updated (disk full?): the runs were stopped
            raise _fail(f"{err}; resume the sweep once that is fixed: nctui sweep --resume {sweep_dir}",
                        EXIT_FAILED) from None
    finally:
        lock.release()
    rows = [Row(index=i, name=p["name"], status=p["status"]) for i, p in enumerate(manifest["points"])]
    _say(f"nctui: sweep {sweep_dir}: {counts(rows)}")
    if code != EXIT_OK:
        _say(f"nctui: sweep: resume it with: nctui sweep --resume {sweep_dir}")
    return code


def _display(title: str):
    """A live table on a terminal, plain lines otherwise (both on stderr)."""
    from rich.console import Console

    from nctui.sweep.progress import LiveDisplay, PlainDisplay

    if sys.stderr.isatty():
        return LiveDisplay(Console(stderr=True), title)
    return PlainDisplay(sys.stderr)
