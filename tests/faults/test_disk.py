"""Disk trouble: a run directory that cannot be created or written, and a disk that fills up
while a snapshot or metrics.jsonl is being written. The run stops with a clear error (exit 1),
the snapshots written before stay intact, no temporary file is left, and resume carries on."""

from __future__ import annotations

import builtins
import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest

import nctui.store.rundir as rundir
from faults.helpers import assert_one_line_error
from nctui.viewer import open_feed
from nctui.store.rundir import read_records
from nctui.store.snapshot import list_snapshots, read_snapshot, snapshot_name
from run_fixtures import invoke, settings


class FailingDisk:
    """Stands in for `open` in nctui.store.rundir: a file whose name starts with `prefix` cannot be
    opened for writing (`budget` None), or, as on a filling disk, the write that passes `budget`
    bytes written to such files in all writes what fits and fails, and so does every later one."""

    def __init__(self, prefix: str, code: int, budget: int | None = None) -> None:
        self.prefix, self.code, self.left = prefix, code, budget

    def error(self, path: object) -> OSError:
        return OSError(self.code, os.strerror(self.code), str(path))

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = builtins.open(file, mode, *args, **kwargs)
        if "r" in mode or not Path(file).name.startswith(self.prefix):
            return handle
        if self.left is None:
            handle.close()
            raise self.error(file)
        return FillingFile(handle, self)


class FillingFile:
    """A file on a FailingDisk with a byte budget."""

    def __init__(self, handle: Any, disk: FailingDisk) -> None:
        self.handle, self.disk = handle, disk

    def write(self, data: str | bytes) -> int:
        fits = max(min(len(data), self.disk.left), 0)
        self.disk.left -= len(data)
        if self.disk.left < 0:
            self.handle.write(data[:fits])
            self.handle.flush()
            raise self.disk.error(self.handle.name)
        return self.handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def tiny(out: Path) -> list[str]:
    return ["run", "quickstart", "--headless", "--out", str(out), *settings()]


def test_out_inside_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = invoke(*tiny(tmp_path / "file" / "runs"))
    assert_one_line_error(result, 1, f"cannot create run directory {tmp_path / 'file' / 'runs'}/quickstart-",
                          ": Not a directory")


def test_a_run_directory_that_cannot_be_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, real_mkdir = tmp_path / "runs", os.mkdir
    out.mkdir()

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).parent == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    result = invoke(*tiny(out))
    assert_one_line_error(result, 1, f"cannot create run directory {out}/quickstart-", ": Permission denied")
    assert list(out.iterdir()) == []


def test_a_run_directory_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir, "open", FailingDisk(".run.json", errno.EACCES), raising=False)
    result = invoke(*tiny(tmp_path))
    assert_one_line_error(result, 1, f"cannot write {tmp_path}/quickstart-", "/run.json: Permission denied")
    assert list(tmp_path.iterdir()) == []   # the directory that could not take its run.json is gone


@pytest.mark.parametrize("prefix, code, budget", [(".snap-000000014", errno.EACCES, None),
                                                 (".snap-", errno.ENOSPC, 600_000)], ids=["unwritable", "full"])
def test_a_snapshot_that_cannot_be_written_stops_the_run(prefix: str, code: int, budget: int | None,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first snapshot (about 450 kB) fits; the second cannot be written, or fills the disk."""
    why = os.strerror(code)
    with monkeypatch.context() as patch:
        patch.setattr(rundir, "open", FailingDisk(prefix, code, budget), raising=False)
        result = invoke(*tiny(tmp_path))
    (run_dir,) = tmp_path.iterdir()
    reason = f"SnapshotError: cannot write {run_dir}/{snapshot_name(14)}: {why}"
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-1] == f"nctui: failed: {reason} (step 14); run directory {run_dir}"
    end = read_records(run_dir)[-1]
    assert (end.type, end.status, end.reason, end.step) == ("end", "failed", reason, 14)
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl", "run.json", snapshot_name(7)]
    assert read_snapshot(run_dir / snapshot_name(7)).step == 7
    resumed = invoke("run", "--resume", str(run_dir), "--headless")   # the disk has room again
    assert resumed.exit_code == 0 and f"from {snapshot_name(7)}" in resumed.stderr, resumed.stderr
    assert [s for s, _ in list_snapshots(run_dir)] == [7, 14, 21, 28, 30]


def test_a_full_disk_under_metrics_jsonl_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(rundir, "open", FailingDisk("metrics.jsonl", errno.ENOSPC, budget=15_000), raising=False)
        result = invoke(*tiny(tmp_path))
    (run_dir,) = tmp_path.iterdir()
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("nctui: ")]   # not the progress lines
    assert lines[0] == f"nctui: run directory {run_dir}" and len(lines) == 2, result.stderr
    match = re.fullmatch(rf"nctui: error: cannot write {re.escape(str(run_dir))}/metrics.jsonl: No space left on "
                         r"device; the run stopped at step (\d+) \(the snapshots written before are intact\)", lines[1])
    assert match, lines[1]
    stopped_at = int(match.group(1))
    snapshots = list_snapshots(run_dir)
    assert snapshots and all(step <= stopped_at and read_snapshot(path).step == step for step, path in snapshots)
    mode, _, warnings = open_feed(run_dir, lambda: True)   # the torn last line is skipped and named
    assert mode == "following" and len(warnings) == 1 and warnings[0].startswith("skipped 1 unreadable line(s)")
