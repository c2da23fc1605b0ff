"""Steps per second early and late in a long run: denormals must not slow a CPU run down as it goes.

Weight decay shrinks every weight the task does not use geometrically; after some ten thousand
steps those weights reach float32's denormal range (below 1.2e-38), where a CPU computes tens
of times slower, and a run that flushes nothing slows down the longer it trains. The trainer
flushes denormals to zero on the CPU (torch.set_flush_denormal). This trains the preset in
process (its monitoring included) to --steps and reports the training rate (the step records'
samples_per_s / batch, which leaves evaluations out) over a window around each of --at, the
late/early ratio, the slowest window of the run, and how many weights have decayed to zero or
below 1e-30 at the end.
`--no-flush` turns flushing off after the trainer is built, to see the slowdown it prevents.
One JSON object on stdout, progress on stderr.

    python bench/long_run.py --preset quickstart
    python bench/long_run.py --preset quickstart --steps 20000 --at 2000,20000 --no-flush
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time

import torch
from common import arguments, load

from nctui.records import Record, StepRecord
from nctui.train.sink import NullSink
from nctui.train.trainer import Trainer


class Rates(NullSink):
    """Keeps each step record's training rate; says where the run is every so often."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.rates: list[tuple[int, float]] = []
        self.shown = time.monotonic()

    def record(self, record: Record) -> None:
        if isinstance(record, StepRecord) and record.samples_per_s:
            self.rates.append((record.step, record.samples_per_s / self.batch))
            if time.monotonic() - self.shown > 30:
                self.shown = time.monotonic()
                print(f"step {record.step}: {self.rates[-1][1]:.0f} steps/s", file=sys.stderr, flush=True)


def main() -> None:
    parser = arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--at", default="2000,50000", help="steps around which to measure (default 2000,50000)")
    parser.add_argument("--window", type=int, default=1000, help="steps in each window (default 1000)")
    parser.add_argument("--no-flush", action="store_true", help="keep denormals (to see the slowdown)")
    args = parser.parse_args()
    cfg, data = load(args)
    batch = min(cfg.train.batch_size, data.train_x.shape[0])
    steps_per_epoch = data.train_x.shape[0] // batch
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=math.ceil(args.steps / steps_per_epoch)))
    trainer = Trainer(cfg, data, torch.device(args.device), "long-run")
    if args.no_flush:
        torch.set_flush_denormal(False)
    sink = Rates(batch)
    started = time.perf_counter()
    end = trainer.run(sink)
    seconds = time.perf_counter() - started
    windows = {}
    for target in (int(t) for t in args.at.split(",")):
        near = [rate for step, rate in sink.rates if abs(step - target) <= args.window // 2]
        windows[str(target)] = statistics.median(near) if near else None
    early, late = (windows[k] for k in list(windows)[:1] + list(windows)[-1:])
    # The slowest window of the whole run: denormals may slow a stretch of it and pass.
    by_window: dict[int, list[float]] = {}
    for step, rate in sink.rates:
        by_window.setdefault(step // args.window, []).append(rate)
    slowest = min(by_window.items(), key=lambda item: statistics.median(item[1]), default=None)
    with torch.no_grad():
        weights = torch.cat([p.detach().flatten().abs().cpu() for p in trainer.model.parameters()])
    print(json.dumps({
        "preset": cfg.name, "device": args.device, "threads": torch.get_num_threads(), "flush": not args.no_flush,
        "steps": end.step, "status": end.status, "seconds": seconds, "steps_per_s_near": windows,
        "ratio_late_to_early": late / early if early and late else None,
        "slowest_window": {"steps": [slowest[0] * args.window, (slowest[0] + 1) * args.window],
                           "steps_per_s": statistics.median(slowest[1])} if slowest else None,
        "weights": int(weights.numel()), "weights_zero": int((weights == 0).sum()),
        "weights_below_1e-30": int((weights < 1e-30).sum()),
    }))


if __name__ == "__main__":
    main()
