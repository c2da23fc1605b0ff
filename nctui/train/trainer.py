"""The training loop: square loss, SGD with momentum and weight decay, weight normalisation.

Read it top to bottom: `Trainer.__init__` puts the data on the device and builds the model,
`run(sink)` is the loop. The loop never waits for a front end: every record goes to the one sink it
is given (the runner tees it to the run writer and the TUI or stdout), and the only host
syncs are at log and evaluation time. Batch order for epoch e comes from the generator seeded
by (seed, "batch-order:e"), so a run resumed from a snapshot replays exactly the batches the
uninterrupted run would see. What a snapshot holds is declared once, in `Trainer.slots`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from nctui.config import Config
from nctui.control import Control
from nctui.data import Dataset, seeded_generator
from nctui.models.networks import Classifier, build_model, one_hot_targets
from nctui.records import Checkpoint, EndRecord, EvalRecord, SnapshotRecord, StartRecord, StepRecord
from nctui.train.checkpoint import Layout, Slot
from nctui.train.distributed import AllReduceStep, World
from nctui.train.evaluate import Evaluator
from nctui.train.fast_step import lean_weight_norm, make_step
from nctui.train.sink import NullSink, Sink


class Diverged(Exception):
    """The weights or the loss are no longer finite: there is nothing left to train or to snapshot."""


def pick_device(requested: str) -> torch.device:
    """auto: CUDA when there is one; asking for cuda without one is an error the user can fix."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available (use cpu or auto)")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def eval_schedule(total_steps: int, eval_every: int, early: bool) -> set[int]:
    """Step 0, every eval_every steps, the last step, and (early) log-spaced steps before the first."""
    steps = {0, total_steps, *range(eval_every, total_steps + 1, eval_every)}
    if early:
        k = eval_every // 2
        while k >= 4:
            steps.add(k)
            k //= 2
    return {s for s in steps if s <= total_steps}


def lr_at(cfg: Config, epoch: int) -> float:
    """Multistep decay: lr times lr_decay for each milestone epoch already reached."""
    return cfg.train.lr * cfg.train.lr_decay ** sum(epoch >= m for m in cfg.train.milestones)


def batch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The sample order of one epoch: a function of (seed, epoch) only, so resume is exact."""
    return torch.randperm(n, generator=seeded_generator(seed, f"batch-order:{epoch}"))


@dataclass
class Progress:
    """Where the run is; with the tensors of `Trainer.checkpoint` all a snapshot must restore."""

    step: int = 0
    elapsed_before: float = 0.0   # seconds spent in earlier segments of a resumed run
    steps_since_log: int = 0      # steps summed into Trainer.loss_sum since the last step record


class Trainer:
    def __init__(self, cfg: Config, data: Dataset, device: torch.device, run_name: str,
                 control: Control | None = None, world: World | None = None) -> None:
        """`world`: this process's rank under torchrun (nctui/train/distributed.py); None for a single process."""
        self.cfg, self.data, self.device, self.run_name = cfg, data, device, run_name
        self.world = world or World.single(device)
        self.control = control or self.world.new_control()
        self.sink: Sink = NullSink()   # run() is handed the run's sink; nothing goes out before
        C = data.num_classes
        if device.type == "cpu":   # weight decay drives unused weights into denormals, 7x slower on a CPU
            torch.set_flush_denormal(True)

        # Data: the whole training set on the device; a batch is an index gather.
        self.train_x = data.train_x.to(device)
        self.train_y = data.train_y.to(device)
        self.targets = one_hot_targets(self.train_y, C, cfg.train.target_scale)
        n = self.train_x.shape[0]
        self.batch_size = min(cfg.train.batch_size, n)
        self.steps_per_epoch = n // self.batch_size   # drop the ragged last batch: fixed shapes
        if self.batch_size % self.world.size:
            raise ValueError(f"the global batch of {self.batch_size} samples (all {n} training samples) is not "
                             f"divisible by the world size {self.world.size}")
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

        # Model and optimizer: seeded init, SGD + momentum + weight decay on every parameter.
        torch.manual_seed(cfg.seed)
        self.model: Classifier = build_model(cfg.model, tuple(data.train_x.shape[1:]), C).to(device)
        lean_weight_norm(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.train.lr, fused=True,
                                         momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
        # Eager, or a CUDA graph on a GPU (train.cuda_graph); a ValueError when that cannot be.
        # Under torchrun each rank steps on its slice of the batch and the gradients are averaged.
        if self.world.distributed:
            if cfg.train.cuda_graph == "on":
                raise ValueError("train.cuda_graph is on, but under torchrun the step is eager (the gradients "
                                 "are all-reduced between backward and update); use auto or off")
            self.train_step = AllReduceStep(self.model, self.optimizer, self.train_x, self.targets, self.world,
                                            self.control)
        else:
            self.train_step = make_step(self.model, self.optimizer, self.train_x, self.targets, self.batch_size,
                                        cfg.train.cuda_graph)

        self.evaluator = (Evaluator(cfg, self.model, self.train_x, self.train_y, data.test_x.to(device),
                                    data.test_y.to(device), self.targets, C, data.preprocessing.get("normalize"),
                                    self.world)
                          if cfg.monitor.enabled else None)
        self.eval_steps = (eval_schedule(self.total_steps, cfg.monitor.eval_every, cfg.monitor.early_evals)
                           if cfg.monitor.enabled else set())
        self.progress = Progress()
        self._t0 = time.perf_counter()   # reset by run(); set here so checkpoint() works before it
        self.loss_sum = torch.zeros((), device=device)   # summed on the device between step records
        self.rho_history: list[torch.Tensor] = []       # rho_k at each step record since the last eval
        self.last_eval: EvalRecord | None = None
        self.resumed_from: int | None = None
        self._last_snapshot_time = time.monotonic()   # for monitor.snapshot_minutes

    # --- the pieces of one step -----------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.progress.step // self.steps_per_epoch

    def elapsed(self) -> float:
        return self.progress.elapsed_before + time.perf_counter() - self._t0

    def _set_lr(self) -> float:
        lr = lr_at(self.cfg, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @torch.no_grad()
    def _layer_norms(self) -> torch.Tensor:
        """rho_k of every layer, as one device tensor (sampled at log time for rho_jitter)."""
        return torch.stack([w.norm() for w in self.model.effective_weights()])

    # --- records ------------------------------------------------------------------------

    def start_record(self) -> StartRecord:
        return StartRecord(
            run=self.run_name, time=time.time(), device=describe_device(self.device),
            dataset=self.data.name, model=self.model.description, num_classes=self.data.num_classes,
            layers=[i.name for i in self.model.infos], epochs=self.cfg.train.epochs,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
            train_samples=int(self.train_x.shape[0]), resumed_from=self.resumed_from,
            config=self.cfg.to_dict(), world_size=self.world.size, backend=self.world.backend)

    def _evaluate(self, lr: float) -> EvalRecord:
        started = time.perf_counter()
        history = torch.stack(self.rho_history) if self.rho_history else None
        self.rho_history = []
        groups = self.evaluator.evaluate(self.model, self.progress.step, lr, history)
        record = EvalRecord(step=self.progress.step, epoch=self.progress.step / self.steps_per_epoch,
                            elapsed=self.elapsed(), eval_seconds=time.perf_counter() - started, **groups)
        self.last_eval = record
        self.sink.record(record)
        return record

    def _snapshot(self, reason: str) -> None:
        if not self._finite():   # a non-finite snapshot would replace the last good resume point
            raise Diverged(f"non-finite weights or loss at step {self.progress.step}; not snapshotted")
        self._last_snapshot_time = time.monotonic()
        path = self.sink.snapshot(self.checkpoint(reason))
        if path is not None:   # None: the sink keeps no snapshots (benchmarks, tests)
            self.sink.record(SnapshotRecord(step=self.progress.step, path=path, reason=reason,
                                            elapsed=self.elapsed()))

    def _snapshot_due(self, step: int) -> bool:
        """monitor.snapshot_every steps or monitor.snapshot_minutes of wall time since the last one."""
        monitor = self.cfg.monitor
        if step >= self.total_steps:   # the last step gets the final snapshot instead
            return False
        if monitor.snapshot_every and step % monitor.snapshot_every == 0:
            return True
        minutes = monitor.snapshot_minutes
        return bool(minutes) and time.monotonic() - self._last_snapshot_time >= 60 * minutes

    @torch.no_grad()
    def _finite(self) -> bool:
        """Whether every parameter and the loss summed since the last step record are finite (one sync)."""
        checks = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack([*checks, torch.isfinite(self.loss_sum)]).all())

    # --- snapshots and resume -------------------------------------------------------------

    def slots(self) -> list[Slot]:
        """Every tensor a snapshot holds, declared once: its name, shape, dtype, whether a
        snapshot must have it, how to read it from the run and how to put it back.

        `checkpoint`, `layout` and `restore` are all derived from this list, so a resumed
        run's records equal an uninterrupted run's and a snapshot can be checked against the
        model the config builds before any of its data is read.
        """
        model, device, evaluator = self.model, self.device, self.evaluator
        state = model.state_dict()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        with torch.no_grad():
            weights = [w.detach() for w in model.effective_weights()]
        n_layers, C = len(weights), self.data.num_classes

        def put_state(key: str) -> Callable[[torch.Tensor], None]:
            return lambda t: state[key].copy_(t)

        def put_momentum(p: torch.Tensor) -> Callable[[torch.Tensor | None], None]:
            def put(t: torch.Tensor | None) -> None:
                self.optimizer.state[p].pop("momentum_buffer", None)
                if t is not None:
                    self.optimizer.state[p]["momentum_buffer"] = t.to(device).clone()
            return put

        def put_rho_history(t: torch.Tensor | None) -> None:
            self.rho_history = list(t.to(device)) if t is not None else []

        slots = [Slot(f"model.{key}", tuple(v.shape), v.dtype, True, (lambda v=v: v), put_state(key))
                 for key, v in state.items()]
        slots += [Slot(f"optim.{i}.momentum_buffer", tuple(p.shape), p.dtype, False,
                       (lambda p=p: self.optimizer.state[p].get("momentum_buffer")), put_momentum(p))
                  for i, p in enumerate(params)]
        slots += [Slot(f"weights.{k}", tuple(w.shape), w.dtype, False, (lambda w=w: w), None)
                  for k, w in enumerate(weights)]   # for readers of the snapshot; derived, not restored
        slots += [
            Slot("resume.loss_sum", (), self.loss_sum.dtype, True, lambda: self.loss_sum,
                 lambda t: setattr(self, "loss_sum", t.to(device))),
            Slot("resume.rng_cpu", tuple(torch.get_rng_state().shape), torch.uint8, True, torch.get_rng_state,
                 torch.set_rng_state),
            Slot("resume.rho_history", (-1, n_layers), weights[0].dtype, False,
                 lambda: torch.stack(self.rho_history) if self.rho_history else None, put_rho_history),
        ]
        if device.type == "cuda":
            slots.append(Slot("resume.rng_cuda", tuple(torch.cuda.get_rng_state(device).shape), torch.uint8, False,
                              lambda: torch.cuda.get_rng_state(device),
                              lambda t: t is not None and torch.cuda.set_rng_state(t, device)))
        if evaluator is not None:
            slots += evaluator.slots(weights, C)
        return slots

    def layout(self) -> Layout:
        """name -> (shape, dtype, required) of every tensor a snapshot of this run may hold."""
        return {slot.name: (slot.shape, slot.dtype, slot.required) for slot in self.slots()}

    def checkpoint(self, reason: str) -> Checkpoint:
        """The run as it is now, between steps: everything `restore` needs, on the CPU."""
        tensors = {}
        for slot in self.slots():
            value = slot.get()
            if value is not None:   # copies: the run goes on while the sink writes them
                tensors[slot.name] = value.detach().to("cpu", copy=True).contiguous()
        evaluator = self.evaluator
        resume = {"step": self.progress.step, "elapsed": self.elapsed(),
                  "steps_since_log": self.progress.steps_since_log,
                  "prev_step": evaluator.prev_step if evaluator is not None and evaluator.prev_logits is not None else 0}
        return Checkpoint(step=self.progress.step, epoch=self.progress.step / self.steps_per_epoch, reason=reason,
                          run=self.run_name, config=self.cfg.to_dict(), tensors=tensors, resume=resume,
                          eval=self.last_eval)

    @torch.no_grad()
    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint read back and checked against `layout`.

        Sets `resumed_from`; `run` then emits a start record saying so and skips the step-0
        evaluation. Raises ValueError, before changing anything, on an inconsistent checkpoint.
        """
        slots = self.slots()
        tensors = checkpoint.tensors
        if self.evaluator is not None:
            self.evaluator.check_restorable(tensors)
        for slot in slots:
            if slot.put is not None:
                slot.put(tensors.get(slot.name))
        if self.evaluator is not None:
            self.evaluator.prev_step = int(checkpoint.resume["prev_step"])
        step = int(checkpoint.resume["step"])
        self.progress = Progress(step=step, elapsed_before=float(checkpoint.resume["elapsed"]),
                                 steps_since_log=int(checkpoint.resume["steps_since_log"]))
        self.last_eval = checkpoint.eval
        self.resumed_from = step

    # --- the loop -----------------------------------------------------------------------

    def run(self, sink: Sink) -> EndRecord:
        """Train to the end, a stop request or divergence; every record and snapshot goes to
        `sink`, the last record an end record (also returned).

        The loss sum and rho samples between records live on `self`, not in locals, so that a
        snapshot taken between steps carries them and a resumed run continues them exactly.
        """
        self.sink = sink
        self._t0 = time.perf_counter()
        cfg, control, progress = self.cfg, self.control, self.progress
        self.sink.record(self.start_record())
        status, reason = "completed", f"trained {cfg.train.epochs} epochs"
        last_log_time, last_log_step = time.perf_counter(), progress.step
        order = None
        lr = self._set_lr()
        try:
            if self.progress.step in self.eval_steps and self.resumed_from is None:
                self._evaluate(lr)
            while self.progress.step < self.total_steps:
                if control.paused:
                    control.wait_while_paused()
                    last_log_time = time.perf_counter()
                if control.stop_requested:
                    status, reason = "stopped", control.stop_reason or "stopped"
                    break
                if control.take_snapshot_request():
                    self._snapshot("user")

                position = self.progress.step % self.steps_per_epoch
                if order is None or position == 0:
                    order = batch_order(cfg.seed, self.epoch, self.train_x.shape[0]).to(self.device)
                    lr = self._set_lr()
                idx = order[position * self.batch_size:(position + 1) * self.batch_size]
                self.loss_sum += self.train_step(idx)
                progress.step += 1
                progress.steps_since_log += 1
                step = progress.step

                logged = step % cfg.monitor.log_every == 0 or step == self.total_steps
                if logged:
                    loss = float(self.loss_sum) / progress.steps_since_log   # the one sync, at log time
                    rate = (step - last_log_step) * self.batch_size / max(time.perf_counter() - last_log_time, 1e-9)
                    self.sink.record(StepRecord(step=step, epoch=step / self.steps_per_epoch, loss=loss, lr=lr,
                                                samples_per_s=rate, elapsed=self.elapsed()))
                    if not math.isfinite(loss):
                        status, reason = "diverged", f"non-finite loss ({loss}) at step {step}"
                        break
                    self.loss_sum.zero_()
                    progress.steps_since_log = 0
                    if self.evaluator is not None:
                        self.rho_history.append(self._layer_norms())
                if step in self.eval_steps:
                    record = self._evaluate(lr)
                    if record.train.get("loss") is None:
                        status, reason = "diverged", f"non-finite probe loss at step {step}"
                        break
                if self._snapshot_due(step):
                    self._snapshot("periodic")
                if logged:   # throughput counts training only, not evaluations or snapshots
                    last_log_time, last_log_step = time.perf_counter(), step
        except Diverged as err:
            status, reason = "diverged", str(err)
        except Exception as err:  # noqa: BLE001 - reported in the end record, re-raised by the caller if needed
            status, reason = "failed", f"{type(err).__name__}: {err}"
        if status in ("completed", "stopped"):
            try:
                self._snapshot("final")
            except Diverged as err:
                status, reason = "diverged", str(err)
            except Exception as err:  # noqa: BLE001 - a failed final snapshot must still end the run
                status, reason = "failed", f"final snapshot failed: {err}"
        end = EndRecord(step=self.progress.step, status=status, reason=reason, elapsed=self.elapsed())
        self.sink.record(end)
        return end
