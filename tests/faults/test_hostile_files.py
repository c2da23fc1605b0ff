"""Hostile files in a run directory, for `nctui open` and `nctui run --resume`: each is rejected
with a message naming the file (open shows it in the monitor, which stays up; resume falls back
to the next older snapshot or refuses in one line), and nothing in them is ever executed."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from faults.helpers import ALTERNATE_SCREEN, Child, assert_one_line_error
from nctui.viewer import open_app
from nctui.store.rundir import read_records
from nctui.store.snapshot import read_header, snapshot_name
from run_fixtures import invoke
from tui_fixtures import settle

HOSTILE = snapshot_name(35)   # newer than the run's last snapshot (30): resume tries it first
PLANTED = "planted-by-unpickling"   # the file a payload creates if anything ever unpickles it


class Plant:
    """Unpickling this creates the file PLANTED in the current directory: proof of execution."""

    def __reduce__(self) -> tuple:
        return open, (os.path.abspath(PLANTED), "w")


def pickle_payload(run_dir: Path) -> None:
    (run_dir / HOSTILE).write_bytes(pickle.dumps({"model.weight": Plant()}))


def torch_save_payload(run_dir: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"model.weight": Plant()}, buffer)   # a .pt checkpoint, renamed
    (run_dir / HOSTILE).write_bytes(buffer.getvalue())


def oversized_header(run_dir: Path) -> None:
    (run_dir / HOSTILE).write_bytes(struct.pack("<Q", 200 << 20) + b'{"__metadata__": {}}')


def nested_header(run_dir: Path) -> None:
    blob = b"[" * 100_000 + b"]" * 100_000
    (run_dir / HOSTILE).write_bytes(struct.pack("<Q", len(blob)) + blob)


def renumbered(metadata: dict[str, str]) -> dict[str, str]:
    """A snapshot's metadata as if it were taken at step 35 (the name's step is checked against it)."""
    return {**metadata, "step": "35", "resume": json.dumps({**json.loads(metadata["resume"]), "step": 35})}


def with_header(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """The run's newest snapshot as HOSTILE, its JSON header changed in place (tensor bytes kept)."""
    def damage(run_dir: Path) -> None:
        data = (run_dir / snapshot_name(30)).read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        header["__metadata__"] = renumbered(header["__metadata__"])
        change(header)
        blob = json.dumps(header).encode()
        (run_dir / HOSTILE).write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + length:])
    return damage


def first_matrix(names: list[str]) -> str:
    """The first weight matrix of the model in a snapshot's tensor names."""
    return next(name for name in names if name.startswith("model.") and name.endswith("original1"))


def shape_not_its_bytes(header: dict) -> None:
    header[first_matrix(list(header))]["shape"][0] += 1


def unknown_dtype(header: dict) -> None:
    header[first_matrix(list(header))]["dtype"] = "OBJECT"


def run_climbs_out(header: dict) -> None:
    header["__metadata__"]["run"] = "../../../victim"


def with_tensors(change: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    """The run's newest snapshot as HOSTILE, a valid safetensors file whose first weight matrix
    is `change`d (so its header is consistent, but not with the model the config builds)."""
    def damage(run_dir: Path) -> None:
        source = run_dir / snapshot_name(30)
        tensors, metadata = load_file(source), read_header(source).metadata
        name = first_matrix(list(tensors))
        tensors[name] = change(tensors[name])
        save_file(tensors, run_dir / HOSTILE, metadata=renumbered(metadata))
    return damage


def symlink_outside(run_dir: Path) -> None:
    victim = run_dir.parent / "victim.txt"
    victim.write_text("precious")
    (run_dir / HOSTILE).symlink_to(victim)


def append_to_metrics(text: str | bytes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        with open(run_dir / "metrics.jsonl", "ab") as handle:
            handle.write(text if isinstance(text, bytes) else text.encode())
    return damage


def truncate_metrics(run_dir: Path) -> None:
    path = run_dir / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-40])   # into the end record


def binary_metrics(run_dir: Path) -> None:
    (run_dir / "metrics.jsonl").write_bytes(bytes(range(256)) * 64)


def metrics_fifo(run_dir: Path) -> None:
    (run_dir / "metrics.jsonl").unlink()
    os.mkfifo(run_dir / "metrics.jsonl")


def remove_run_json(run_dir: Path) -> None:
    (run_dir / "run.json").unlink()


def nested_run_json(run_dir: Path) -> None:
    (run_dir / "run.json").write_text('{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")


def edit_run_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        info = json.loads((run_dir / "run.json").read_text())
        change(info)
        (run_dir / "run.json").write_text(json.dumps(info))
    return damage


SNAPSHOT = f"{HOSTILE}: "
NOT_A_SNAPSHOT = SNAPSHOT + "corrupt or truncated (header of "
MATRIX = "model.layers.0.parametrizations.weight.original1"
# id -> (damage, what open says, what resume says): "warn: X" shows X and goes on (resume: from
# snapshot 30), "refuse: X" is a one-line error, "" opens or resumes (from 30) as if nothing were wrong
CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "pickle-payload": (pickle_payload, "warn: " + NOT_A_SNAPSHOT, "warn: " + NOT_A_SNAPSHOT),
    "torch-save-payload": (torch_save_payload, "warn: " + NOT_A_SNAPSHOT, "warn: " + NOT_A_SNAPSHOT),
    "oversized-header": (oversized_header, f"warn: {NOT_A_SNAPSHOT}209715200 bytes",
                         f"warn: {NOT_A_SNAPSHOT}209715200 bytes"),
    "nested-header": (nested_header, f"warn: {SNAPSHOT}corrupt header (not JSON)",
                      f"warn: {SNAPSHOT}corrupt header (not JSON)"),
    "shape-not-its-bytes": (with_header(shape_not_its_bytes), f"warn: {SNAPSHOT}corrupt header (tensor '{MATRIX}')",
                            f"warn: {SNAPSHOT}corrupt header (tensor '{MATRIX}')"),
    "unknown-dtype": (with_header(unknown_dtype), f"warn: {SNAPSHOT}corrupt header (tensor '{MATRIX}')",
                      f"warn: {SNAPSHOT}corrupt header (tensor '{MATRIX}')"),
    "wrong-shape": (with_tensors(lambda w: torch.zeros(w.shape[0] + 16, w.shape[1])), "",
                    f"warn: {SNAPSHOT}{MATRIX} is F32 [48, 784]; this run's config builds F32 [32, 784]"),
    "wrong-dtype": (with_tensors(lambda w: w.double()), "",
                    f"warn: {SNAPSHOT}{MATRIX} is F64 [32, 784]; this run's config builds F32 [32, 784]"),
    "metadata-run-climbs-out": (with_header(run_climbs_out),
                                f"warn: {SNAPSHOT}bad metadata (run '../../../victim' is not a plain name)",
                                f"warn: {SNAPSHOT}bad metadata (run '../../../victim' is not a plain name)"),
    "symlink-out-of-the-run": (symlink_outside, "warn: " + NOT_A_SNAPSHOT, "warn: " + NOT_A_SNAPSHOT),
    "record-path-climbs-out": (
        append_to_metrics('{"type": "snapshot", "step": 31, "path": "../../../etc/passwd", "reason": "user", '
                          '"elapsed": 1.0}\n'),
        "warn: skipped 1 unreadable line(s) ", ""),
    "truncated-metrics": (truncate_metrics, "warn: skipped 1 unreadable line(s) ", ""),
    "binary-metrics": (binary_metrics, "warn: unreadable line(s) ", ""),
    "nested-metrics-line": (append_to_metrics("[" * 100_000 + "]" * 100_000 + "\n"),
                            "warn: skipped 1 unreadable line(s) ", ""),
    "metrics-is-a-pipe": (metrics_fifo, "refuse: metrics.jsonl: not a regular file",
                          "refuse: metrics.jsonl: not a regular file"),
    "missing-run-json": (remove_run_json, "refuse: run.json: missing (is ", "refuse: run.json: missing (is "),
    "nested-run-json": (nested_run_json, "refuse: run.json: not valid JSON", "refuse: run.json: not valid JSON"),
    "run-json-deep-config": (edit_run_json(lambda info: info["config"].update(model=json.loads("[" * 900 + "]" * 900))),
                             "", "refuse: run.json: nested too deeply to be a config"),
    "run-json-wrong-type": (edit_run_json(lambda info: info["config"]["model"].update(width="wide")), "",
                            "refuse: run.json: model.width must be an integer, got 'wide'"),
    "run-json-name-climbs-out": (edit_run_json(lambda info: info["config"].update(name="../../escape")), "",
                                 "refuse: run.json: name must be a plain name"),
}


@pytest.fixture
def hostile(request: pytest.FixtureRequest, finished: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A copy of the finished run with one hostile file; (run dir, open expects, resume expects)."""
    monkeypatch.chdir(tmp_path)   # where PLANTED would appear
    damage, opens, resumes = CASES[request.param]
    run_dir = Path(shutil.copytree(finished, tmp_path / "runs" / finished.name))
    damage(run_dir)
    return run_dir, opens, resumes


def test_the_payloads_are_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpickled, the payload does create its file, so its absence below proves nothing unpickled it."""
    monkeypatch.chdir(tmp_path)
    pickle.loads(pickle.dumps(Plant()))
    assert (tmp_path / PLANTED).exists()


@pytest.mark.parametrize("hostile", CASES, indirect=True)
async def test_open_names_the_file_and_the_monitor_stays_up(hostile: tuple[Path, str, str]) -> None:
    run_dir, opens, _ = hostile
    if opens.startswith("refuse: "):
        assert_one_line_error(invoke("open", str(run_dir)), 2, opens.removeprefix("refuse: "))
        return
    app, warnings = open_app(run_dir)
    expected = opens.removeprefix("warn: ")
    assert any(expected in warning for warning in warnings) if expected else warnings == []
    shown: list[str] = []
    app.notify = lambda message, **kwargs: shown.append(str(message))  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot, lambda: app.state.version > 0 or bool(shown))
        assert shown == warnings and app.is_running and app.state.feed_error is None
        await pilot.press(*"12345", "left_square_bracket", "q")
    assert app.return_value == 0
    assert not Path(PLANTED).exists()


@pytest.mark.parametrize("hostile", CASES, indirect=True)
def test_resume_names_the_file_and_falls_back_or_refuses(hostile: tuple[Path, str, str]) -> None:
    run_dir, _, resumes = hostile
    before = sorted(p.name for p in run_dir.parent.parent.rglob("*"))
    result = invoke("run", "--resume", str(run_dir), "--headless", "--set", "train.epochs=4")
    assert not Path(PLANTED).exists()
    if resumes.startswith("refuse: "):
        # exit 1 when metrics.jsonl, which resume must append to, cannot be written; 2 for bad input read
        assert_one_line_error(result, 1 if "metrics.jsonl" in resumes else 2, resumes.removeprefix("refuse: "))
        return
    assert result.exit_code == 0, result.stderr
    warning = resumes.removeprefix("warn: ")
    if warning:
        assert f"nctui: warning: {run_dir}/{warning}" in result.stderr
        assert "; trying the next older snapshot" in result.stderr
    assert f"resuming {run_dir} from {snapshot_name(30)}" in result.stderr
    assert read_records(run_dir)[-1].status == "completed"
    victim = run_dir.parent / "victim.txt"
    assert not victim.exists() or victim.read_text() == "precious"   # snapshot 35 replaced the link, not its target
    after = sorted(p.name for p in run_dir.parent.parent.rglob("*"))
    assert set(after) - set(before) <= {snapshot_name(35), snapshot_name(40)}   # nothing outside the run


def test_nctui_open_in_a_terminal_shows_what_it_skipped_and_stays_up(finished: Path, tmp_path: Path) -> None:
    """The real command on a pseudo-terminal: the warning is on screen, the run replays, q leaves (exit 0)."""
    run_dir = Path(shutil.copytree(finished, tmp_path / finished.name))
    pickle_payload(run_dir)
    child = Child(["open", str(run_dir)], terminal=(100, 30))
    try:
        child.wait_for(ALTERNATE_SCREEN)
        child.wait_for(b"replay")
        # in the monitor's notification; one word, as the toast wraps the message where the
        # path's length (pytest's numbered temp dirs) puts the line ends
        child.wait_for(b"truncated", start=child.output.index(ALTERNATE_SCREEN))
        time.sleep(0.5)
        assert child.process.poll() is None
        child.send(b"q")
        assert child.finish() == 0
    finally:
        child.close()
    assert f"nctui: warning: {run_dir / HOSTILE}: corrupt or truncated" in child.text
    assert not (tmp_path / PLANTED).exists() and not Path(PLANTED).exists()
