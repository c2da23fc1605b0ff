"""Fixtures of the fault tests: one intra-op thread (see run_fixtures.one_thread) and a finished tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from run_fixtures import one_thread, tiny_run  # noqa: F401 - one_thread is autouse for every module here


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:  # noqa: F811
    """The tiny run of run_fixtures trained to the end (30 steps, snapshots at 7, 14, 21 and 30);
    copy it before changing it."""
    return tiny_run(tmp_path_factory.mktemp("finished"))
