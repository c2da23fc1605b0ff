"""The sweep directory: its manifest sweep.json, written atomically, read suspiciously, and the
lock that makes one process at a time run a sweep (stdlib only).

A sweep directory holds sweep.json (docs/sweeps.md: the spec, the expanded points with their
overrides, each point's run directory relative to the sweep directory, its last known status),
base.yaml (the resolved base config every point starts from), logs/ (each point's stderr) and
one ordinary run directory per started point. The process running the sweep holds an advisory
lock on sweep.lock for as long as it runs, so a second `nctui sweep --resume` is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nctui.store.rundir import RunDirError, atomic_write_bytes, check_regular

try:
    import fcntl
except ImportError:   # Windows: no advisory locks, concurrent resumes are not checked
    fcntl = None

SWEEP_JSON = "sweep.json"
LOCK_FILE = "sweep.lock"
FORMAT = "nctui.sweep"
SCHEMA = 1
MAX_SWEEP_JSON_BYTES = 64 * 1024 * 1024
# a point's run directory: one path component of letters, digits and . _ + - =, starting with a letter or digit
POINT_DIR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")
# an override as `--set` takes it: a dotted config key, =, a value
OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=.*", re.DOTALL)
POINT_STATUSES = ("pending", "running", "completed", "stopped", "diverged", "failed", "killed")


class SweepDirError(Exception):
    """A sweep directory that cannot be written or read; the message names the file."""


class SweepBusyError(SweepDirError):
    """Another process runs this sweep (it holds the lock) or one of its runs."""


class SweepLock:
    """An exclusive advisory lock on <sweep>/sweep.lock, held while a process runs the sweep."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = Path(sweep_dir) / LOCK_FILE
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as err:
            raise SweepDirError(f"cannot open {self.path}: {err.strerror}") from None
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise SweepDirError(f"{self.path}: not a regular file")
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise SweepBusyError(f"{Path(sweep_dir)}: another nctui process is running this sweep "
                                f"(it holds {LOCK_FILE}); let it finish or stop it first") from None
        except OSError:   # a file system without locks (some network mounts): go on unchecked
            pass

    def release(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def is_locked(sweep_dir: str | Path) -> bool:
    """Whether a process runs this sweep now; False where that cannot be told."""
    path = Path(sweep_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
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


def create_sweep_dir(out: str | Path, name: str, manifest: dict, files: dict[str, bytes]) -> tuple[Path, SweepLock]:
    """Create <out>/<name>-<UTC timestamp>/ (suffixing -2, -3... if taken) holding sweep.json and
    `files`, locked by the caller; returns (path, lock).

    The directory is filled and locked under a hidden temporary name, then renamed: a sweep
    directory is never seen without its manifest, nor unlocked before its process runs it.
    """
    out = Path(out)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = out / f".{name}-{stamp}.tmp-{os.getpid()}"
    try:
        tmp.mkdir(parents=True)
    except OSError as err:
        raise SweepDirError(f"cannot create a sweep directory in {out}: {err.strerror}") from None
    lock = None
    try:
        for file_name, data in files.items():
            atomic_write_bytes(tmp / file_name, data)
        write_manifest(tmp, manifest)
        lock = SweepLock(tmp)
        path, n = out / f"{name}-{stamp}", 1
        while True:
            if not path.exists():
                try:
                    os.rename(tmp, path)
                    return path, lock
                except OSError as err:
                    if not path.exists():
                        raise SweepDirError(f"cannot create sweep directory {path}: {err.strerror}") from None
            n += 1
            path = out / f"{name}-{stamp}-{n}"
    except (RunDirError, SweepDirError) as err:
        if lock is not None:
            lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise SweepDirError(str(err)) from None


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    """Write sweep.json atomically (temp file, fsync, rename)."""
    manifest = {"format": FORMAT, "schema": SCHEMA, **manifest, "updated": time.time()}
    try:
        atomic_write_bytes(Path(sweep_dir) / SWEEP_JSON,
                           (json.dumps(manifest, indent=1, allow_nan=False) + "\n").encode())
    except RunDirError as err:
        raise SweepDirError(str(err)) from None


def read_manifest(sweep_dir: str | Path) -> dict:
    """Read sweep.json and check what every reader relies on; a clear SweepDirError naming it if
    it is missing, not JSON, not a sweep manifest, or holds a point that could escape the sweep
    directory or would not run as written."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SWEEP_JSON
    if not sweep_dir.is_dir():
        raise SweepDirError(f"{sweep_dir}: not a sweep directory (no such directory)")
    try:
        check_regular(path)
        if path.is_symlink() or path.is_dir():
            raise SweepDirError(f"{path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_SWEEP_JSON_BYTES:
            raise SweepDirError(f"{path}: too large for a sweep.json ({size} bytes)")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except RunDirError as err:
        raise SweepDirError(str(err)) from None
    except FileNotFoundError:
        raise SweepDirError(f"{path}: missing (is {sweep_dir} a sweep directory?)") from None
    except (UnicodeDecodeError, ValueError, RecursionError):   # RecursionError: absurdly nested JSON
        raise SweepDirError(f"{path}: corrupt (not valid JSON)") from None
    except OSError as err:
        raise SweepDirError(f"{path}: cannot read ({err.strerror})") from None
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest: Any, path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SweepDirError(f"{path}: not an nctui sweep manifest (no \"format\": \"{FORMAT}\")")
    schema = manifest.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= SCHEMA:
        raise SweepDirError(f"{path}: schema {schema!r} is not one this nctui reads (1..{SCHEMA}); "
                            "a newer nctui wrote it?")
    for key, kind in (("name", str), ("base_file", str), ("spec", dict), ("varying", list), ("points", list)):
        if not isinstance(manifest.get(key), kind):
            raise SweepDirError(f"{path}: corrupt: \"{key}\" missing or not a {kind.__name__}")
    if not POINT_DIR.fullmatch(manifest["base_file"]):
        raise SweepDirError(f"{path}: corrupt: base_file {manifest['base_file']!r} is not a plain file name")
    if not manifest["points"]:
        raise SweepDirError(f"{path}: corrupt: no points")
    seen = set()
    for index, point in enumerate(manifest["points"]):
        where = f"{path}: corrupt: point {index}"
        if not isinstance(point, dict):
            raise SweepDirError(f"{where}: not an object")
        if not isinstance(point.get("name"), str) or not isinstance(point.get("values"), dict):
            raise SweepDirError(f"{where}: \"name\" or \"values\" missing")
        run_dir = point.get("run_dir")
        if not isinstance(run_dir, str) or not POINT_DIR.fullmatch(run_dir):
            raise SweepDirError(f"{where}: run_dir {run_dir!r} is not a plain directory name")
        if run_dir in seen:
            raise SweepDirError(f"{where}: run_dir {run_dir} given twice")
        seen.add(run_dir)
        overrides = point.get("overrides")
        if not isinstance(overrides, list) or not all(isinstance(o, str) and OVERRIDE.fullmatch(o)
                                                      for o in overrides):
            raise SweepDirError(f"{where}: \"overrides\" is not a list of KEY=VALUE strings")
        if point.get("status") not in POINT_STATUSES:
            raise SweepDirError(f"{where}: unknown status {point.get('status')!r}")
