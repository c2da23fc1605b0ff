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
from typing import Any, Callable

import torch

from nctui.config import Config
from nctui.control import Control
from nctui.data import Dataset
from nctui.models.networks import Classifier, build_model, one_hot_targets
from nctui.records import EndRecord, EvalRecord, Record, SnapshotRecord, StartRecord, StepRecord
from nctui.train.evaluate import Evaluator
from nctui.train.fast_step import lean_weight_norm, make_step

Emit = Callable[[Record], None]
# Called as save(trainer, reason, eval_record) and returns the snapshot's file name.
SnapshotFn = Callable[["Trainer", str, "EvalRecord | None"], str]


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
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


@dataclass
class Progress:
    """Where the run is; with the tensors of `Trainer.checkpoint` all a snapshot must restore."""

    step: int = 0
    elapsed_before: float = 0.0   # seconds spent in earlier segments of a resumed run
    steps_since_log: int = 0      # steps summed into Trainer.loss_sum since the last step record


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
        lean_weight_norm(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.train.lr, fused=True,
                                         momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
        # Eager, or a CUDA graph on a GPU (train.cuda_graph); a ValueError when that cannot be.
        self.train_step = make_step(self.model, self.optimizer, self.train_x, self.targets, self.batch_size,
                                    cfg.train.cuda_graph)

        self.evaluator = (Evaluator(cfg, self.model, self.train_x, self.train_y, data.test_x.to(device),
                                    data.test_y.to(device), self.targets, C, data.preprocessing.get("normalize"))
                          if cfg.monitor.enabled else None)
        self.eval_steps = (eval_schedule(self.total_steps, cfg.monitor.eval_every, cfg.monitor.early_evals)
                           if cfg.monitor.enabled else set())
        self.progress = Progress()
        self._t0 = time.perf_counter()   # reset by run(); set here so checkpoint() works before it
        self.loss_sum = torch.zeros((), device=device)   # summed on the device between step records
        self.rho_history: list[torch.Tensor] = []       # rho_k at each step record since the last eval
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

    def _evaluate(self, lr: float) -> EvalRecord:
        started = time.perf_counter()
        history = torch.stack(self.rho_history) if self.rho_history else None
        self.rho_history = []
        groups = self.evaluator.evaluate(self.model, self.progress.step, lr, history)
        record = EvalRecord(step=self.progress.step, epoch=self.progress.step / self.steps_per_epoch,
                            elapsed=self.elapsed(), eval_seconds=time.perf_counter() - started, **groups)
        self.last_eval = record
        self.emit(record)
        return record

    def _snapshot(self, reason: str) -> None:
        if self.save_snapshot is None:
            return
        if not self._finite():   # a non-finite snapshot would replace the last good resume point
            raise Diverged(f"non-finite weights or loss at step {self.progress.step}; not snapshotted")
        path = self.save_snapshot(self, reason, self.last_eval)
        self.emit(SnapshotRecord(step=self.progress.step, path=path, reason=reason, elapsed=self.elapsed()))

    @torch.no_grad()
    def _finite(self) -> bool:
        """Whether every parameter and the loss summed since the last step record are finite (one sync)."""
        checks = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack([*checks, torch.isfinite(self.loss_sum)]).all())

    # --- resume -------------------------------------------------------------------------

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What a snapshot takes from the trainer, so a resumed run's records equal an uninterrupted run's.

        Named tensors (`checkpoint_layout` lists them: model state, optimizer buffers, the
        effective weights, and under `resume.` the loss sum and rho_k samples since the last
        records, the previous evaluation's weights and probe logits, the RNG) and JSON-able
        numbers. Taken between steps, as `run` does, the state is consistent.
        """
        tensors = {f"model.{key}": value for key, value in self.model.state_dict().items()}
        for index, buffers in self.optimizer.state_dict()["state"].items():
            if buffers.get("momentum_buffer") is not None:
                tensors[f"optim.{index}.momentum_buffer"] = buffers["momentum_buffer"]
        with torch.no_grad():
            tensors.update({f"weights.{k}": w.detach() for k, w in enumerate(self.model.effective_weights())})
        tensors["resume.loss_sum"] = self.loss_sum
        tensors["resume.rng_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["resume.rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.rho_history:
            tensors["resume.rho_history"] = torch.stack(self.rho_history)
        info = {"step": self.progress.step, "elapsed": self.elapsed(),
                "steps_since_log": self.progress.steps_since_log, "prev_step": 0}
        evaluator = self.evaluator
        if evaluator is not None and evaluator.prev_logits is not None:
            tensors.update({f"resume.prev_weights.{k}": w for k, w in enumerate(evaluator.prev_weights)})
            tensors["resume.prev_logits"] = evaluator.prev_logits
            info["prev_step"] = evaluator.prev_step
        if evaluator is not None and evaluator.class_means is not None:
            tensors["eval.class_means"] = evaluator.class_means
        return tensors, info

    def checkpoint_layout(self) -> dict[str, tuple[tuple[int, ...], torch.dtype, bool]]:
        """name -> (shape, dtype, required) of every tensor `checkpoint` may hold; -1 is any size.

        Derived from the model this config builds, so a snapshot can be checked before any of
        its data is read.
        """
        C = self.data.num_classes
        layout = {f"model.{key}": (tuple(v.shape), v.dtype, True) for key, v in self.model.state_dict().items()}
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        layout.update({f"optim.{i}.momentum_buffer": (tuple(p.shape), p.dtype, False) for i, p in enumerate(params)})
        with torch.no_grad():
            weights = self.model.effective_weights()
        for k, w in enumerate(weights):
            layout[f"weights.{k}"] = (tuple(w.shape), w.dtype, False)
            layout[f"resume.prev_weights.{k}"] = (tuple(w.shape), w.dtype, False)
        probe = self.evaluator.probe_x.shape[0] if self.evaluator is not None else -1
        layout.update({
            "resume.loss_sum": ((), self.loss_sum.dtype, True),
            "resume.rng_cpu": (tuple(torch.get_rng_state().shape), torch.uint8, True),
            "resume.rng_cuda": (tuple(torch.cuda.get_rng_state(self.device).shape) if self.device.type == "cuda"
                                else (-1,), torch.uint8, False),
            "resume.rho_history": ((-1, len(weights)), weights[0].dtype, False),
            "resume.prev_logits": ((probe, C), weights[-1].dtype, False),
            "eval.class_means": ((C, weights[-1].shape[1]), torch.float64, False),
        })
        return layout

    def restore(self, tensors: dict[str, torch.Tensor], info: dict[str, Any],
                last_eval: EvalRecord | None) -> None:
        """Continue from a `checkpoint()` read back (and checked against `checkpoint_layout`).

        Sets `resumed_from`; `run` then emits a start record saying so and skips the step-0
        evaluation. Raises ValueError, before changing anything, on an inconsistent checkpoint.
        """
        n_layers = len(self.model.infos)
        prev_weights = [tensors.get(f"resume.prev_weights.{k}") for k in range(n_layers)]
        prev_logits = tensors.get("resume.prev_logits")
        present = [w is not None for w in prev_weights]
        if any(present) != all(present) or (prev_logits is not None) != all(present):
            raise ValueError("resume.prev_logits and resume.prev_weights.* must come together")
        model = {key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")}
        optim = {int(key.split(".")[1]): {"momentum_buffer": value} for key, value in tensors.items()
                 if key.startswith("optim.")}
        self.model.load_state_dict(model)
        self.optimizer.load_state_dict({"state": optim, "param_groups": self.optimizer.state_dict()["param_groups"]})
        self.loss_sum = tensors["resume.loss_sum"].to(self.device)
        history = tensors.get("resume.rho_history")
        self.rho_history = list(history.to(self.device)) if history is not None else []
        torch.set_rng_state(tensors["resume.rng_cpu"])
        if self.device.type == "cuda" and "resume.rng_cuda" in tensors:
            torch.cuda.set_rng_state(tensors["resume.rng_cuda"], self.device)
        if self.evaluator is not None:
            restored = prev_logits is not None
            self.evaluator.prev_weights = [w.to(self.device) for w in prev_weights] if restored else None
            self.evaluator.prev_logits = prev_logits.to(self.device) if restored else None
            self.evaluator.prev_step = int(info["prev_step"]) if restored else 0
            means = tensors.get("eval.class_means")
            self.evaluator.class_means = means.to(self.device) if means is not None else None
        step = int(info["step"])
        self.progress = Progress(step=step, elapsed_before=float(info["elapsed"]),
                                 steps_since_log=int(info["steps_since_log"]))
        self.last_eval = last_eval
        self.resumed_from = step

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> EndRecord:
        """Train to the end, a stop request or divergence; always emits an end record.

        The loss sum and rho samples between records live on `self`, not in locals, so that a
        snapshot taken between steps carries them and a resumed run continues them exactly.
        """
        self._t0 = time.perf_counter()
        cfg, control, progress = self.cfg, self.control, self.progress
        self.emit(self.start_record())
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
                    self.emit(StepRecord(step=step, epoch=step / self.steps_per_epoch, loss=loss, lr=lr,
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
                if cfg.monitor.snapshot_every and step % cfg.monitor.snapshot_every == 0 and step < self.total_steps:
                    self._snapshot("periodic")   # the last step gets the final snapshot instead
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
        self.emit(end)
        return end
