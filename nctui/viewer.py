"""Assembles the viewer: a run directory read by `RunReader`, shown by the same app that
monitors a live run (`nctui open`, and every browser tab of `nctui serve`). Never loads torch."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from nctui.records import Record
from nctui.store.reader import RunReader
from nctui.store.snapshot import SnapshotError, list_snapshots, read_header
from nctui.store.sweepdir import SWEEP_JSON

Feed = Callable[[Callable[[Record], None]], None]


def open_feed(run_dir: str | Path, should_stop: Callable[[], bool]) -> tuple[str, Feed, list[str]]:
    """(mode, feed, warnings) for one run directory: "replay" when the run has ended, else "following".

    The feed shows the records there are (spliced: the run as it continued), then, when
    following, the records appended since, until an end record or `should_stop()`; a resume
    that starts meanwhile arrives as its start record, which the app splices the same way.
    Warnings name skipped lines and unreadable snapshots; the rest of the run opens regardless.
    RunDirError (naming the file) when the directory is not a readable run.
    """
    reader = RunReader(run_dir).read()
    warnings = list(reader.warnings)
    for _, snapshot in list_snapshots(reader.run_dir):
        try:
            read_header(snapshot)
        except SnapshotError as err:
            warnings.append(str(err))
    ended = reader.end is not None
    if not ended and not reader.alive():
        warnings.append(f"no end record and nothing written for 2 minutes: the run was probably killed "
                        f"(resume it: nctui run --resume {run_dir}); following in case it goes on")
    already = list(reader.records)

    def feed(show: Callable[[Record], None]) -> None:
        for record in already:
            show(record)
        if not ended:
            for record in reader.follow(should_stop):
                show(record)

    return ("replay" if ended else "following"), feed, warnings


def open_app(run_dir: str | Path):
    """(the app showing `run_dir` as `open_feed` says, warnings); RunDirError if unreadable.

    The feed stops following when the app stops running: asyncio.run joins the feed's thread
    before app.run() returns, so nothing set after it could stop the feed.
    """
    from nctui.tui.app import NctuiApp

    app = None
    mode, feed, warnings = open_feed(run_dir, lambda: app is not None and not app.is_running)
    app = NctuiApp(feed, mode=mode, title=Path(run_dir).resolve().name, notices=warnings)
    return app, warnings


def open_viewer(paths: Sequence[str | Path]):
    """(the app for `nctui open PATHS...`, warnings): one run directory opens as `open_app` does;
    several, or a sweep directory, open compare mode (tui.compare), following the runs still
    being written and the sweep's points not started yet. RunDirError or SweepDirError (naming
    the file) when a path cannot be read; a sweep point that cannot be read yet is followed."""
    from nctui.analysis.runs import load_runs
    from nctui.tui.compare.app import CompareApp

    if len(paths) == 1 and not (Path(paths[0]) / SWEEP_JSON).is_file():
        return open_app(paths[0])
    runs = load_runs(paths, pending=True)
    if len(runs) == 1 and runs[0].sweep is None:   # the same run given twice
        return open_app(runs[0].path)
    warnings = [f"{run.name}: {warning}" for run in runs for warning in run.warnings]
    sweeps = list(dict.fromkeys(run.sweep for run in runs if run.sweep))
    title = " + ".join(sweeps) if sweeps and all(run.sweep for run in runs) else ""
    return CompareApp(runs, title=title, notices=warnings), warnings
