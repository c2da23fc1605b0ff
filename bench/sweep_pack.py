"""Wall time of N runs of a preset trained one after another, two at a time, and packed, next to one run.

Every variant is what a user types, timed from launch to exit (process start-up included):

  one           `nctui run PRESET --headless` (torch's default threads, as headless uses)
  sequential    `nctui sweep SPEC --jobs 1 --no-pack`: the N runs one after another, each with all cores
  jobs2         `nctui sweep SPEC --jobs 2 --no-pack`: two runs at a time, the cores split between them
  packed        `nctui sweep SPEC`: packs sized from the device (on a CPU one one-thread job a core,
                the N runs spread over them: 2 packs of N/2 on 2 cores)
  packed_1job   `nctui sweep SPEC --jobs 1 --pack N`: one pack of N in one process with all cores

The N runs differ in weight decay only (the preset's, halved N - 1 times), so that they pack on
any data set and cost the same. `--in-process` times the same work without process start-up:
runner.start_run and runner.start_pack in this process, or in spawned workers (one per job)
that import everything and wait at a barrier before the clock starts.

Variants run in rounds, the order rotating each round; one JSON object on stdout: every
round's seconds, medians, `ratio_packed_to_one`, `ratio_packed_to_sequential` and the others
(ratios of medians), and the median of each round's own ratios (steadier on a shared machine);
also each variant's CPU seconds (this process and its children) and their ratios, `cpu_ratios`:
the work done, which other load on the machine disturbs far less than the wall time.
Progress on stderr.

    python bench/sweep_pack.py --preset quickstart --runs 8
    python bench/sweep_pack.py --preset quickstart --runs 8 --rounds 1 --set train.epochs=50 --in-process
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
VARIANTS = ("one", "sequential", "jobs2", "packed", "packed_1job")


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
    options = {"sequential": ["--jobs", "1", "--no-pack"], "jobs2": ["--jobs", "2", "--no-pack"], "packed": [],
               "packed_1job": ["--jobs", "1", "--pack", str(runs)]}[variant]
    return [*nctui, "sweep", str(spec), "--out", str(out / variant), *options]


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and its finished children so far: the work a
    variant did, which other load on a shared machine changes much less than its wall time."""
    import resource

    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


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
    """Every variant against one run, and the packed ones against the unpacked ones."""
    found = {f"ratio_{v}_to_one": seconds[v] / seconds["one"] for v in VARIANTS[1:] if v in seconds}
    for packed in ("packed", "packed_1job"):
        for other in ("sequential", "jobs2"):
            if packed in seconds and other in seconds:
                found[f"ratio_{packed}_to_{other}"] = seconds[packed] / seconds[other]
    return found


def in_process_seconds(variant: str, configs: list[dict], out: Path) -> float:
    """Wall seconds of a variant without process start-up, jobs and threads as the sweep sets them."""
    cores = os.cpu_count() or 1
    if variant == "one":
        jobs, most = 1, 1
        configs = configs[:1]
    else:
        jobs, most = {"sequential": (1, 1), "jobs2": (2, 1), "packed": (min(cores, 8, len(configs)), None),
                      "packed_1job": (1, len(configs))}[variant]
    if most is None:
        most = min(8, -(-len(configs) // jobs))
    threads = 0 if variant == "one" else max(1, cores // jobs)
    per_job = -(-len(configs) // jobs)
    work = [configs[i:i + per_job] for i in range(0, len(configs), per_job)]
    if len(work) == 1:
        started = time.perf_counter()
        _train(work[0], out / variant, threads, most)
        return time.perf_counter() - started
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(work) + 1)
    workers = [context.Process(target=_worker, args=(part, out / f"{variant}-{i}", threads, most, barrier))
               for i, part in enumerate(work)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    if any(worker.exitcode for worker in workers):
        raise SystemExit(f"a {variant} worker failed")
    return time.perf_counter() - started


def _worker(configs: list[dict], out: Path, threads: int, most: int, barrier) -> None:
    import nctui.runner

    assert nctui.runner.start_run   # imported (torch with it) before the clock starts
    barrier.wait()
    _train(configs, out, threads, most)


def _train(configs: list[dict], out: Path, threads: int, most: int) -> None:
    """Train the configs (train.threads set to `threads`) in packs of `most`, one after another
    (most 1: run by run), stdout discarded."""
    import contextlib

    from nctui.config import build_config
    from nctui.runner import start_pack, start_run

    built = [build_config(c, "bench", [f"train.threads={threads}"]) for c in configs]
    dirs = [out / f"run{i}" for i in range(len(built))]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        if most == 1:
            codes = [start_run(c, run_dir=d) for c, d in zip(built, dirs)]
        else:
            codes = [start_pack(built[i:i + most], dirs[i:i + most]) for i in range(0, len(built), most)]
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
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {','.join(VARIANTS)}")
    parser.add_argument("--in-process", action="store_true", help="no process start-up in the times (see above)")
    args = parser.parse_args()
    preset = Path(args.preset) if Path(args.preset).exists() else PRESETS / f"{args.preset}.yaml"
    variants = [v for v in args.variants.split(",") if v]
    per_round: dict[str, list[float]] = {v: [] for v in variants}
    cpu_per_round: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "bench.yaml"
        spec.write_text(spec_text(preset.resolve(), args.runs, args.overrides, args.device))
        configs = _configs(spec) if args.in_process else []
        if args.in_process:   # what a run imports lazily, before any clock starts
            import nctui.headless
            import nctui.train.packed
            import nctui.train.trainer

            assert nctui.headless.ProgressLine and nctui.train.packed.PackedTrainer and nctui.train.trainer.Trainer
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                out = Path(scratch) / f"round{r}"
                cpu_before = cpu_seconds()
                seconds = (in_process_seconds(variant, configs, out) if args.in_process else
                           timed(command(variant, preset.resolve(), spec, out, args.runs, args.overrides, args.device)))
                per_round[variant].append(seconds)
                cpu_per_round[variant].append(cpu_seconds() - cpu_before)
                print(f"round {r + 1}/{args.rounds} {variant}: {seconds:.1f} s, {cpu_per_round[variant][-1]:.1f} "
                      f"CPU s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    medians = {v: statistics.median(s) for v, s in per_round.items()}
    result = {"preset": preset.stem, "runs": args.runs, "rounds": args.rounds, "device": args.device,
              "in_process": args.in_process,
              "overrides": args.overrides, "cpu_count": os.cpu_count(), "seconds": per_round, "median": medians,
              "cpu_seconds": cpu_per_round}
    if "one" in variants:
        result.update(ratios(medians))
        result["cpu_ratios"] = ratios({v: statistics.median(s) for v, s in cpu_per_round.items()})
        each = [ratios({v: per_round[v][r] for v in variants}) for r in range(args.rounds)]
        result["median_of_round_ratios"] = {key: statistics.median(e[key] for e in each) for key in each[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
