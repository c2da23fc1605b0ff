"""`nctui ls`, and the one-line errors (exit 2) of `run --resume` and `open` on bad input."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from nctui.records import EvalRecord
from nctui.store.rundir import RunDirError, RunWriter, read_records, write_run_json
from nctui.store.snapshot import list_snapshots
from run_fixtures import invoke, one_thread, tiny_run  # noqa: F401 - autouse
from tui_fixtures import full_run, run_records


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("finished"))


def fake_run(run_dir: Path, records: list) -> Path:
    run_dir.mkdir(parents=True)
    write_run_json(run_dir, {"name": run_dir.name, "config": {}})
    writer = RunWriter(run_dir)
    for record in records:
        writer.record(record)
    writer.close()
    return run_dir


def test_ls_prints_one_line_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "snapshots"
    fake_run(runs / "a-done", full_run())
    stale = fake_run(runs / "b-killed", run_records(200))
    os.utime(stale / "metrics.jsonl", (time.time() - 3600, time.time() - 3600))
    fake_run(runs / "c-live", run_records(100))
    (runs / "d-broken").mkdir()
    (runs / "d-broken" / "run.json").write_text("{not json")
    (runs / "not-a-run").mkdir()
    monkeypatch.chdir(tmp_path)
    result = invoke("ls")
    assert result.exit_code == 0
    last: EvalRecord = [r for r in full_run() if r.type == "eval"][-1]
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [line[:3] for line in lines] == [["a-done", "completed", "400/400"], ["b-killed", "unfinished", "200/400"],
                                            ["c-live", "running", "100/400"], ["d-broken", "unreadable", "9B"]]
    assert lines[0][4:9] == ["nc1", f"{last.geometry['nc1']:.3g}", "test", "acc", f"{last.test['acc']:.3f}"]
    assert lines[0][-1].endswith("K")
    assert "d-broken/run.json: not valid JSON" in result.stderr
    assert invoke("ls", str(runs / "a-done")).stdout.split()[0] == "a-done"


def test_ls_of_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("ls", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and result.stderr == f"nctui: error: {tmp_path / 'nowhere'}: no such directory\n"


@pytest.mark.parametrize("args, message", [
    ([], "give CONFIG (a YAML file or preset name) for a new run, or --resume RUN_DIR to continue one"),
    (["quickstart", "--resume", "x"], ", not both"),
    (["--resume", "x", "--set", "train.lr=0.1"], "--set train.lr: cannot be changed when resuming"),
    (["--resume", "x", "--name", "y"], "--name, --out and --run-dir do not apply to --resume"),
    (["--resume", "x", "--out", "y"], "--name, --out and --run-dir do not apply to --resume"),
    (["--resume", "nowhere"], "nowhere: not a run directory (no such directory)"),
])
def test_run_usage_errors(args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "--headless", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("nctui: error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_resume_without_a_readable_snapshot_names_each_one(finished: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(finished, tmp_path / finished.name))
    snapshots = [path for _, path in list_snapshots(run_dir)]
    for path in snapshots:
        path.write_bytes(b"\x80\x04\x95 not a snapshot")
    before = (run_dir / "metrics.jsonl").read_bytes()
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 2
    warnings = [line for line in result.stderr.splitlines() if line.startswith("nctui: warning: ")]
    assert [w.split(": ")[2] for w in warnings] == [str(p) for p in reversed(snapshots)]
    assert result.stderr.splitlines()[-1] == (f"nctui: error: {run_dir}: no readable snapshot "
                                              "(snap-<step>.safetensors) to resume from")
    assert (run_dir / "metrics.jsonl").read_bytes() == before   # nothing appended


def test_resume_refuses_other_data(finished: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(finished, tmp_path / finished.name))
    info = (run_dir / "run.json").read_text().replace('"train_per_class": 20', '"train_per_class": 21')
    (run_dir / "run.json").write_text(info)
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 2 and "the training data differ" in result.stderr


def test_open_errors_name_the_file(finished: Path, tmp_path: Path) -> None:
    missing = invoke("open", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "nowhere: not a run directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = invoke("open", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and f"{tmp_path / 'empty' / 'run.json'}: missing" in empty.stderr
    no_terminal = invoke("open", str(finished))
    assert no_terminal.exit_code == 2 and "nctui open needs a terminal" in no_terminal.stderr
    assert read_records(finished)[-1].type == "end"


def test_train_threads_sets_torch_threads_and_auto_leaves_a_core_to_the_tui(tmp_path: Path, monkeypatch) -> None:
    import torch

    from nctui import runner

    before = torch.get_num_threads()
    try:
        tiny_run(tmp_path, train__threads=2)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        runner.set_threads(0, headless=True)        # auto, headless: torch's own choice stands
        assert torch.get_num_threads() == 1
        torch.set_num_threads(4)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        runner.set_threads(0, headless=False)       # auto beside the TUI: one core fewer
        assert torch.get_num_threads() == 3
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        runner.set_threads(0, headless=False)       # never below one
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_run_being_written_is_running_and_cannot_be_resumed_twice(finished: Path, tmp_path: Path) -> None:
    run_dir = Path(shutil.copytree(finished, tmp_path / finished.name))
    stale = time.time() - 3600
    os.utime(run_dir / "metrics.jsonl", (stale, stale))
    before = (run_dir / "run.json").read_bytes()
    assert invoke("ls", str(run_dir)).stdout.split()[1] == "completed"
    (run_dir / "metrics.jsonl").write_text("".join(
        line + "\n" for line in (run_dir / "metrics.jsonl").read_text().splitlines()[:-1]))   # no end record
    os.utime(run_dir / "metrics.jsonl", (stale, stale))
    assert invoke("ls", str(run_dir)).stdout.split()[1] == "unfinished"
    other = RunWriter(run_dir)   # another process training this run
    try:
        assert invoke("ls", str(run_dir)).stdout.split()[1] == "running"
        with pytest.raises(RunDirError, match="another nctui process is writing this run"):
            RunWriter(run_dir)
        result = invoke("run", "--resume", str(run_dir), "--headless", "--set", "train.epochs=5")
        assert result.exit_code == 1 and "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1] == (f"nctui: error: {run_dir / 'metrics.jsonl'}: another nctui process "
                                                  "is writing this run; let it finish or stop it first")
        assert (run_dir / "run.json").read_bytes() == before   # nothing recorded of the refused resume
    finally:
        other.close()
    assert invoke("run", "--resume", str(run_dir), "--headless", "--set", "train.epochs=5").exit_code == 0


def test_a_run_from_before_the_rng_scheme_refuses_to_resume(tmp_path: Path) -> None:
    """Its batches were drawn under another scheme: a resume could not replay them, so it says so."""
    run_dir = fake_run(tmp_path / "old-run", run_records(100))
    result = invoke("run", "--resume", str(run_dir), "--headless")
    assert result.exit_code == 2
    assert result.stderr.startswith("nctui: error: ") and "older nctui" in result.stderr
    assert "cannot be resumed exactly" in result.stderr and len(result.stderr.splitlines()) == 1
