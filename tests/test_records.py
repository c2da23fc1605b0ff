"""Records and the run directory: JSON round trips, NaN as null, torn lines skipped, follow."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest

from nctui.records import (EndRecord, EvalRecord, RecordError, StartRecord, StepRecord, record_from_json,
                           record_to_json)
from nctui.store.reader import RunReader
from nctui.store.rundir import (RunDirError, RunWriter, ReadStats, new_run_dir, read_records,
                                read_run_json, write_run_json)


def _start() -> StartRecord:
    return StartRecord(run="r", time=1.0, device="cpu", dataset="synthetic", model="FC", num_classes=10,
                       layers=["fc1", "classifier"], epochs=1, steps_per_epoch=3, total_steps=3,
                       train_samples=400, config={"seed": 0})


def test_round_trip_and_non_finite_as_null():
    record = EvalRecord(step=5, epoch=0.5, elapsed=1.5, geometry={"nc1": math.nan, "cosine": [[1.0, math.inf]]},
                        layers=[{"name": "fc1", "sv": [0.8, 0.6], "drift": -math.inf}])
    line = record_to_json(record)
    assert "NaN" not in line and "Infinity" not in line
    data = json.loads(line)
    assert list(data)[0] == "type" and data["type"] == "eval"
    assert data["geometry"] == {"nc1": None, "cosine": [[1.0, None]]}
    back = record_from_json(line)
    assert back.layers[0]["sv"] == [0.8, 0.6] and back.layers[0]["drift"] is None
    assert record_from_json(record_to_json(_start())) == _start()


@pytest.mark.parametrize("line,message", [
    ("[1, 2]", "not a JSON object"),
    ('{"type": "bogus"}', "unknown record type"),
    ('{"type": "step", "step": 1}', "without 'epoch'"),
    ('{"type": "eval", "step": 1, "epoch": 0, "elapsed": 0, "layers": 3}', "layers is not a list"),
    ("{not json", "not JSON"),
])
def test_bad_lines_are_rejected_with_reason(line, message):
    with pytest.raises(RecordError, match=message):
        record_from_json(line)


def test_a_new_run_directory_is_readable_from_its_first_moment(tmp_path):
    run_dir = new_run_dir(tmp_path, "demo", {"config": {"seed": 3}})
    assert read_run_json(run_dir) == {"schema": 1, "name": run_dir.name, "config": {"seed": 3}}
    assert read_records(run_dir) == []
    second = new_run_dir(tmp_path, "demo", {"config": {}})   # same second: suffixed, not clobbered
    assert second != run_dir and read_run_json(second)["name"] == second.name


def test_writer_reader_skip_torn_last_line(tmp_path):
    run_dir = new_run_dir(tmp_path, "demo", {"config": {}})
    assert run_dir.name.startswith("demo-") and run_dir.name.endswith("Z")
    writer = RunWriter(run_dir)
    writer.record(_start())
    writer.record(StepRecord(step=1, epoch=0.3, loss=0.5, lr=0.1, samples_per_s=10.0, elapsed=0.1))
    writer.close()
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"type": "step", "step": 2, "ep')   # a kill in the middle of a line
    stats = ReadStats()
    records = read_records(run_dir, stats)
    assert [r.type for r in records] == ["start", "step"]
    assert stats.skipped == 1 and "metrics.jsonl:3" in stats.first_error
    assert records[1].loss == 0.5
    writer = RunWriter(run_dir)   # a writer holds the run: the line may still be coming
    assert RunReader(run_dir).read().stats.skipped == 0
    writer.close()
    reader = RunReader(run_dir).read()   # nothing writes it any more: a torn line
    assert [r.type for r in reader.records] == ["start", "step"]
    assert reader.stats.skipped == 1 and "metrics.jsonl:3: torn last line" in reader.warnings[0]


def test_run_json_round_trip_and_errors(tmp_path):
    write_run_json(tmp_path, {"config": {"seed": 1}, "name": "x"})
    assert read_run_json(tmp_path)["schema"] == 1
    assert not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "run.json").write_text("{broken")
    with pytest.raises(RunDirError, match="run.json: not valid JSON"):
        read_run_json(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match="run.json: missing"):
        read_run_json(empty)


def test_follow_sees_appended_lines_and_stops_at_end(tmp_path):
    write_run_json(tmp_path, {"config": {}})
    writer = RunWriter(tmp_path)
    writer.record(_start())

    def later():
        time.sleep(0.3)
        writer.record(StepRecord(step=1, epoch=1.0, loss=0.1, lr=0.1, samples_per_s=None, elapsed=0.2))
        writer.record(EndRecord(step=1, status="completed", reason="done", elapsed=0.3))

    thread = threading.Thread(target=later)
    thread.start()
    seen = [r.type for r in RunReader(tmp_path).follow(should_stop=lambda: False, poll=0.05)]
    thread.join()
    assert seen == ["start", "step", "end"]
