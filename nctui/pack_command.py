"""`nctui pack` (hidden): several runs trained as one packed model, as a sweep's child process.

`nctui sweep` starts one per pack of compatible points (nctui/sweep/packing.py); the work is
done by runner.start_pack / runner.resume_pack. Each member is an ordinary run directory.
"""

from __future__ import annotations

from pathlib import Path

import click

from nctui.records import EXIT_USAGE


def _fail(message: str, code: int = EXIT_USAGE) -> click.exceptions.Exit:
    click.echo(f"nctui: error: {message}", err=True)
    return click.exceptions.Exit(code)


@click.command("pack", hidden=True)
@click.argument("targets", nargs=-1, metavar="SWEEP_DIR | RUN_DIR...")
@click.option("--points", default=None, metavar="I,J,...",
              help="The sweep's points (indices in sweep.json) to start as one pack.")
@click.option("--resume", is_flag=True, help="Continue the RUN_DIRs as one pack from their newest snapshots.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With --resume: change what `nctui run --resume --set` may change, for every member.")
@click.option("--threads", type=click.IntRange(1, 4096), default=None,
              help="torch CPU threads (train.threads of every new member that does not set its own).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where the pack trains (default: the config's train.device).")
def pack(targets: tuple[str, ...], points: str | None, resume: bool, overrides: tuple[str, ...],
         threads: int | None, device: str | None) -> None:
    """Train runs that differ only in lr, weight decay, momentum, target scale or seed as one
    stacked model, headless; each writes its own ordinary run directory.

    \b
      nctui pack SWEEP_DIR --points 0,3,5      start those points of a sweep as one pack
      nctui pack --resume RUN_DIR RUN_DIR...   continue runs as one pack (their snapshots at one step)

    Exit code: 0 when every member completed, 1 when one failed, 3 when one diverged, 2 for
    bad arguments, 130 or 143 when interrupted.
    """
    from nctui.config import ConfigError
    from nctui.runner import RunError, resume_pack, start_pack

    device_set = [f"train.device={device}"] if device else []
    try:
        if resume:
            if points is not None or threads is not None:
                raise _fail("--points and --threads do not apply to --resume (use --set train.threads=N)")
            if not targets:
                raise _fail("--resume needs the run directories of the pack's members")
            code = resume_pack([Path(t) for t in targets], [*overrides, *device_set])
        else:
            if len(targets) != 1 or points is None:
                raise _fail("give SWEEP_DIR and --points I,J,... to start a pack, or --resume RUN_DIR...")
            if overrides:
                raise _fail("--set applies to --resume only: a new pack's configs are its sweep's points")
            configs, run_dirs = _sweep_points(Path(targets[0]), points, threads, device_set)
            code = start_pack(configs, run_dirs)
    except (ConfigError, RunError) as err:
        raise _fail(str(err), getattr(err, "code", EXIT_USAGE)) from None
    raise click.exceptions.Exit(code)


def _sweep_points(sweep_dir: Path, points: str, threads: int | None, extra: list[str]) -> tuple[list, list[Path]]:
    """The configs and run directories of a sweep's points, as `nctui run` would build them
    from the sweep's base config and each point's overrides."""
    from nctui.config import load_config
    from nctui.store.sweepdir import SweepDirError, read_manifest

    try:
        manifest = read_manifest(sweep_dir)
    except SweepDirError as err:
        raise _fail(str(err)) from None
    entries = manifest["points"]
    try:
        indices = [int(item) for item in points.split(",")]
    except ValueError:
        raise _fail(f"--points {points}: expected point indices such as 0,3,5") from None
    if not indices or any(not 0 <= i < len(entries) for i in indices) or len(set(indices)) < len(indices):
        raise _fail(f"--points {points}: the sweep has points 0 to {len(entries) - 1}, each given once")
    configs, run_dirs = [], []
    for i in indices:
        point = entries[i]
        own_threads = any(item.startswith("train.threads=") for item in point["overrides"])
        threads_set = [f"train.threads={threads}"] if threads and not own_threads else []
        configs.append(load_config(sweep_dir / manifest["base_file"], [*point["overrides"], *threads_set, *extra]))
        run_dirs.append(sweep_dir / point["run_dir"])
    return configs, run_dirs


if __name__ == "__main__":   # how a sweep starts a pack: python -m nctui.pack_command ...
    pack(prog_name="nctui pack")
