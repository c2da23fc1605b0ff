"""A deterministic fake run for the TUI tests (fixed numbers, no randomness, no clocks), and
the two pilot helpers every TUI test uses.

Three hidden layers and a classifier, C = 10, 20 step records, 9 evaluations at steps
0, 50, ..., 400 in which every METRICS.md quantity moves smoothly the way the theory says
(collapse metrics fall, ranks fall, gap bounds fall from about 2^10 to below 1), then a final
snapshot and an end record.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

from textual.pilot import Pilot

from nctui.control import Control
from nctui.records import EndRecord, EvalRecord, Record, SnapshotRecord, StartRecord, StepRecord
from nctui.tui import NctuiApp

C = 10
LAYERS = ["fc1", "fc2", "fc3", "fc4"]
STEPS_PER_EPOCH = 50
TOTAL_STEPS = 400
EVAL_STEPS = list(range(0, TOTAL_STEPS + 1, 50))
SECONDS_PER_STEP = 0.05


def start_record() -> StartRecord:
    return StartRecord(
        run="fake-20250101T000000Z", time=1735689600.0, device="cpu", dataset="synthetic",
        model="FC 784-256x3-10 · WN", num_classes=C, layers=list(LAYERS), epochs=8,
        steps_per_epoch=STEPS_PER_EPOCH, total_steps=TOTAL_STEPS, train_samples=2000,
        config={"train": {"batch_size": 40, "lr": 0.05, "weight_decay": 5e-4},
                "monitor": {"rank_tol": 1e-3, "bounds": {"gamma": 1.0, "delta": 1e-3}}},
    )


def step_record(step: int) -> StepRecord:
    return StepRecord(step=step, epoch=step / STEPS_PER_EPOCH, loss=0.09 * math.exp(-step / 150) + 0.002,
                      lr=0.05 if step < 300 else 0.005, samples_per_s=800.0,
                      elapsed=step * SECONDS_PER_STEP)


def spectrum(k: int, t: float) -> list[float]:
    """Unit-norm decaying singular values: 32 for hidden layers, C for the classifier."""
    n = C if k == len(LAYERS) - 1 else 32
    raw = [math.exp(-i * (0.15 + 0.5 * t + 0.05 * k)) for i in range(n)]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def layer(k: int, t: float, first: bool) -> dict:
    sv = spectrum(k, t)
    total = sum(sv)
    p = [v / total for v in sv]
    return {
        "name": LAYERS[k], "rho": 1.5 + 0.4 * t + 0.1 * k, "sv": sv,
        "rank": sum(1 for v in sv if v > 1e-3), "stable_rank": 1 / sv[0] ** 2,
        "effective_rank": math.exp(-sum(q * math.log(q) for q in p)),
        "top_c_energy": sum(v * v for v in sv[:C]), "rank_ceiling": 3.9e7,
        "nc1": 5.0 * 10 ** (-2 * t) / (k + 1), "nc1_trace_ratio": 2.0 * 10 ** (-2 * t) / (k + 1),
        "alignment": 0.3 + 0.6 * t, "drift": None if first else 2e-4 * (1 - 0.5 * t) / (k + 1),
        "rho_jitter": None if first else 1e-3 * (1 + k) * (1 - 0.3 * t),
    }


def cosine(t: float) -> list[list[float]]:
    """Class-mean cosines relaxing to the simplex ETF value -1/(C-1) off the diagonal."""
    target = -1 / (C - 1)
    return [[1.0 if i == j else target + 0.4 * math.cos(i + j) * (1 - t) ** 2 for j in range(C)]
            for i in range(C)]


def quantiles(t: float) -> list[float]:
    centre = -0.02 + 0.12 * t
    return [centre + d * (0.5 - 0.3 * t) for d in (-0.2, -0.12, -0.05, 0.0, 0.05, 0.1, 0.16)]


def eval_record(index: int) -> EvalRecord:
    step = EVAL_STEPS[index]
    t = index / (len(EVAL_STEPS) - 1)
    first = index == 0
    test_err = 0.9 - 0.85 * t
    train_err = 0.9 - 0.88 * t
    gap_bound, err_gamma = 2 ** (9.6 - 10 * t), 1.0 - 0.7 * t
    norm_q = quantiles(t)
    return EvalRecord(
        step=step, epoch=step / STEPS_PER_EPOCH, elapsed=step * SECONDS_PER_STEP + index * 0.5,
        eval_seconds=0.5,
        train={"loss": 0.09 * 10 ** (-1.5 * t), "acc": 1 - train_err},
        test={"loss": 0.1 * 10 ** (-1.2 * t), "acc": 1 - test_err},
        geometry={
            "nc1": 10 * 10 ** (-3 * t), "nc1_trace_ratio": 3 * 10 ** (-2.5 * t), "cdnv": 0.5 * 10 ** (-2 * t),
            "nc2_equinorm_m": 0.3 * 10 ** (-1.2 * t), "nc2_equinorm_w": 0.2 * 10 ** (-1.1 * t),
            "nc2_equiangular": 0.25 * 10 ** (-1.5 * t), "nc2_etf_error": 0.8 * 10 ** (-1.4 * t),
            "nc3": 1.2 * 10 ** (-1.3 * t), "nc4": 0.3 * (1 - t) ** 2,
            "cosine": cosine(t), "mean_norms": [1 + 0.3 * (1 - t) * math.sin(c) for c in range(C)],
            "classifier_norms": [0.5 + 0.1 * (1 - t) * math.cos(c) for c in range(C)],
        },
        layers=[layer(k, t, first) for k in range(len(LAYERS))],
        noise={"grad_noise": 2.0 - t, "noise_scale": 50 + 30 * t,
               "output_jitter": None if first else 1e-2 * (1 - 0.6 * t)},
        margins={"min": norm_q[0] * 8, "mean": norm_q[3] * 8, "quantiles": [q * 8 for q in norm_q],
                 "normalized_min": norm_q[0], "normalized_mean": norm_q[3], "normalized_quantiles": norm_q,
                 "err_gamma": err_gamma},
        bounds={"bound_dense": err_gamma + gap_bound, "bound_local": None, "test_error": test_err,
                "train_error": train_err, "gap": test_err - train_err, "rho": 4.0 + 8 * t,
                "rho_over_sqrt_m": (4.0 + 8 * t) / math.sqrt(2000),
                "gap_bound_dense": gap_bound, "gap_bound_local": None, "err_gamma": err_gamma,
                "err_gamma_samples": 2000, "rho_tilde": 4.0 + 8 * t, "audit": audit(t)},
    )


def audit(t: float) -> dict:
    """The bounds audit of an FC net (no local terms), growing with the norms as training goes."""
    return {"convention": "nctui", "m": 2000, "gamma": 1.0, "delta": 1e-3, "num_layers": len(LAYERS),
            "kernel_areas": [], "log_term_dense": len(LAYERS) * math.log(2) + math.log(C), "log_term_local": None,
            "data_term_dense": 1250.0, "data_term_local": None, "confidence_dense": 0.11 + 0.02 * t,
            "confidence_local": None}


def final_records(status: str = "completed", step: int = TOTAL_STEPS) -> list[Record]:
    elapsed = step * SECONDS_PER_STEP + 5.0
    return [SnapshotRecord(step=step, path=f"snap-{step:09d}.safetensors", reason="final", elapsed=elapsed),
            EndRecord(step=step, status=status, reason=f"{status} at step {step}", elapsed=elapsed)]


def run_records(upto: int = TOTAL_STEPS) -> list[Record]:
    """start, then step and eval records interleaved by step, up to `upto` (no end)."""
    body: list[tuple[int, int, Record]] = [(s, 0, step_record(s)) for s in range(20, upto + 1, 20)]
    body += [(s, 1, eval_record(i)) for i, s in enumerate(EVAL_STEPS) if s <= upto]
    body.sort(key=lambda item: (item[0], item[1]))
    return [start_record(), *(record for _, _, record in body)]


def full_run() -> list[Record]:
    return run_records() + final_records()


def hostile_eval(step: int) -> EvalRecord:
    """Every number NaN, inf, zero or None; groups half missing; arrays ragged."""
    nan, inf = float("nan"), float("inf")
    return EvalRecord(
        step=step, epoch=nan, elapsed=inf, eval_seconds=None,
        train={"loss": nan, "acc": None}, test={"loss": inf},
        geometry={"nc1": 0.0, "nc1_trace_ratio": -inf, "cdnv": None, "nc4": 0.0,
                  "cosine": [[nan, inf], [None], "junk"], "mean_norms": [0.0, nan, None, -1.0]},
        layers=[{"name": None, "rho": 0.0, "sv": [0.0, nan, inf, None], "rank": nan},
                {"sv": "junk"}, "not a dict"],  # type: ignore[list-item]
        noise={"grad_noise": inf},
        margins={"normalized_quantiles": [nan, 0.0, None, 0.0, 0.0, 0.0, 0.0], "err_gamma": nan},
        bounds={"bound_dense": 0.0, "bound_local": -1.0, "test_error": nan, "gap": None},
    )


def replay_feed(records: list[Record]) -> Callable[[Callable[[Record], None]], None]:
    """A feed that emits the records at once and returns, as a replay does."""
    def feed(emit: Callable[[Record], None]) -> None:
        for record in records:
            emit(record)
    return feed


def live_feed(control: Control, upto: int = 200,
              released: threading.Event | None = None) -> Callable[[Callable[[Record], None]], None]:
    """A feed that trains up to `upto`, then idles like a trainer until asked to stop (or
    until `released`), then writes the final snapshot and a stopped end record."""
    def feed(emit: Callable[[Record], None]) -> None:
        for record in run_records(upto):
            emit(record)
        while not control.stop_requested and not (released is not None and released.is_set()):
            control.wait_while_paused(0.01)
            time.sleep(0.01)
        for record in final_records("stopped", upto):
            emit(record)
    return feed


async def settle(app: NctuiApp, pilot: Pilot, until: Callable[[], bool] | None = None) -> None:
    """Wait (up to 5 s) for the feed to finish, or for `until`, then draw a frame."""
    done = until or (lambda: app.state.feed_done)
    for _ in range(500):
        if done():
            break
        await pilot.pause(0.01)
    assert done(), "the feed did not get there in time"
    app.redraw()
    await pilot.pause()


async def press(pilot: Pilot, *keys: str) -> None:
    """Press keys, then draw a frame at once rather than waiting for the frame timer."""
    await pilot.press(*keys)
    app = pilot.app
    assert isinstance(app, NctuiApp)
    app.redraw()
    await pilot.pause()
