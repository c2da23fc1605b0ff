"""The training loop: square loss, SGD with momentum and weight decay, weight normalisation.

Read it top to bottom: `Trainer.__init__` puts the data on the device and builds the model,
`run` is the loop. The loop never waits for a front end: records go out through `emit`
(the run writer, the TUI's post_message, stdout), and the only host syncs are at log and
evaluation time. Batch order for epoch e comes from a generator seeded by (seed, e), so a
run resumed from a snapshot replays exactly the batches the uninterrupted run would see.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from nctui.config import Config
from nctui.control import Control
from nctui.data import Dataset
from nctui.models.networks import Classifier, build_model, one_hot_targets, square_loss
from nctui.records import EndRecord, EvalRecord, Record, SnapshotRecord, StartRecord, StepRecord
from nctui.train.evaluate import Evaluator

Emit = Callable[[Record], None]
# Called as save(trainer, reason, eval_record) and returns the snapshot's file name.
SnapshotFn = Callable[["Trainer", str, "EvalRecord | None"], str]


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
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


@dataclass
class Progress:
    """Where the run is; everything a snapshot must restore besides model and optimizer."""

    step: int = 0
    elapsed_before: float = 0.0   # seconds spent in earlier segments of a resumed run


class Trainer:
    def __init__(self, cfg: Config, data: Dataset, device: torch.device, run_name: str,
                 emit: Emit, control: Control | None = None, snapshot: SnapshotFn | None = None) -> None:
        self.cfg, self.data, self.device, self.run_name = cfg, data, device, run_name
        self.emit = emit
        self.control = control or Control()
        self.save_snapshot = snapshot
        C = data.num_classes

        # Data: the whole training set on the device; a batch is an index gather.
        self.train_x = data.train_x.to(device)
        self.train_y = data.train_y.to(device)
        self.targets = one_hot_targets(self.train_y, C, cfg.train.target_scale)
        n = self.train_x.shape[0]
        self.batch_size = min(cfg.train.batch_size, n)
        self.steps_per_epoch = n // self.batch_size   # drop the ragged last batch: fixed shapes
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

        # Model and optimizer: seeded init, SGD + momentum + weight decay on every parameter.
        torch.manual_seed(cfg.seed)
        m = cfg.model
        self.model: Classifier = build_model(
            m.kind, input_shape=tuple(data.train_x.shape[1:]), num_classes=C, width=m.width,
            depth=m.depth, channels=m.channels, kernel=m.kernel, stride=m.stride,
            weight_norm_on=m.weight_norm, bias=m.bias).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.train.lr,
                                         momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)

        self.evaluator = (Evaluator(cfg, self.model, self.train_x, self.train_y, data.test_x.to(device),
                                    data.test_y.to(device), self.targets, C)
                          if cfg.monitor.enabled else None)
        self.eval_steps = (eval_schedule(self.total_steps, cfg.monitor.eval_every, cfg.monitor.early_evals)
                           if cfg.monitor.enabled else set())
        self.progress = Progress()
        self.last_eval: EvalRecord | None = None
        self.resumed_from: int | None = None

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

    def _train_step(self, idx: torch.Tensor) -> torch.Tensor:
        """One SGD step on the batch at `idx`; returns the loss as a device tensor (no sync)."""
        loss = square_loss(self.model(self.train_x[idx]), self.targets[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

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
            config=self.cfg.to_dict())

    def _evaluate(self, lr: float, rho_history: list[torch.Tensor]) -> EvalRecord:
        started = time.perf_counter()
        history = torch.stack(rho_history) if rho_history else None
        groups = self.evaluator.evaluate(self.model, self.progress.step, lr, history)
        record = EvalRecord(step=self.progress.step, epoch=self.progress.step / self.steps_per_epoch,
                            elapsed=self.elapsed(), eval_seconds=time.perf_counter() - started, **groups)
        self.last_eval = record
        self.emit(record)
        return record

    def _snapshot(self, reason: str) -> None:
        if self.save_snapshot is None:
            return
        path = self.save_snapshot(self, reason, self.last_eval)
        self.emit(SnapshotRecord(step=self.progress.step, path=path, reason=reason, elapsed=self.elapsed()))

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> EndRecord:
        """Train to the end, a stop request or divergence; always emits an end record."""
        self._t0 = time.perf_counter()
        cfg, control = self.cfg, self.control
        self.emit(self.start_record())
        status, reason = "completed", f"trained {cfg.train.epochs} epochs"
        loss_sum = torch.zeros((), device=self.device)   # summed on the device between logs
        steps_since_log, rho_history = 0, []
        last_log_time, last_log_step = time.perf_counter(), self.progress.step
        order = None
        lr = self._set_lr()
        try:
            if self.progress.step in self.eval_steps and self.resumed_from is None:
                self._evaluate(lr, rho_history)
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
                loss_sum += self._train_step(idx)
                self.progress.step += 1
                steps_since_log += 1
                step = self.progress.step

                logged = step % cfg.monitor.log_every == 0 or step == self.total_steps
                if logged:
                    loss = float(loss_sum) / steps_since_log   # the one sync, at log time
                    rate = (step - last_log_step) * self.batch_size / max(time.perf_counter() - last_log_time, 1e-9)
                    self.emit(StepRecord(step=step, epoch=step / self.steps_per_epoch, loss=loss, lr=lr,
                                         samples_per_s=rate, elapsed=self.elapsed()))
                    if not math.isfinite(loss):
                        status, reason = "diverged", f"non-finite loss ({loss}) at step {step}"
                        break
                    loss_sum.zero_()
                    steps_since_log = 0
                    if self.evaluator is not None:
                        rho_history.append(self._layer_norms())
                if step in self.eval_steps:
                    record = self._evaluate(lr, rho_history)
                    rho_history = []
                    if record.train.get("loss") is None:
                        status, reason = "diverged", f"non-finite probe loss at step {step}"
                        break
                if cfg.monitor.snapshot_every and step % cfg.monitor.snapshot_every == 0:
                    self._snapshot("periodic")
                if logged:   # throughput counts training only, not evaluations or snapshots
                    last_log_time, last_log_step = time.perf_counter(), step
        except Exception as err:  # noqa: BLE001 - reported in the end record, re-raised by the caller if needed
            status, reason = "failed", f"{type(err).__name__}: {err}"
        if status in ("completed", "stopped"):
            try:
                self._snapshot("final")
            except Exception as err:  # noqa: BLE001 - a failed final snapshot must still end the run
                status, reason = "failed", f"final snapshot failed: {err}"
        end = EndRecord(step=self.progress.step, status=status, reason=reason, elapsed=self.elapsed())
        self.emit(end)
        return end
