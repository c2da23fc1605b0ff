"""nctui's training throughput next to the plain PyTorch loop a user would write instead.

One process, four variants over the same window of steps, interleaved in rounds (the order
rotates every round) so that a noisy machine hurts them alike:

  plain      the hand-written loop: the preset's model from the same builder with torch's own
             weight_norm, F.mse_loss on one-hot targets, torch.optim.SGD(momentum, weight_decay)
             as a user constructs it, data already on the device, index-gather batches from a
             randperm per epoch
  nctui      Trainer.run headless (records go to a run directory's metrics.jsonl), monitoring off
  monitored  the same with monitoring at the preset's cadence
  tui        the monitored trainer feeding the Textual app (headless test mode, 120x40)

The window is the whole run when it has at most --max-full steps (its evaluations are then
exactly the run's, the early ones included); otherwise steps [2E, 4E), E = monitor.eval_every,
the steady cadence of one evaluation per E steps (--steps shortens it), and the whole run's
evaluation share is projected from the measured evaluation time. Prints one JSON object.

    python bench/throughput.py --preset quickstart
    python bench/throughput.py --preset mnist_fc --synthetic-mnist --rounds 3
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import arguments, load, synchronize

from nctui.config import Config
from nctui.control import Control
from nctui.data import Dataset
from nctui.models.networks import build_model
from nctui.records import EvalRecord, Record, StepRecord
from nctui.store.rundir import RunWriter, new_run_dir
from nctui.train.sink import Tee
from nctui.train.trainer import Progress, Trainer, eval_schedule

VARIANTS = ("plain", "nctui", "monitored", "tui")


def plain_seconds(cfg: Config, data: Dataset, device: torch.device, steps: int) -> float:
    """Wall seconds of `steps` steps of the hand-written loop (set up before the clock starts)."""
    torch.manual_seed(cfg.seed)
    m, t = cfg.model, cfg.train
    model = build_model(m, tuple(data.train_x.shape[1:]), data.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    x = data.train_x.to(device)
    y = F.one_hot(data.train_y, data.num_classes).float().mul(t.target_scale).to(device)
    n = x.shape[0]
    batch = min(t.batch_size, n)
    synchronize(device)
    started = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, device=device)
        for i in range(min(n // batch, steps - done)):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.mse_loss(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
    synchronize(device)
    return time.perf_counter() - started


def trainer_run(cfg: Config, data: Dataset, device: torch.device, start: int, steps: int,
                tui: bool, evals: list[float]) -> tuple[int, float, str]:
    """Steps done and wall seconds of Trainer.run from `start` to the first step record at or
    after start + steps, and how it stepped.

    Records go to metrics.jsonl in a scratch run directory, as headless; the eval_seconds of
    each evaluation are appended to `evals`.
    """
    with tempfile.TemporaryDirectory() as out:
        run_dir = new_run_dir(out, cfg.name, {"config": cfg.to_dict()})
        writer = RunWriter(run_dir)
        control = Control()

        def watch(record: Record) -> None:
            if isinstance(record, EvalRecord) and record.eval_seconds is not None:
                evals.append(record.eval_seconds)
            if isinstance(record, StepRecord) and record.step >= start + steps:
                control.request_stop("bench window done")

        trainer = Trainer(cfg, data, device, run_dir.name, control)
        if start:   # begin mid-run: past the early evaluations, into the steady cadence
            trainer.progress, trainer.resumed_from = Progress(step=start), start
        sink = Tee(writer, watch)
        seconds = _with_tui(trainer, sink) if tui else _timed_run(trainer, sink)
        writer.close()
        return trainer.progress.step - start, seconds, trainer.train_step.describe()


def _timed_run(trainer: Trainer, sink: Tee) -> float:
    started = time.perf_counter()
    end = trainer.run(sink)
    synchronize(trainer.device)
    if end.status not in ("completed", "stopped"):
        raise RuntimeError(f"the trainer {end.status}: {end.reason}")
    return time.perf_counter() - started


def _with_tui(trainer: Trainer, sink: Tee) -> float:
    """The trainer as `nctui run` drives it live: in the app's feed thread, records to both."""
    from nctui.tui.app import NctuiApp

    result: dict[str, float] = {}

    def feed(show: Callable[[Record], None]) -> None:
        result["seconds"] = _timed_run(trainer, Tee(sink, show))

    app = NctuiApp(feed, control=trainer.control, mode="live", title=trainer.run_name)

    async def drive() -> None:
        async with app.run_test(headless=True, size=(120, 40)):
            while "seconds" not in result and not app.state.feed_done:
                await asyncio.sleep(0.1)   # not pilot.pause: it prods every widget, which the user does not

    asyncio.run(drive())
    if app.feed_error is not None:
        raise app.feed_error
    return result["seconds"]


def main() -> None:
    parser = arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-full", type=int, default=3000,
                        help="time the whole run when it has at most this many steps (default 3000)")
    parser.add_argument("--steps", type=int, default=None,
                        help="window length instead of the whole run or 2 x eval_every (short looks at slow models)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    args = parser.parse_args()
    cfg, data = load(args)
    device = torch.device(args.device)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")

    total = Trainer(_without_monitoring(cfg), data, device, "probe").total_steps
    every = cfg.monitor.eval_every
    start, steps = (0, total) if total <= args.max_full else (2 * every, 2 * every)
    steps = args.steps or steps

    def run(variant: str, evals: list[float]) -> tuple[int, float, str]:
        if variant == "plain":
            return steps, plain_seconds(cfg, data, device, steps), "eager"
        off = cfg if variant != "nctui" else _without_monitoring(cfg)
        return trainer_run(off, data, device, start, steps, variant == "tui", evals)

    say(f"bench: {args.preset}, {args.device}, {args.threads} threads, steps [{start}, {start + steps}), "
        f"{args.rounds} rounds of {', '.join(variants)}")
    plain_seconds(cfg, data, device, 10)   # warm-up: allocator, BLAS, first-call costs
    rates: list[dict[str, float]] = []   # per round: variant -> steps/s
    evals: list[float] = []
    eval_share: list[float] = []
    step_kind, tui_errors = "", []
    for r in range(args.rounds):
        rates.append({})
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            seen: list[float] = []
            try:
                done, seconds, kind = run(variant, seen)
            except Exception as err:  # noqa: BLE001 - the app is measured, not debugged, here: say, go on
                if variant != "tui":
                    raise
                tui_errors.append(f"round {r + 1}: {type(err).__name__}: {err}")
                say(f"  round {r + 1} tui       failed: {tui_errors[-1]}")
                continue
            rates[-1][variant] = done / seconds
            if variant == "monitored":
                evals += seen
                eval_share.append(sum(seen) / seconds)
            if variant == "nctui":
                step_kind = kind
            say(f"  round {r + 1} {variant:9s} {done / seconds:8.1f} steps/s")
    out = summary(cfg, args, rates, evals, eval_share, total, start, steps, step_kind)
    print(json.dumps(out | ({"tui_errors": tui_errors} if tui_errors else {})))


def _without_monitoring(cfg: Config) -> Config:
    return dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, enabled=False))


def summary(cfg: Config, args, rates: list[dict[str, float]], evals: list[float], eval_share: list[float],
            total: int, start: int, steps: int, step_kind: str) -> dict:
    """Medians, their ratios (and the median of each round's ratio), the rounds, and what
    evaluation costs (measured, and projected for the whole run)."""
    per_variant = {v: [r[v] for r in rates if v in r] for v in VARIANTS}
    median = {v: statistics.median(values) for v, values in per_variant.items() if values}
    out: dict = {"preset": args.preset, "device": args.device, "threads": args.threads,
                 "window": {"start": start, "steps": steps, "whole_run": start == 0 and steps == total},
                 "rounds": args.rounds, "step": step_kind}
    for variant in VARIANTS:
        out[f"{variant}_steps_per_s"] = round(median[variant], 2) if variant in median else None
    paired = {}
    for name, num, den in (("ratio_nctui_plain", "nctui", "plain"), ("ratio_monitored_nctui", "monitored", "nctui"),
                           ("ratio_tui_monitored", "tui", "monitored")):
        out[name] = round(median[num] / median[den], 3) if num in median and den in median else None
        in_round = [r[num] / r[den] for r in rates if num in r and den in r]
        paired[name] = round(statistics.median(in_round), 3) if in_round else None
    out["median_of_round_ratios"] = paired
    out["per_round_steps_per_s"] = {v: [round(x, 1) for x in values] for v, values in per_variant.items() if values}
    if evals:
        m = cfg.monitor
        n_full = len(eval_schedule(total, m.eval_every, m.early_evals))
        eval_s = statistics.median(evals)
        train_s = total / median["nctui"] if "nctui" in median else None
        out["eval"] = {
            "median_seconds": round(eval_s, 4),
            "share_of_monitored_wall": round(statistics.median(eval_share), 4),
            "whole_run_evals": n_full,
            "whole_run_share_projected": (round(n_full * eval_s / (n_full * eval_s + train_s), 4)
                                          if train_s else None),
        }
    return out


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
