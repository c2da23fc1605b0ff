"""`nctui` as a test subprocess that stops dead at one chosen moment, so a signal lands exactly there.

Run as `python pausing_entry.py ARGS` with NCTUI_TEST_PAUSE_AT set to the start of an event
(empty: never pause):
`record <type> <step>` (after a metrics.jsonl line is written, before the front end sees it), `fsync <file>` (a
temporary file written, not yet renamed: `fsync .snap-000000014.safetensors.tmp-`) or
`replaced <file>` (just renamed, before anything else). At a matching event it prints
`nctui-test: paused at <event>` on stderr and waits until a stop is requested (SIGINT or
SIGTERM through nctui's handlers) or a SIGKILL ends it. Nothing in nctui itself knows about this.
Linux only: file names come from /proc/self/fd.
"""

from __future__ import annotations

import os
import threading
import time

import nctui.store.rundir as rundir
from nctui.cli import entry
from nctui.control import Control
from nctui.records import Record

PAUSE_AT = os.environ["NCTUI_TEST_PAUSE_AT"]
stopped = threading.Event()
real_fsync, real_replace = os.fsync, os.replace
real_write, real_request_stop = rundir.RunWriter.record, Control.request_stop


def checkpoint(event: str) -> None:
    """Pause here (in short sleeps, so signal handlers run) if this is the chosen moment."""
    if not PAUSE_AT or not event.startswith(PAUSE_AT):
        return
    os.write(2, f"nctui-test: paused at {event}\n".encode())   # fd 2: the TUI captures sys.stderr
    deadline = time.monotonic() + 600
    while not stopped.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)


def fsync(fd: int) -> None:
    checkpoint("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
    real_fsync(fd)


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    real_replace(src, dst)
    checkpoint("replaced " + os.path.basename(dst))


def write(self: rundir.RunWriter, record: Record) -> None:
    real_write(self, record)
    checkpoint(f"record {record.type} {getattr(record, 'step', '')}".rstrip())


def request_stop(self: Control, reason: str = "stopped by the user") -> None:
    real_request_stop(self, reason)
    stopped.set()


os.fsync, os.replace, rundir.RunWriter.record, Control.request_stop = fsync, replace, write, request_stop
entry()
