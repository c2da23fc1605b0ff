"""SIGINT and SIGTERM, headless and in the TUI: the trainer finishes its step, writes a final
snapshot and an end record `stopped` naming the signal, and nctui exits 130 or 143."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from faults.helpers import Child
from nctui.store.rundir import read_records
from nctui.store.snapshot import list_snapshots, read_snapshot, snapshot_name
from run_fixtures import settings

CASES = [(sig, terminal) for terminal in (False, True) for sig in (signal.SIGINT, signal.SIGTERM)]
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def case_id(case: tuple[signal.Signals, bool]) -> str:
    return f"{case[0].name}-{'tui' if case[1] else 'headless'}"


@pytest.fixture(scope="module")
def signalled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """Each case's run, paused after its evaluation at step 10 and sent its signal there:
    case id -> (exit code, everything it wrote, run directory). All run at once."""
    base = tmp_path_factory.mktemp("signalled")
    children = {}
    for case in CASES:
        terminal = case[1]
        args = ["run", "quickstart", "--out", str(base / case_id(case)), *settings()]
        children[case_id(case)] = Child(args if terminal else [*args, "--headless"], pause_at="record eval 10",
                                        terminal=(100, 30) if terminal else None)
    try:
        for (sig, _), child in zip(CASES, children.values()):
            assert child.paused() == "record eval 10"
            child.process.send_signal(sig)
        codes = {name: child.finish() for name, child in children.items()}
    finally:
        for child in children.values():
            child.close()
    return {name: (codes[name], child.text, next((base / name).iterdir())) for name, child in children.items()}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_signal_stops_with_a_final_snapshot_and_its_exit_code(
        case: tuple[signal.Signals, bool], signalled: dict[str, tuple[int, str, Path]]) -> None:
    sig, terminal = case
    code, output, run_dir = signalled[case_id(case)]
    assert code == EXIT_CODES[sig], output[-2000:]
    records = read_records(run_dir)
    end = records[-1]
    assert (end.type, end.status, end.reason, end.step) == ("end", "stopped", f"interrupted by {sig.name}", 10)
    assert (records[-2].type, records[-2].path, records[-2].reason) == ("snapshot", snapshot_name(10), "final")
    assert [s for s, _ in list_snapshots(run_dir)] == [7, 10]
    assert read_snapshot(run_dir / snapshot_name(10)).reason == "final"
    assert f"nctui: stopped: interrupted by {sig.name} (step 10); run directory {run_dir}" in output
