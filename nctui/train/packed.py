"""Packed training: K runs that differ only in lr, weight decay, momentum, target scale or seed,
trained as one stacked model (nctui.models.packed) with one optimizer step for all of them.

Each member stays an ordinary `Trainer`: it built its model from its own seed (so its
initialisation is the alone run's), it holds its evaluator and its sink, and it writes its own
records and snapshots. The pack only trains: before a member is evaluated or snapshotted its
slice of the stacked parameters (and of the momentum, the loss sum and the step) is copied into
that Trainer, which then does exactly what it does alone; its snapshot therefore resumes as an
ordinary run (`nctui run --resume`), and a pack of Trainers restored from their snapshots resumes
as a pack. Per member: the learning rate (its own lr under the shared milestones), weight decay
and momentum are K-vectors, the targets are scaled by its target_scale, the batch order comes
from its seed (`batch_order(seed, epoch, n)`). A member that diverges or fails ends alone with its
own end record and leaves the pack; the others go on. On a CPU denormals are flushed, as alone.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
from torch.optim.sgd import sgd

from nctui.config import Config
from nctui.control import Control
from nctui.models.packed import PackedClassifier, packed_square_loss
from nctui.records import EndRecord, StepRecord
from nctui.train.fast_step import WARMUP_STEPS, EagerStep
from nctui.train.sink import Sink
from nctui.train.trainer import Diverged, Trainer, batch_order, lr_at

# What members of one pack may differ in (besides `name`): everything else of their configs is equal.
# `seed` only when their training data are the same (checked on the tensors): nctui.sweep.packing.
MEMBER_KEYS = ("seed", "train.lr", "train.weight_decay", "train.momentum", "train.target_scale")


def shared_config(cfg: Config) -> dict:
    """The part of a config every member of a pack must share."""
    shared = cfg.to_dict()
    shared.pop("name")
    for key in MEMBER_KEYS:
        node = shared
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return shared


def check_packable(members: Sequence[Trainer]) -> None:
    """ValueError, naming what differs, unless the Trainers can train as one pack."""
    first = members[0]
    shared = shared_config(first.cfg)
    for other in members[1:]:
        theirs = shared_config(other.cfg)
        if theirs != shared:
            keys = _differing(shared, theirs)
            raise ValueError(f"{other.run_name} cannot join a pack with {first.run_name}: they differ in "
                             f"{', '.join(keys)} (members may differ only in {', '.join(MEMBER_KEYS)})")
        same_x = other.train_x is first.train_x or torch.equal(other.train_x, first.train_x)
        if not (same_x and torch.equal(other.train_y, first.train_y)):
            raise ValueError(f"{other.run_name} cannot join a pack with {first.run_name}: their training data "
                             "differ (synthetic or subsetted data depend on the seed)")
        if (other.progress.step, other.progress.steps_since_log) != (first.progress.step,
                                                                     first.progress.steps_since_log):
            raise ValueError(f"{other.run_name} is at step {other.progress.step}, {first.run_name} at step "
                             f"{first.progress.step}: a pack's members resume from the same step")
        if (other.resumed_from is None) != (first.resumed_from is None):
            raise ValueError("a pack's members are all new or all resumed")


def _differing(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            keys += _differing(a[key], b[key], f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            keys.append(prefix + key)
    return keys


class PackedSGD:
    """torch's SGD (momentum, weight decay on every parameter, no dampening or Nesterov) with a
    learning rate, momentum and weight decay per member: d = grad + wd p; m = mu m + d; p -= lr m.

    On a CPU each member's slices go through torch's fused SGD kernel with that member's
    hyperparameters (K calls a step): bit for bit what the member's own fused optimizer does
    (whose scalar tail, e.g. a weight-norm scale, rounds a * b + c once), and one pass over the
    parameters instead of the three that tensor arithmetic takes (measured: bench/README.md).
    On a GPU the update is that tensor arithmetic with the hyperparameters as K-vectors on the
    device, updated in place, so a CUDA graph reads them at every replay and a new learning rate
    needs no new capture. The momentum buffers start at zero, so the first step's m = d, as
    torch's first step sets it.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], lr: list[float], momentum: list[float],
                 weight_decay: list[float]) -> None:
        self.params = list(params)
        device = self.params[0].device
        self.per_member = device.type == "cpu"
        self.lr_values, self.momentum_values, self.weight_decay_values = list(lr), list(momentum), list(weight_decay)
        self.lr, self.momentum, self.weight_decay = (torch.tensor(v, dtype=torch.float32, device=device)
                                                     for v in (lr, momentum, weight_decay))
        self.buffers = [torch.zeros_like(p) for p in self.params]

    def set_lr(self, lr: list[float]) -> None:
        """The members' learning rates from now on (in place: a captured graph sees them)."""
        self.lr_values = list(lr)
        self.lr.copy_(torch.tensor(lr, dtype=torch.float32))

    @torch.no_grad()
    def step(self) -> None:
        if self.per_member:
            for k, (lr, mu, wd) in enumerate(zip(self.lr_values, self.momentum_values, self.weight_decay_values)):
                sgd([p[k] for p in self.params], [p.grad[k] for p in self.params], [b[k] for b in self.buffers],
                    fused=True, weight_decay=wd, momentum=mu, lr=lr, dampening=0.0, nesterov=False, maximize=False)
            return
        for p, buf in zip(self.params, self.buffers):
            shape = (-1,) + (1,) * (p.dim() - 1)
            d = torch.addcmul(p.grad, p, self.weight_decay.view(shape))
            buf.mul_(self.momentum.view(shape)).add_(d)
            p.addcmul_(buf, self.lr.view(shape), value=-1.0)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def keep(self, positions: list[int]) -> None:
        """Keep the members at `positions` (the model's `keep` must come with it)."""
        index = torch.tensor(positions, dtype=torch.long, device=self.lr.device)
        self.lr, self.momentum, self.weight_decay = (t.index_select(0, index) for t in
                                                     (self.lr, self.momentum, self.weight_decay))
        self.lr_values, self.momentum_values, self.weight_decay_values = (
            [values[j] for j in positions]
            for values in (self.lr_values, self.momentum_values, self.weight_decay_values))
        self.buffers = [b.index_select(0, index) for b in self.buffers]


class PackedStep(EagerStep):
    """One SGD step of every member on its batch (row k of `idx`, K x B); the K losses, no sync."""

    def __init__(self, model: PackedClassifier, optimizer: PackedSGD, x: torch.Tensor, targets: torch.Tensor,
                 reason: str = "") -> None:
        super().__init__(model, optimizer, x, targets, reason)
        self.rows = torch.arange(targets.shape[0], device=x.device).unsqueeze(1)

    def eager(self, idx: torch.Tensor) -> torch.Tensor:
        losses = packed_square_loss(self.model(self.x[idx]), self.targets[self.rows, idx])
        self.optimizer.zero_grad()
        losses.sum().backward()   # member k's loss reaches member k's slice only
        self.optimizer.step()
        return losses.detach()

    __call__ = eager


class PackedCudaGraphStep(PackedStep):
    """The packed step captured as a CUDA graph after WARMUP_STEPS eager ones on a side stream,
    then replayed (as fast_step.CudaGraphStep; the learning rates are tensors, so no re-capture).
    If capture fails, `strict` raises, else the step stays eager and `reason` says why."""

    kind = "cuda_graph"

    def __init__(self, model: PackedClassifier, optimizer: PackedSGD, x: torch.Tensor, targets: torch.Tensor,
                 batch_size: int, strict: bool) -> None:
        super().__init__(model, optimizer, x, targets)
        self.strict = strict
        self.idx = torch.zeros(targets.shape[0], batch_size, dtype=torch.long, device=x.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.losses: torch.Tensor | None = None
        self.warmup_left = WARMUP_STEPS
        self.side_stream = torch.cuda.Stream(device=x.device)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.kind == "eager":
            return self.eager(idx)
        if self.graph is None:
            if self.warmup_left:
                return self._warmup(idx)
            try:
                self._capture()
            except RuntimeError as err:
                if self.strict:
                    raise RuntimeError(f"train.cuda_graph is on but capturing the packed step failed: {err}") from err
                self.graph = self.losses = None
                self.optimizer.zero_grad()
                torch.cuda.synchronize(self.x.device)
                self.kind, self.reason = "eager", f"CUDA graph capture failed: {err}"
                return self.eager(idx)
        self.idx.copy_(idx)
        self.graph.replay()
        return self.losses.clone()   # the next replay overwrites the static output

    def _warmup(self, idx: torch.Tensor) -> torch.Tensor:
        self.warmup_left -= 1
        main = torch.cuda.current_stream(self.x.device)
        self.side_stream.wait_stream(main)
        with torch.cuda.stream(self.side_stream):
            losses = self.eager(idx)
        main.wait_stream(self.side_stream)
        losses.record_stream(main)
        return losses

    def _capture(self) -> None:
        self.optimizer.zero_grad()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            losses = packed_square_loss(self.model(self.x[self.idx]), self.targets[self.rows, self.idx])
            losses.sum().backward()
            self.optimizer.step()
        self.graph, self.losses = graph, losses.detach()


def make_packed_step(model: PackedClassifier, optimizer: PackedSGD, x: torch.Tensor, targets: torch.Tensor,
                     batch_size: int, mode: str) -> PackedStep:
    """The packed step for `train.cuda_graph` = mode, chosen as `fast_step.make_step` chooses."""
    if mode == "off":
        return PackedStep(model, optimizer, x, targets, "train.cuda_graph is off")
    if x.device.type != "cuda":
        if mode == "on":
            raise ValueError(f"train.cuda_graph is on but the device is {x.device.type}: "
                             "CUDA graphs need a CUDA device (use auto or off)")
        return PackedStep(model, optimizer, x, targets, f"{x.device.type}: CUDA graphs need a CUDA device")
    return PackedCudaGraphStep(model, optimizer, x, targets, batch_size, strict=mode == "on")


class PackedTrainer:
    """Trains member Trainers (new, or all restored to the same step) as one stacked model."""

    def __init__(self, members: Sequence[Trainer], control: Control | None = None) -> None:
        if not members:
            raise ValueError("a pack needs at least one member")
        if any(m.world.distributed for m in members):
            raise ValueError("a pack trains in one process, not under torchrun")
        check_packable(members)
        self.members = list(members)
        self.control = control or Control()
        first = self.members[0]
        self.cfg, self.device = first.cfg, first.device
        if self.device.type == "cpu":   # as Trainer: weight decay drives unused weights into denormals
            torch.set_flush_denormal(True)
        self.train_x = first.train_x
        self.batch_size, self.steps_per_epoch = first.batch_size, first.steps_per_epoch
        self.total_steps, self.eval_steps = first.total_steps, first.eval_steps
        self.active = list(range(len(self.members)))   # members still training; row j of every stack is active[j]
        self.model = PackedClassifier([m.model for m in self.members])

        self.optimizer = PackedSGD(self.model.params, [m.cfg.train.lr for m in self.members],
                                   [m.cfg.train.momentum for m in self.members],
                                   [m.cfg.train.weight_decay for m in self.members])
        with torch.no_grad():   # a restored member's momentum joins the stack
            for k, m in enumerate(self.members):
                for p, buf in zip(m.model.parameters(), self.optimizer.buffers):
                    saved = m.optimizer.state.get(p, {}).get("momentum_buffer")
                    if saved is not None:
                        buf[k].copy_(saved)
        self.targets = torch.stack([m.targets for m in self.members])
        self.loss_sum = torch.stack([m.loss_sum.to(self.device) for m in self.members])
        self.step, self.steps_since_log = first.progress.step, first.progress.steps_since_log
        self.resumed = first.resumed_from is not None
        self.train_step = self._make_step()
        self.ends: list[EndRecord | None] = [None] * len(self.members)
        self.errors: list[Exception | None] = [None] * len(self.members)   # a member's run directory unwritable

    def _make_step(self) -> PackedStep:
        return make_packed_step(self.model, self.optimizer, self.train_x, self.targets, self.batch_size,
                                self.cfg.train.cuda_graph)

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    # --- members in and out of the pack -----------------------------------------------------

    @torch.no_grad()
    def _sync(self, k: int) -> Trainer:
        """Member k's Trainer as the pack has trained it: weights, momentum, loss sum and step."""
        member, row = self.members[k], self.active.index(k)
        self.model.store_member(row, member.model)
        if self.step and member.cfg.train.momentum:   # torch keeps no buffer before the first step or without momentum
            for p, buf in zip(member.model.parameters(), self.optimizer.buffers):
                member.optimizer.state[p]["momentum_buffer"] = buf[row].clone()
        member.loss_sum = self.loss_sum[row].clone()
        member.progress.step, member.progress.steps_since_log = self.step, self.steps_since_log
        return member

    def _end(self, k: int, status: str, reason: str) -> None:
        """Member k leaves the pack and gets its end record; an error writing it is kept in
        `errors[k]` (its run directory cannot be written: the others go on)."""
        if k in self.active:
            self._leave([k])
        member = self.members[k]
        member.progress.step = self.step
        self.ends[k] = EndRecord(step=self.step, status=status, reason=reason, elapsed=member.elapsed())
        try:
            member.sink.record(self.ends[k])
        except Exception as err:  # noqa: BLE001 - reported by the caller, member by member
            self.errors[k] = self.errors[k] or err

    def _leave(self, gone: list[int]) -> None:
        rows = [j for j, k in enumerate(self.active) if k not in gone]
        self.active = [self.active[j] for j in rows]
        if not self.active:
            return
        self.model.keep(rows)
        self.optimizer.keep(rows)
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.targets = self.targets.index_select(0, index)
        self.loss_sum = self.loss_sum.index_select(0, index)
        self.train_step = self._make_step()

    def _per_member(self, action: Callable[[int], None], failed: str = "") -> None:
        """`action(k)` for every member still training; one that raises ends alone: diverged, or
        failed with `failed` and the error as its reason (a member whose run directory cannot be
        written fails to write that end record too: `_end` keeps the error)."""
        for k in list(self.active):
            try:
                action(k)
            except Diverged as err:
                self._end(k, "diverged", str(err))
            except Exception as err:  # noqa: BLE001 - one member's failure ends that member only
                self._end(k, "failed", f"{failed}{err}" if failed else f"{type(err).__name__}: {err}")

    def _evaluate(self, k: int) -> None:
        member = self._sync(k)
        record = member._evaluate(lr_at(member.cfg, self.epoch))
        if record.train.get("loss") is None:
            raise Diverged(f"non-finite probe loss at step {self.step}")

    def _snapshot(self, reason: str) -> Callable[[int], None]:
        return lambda k: self._sync(k)._snapshot(reason)

    @torch.no_grad()
    def _layer_norms(self) -> torch.Tensor:
        """rho_k of every layer of every member still training: K x layers."""
        return torch.stack([torch.stack([member.norm() for member in w]) for w in self.model.effective_weights()], 1)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, sinks: Sequence[Sink]) -> list[EndRecord]:
        """Train every member to the end, a stop request or its divergence; member k's records
        and snapshots go to sinks[k], its last record an end record. Returns the end records,
        member by member; `errors[k]` is what kept member k's run directory from being written."""
        if len(sinks) != len(self.members):
            raise ValueError(f"{len(sinks)} sinks for {len(self.members)} members")
        t0 = time.perf_counter()
        for member, sink in zip(self.members, sinks):
            member.sink, member._t0 = sink, t0
        self._per_member(lambda k: self.members[k].sink.record(self.members[k].start_record()))
        control = self.control
        status, reason = "completed", f"trained {self.cfg.train.epochs} epochs"
        last_log_time, last_log_step = time.perf_counter(), self.step
        orders, lrs = None, {}
        try:
            if self.step in self.eval_steps and not self.resumed:
                self._per_member(self._evaluate)
            while self.step < self.total_steps and self.active:
                if control.paused:
                    control.wait_while_paused()
                    last_log_time = time.perf_counter()
                if control.stop_requested:
                    status, reason = "stopped", control.stop_reason or "stopped"
                    break
                if control.take_snapshot_request():
                    self._per_member(self._snapshot("user"))

                position = self.step % self.steps_per_epoch
                if orders is None or position == 0 or orders.shape[0] != len(self.active):   # or a member left
                    n = self.train_x.shape[0]
                    orders = torch.stack([batch_order(self.members[k].cfg.seed, self.epoch, n)
                                          for k in self.active]).to(self.device)
                    lrs = {k: lr_at(self.members[k].cfg, self.epoch) for k in self.active}
                    self.optimizer.set_lr([lrs[k] for k in self.active])
                idx = orders[:, position * self.batch_size:(position + 1) * self.batch_size]
                self.loss_sum += self.train_step(idx)
                self.step += 1
                self.steps_since_log += 1
                step = self.step

                logged = step % self.cfg.monitor.log_every == 0 or step == self.total_steps
                if logged:   # the one sync, at log time; each member's loss as Trainer computes it
                    losses = dict(zip(self.active, (v / self.steps_since_log for v in self.loss_sum.tolist())))
                    norms = dict(zip(self.active, self._layer_norms())) if self.cfg.monitor.enabled else {}
                    rate = (step - last_log_step) * self.batch_size / max(time.perf_counter() - last_log_time, 1e-9)
                    self.loss_sum.zero_()
                    self.steps_since_log = 0

                    def log(k: int) -> None:
                        member = self.members[k]
                        member.sink.record(StepRecord(step=step, epoch=step / self.steps_per_epoch, loss=losses[k],
                                                      lr=lrs[k], samples_per_s=rate, elapsed=member.elapsed()))
                        if not math.isfinite(losses[k]):
                            raise Diverged(f"non-finite loss ({losses[k]}) at step {step}")
                        if k in norms:
                            member.rho_history.append(norms[k])

                    self._per_member(log)
                if step in self.eval_steps:
                    self._per_member(self._evaluate)
                if self.active and self.members[self.active[0]]._snapshot_due(step):
                    self._per_member(self._snapshot("periodic"))
                if logged:   # throughput counts training only, not evaluations or snapshots
                    last_log_time, last_log_step = time.perf_counter(), step
        except Exception as err:  # noqa: BLE001 - the shared step failed: every member still training fails
            status, reason = "failed", f"{type(err).__name__}: {err}"
        if status in ("completed", "stopped"):
            self._per_member(self._snapshot("final"), failed="final snapshot failed: ")
        for k in list(self.active):
            self._end(k, status, reason)
        return list(self.ends)
