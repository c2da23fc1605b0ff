"""SIGKILL at ten moments spread over a run, four of them inside snapshot writes: every run
directory opens, no snapshot under a real name is torn, and --resume continues from the newest
snapshot to the records the uninterrupted run wrote (or says clearly why it cannot)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faults.helpers import Child
from nctui.viewer import open_feed
from nctui.records import splice
from nctui.store.rundir import read_records
from nctui.store.snapshot import list_snapshots, read_snapshot, snapshot_name
from run_fixtures import comparable, invoke, settings

# the event the run pauses at before its SIGKILL -> the snapshot --resume must continue from
# (None: none written yet). The tiny run: 30 steps, evaluations at 0, 10, 20, 30, snapshots at
# 7, 14, 21, 28 and the final one at 30.
MOMENTS = {
    "record start": None,                        # only the start record written
    "record eval 0": None,                       # during the first evaluations
    "fsync .snap-000000007.safetensors.tmp-": None,   # the first snapshot written, not yet renamed
    "record snapshot 7": 7,
    "record step 12": 7,                         # between snapshots
    "fsync .snap-000000014.safetensors.tmp-": 7,
    "replaced snap-000000014.safetensors": 14,   # renamed, its snapshot record not yet written
    "record eval 20": 14,
    "fsync .snap-000000030.safetensors.tmp-": 28,   # the final snapshot half done
    "replaced snap-000000030.safetensors": 30,   # the final snapshot done, no end record: resume writes it
}


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny run per moment, all started at once, each SIGKILLed where it paused."""
    base = tmp_path_factory.mktemp("killed")
    children = {moment: Child(["run", "quickstart", "--headless", "--out", str(base / str(i)), *settings()],
                              pause_at=moment)
                for i, moment in enumerate(MOMENTS)}
    try:
        for moment, child in children.items():
            assert child.paused().startswith(moment)
            child.kill()
            assert child.process.returncode == -9, child.text
    finally:
        for child in children.values():
            child.close()
    return {moment: next((base / str(i)).iterdir()) for i, moment in enumerate(MOMENTS)}


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_killed_run_opens_holds_no_torn_snapshot_and_resumes(moment: str, killed: dict[str, Path],
                                                               finished: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(killed[moment], tmp_path / killed[moment].name))
    records = read_records(run_dir)
    assert records[0].type == "start" and all(r.type != "end" for r in records)
    mode, feed, warnings = open_feed(run_dir, lambda: True)
    seen: list = []
    feed(seen.append)
    assert (mode, warnings, seen) == ("following", [], records)
    listed = invoke("ls", str(tmp_path))
    assert listed.exit_code == 0 and listed.stdout.split()[1] in ("running", "unfinished"), listed.stdout

    snapshots = list_snapshots(run_dir)
    for step, path in snapshots:   # whole, under every real name
        assert read_snapshot(path).step == step
    others = {p.name for p in run_dir.iterdir()} - {p.name for _, p in snapshots} - {"run.json", "metrics.jsonl"}
    assert all(name.startswith(".snap-") and ".tmp-" in name for name in others), others
    newest = MOMENTS[moment]
    assert (snapshots[-1][0] if snapshots else None) == newest

    result = invoke("run", "--resume", str(run_dir), "--headless")
    if newest is None:
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1] == (f"nctui: error: {run_dir}: no readable snapshot "
                                                  "(snap-<step>.safetensors) to resume from")
        return
    if newest == 30:   # every step and the final evaluation recorded: resume writes the end record the kill cut off
        assert result.exit_code == 0, result.stderr
        assert "killed before its end record; wrote it (completed)" in result.stderr
        resumed, reference = read_records(run_dir), read_records(finished)
        assert (resumed[-1].type, resumed[-1].status, resumed[-1].step) == ("end", "completed", 30)
        assert (comparable([r for r in resumed[:-1] if r.type != "snapshot"])
                == comparable([r for r in reference[:-1] if r.type != "snapshot"]))
        return
    assert result.exit_code == 0, result.stderr
    assert f"resuming {run_dir} from {snapshot_name(newest)} (step {newest} of 30)" in result.stderr
    resumed, reference = splice(read_records(run_dir)), read_records(finished)
    # a kill between a snapshot's rename and its record leaves that one record out: compare the rest
    assert (comparable([r for r in resumed if r.type != "snapshot"])
            == comparable([r for r in reference if r.type != "snapshot"]))
    assert [s for s, _ in list_snapshots(run_dir)] == [s for s, _ in list_snapshots(finished)] == [7, 14, 21, 28, 30]
