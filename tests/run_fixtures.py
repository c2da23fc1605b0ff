"""Tiny real runs for the snapshot, resume and open tests: about a second of training each.

An FC 784-32-32-10 on 200 synthetic samples, batch 20 (10 steps an epoch), a step record every
3 steps, an evaluation every 10 and a snapshot every 7: snapshots fall between records and
evaluations, where resume has the most state to carry. On the CPU, where records must repeat
exactly.
"""

from __future__ import annotations

import dataclasses
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from click.testing import CliRunner, Result

from nctui.cli import main
from nctui.records import Record

TINY = {
    "data.synthetic.train_per_class": 20, "data.synthetic.test_per_class": 10, "model.width": 32,
    "model.depth": 3, "train.batch_size": 20, "train.epochs": 3, "train.device": "cpu", "monitor.log_every": 3,
    "monitor.eval_every": 10, "monitor.early_evals": False, "monitor.snapshot_every": 7, "monitor.noise_batches": 2,
}
# fields that measure time, not training
CLOCK_FIELDS = ("time", "elapsed", "eval_seconds", "samples_per_s")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread while a module of these tests runs (import this fixture to use it).

    Tiny tensors gain nothing from more, and on a busy machine spinning OpenMP threads slow
    them a hundredfold; subprocesses get the same through SUBPROCESS_ENV, so that their
    floating-point results match this process's.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def settings(**changes: object) -> list[str]:
    """--set arguments for the tiny run, with `changes` (keys with __ for dots: train__epochs=5)."""
    values = {**TINY, **{key.replace("__", "."): value for key, value in changes.items()}}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def nctui_command(*args: str) -> list[str]:
    """The nctui console command, for a subprocess (the same interpreter as the tests; env=SUBPROCESS_ENV)."""
    return [sys.executable, "-c", "from nctui.cli import entry; entry()", *args]


def invoke(*args: str) -> Result:
    """Run `nctui ARGS` in this process (stdout and stderr captured separately)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tiny_run(out: Path, **changes: object) -> Path:
    """Train the tiny run headless in this process; returns its run directory."""
    result = invoke("run", "quickstart", "--headless", "--out", str(out), *settings(**changes))
    assert result.exit_code == 0, result.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def comparable(records: list[Record]) -> list[dict]:
    """Records without start records and clock readings: what must equal between two runs."""
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in CLOCK_FIELDS}
            for r in records if r.type != "start"]


class Terminal:
    """A command on a pseudo-terminal, as a person runs it: wait for text on its screen, type keys."""

    def __init__(self, args: list[str]) -> None:
        self._leader, follower = os.openpty()
        env = {**SUBPROCESS_ENV, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
        self.process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
        os.close(follower)
        self.screen = b""

    def _read(self, timeout: float) -> bool:
        """Take what the program wrote within `timeout`; False once it closed the terminal."""
        if select.select([self._leader], [], [], timeout)[0]:
            try:
                self.screen += os.read(self._leader, 1 << 16)
            except OSError:
                return False
        return True

    def wait_for(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while text not in self.screen and time.time() < deadline and self._read(0.1):
            pass
        assert text in self.screen, f"{text!r} never appeared"

    def type(self, keys: bytes) -> None:
        os.write(self._leader, keys)

    def wait_exit(self, timeout: float = 20) -> int:
        """The exit code, reading the screen meanwhile so the program never blocks on a full terminal."""
        deadline = time.time() + timeout
        while self.process.poll() is None and time.time() < deadline and self._read(0.1):
            pass
        return self.process.wait(timeout=max(deadline - time.time(), 1))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._leader)
