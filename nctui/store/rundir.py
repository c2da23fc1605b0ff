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
from typing import Callable, Iterator

from nctui.records import SCHEMA_VERSION, Record, RecordError, record_from_json, record_to_json

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


def new_run_dir(out: str | Path, name: str, info: dict | None = None) -> Path:
    """Create <out>/<name>-<UTC timestamp>/ (suffixing -2, -3... if taken) and, given `info`,
    its run.json and an empty metrics.jsonl at once: a run killed before its first record then
    still opens (with no records), instead of leaving a directory `open` cannot read."""
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
    if info is not None:
        try:
            write_run_json(path, {"name": path.name, **info})
            (path / METRICS).touch()
        except (RunDirError, OSError) as err:
            remove_new_run_dir(path)
            if isinstance(err, RunDirError):
                raise
            raise RunDirError(f"cannot create {path / METRICS}: {err.strerror}") from None
    return path


def remove_new_run_dir(path: Path) -> None:
    """Undo `new_run_dir` for a run that never started: its two files, then the directory."""
    for created in (RUN_JSON, METRICS):
        (path / created).unlink(missing_ok=True)
    path.rmdir()


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
        _check_regular(path)
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


def _check_regular(path: Path) -> None:
    """A device or a pipe under a run file's name would never end (or never open): refuse it."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise RunDirError(f"{path}: not a regular file")


class RunWriter:
    """Appends records to metrics.jsonl, one flushed line each; optionally echoes to a stream."""

    def __init__(self, run_dir: Path, echo: Callable[[str], None] | None = None) -> None:
        self.run_dir = run_dir
        self.path = run_dir / METRICS
        self._echo = echo
        _check_regular(self.path)   # a pipe would block this open until someone reads it
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

    def write(self, record: Record) -> None:
        line = record_to_json(record)
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as err:
            raise RunDirError(f"cannot write {self.path}: {err.strerror}") from None
        if self._echo is not None:
            self._echo(line)

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


def _parse_lines(lines: Iterator[bytes], path: Path, stats: ReadStats) -> Iterator[Record]:
    for number, raw in enumerate(lines, 1):
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
    """All readable records of a run; torn or garbled lines are skipped and counted in `stats`."""
    path = Path(run_dir) / METRICS
    stats = stats if stats is not None else ReadStats()
    _check_regular(path)
    try:
        with open(path, "rb") as handle:
            return list(_parse_lines(iter(handle), path, stats))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing (is {run_dir} a run directory?)") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot read ({err.strerror})") from None


def follow_records(run_dir: str | Path, should_stop: Callable[[], bool], poll: float = 0.25,
                   stats: ReadStats | None = None) -> Iterator[Record]:
    """Yield records as they are appended (tail -f), until an end record or `should_stop()`.

    A partial last line is held back until its newline arrives, so a line being written is
    never mistaken for a torn one.
    """
    path = Path(run_dir) / METRICS
    stats = stats if stats is not None else ReadStats()
    pending = b""
    with open(path, "rb") as handle:
        while not should_stop():
            chunk = handle.read(1 << 20)
            if not chunk:
                time.sleep(poll)
                continue
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for record in _parse_lines(iter(complete), path, stats):
                yield record
                if record.type == "end":
                    return
