"""What one evaluation costs, part by part, next to the two streamed forward passes it needs.

Builds the preset's trainer (untrained weights: the cost does not depend on them), times
--repeats evaluations and reports the median with a breakdown (forward passes with features,
the class-mean and within-class accumulators, gradient noise, test set, the per-layer
decompositions, spectra, alignment, the rest), and the median time of two plain streamed
forward passes over the same probe.
Issue 3 asks for an evaluation within 1.5x of those two passes. Prints one JSON object.

    python bench/eval_cost.py --preset mnist_fc --synthetic-mnist --set monitor.probe_per_class=6000
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from common import arguments, load, synchronize

from nctui import metrics
from nctui.train.evaluate import Evaluator
from nctui.train.trainer import Trainer

PARTS = {   # label -> (owner, attribute) timed inside one evaluation
    "forward_features": (None, "forward_with_features"),
    "class_means": (metrics.ClassMeans, "update"),
    "within_class": (metrics.WithinClass, "update"),
    "gradient_noise": (Evaluator, "_gradient_noise"),
    "test_set": (Evaluator, "_test_set"),
    "decompositions": (metrics, "singular"),
    "spectra": (metrics, "spectrum"),
    "alignment": (metrics, "alignment"),
}


def _timed(spent: dict[str, float], label: str, device: torch.device, fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        synchronize(device)
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        synchronize(device)
        spent[label] += time.perf_counter() - started
        return result
    return wrapper


@torch.no_grad()
def two_passes(trainer: Trainer) -> float:
    """Seconds of two streamed forward passes with features over the probe, results dropped."""
    evaluator, model = trainer.evaluator, trainer.model
    synchronize(trainer.device)
    started = time.perf_counter()
    for _ in range(2):
        for start in range(0, evaluator.probe_x.shape[0], evaluator.chunk):
            model.forward_with_features(evaluator.probe_x[start:start + evaluator.chunk])
    synchronize(trainer.device)
    return time.perf_counter() - started


def main() -> None:
    parser = arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg, data = load(args)
    device = torch.device(args.device)
    trainer = Trainer(cfg, data, device, "eval-cost")
    evaluator, model = trainer.evaluator, trainer.model
    if evaluator is None:
        parser.error("monitoring is off in this config")

    spent: dict[str, float] = defaultdict(float)
    originals = {label: (owner or model, name, getattr(owner or model, name)) for label, (owner, name) in PARTS.items()}
    totals, passes, breakdowns = [], [], []
    for repeat in range(args.repeats + 1):   # the first is a warm-up
        for label, (owner, name, fn) in originals.items():
            setattr(owner, name, _timed(spent, label, device, fn))
        spent.clear()
        synchronize(device)
        started = time.perf_counter()
        evaluator.evaluate(model, step=repeat, lr=cfg.train.lr, rho_history=None)
        synchronize(device)
        total = time.perf_counter() - started
        for owner, name, fn in originals.values():
            if owner is model:
                del model.forward_with_features   # back to the class's method
            else:
                setattr(owner, name, fn)
        if repeat:
            totals.append(total)
            breakdowns.append({**spent, "rest": total - sum(spent.values())})
            passes.append(two_passes(trainer))

    eval_s, passes_s = statistics.median(totals), statistics.median(passes)
    print(json.dumps({
        "preset": args.preset, "device": args.device, "threads": args.threads,
        "probe_samples": int(evaluator.probe_x.shape[0]), "test_samples": int(evaluator.test_x.shape[0]),
        "chunk": evaluator.chunk, "eval_seconds": round(eval_s, 4), "two_passes_seconds": round(passes_s, 4),
        "ratio_eval_two_passes": round(eval_s / passes_s, 3),
        "breakdown_seconds": {label: round(statistics.median(b[label] for b in breakdowns), 4)
                              for label in [*PARTS, "rest"]},
    }))


if __name__ == "__main__":
    main()
