"""Training on several processes (nctui/train/distributed.py): two gloo ranks under torchrun train
the shrunk quickstart as one process does; the all-reduced class statistics equal the
single-process ones; bad world and batch sizes are one line and exit 2."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing

from distributed_fixtures import STEPS_PER_EPOCH, differences, plain, run_records, shrunk, torchrun
from faults.helpers import assert_one_line_error
from nctui.config import load_config
from nctui.control import Control
from nctui.data import load_dataset
from nctui.metrics import ClassMeans, WithinClass, collapse_metrics, neural_collapse
from nctui.runner import RunError
from nctui.train.distributed import AgreedControl, CollectiveError, World, join_world
from nctui.train.trainer import Trainer
from run_fixtures import SUBPROCESS_ENV, invoke, one_thread  # noqa: F401 - one_thread is autouse

PRESET = Path(__file__).resolve().parent.parent / "presets" / "quickstart.yaml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shrunk quickstart by two gloo ranks under torchrun and, meanwhile, by this process."""
    base = tmp_path_factory.mktemp("runs")
    two = subprocess.Popen(torchrun("run", "quickstart", "--headless", "--run-dir", str(base / "two"), *shrunk()),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=SUBPROCESS_ENV)
    one = invoke("run", "quickstart", "--headless", "--run-dir", str(base / "one"), *shrunk())
    stdout, stderr = two.communicate(timeout=300)
    assert one.exit_code == 0, one.stderr
    assert two.returncode == 0, stderr.decode()
    return {"one": base / "one", "two": base / "two", "stdout": stdout.decode(), "stderr": stderr.decode()}


def test_two_ranks_write_one_run_directory_that_says_so(runs: dict) -> None:
    two = runs["two"]
    assert sorted(p.name for p in two.iterdir()) == ["metrics.jsonl", "run.json"] + [
        f"snap-{step:09d}.safetensors" for step in (30, 60, 90, 120, 150, 180, 200)]
    # rank 0 alone prints the records: stdout is metrics.jsonl once, not twice
    assert runs["stdout"] == (two / "metrics.jsonl").read_text()
    assert runs["stderr"].count("nctui: completed: trained 20 epochs (step 200)") == 1
    info = json.loads((two / "run.json").read_text())
    assert (info["world_size"], info["backend"]) == (2, "gloo")
    start = run_records(two)[0]
    assert (start.world_size, start.backend, start.total_steps) == (2, "gloo", 200)
    single = run_records(runs["one"])[0]
    assert (single.world_size, single.backend) == (1, None)
    assert json.loads((runs["one"] / "run.json").read_text())["world_size"] == 1


def test_two_ranks_train_as_one_process_does(runs: dict) -> None:
    """Same global batches, the gradients averaged over the ranks: the records agree up to the
    order of float sums (the ranks' forward passes see half batches, their sums are added)."""
    one, two = run_records(runs["one"]), run_records(runs["two"])
    assert [(r.type, getattr(r, "step", None)) for r in one] == [(r.type, getattr(r, "step", None)) for r in two]
    evals_one = [r for r in one if r.type == "eval"]
    evals_two = [r for r in two if r.type == "eval"]
    # the step-0 evaluation: every number of every group, to float rounding
    assert evals_one[0].step == 0
    assert differences(plain(evals_one[0]), plain(evals_two[0]), rtol=1e-6, atol=1e-9) == []
    assert evals_two[0].train["samples"] == 100 and evals_two[0].bounds["err_gamma_samples"] == 55
    # the loss over the first epoch
    loss_one, loss_two = ([r.loss for r in run if r.type == "step" and r.step == STEPS_PER_EPOCH][0]
                          for run in (one, two))
    assert math.isclose(loss_one, loss_two, rel_tol=1e-5)
    # NC1 after 20 epochs (it fell by two orders of magnitude meanwhile)
    nc1_one, nc1_two = evals_one[-1].geometry["nc1"], evals_two[-1].geometry["nc1"]
    assert evals_one[-1].step == 200 and nc1_one < evals_one[0].geometry["nc1"] / 50
    assert math.isclose(nc1_one, nc1_two, rel_tol=1e-3)
    # and every other number of the run, loosely: nothing drifts apart
    for a, b in zip(one, two):
        if a.type != "start":
            assert differences(plain(a), plain(b), rtol=1e-4, atol=1e-6) == []


# --- the collectives, in two processes of our own ------------------------------------------------

N, P, C = 101, 6, 4   # an odd number of samples: shards of 50 and 51


def features() -> tuple[torch.Tensor, ...]:
    """Seeded features (float32, as the evaluator's), labels, a classifier and its logits."""
    gen = torch.Generator().manual_seed(5)
    y = torch.arange(N) % C
    means = torch.randn(C, P, generator=gen) * 3
    h = (means[y] + torch.randn(N, P, generator=gen)).float()
    w = torch.randn(C, P, generator=gen)
    logits = h @ w.T + 0.5 * torch.randn(N, C, generator=gen)
    return h, y, w, logits


def rank_main(rank: int, port: int, ready, out: str) -> None:
    """One of two gloo ranks: the evaluator's sharded class statistics, then the other collectives."""
    torch.set_num_threads(1)
    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port), "NCTUI_COLLECTIVE_TIMEOUT": "2"})
    ready.wait()   # both processes are up: the rendezvous cannot time out on a slow start
    world = join_world(torch.device("cpu"), batch_size=4)
    h, y, w, logits = features()
    rows = world.shard(N)
    acc = ClassMeans(C, P)
    acc.update(h[rows], y[rows])
    world.sum_(*acc.partial_sums())
    within = WithinClass(acc.means(), acc.counts)
    within.update(h[rows], y[rows], logits[rows])
    world.sum_(*within.partial_sums())
    result = {"rows": [rows.start, rows.stop], "geometry": collapse_metrics(acc.means(), acc.counts, within, w),
              "gathered_exactly": torch.equal(world.gather_rows(logits[rows], rows, N), logits),
              "shared": world.share(f"from rank {rank}"), "peers": len(world.peers)}
    try:
        world.from_main(lambda: (_ for _ in ()).throw(RunError("rank 0 cannot write", 1)))
    except RunError as err:
        result["error"] = [str(err), err.code]
    if rank == 1:   # stays out of the next all-reduce until rank 0 has given up on it
        deadline = time.monotonic() + 20
        while not Path(out, "rank0.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        started = time.monotonic()
        try:
            world.sum_(torch.ones(1))
        except CollectiveError as err:
            result["timeout"] = [str(err), time.monotonic() - started]
    Path(out, f"rank{rank}.json.tmp").write_text(json.dumps(result))
    Path(out, f"rank{rank}.json.tmp").replace(Path(out, f"rank{rank}.json"))
    world.leave()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_reduced_class_statistics_equal_one_process_and_a_hung_rank_times_out(tmp_path: Path) -> None:
    context = torch.multiprocessing.get_context("spawn")
    ready = context.Barrier(2)
    torch.multiprocessing.spawn(rank_main, args=(free_port(), ready, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    h, y, w, logits = features()
    expected = neural_collapse(h, y, C, w, logits)
    assert [r["rows"] for r in results] == [[0, 50], [50, 101]]   # no sample twice, none padded
    for result in results:
        assert differences(result["geometry"], expected, rtol=1e-9, atol=1e-12) == []
        assert result["gathered_exactly"] and result["shared"] == "from rank 0" and result["peers"] == 2
        assert result["error"] == ["rank 0 cannot write", 1]   # rank 0's exception, raised on every rank
    assert 0 < expected["nc4"] < 1 and expected["nc1"] > 0.01   # not a degenerate case
    message, waited = results[0]["timeout"]
    assert message.startswith("an evaluation sum failed (a rank died, lost its connection or hung past the 2 s "
                              "collective timeout, NCTUI_COLLECTIVE_TIMEOUT): "), message
    assert "timed out" in message.lower() and 1.5 < waited < 10, (message, waited)


# --- what the user can get wrong -------------------------------------------------------------------


def torchrun_env(monkeypatch: pytest.MonkeyPatch, size: str, rank: str = "0") -> None:
    """This process as rank `rank` of `size` (no rendezvous happens: each case fails before it)."""
    for key, value in {"WORLD_SIZE": size, "RANK": rank, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "9"}.items():
        monkeypatch.setenv(key, value)


def test_a_batch_the_ranks_cannot_share_is_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torchrun_env(monkeypatch, "3")
    result = invoke("run", "quickstart", "--headless", "--run-dir", str(tmp_path / "run"), *shrunk())
    assert_one_line_error(result, 2, "train.batch_size 20 is not divisible by the world size 3")
    assert not (tmp_path / "run").exists()
    # the same for a resume under another world size
    monkeypatch.delenv("WORLD_SIZE")
    done = invoke("run", "quickstart", "--headless", "--run-dir", str(tmp_path / "one"), *shrunk(train__epochs=1))
    assert done.exit_code == 0, done.stderr
    torchrun_env(monkeypatch, "3")
    result = invoke("run", "--resume", str(tmp_path / "one"), "--headless", "--set", "train.epochs=2")
    assert_one_line_error(result, 2, "train.batch_size 20 is not divisible by the world size 3")


@pytest.mark.parametrize(("size", "rank", "timeout", "message"), [
    ("2", "2", "", "RANK 2 is not one of the WORLD_SIZE 2 ranks"),
    ("two", "0", "", "WORLD_SIZE, RANK and LOCAL_RANK must be integers"),
    ("2", "0", "soon", "NCTUI_COLLECTIVE_TIMEOUT='soon': must be a positive number of seconds"),
])
def test_a_bad_torchrun_environment_is_exit_2(size: str, rank: str, timeout: str, message: str,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torchrun_env(monkeypatch, size, rank)
    monkeypatch.setenv("NCTUI_COLLECTIVE_TIMEOUT", timeout)
    result = invoke("run", "quickstart", "--headless", "--run-dir", str(tmp_path / "run"), *shrunk())
    assert_one_line_error(result, 2, message)


def test_the_trainer_refuses_a_global_batch_the_ranks_cannot_share() -> None:
    """train.batch_size larger than the training set is the whole set: 200 samples, not 3 equal shares."""
    cfg = load_config(PRESET, shrunk(train__batch_size=300)[1::2])
    data = load_dataset(cfg.data, cfg.seed)
    world = World(device=torch.device("cpu"), rank=0, size=3)
    with pytest.raises(ValueError, match="the global batch of 200 samples .* is not divisible by the world size 3"):
        Trainer(cfg, data, torch.device("cpu"), "run", world=world)
    graphs = load_config(PRESET, shrunk(train__cuda_graph='"on"')[1::2])
    with pytest.raises(ValueError, match="under torchrun the step is eager"):
        Trainer(graphs, data, torch.device("cpu"), "run", world=World(device=torch.device("cpu"), backend="gloo"))


def test_a_stop_is_taken_by_every_rank_at_the_same_step() -> None:
    """A signal on one rank only notes the request; the all-reduced requests stop every rank."""
    here, there = AgreedControl(rank=0), AgreedControl(rank=1)
    here.request_stop("interrupted by SIGTERM")
    assert here.asked_here and not here.stop_requested and not there.asked_here
    for control in (here, there):   # what the next step's all-reduce tells both
        control.agree([])
        assert not control.stop_requested
        control.agree([0])
    assert (here.stop_requested, here.stop_reason) == (True, "interrupted by SIGTERM")
    assert (there.stop_requested, there.stop_reason) == (True, "rank 0 was stopped")
    assert isinstance(World.single(torch.device("cpu")).new_control(), Control)
    assert not isinstance(World.single(torch.device("cpu")).new_control(), AgreedControl)
