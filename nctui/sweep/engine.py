"""A sweep from spec to sweep directory, and a sweep directory back to the tasks that finish it.

`create` writes the sweep directory of a validated plan (sweep.json and base.yaml, nothing
else: each point's run directory is made by its own `nctui run --run-dir`). `prepare_resume`
reads one back, takes its lock and finds what each point needs (docs/sweeps.md).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from nctui.config import Config, ConfigError, load_config
from nctui.store.sweepdir import (SweepBusyError, SweepDirError, SweepLock, create_sweep_dir,
                                  read_manifest, write_manifest)
from nctui.sweep.executors import Task, cpu_count
from nctui.sweep.spec import Plan
from nctui.sweep.state import RESTART, RESUME, START, PointState, inspect_point

BASE_FILE = "base.yaml"   # the resolved base config every point's overrides apply to


def new_manifest(plan: Plan) -> dict:
    """sweep.json of a new sweep: every point pending."""
    spec = plan.spec
    return {
        "name": spec.name,
        "created": time.time(),
        "spec_file": str(spec.path.resolve()),
        "spec": spec.raw,
        "base": spec.base,
        "base_path": str(spec.base_path.resolve()),
        "base_file": BASE_FILE,
        "varying": plan.varying,
        "points": [{"index": p.index, "name": p.name, "run_dir": p.name, "values": p.values,
                    "overrides": p.overrides, "status": "pending"} for p in plan.points],
    }


def create(plan: Plan, out: str | Path) -> tuple[Path, SweepLock, dict]:
    """Write <out>/<name>-<UTC>/ with sweep.json and base.yaml, locked; (path, lock, manifest)."""
    manifest = new_manifest(plan)
    base = yaml.safe_dump(plan.base_config, sort_keys=False)
    header = f"# The base config of sweep {plan.spec.name} (from {plan.spec.base}), resolved: every point starts here.\n"
    path, lock = create_sweep_dir(out, plan.spec.name, manifest, {BASE_FILE: (header + base).encode()})
    return path, lock, manifest


@dataclass
class Resumption:
    """A sweep directory read back and locked, with what each point needs."""

    sweep_dir: Path
    manifest: dict
    lock: SweepLock
    base: Config
    states: list[PointState]

    @property
    def tasks(self) -> list[Task]:
        """The points to run, in order: RESTART ones start again once `clear_restarts` has run."""
        return [Task(index=i, point=p, action=RESUME if s.action == RESUME else START)
                for i, (p, s) in enumerate(zip(self.manifest["points"], self.states))
                if s.action in (START, RESUME, RESTART)]

    def clear_restarts(self) -> None:
        """Delete the run directories that have no snapshot (a run killed before its first) and
        record every point's status in the manifest."""
        for point, state in zip(self.manifest["points"], self.states):
            if state.action == RESTART:
                shutil.rmtree(self.sweep_dir / point["run_dir"])
            point["status"] = "pending" if state.action in (START, RESTART) else state.status
        write_manifest(self.sweep_dir, self.manifest)


def prepare_resume(sweep_dir: str | Path) -> Resumption:
    """Read SWEEP_DIR's manifest, take its lock and inspect every point. SweepDirError (naming the
    file) if it is not a sweep directory; SweepBusyError if a process runs it or one of its runs;
    ConfigError if base.yaml is not a config."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    lock = SweepLock(sweep_dir)
    try:
        base = load_config(sweep_dir / manifest["base_file"])
        states = [inspect_point(sweep_dir, point) for point in manifest["points"]]
        busy = [p for p, s in zip(manifest["points"], states) if s.status == "running"]
        if busy:
            raise SweepBusyError(f"{sweep_dir / busy[0]['run_dir']}: another process is writing this run of the "
                                 f"sweep; let it finish or stop it before resuming")
    except (SweepDirError, ConfigError):
        lock.release()
        raise
    return Resumption(sweep_dir=sweep_dir, manifest=manifest, lock=lock, base=base, states=states)


def default_threads(base_threads: int, jobs: int) -> int | None:
    """torch CPU threads for each of `jobs` runs sharing this machine's cores, unless the base
    config chooses its own (`base_threads` > 0; a point's own train.threads wins too: run_arguments)."""
    return None if base_threads else max(1, cpu_count() // jobs)

