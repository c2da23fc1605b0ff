"""Wall time of N runs of a preset trained one after another, two at a time, and packed, next to one run.

Every variant is what a user types, timed from launch to exit (process start-up included):

  one         `nctui run PRESET --headless` (torch's default threads, as headless uses)
  sequential  `nctui sweep SPEC --jobs 1 --no-pack`: the N runs one after another, each with all cores
  jobs2       `nctui sweep SPEC --jobs 2 --no-pack`: two runs at a time, the cores split between them
  packed      `nctui sweep SPEC --pack N`: the N runs as one packed model, one process with all cores
  packed_jobs2  (only when asked for) `nctui sweep SPEC --jobs 2`: two packs of N/2 at a time

The N runs differ in weight decay only (the preset's, halved N - 1 times), so that they pack on
any data set and cost the same. `--in-process` times the same work without process start-up:
runner.start_run once, start_run N times (threads: all cores), two spawned workers that wait at a
barrier and then run N/2 each (one thread each), runner.start_pack (all cores).

Variants run in rounds, the order rotating each round; one JSON object on stdout: every
round's seconds, medians, `ratio_packed_to_one`, `ratio_packed_to_sequential` and the others
(ratios of medians), and the median of each round's own ratios (steadier on a shared machine).
Progress on stderr.

    python bench/sweep_pack.py --preset quickstart --runs 8
    python bench/sweep_pack.py --preset quickstart --runs 8 --rounds 1 --set train.epochs=50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PRESETS = Path(__file__).resolve().parent.parent / "presets"
VARIANTS = ("one", "sequential", "jobs2", "packed")
EXTRA = ("packed_jobs2",)   # on request (--variants): two packs of N/2 at a time, the cores split between them


def spec_text(preset: Path, runs: int, overrides: list[str], device: str) -> str:
    """A sweep of `runs` points of the preset, weight decay halved from point to point."""
    config = yaml.safe_load(preset.read_text())
    decay = float(config.get("train", {}).get("weight_decay", 5e-4)) or 1e-3
    settings = dict(item.split("=", 1) for item in [*overrides, f"train.device={device}"])
    return yaml.safe_dump({"name": "bench", "base": str(preset), "set": {k: yaml.safe_load(v) for k, v in
                                                                        settings.items()},
                           "zip": {"train.weight_decay": [decay / 2 ** i for i in range(runs)]}})


def command(variant: str, preset: Path, spec: Path, out: Path, runs: int, overrides: list[str],
            device: str) -> list[str]:
    nctui = [sys.executable, "-m", "nctui"]
    if variant == "one":
        settings = [arg for item in overrides for arg in ("--set", item)]
        return [*nctui, "run", str(preset), "--headless", "--run-dir", str(out / "one"), "--device", device,
                *settings]
    options = {"sequential": ["--jobs", "1", "--no-pack"], "jobs2": ["--jobs", "2", "--no-pack"],
               "packed": ["--pack", str(runs)],
               "packed_jobs2": ["--jobs", "2", "--pack", str((runs + 1) // 2)]}[variant]
    return [*nctui, "sweep", str(spec), "--out", str(out / variant), *options]


def timed(arguments: list[str]) -> float:
    """Seconds from launch to exit; the command must succeed (its stderr is shown if not)."""
    started = time.perf_counter()
    done = subprocess.run(arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _configs(spec: Path) -> list[dict]:
    """The sweep's points' configs, resolved as `nctui sweep` resolves them."""
    from nctui.config import build_config
    from nctui.sweep.spec import load_spec, plan

    the_plan = plan(load_spec(spec))
    return [build_config(the_plan.base_config, "bench", p.overrides).to_dict() for p in the_plan.points]


def ratios(seconds: dict[str, float]) -> dict[str, float]:
    return {"ratio_packed_to_one": seconds["packed"] / seconds["one"],
            "ratio_packed_to_sequential": seconds["packed"] / seconds["sequential"],
            "ratio_packed_to_jobs2": seconds["packed"] / seconds["jobs2"],
            "ratio_sequential_to_one": seconds["sequential"] / seconds["one"],
            "ratio_jobs2_to_one": seconds["jobs2"] / seconds["one"]}


def in_process_seconds(variant: str, configs: list[dict], out: Path, runs: int) -> float:
    """Wall seconds of a variant run in this process (jobs2: in two spawned workers, from the
    moment both are ready); threads as the sweep would set them."""
    import multiprocessing

    cores = os.cpu_count() or 1
    if variant == "jobs2":
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(3)
        halves = [configs[: (runs + 1) // 2], configs[(runs + 1) // 2:]]
        workers = [context.Process(target=_worker, args=(half, out / f"jobs2-{i}", max(1, cores // 2), barrier))
                   for i, half in enumerate(halves)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.perf_counter()
        for worker in workers:
            worker.join()
        if any(worker.exitcode for worker in workers):
            raise SystemExit("a jobs2 worker failed")
        return time.perf_counter() - started
    threads = {"one": 0, "sequential": cores, "packed": cores}[variant]
    chosen = configs[:1] if variant == "one" else configs
    started = time.perf_counter()
    _train(chosen, out / variant, threads, packed=variant == "packed")
    return time.perf_counter() - started


def _worker(configs: list[dict], out: Path, threads: int, barrier) -> None:
    import nctui.runner

    assert nctui.runner.start_run   # imported (torch with it) before the clock starts
    barrier.wait()
    _train(configs, out, threads, packed=False)


def _train(configs: list[dict], out: Path, threads: int, packed: bool) -> None:
    """Train the configs (train.threads set to `threads`) one by one or as one pack, stdout discarded."""
    import contextlib

    from nctui.config import build_config
    from nctui.runner import start_pack, start_run

    built = [build_config(c, "bench", [f"train.threads={threads}"]) for c in configs]
    dirs = [out / f"run{i}" for i in range(len(built))]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        codes = [start_pack(built, dirs)] if packed else [start_run(c, run_dir=d) for c, d in zip(built, dirs)]
    if any(codes):
        raise SystemExit(f"training failed with exit codes {codes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, help="preset name (presets/NAME.yaml) or a YAML path")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run (repeatable)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {','.join(VARIANTS + EXTRA)}")
    parser.add_argument("--in-process", action="store_true", help="no process start-up in the times (see above)")
    args = parser.parse_args()
    preset = Path(args.preset) if Path(args.preset).exists() else PRESETS / f"{args.preset}.yaml"
    variants = [v for v in args.variants.split(",") if v]
    per_round: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "bench.yaml"
        spec.write_text(spec_text(preset.resolve(), args.runs, args.overrides, args.device))
        configs = _configs(spec) if args.in_process else []
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                out = Path(scratch) / f"round{r}"
                seconds = (in_process_seconds(variant, configs, out, args.runs) if args.in_process else
                           timed(command(variant, preset.resolve(), spec, out, args.runs, args.overrides, args.device)))
                per_round[variant].append(seconds)
                print(f"round {r + 1}/{args.rounds} {variant}: {seconds:.1f} s (load {os.getloadavg()[0]:.1f})",
                      file=sys.stderr, flush=True)
    medians = {v: statistics.median(s) for v, s in per_round.items()}
    result = {"preset": preset.stem, "runs": args.runs, "rounds": args.rounds, "device": args.device,
              "in_process": args.in_process,
              "overrides": args.overrides, "cpu_count": os.cpu_count(), "seconds": per_round, "median": medians}
    if set(VARIANTS) <= set(variants):
        result.update(ratios(medians))
        each = [ratios({v: per_round[v][r] for v in VARIANTS}) for r in range(args.rounds)]
        result["median_of_round_ratios"] = {key: statistics.median(e[key] for e in each) for key in each[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
