"""What the fault tests share: nctui subprocesses (on a pipe or a pseudo-terminal) paused at a
chosen moment, and the check that an error is one clear line with the right exit code."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from click.testing import Result

from run_fixtures import SUBPROCESS_ENV

PAUSING_ENTRY = Path(__file__).with_name("pausing_entry.py")
PAUSED = b"nctui-test: paused at "
ALTERNATE_SCREEN = b"\x1b[?1049h"   # a full-screen app (the TUI) starts drawing


class Child:
    """An nctui subprocess whose stdout and stderr, merged, are collected as it runs.

    With `pause_at`, it stops dead at that moment (see pausing_entry.py); with `terminal`, it runs
    on a pseudo-terminal of that size (columns, rows), as under a terminal emulator, so that
    `nctui run` starts the TUI.
    """

    def __init__(self, args: list[str], pause_at: str = "", terminal: tuple[int, int] | None = None) -> None:
        env = {**SUBPROCESS_ENV, "NCTUI_TEST_PAUSE_AT": pause_at, "TERM": "xterm-256color"}
        command = [sys.executable, str(PAUSING_ENTRY), *args]
        self.output = b""
        if terminal is None:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, env=env)
            self.fd = self.process.stdout.fileno()
            return
        self.fd, follower = os.openpty()
        self._set_size(*terminal)
        self.process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=env,
                                        close_fds=True)
        os.close(follower)

    def read(self, timeout: float) -> bool:
        """Collect what the child wrote within `timeout` seconds; False once it has closed its end."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.fd, 1 << 16)
        except OSError:   # a pseudo-terminal whose child has exited
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, text: bytes, timeout: float = 120, start: int = 0) -> None:
        """Read until `text` has been written (after the first `start` bytes); fail with the output
        if the child ends or stalls first."""
        deadline = time.monotonic() + timeout
        while text not in self.output[start:]:
            assert time.monotonic() < deadline and self.read(0.1), \
                f"no {text!r} from the child; it wrote:\n{self.output.decode(errors='replace')[-3000:]}"

    def paused(self, timeout: float = 120) -> str:
        """Wait until the child pauses at its chosen moment; returns the event it paused at."""
        self.wait_for(PAUSED, timeout)
        self.wait_for(b"\n", timeout)
        return self.output.split(PAUSED, 1)[1].split(b"\n", 1)[0].decode().strip()

    def finish(self, timeout: float = 60) -> int:
        """Wait for the child to exit, reading all it writes meanwhile; returns its exit code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read(0.1):
            if self.process.poll() is not None and not select.select([self.fd], [], [], 0.05)[0]:
                break   # exited, and all it wrote has been read
        try:
            return self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            self.close()

    def kill(self) -> None:
        """SIGKILL: nothing in the child runs after this."""
        self.process.send_signal(signal.SIGKILL)
        self.finish()

    def send(self, keys: bytes) -> None:
        """Type on the pseudo-terminal."""
        os.write(self.fd, keys)

    def resize(self, columns: int, rows: int) -> None:
        """Resize the pseudo-terminal and tell the child, as a terminal emulator does."""
        self._set_size(columns, rows)
        self.process.send_signal(signal.SIGWINCH)

    def _set_size(self, columns: int, rows: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        elif self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


def assert_one_line_error(result: Result, code: int, *parts: str) -> str:
    """The command failed with `code` and one line on stderr, `nctui: error: ...`, holding every
    one of `parts`; nothing on stdout, no traceback. Returns the line."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nctui: error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]
