"""The run directory: run.json and metrics.jsonl (stdlib only; snapshots live in snapshot.py).

`RunWriter` appends one record a line and flushes each, so a kill loses at most the line
being written; `read_records` skips a torn or garbled line instead of failing the run. A
writer holds an advisory lock on metrics.jsonl, so a second one (a `--resume` of a run that
is still training) is refused instead of interleaving its records.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from nctui.records import SCHEMA_VERSION, Checkpoint, Record, RecordError, record_from_json, record_to_json

try:
    import fcntl
except ImportError:   # Windows: no advisory locks, writers are not checked
    fcntl = None

RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
MAX_RUN_JSON_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024 * 1024


class RunDirError(Exception):
    """A run directory that cannot be written or read; the message names the file."""


def new_run_dir(out: str | Path, name: str, info: dict) -> Path:
    """Create <out>/<name>-<UTC timestamp>/ (suffixing -2, -3... if taken) with its run.json and
    an empty metrics.jsonl (see `create_run_dir`)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(out) / f"{name}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as err:
            raise RunDirError(f"cannot create run directory {path}: {err.strerror}") from None
    _fill_run_dir(path, info)
    return path


def create_run_dir(path: Path, info: dict) -> Path:
    """Create exactly `path` as a run directory (a sweep names its runs' directories); refused
    when it exists and is not empty."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise RunDirError(f"{path}: exists and is not empty; a new run needs a new directory "
                              "(resume that one with nctui run --resume)")
    except OSError as err:
        raise RunDirError(f"cannot create run directory {path}: {err.strerror}") from None
    _fill_run_dir(path, info)
    return path


def _fill_run_dir(path: Path, info: dict) -> None:
    """run.json and an empty metrics.jsonl at once: a run killed before its first record then
    still opens (with no records), instead of leaving a directory `open` cannot read."""
    try:
        write_run_json(path, {"name": path.name, **info})
        (path / METRICS).touch()
    except (RunDirError, OSError) as err:
        remove_new_run_dir(path)
        if isinstance(err, RunDirError):
            raise
        raise RunDirError(f"cannot create {path / METRICS}: {err.strerror}") from None


def remove_new_run_dir(path: Path) -> None:
    """Undo `new_run_dir` for a run that never started: its two files, then the directory."""
    for created in (RUN_JSON, METRICS):
        (path / created).unlink(missing_ok=True)
    path.rmdir()


def end_torn_line(path: Path) -> None:
    """End a torn last line (a killed run's) so a resumed run's first record starts a line of its own."""
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


def write_run_json(run_dir: Path, info: dict) -> None:
    """Write run.json atomically (temp file, fsync, rename)."""
    info = {"schema": SCHEMA_VERSION, **info}
    atomic_write_bytes(run_dir / RUN_JSON, (json.dumps(info, indent=2, allow_nan=False) + "\n").encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, then rename: a crash never leaves a torn file under `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {err.strerror}") from None


def read_run_json(run_dir: str | Path) -> dict:
    """Read and sanity-check run.json; a clear RunDirError if missing or malformed."""
    path = Path(run_dir) / RUN_JSON
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir}: not a run directory (no such directory)")
    try:
        check_regular(path)
        if path.stat().st_size > MAX_RUN_JSON_BYTES:
            raise RunDirError(f"{path}: too large for a run.json ({path.stat().st_size} bytes)")
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (is {run_dir} a run directory?)") from None
    except (UnicodeDecodeError, ValueError, RecursionError):   # RecursionError: absurdly nested JSON
        raise RunDirError(f"{path}: not valid JSON") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise RunDirError(f"{path}: not an nctui run.json (no config object)")
    return info


def check_regular(path: Path) -> None:
    """A device or a pipe under a run file's name would never end (or never open): refuse it."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise RunDirError(f"{path}: not a regular file")


class RunWriter:
    """The sink that stores a run: records appended to metrics.jsonl, one flushed line each, and
    snapshots as snap-<step>.safetensors (the newest `keep_snapshots`; 0 keeps all)."""

    def __init__(self, run_dir: Path, keep_snapshots: int = 0) -> None:
        self.run_dir = run_dir
        self.path = run_dir / METRICS
        self.keep_snapshots = keep_snapshots
        check_regular(self.path)   # a pipe would block this open until someone reads it
        try:
            self._handle = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise RunDirError(f"cannot open {self.path} for writing: {err.strerror}") from None
        self._lock()

    def _lock(self) -> None:
        """Take the writer's lock, or refuse: another process is appending to this run."""
        if fcntl is None:
            return
        try:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise RunDirError(f"{self.path}: another nctui process is writing this run; "
                              "let it finish or stop it first") from None
        except OSError:   # a file system without locks (some network mounts): go on unchecked
            pass

    def record(self, record: Record) -> None:
        line = record_to_json(record)
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as err:
            raise RunDirError(f"cannot write {self.path}: {err.strerror}") from None

    def snapshot(self, checkpoint: Checkpoint) -> str:
        """Write the snapshot file; SnapshotError (naming the file) if it cannot be written."""
        from nctui.store.snapshot import write_snapshot   # safetensors and torch only when a run snapshots

        return write_snapshot(self.run_dir, checkpoint, self.keep_snapshots)

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass


def being_written(run_dir: Path) -> bool:
    """Whether a RunWriter (of any local process) holds this run's metrics.jsonl now; False
    where that cannot be told (no such file, no locks here)."""
    path = run_dir / METRICS
    if fcntl is None or not path.is_file():   # a pipe under that name would block the open
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def looks_alive(run_dir: Path, quiet_seconds: float = 120) -> bool:
    """For a run without an end record: is something still writing it? Its writer's lock is
    held, or metrics.jsonl changed within `quiet_seconds` (a writer on another machine of a
    shared file system, where the lock may not be seen)."""
    try:
        recent = time.time() - (run_dir / METRICS).stat().st_mtime < quiet_seconds
    except OSError:
        recent = False
    return recent or being_written(run_dir)


@dataclass
class ReadStats:
    """What reading skipped, so a viewer can say so."""

    skipped: int = 0
    first_error: str = ""


def parse_lines(lines: Iterator[bytes], path: Path, stats: ReadStats, first_number: int = 1) -> Iterator[Record]:
    """The records of metrics.jsonl lines; garbled ones are skipped and counted in `stats`."""
    for number, raw in enumerate(lines, first_number):
        if len(raw) > MAX_LINE_BYTES:
            stats.skipped += 1
            stats.first_error = stats.first_error or f"{path}:{number}: line too long"
            continue
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            yield record_from_json(text)
        except (RecordError, TypeError) as err:
            stats.skipped += 1
            stats.first_error = stats.first_error or f"{path}:{number}: {err}"


def read_records(run_dir: str | Path, stats: ReadStats | None = None) -> list[Record]:
    """Every readable line of a run's metrics.jsonl as written, superseded ones included (RunReader
    gives the run as it continued); torn or garbled lines are skipped and counted in `stats`."""
    path = Path(run_dir) / METRICS
    stats = stats if stats is not None else ReadStats()
    check_regular(path)
    try:
        with open(path, "rb") as handle:
            return list(parse_lines(iter(handle), path, stats))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (is {run_dir} a run directory?)") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot read ({err.strerror})") from None
