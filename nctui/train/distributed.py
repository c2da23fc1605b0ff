"""Training on several processes: torchrun, torch.distributed (gloo on a CPU, nccl on CUDA).

`torchrun --nproc-per-node N -m nctui run CONFIG` starts N copies of `nctui run`; each joins the
world here (`join_world`) from torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). A single process gets `World.single(device)`, whose collectives do nothing, so the
trainer and the evaluator read the same either way.

The contract (DESIGN.md "Where it goes past one machine"): train.batch_size is the global batch;
every rank draws the same single-process batch order and steps on its slice of each batch; the
gradients, the loss and any stop request are averaged across the ranks in one all-reduce between
backward and the optimizer step (`AllReduceStep`), so every rank applies the same update to the
same replicated weights, equal to the single-process update up to the order of float sums.
Evaluation shards the probe, the test set and the margin samples by index, without padding, and
all-reduces the float64 sums; rank 0 takes what needs the weights alone (spectra, gradient noise,
bounds) and shares the finished groups. Rank 0 alone reads and writes the run directory
(`World.from_main`, `World.on_main`); the other ranks write nothing.

No communication code of our own: every exchange is a torch.distributed collective, each with
the timeout of NCTUI_COLLECTIVE_TIMEOUT (seconds, default 600), so a hung rank ends the job instead
of hanging it. A collective that fails raises `CollectiveError`, naming the ranks on this host
that died.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch

from nctui.control import Control
from nctui.models.networks import Classifier, square_loss
from nctui.train.fast_step import EagerStep

T = TypeVar("T")

TIMEOUT_VARIABLE = "NCTUI_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0   # rank 0's evaluation of a large model, with the others waiting, stays well inside
DEATH_GRACE_S = 2.0   # how long a failed collective waits to see whether a rank on this host died


class WorldError(ValueError):
    """A world the run cannot be split over (bad torchrun environment, batch, device count): exit 2."""


class CollectiveError(RuntimeError):
    """A collective that failed: a rank died, hung past the timeout, or lost its connection."""


def launched() -> bool:
    """Whether this process was started as one rank of several (torchrun, or srun with the same variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def collective_timeout() -> float:
    """Seconds a collective may wait for the slowest rank (NCTUI_COLLECTIVE_TIMEOUT)."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise WorldError(f"{TIMEOUT_VARIABLE}={value!r}: must be a positive number of seconds")
    return seconds


@dataclass
class World:
    """This process's place among the ranks, and the few collectives nctui uses."""

    device: torch.device
    rank: int = 0
    size: int = 1
    backend: str | None = None     # None: a single process, no torch.distributed at all
    peers: list[tuple[str, int]] = field(default_factory=list)   # (host, pid) of every rank

    @classmethod
    def single(cls, device: torch.device) -> World:
        return cls(device=device)

    @property
    def distributed(self) -> bool:
        """Whether collectives go through torch.distributed (world size 1 under torchrun included)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items: sizes differ by at most one, nothing padded or repeated."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def new_control(self) -> Control:
        """The trainer's control: under torchrun, one whose stop every rank takes at the same step."""
        return AgreedControl(self.rank) if self.distributed else Control()

    # --- collectives (no-ops for a single process) ------------------------------------------

    def sum_(self, *tensors: torch.Tensor, what: str = "an evaluation sum") -> None:
        """All-reduce each tensor in place: the sum over the ranks."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for tensor in tensors:
            self._collective(what, lambda t=tensor: dist.all_reduce(t, op=dist.ReduceOp.SUM))

    def gather_rows(self, local: torch.Tensor, rows: slice, n: int) -> torch.Tensor:
        """The n-row tensor whose rows `rows` are this rank's `local` (one shard each): every rank
        writes its rows into zeros and the sum is taken, which adds only exact zeros."""
        if not self.distributed:
            return local
        full = local.new_zeros((n, *local.shape[1:]))
        full[rows] = local
        self.sum_(full, what="gathering the probe's logits")
        return full

    def share(self, value: T) -> T:
        """Rank 0's value on every rank (a picklable object: an eval record's groups, a path)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        self._collective("sharing rank 0's result", lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def from_main(self, make: Callable[[], T]) -> T:
        """Rank 0 calls make(); every rank returns its result, or raises the exception it raised,
        so that an error reading or writing the run directory ends every rank the same way."""
        if not self.distributed:
            return make()
        outcome: list[Any] = [None, None]
        if self.is_main:
            try:
                outcome = [make(), None]
            except Exception as err:  # noqa: BLE001 - passed to every rank, then raised on each
                outcome = [None, _picklable(err)]
        outcome = self.share(outcome)
        if outcome[1] is not None:
            raise outcome[1]
        return outcome[0]

    def on_main(self, act: Callable[[], T]) -> T | None:
        """Rank 0 calls act() and keeps its result (the other ranks get None); an exception it
        raises is raised on every rank."""
        kept: list[T | None] = [None]

        def run_and_keep() -> None:
            kept[0] = act()

        self.from_main(run_and_keep)
        return kept[0]

    def leave(self) -> None:
        """Leave the process group (the end of the run, whatever its outcome)."""
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def _collective(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except RuntimeError as err:   # torch.distributed.DistBackendError and gloo's errors are RuntimeErrors
            raise CollectiveError(self.describe_failure(what, err)) from err

    def describe_failure(self, what: str, err: BaseException) -> str:
        """One line: which ranks on this host are gone (when any), what failed, and gloo's or nccl's words."""
        detail = _first_sentence(str(err))
        here = socket.gethostname()
        neighbours = [(rank, pid) for rank, (host, pid) in enumerate(self.peers) if rank != self.rank and host == here]
        deadline = time.monotonic() + DEATH_GRACE_S   # a killed process closes its sockets before it is gone
        while not (dead := [rank for rank, pid in neighbours if not _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if dead:
            names = ", ".join(str(rank) for rank in dead)
            return f"rank {names} died; {what} failed: {detail}"
        return (f"{what} failed (a rank died, lost its connection or hung past the {collective_timeout():g} s "
                f"collective timeout, {TIMEOUT_VARIABLE}): {detail}")


def _first_sentence(message: str) -> str:
    """gloo's and nccl's words without their source location and advice: "[.../pair.cc:553]
    Connection closed by peer [127.0.0.1]:42909. This is typically..." -> "Connection closed by peer
    [127.0.0.1]:42909"."""
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", " ".join(message.split()))
    return text.split(". ", 1)[0].rstrip(".")[:300]


def _picklable(err: Exception) -> Exception:
    """The exception itself when it can travel to the other ranks, else a RuntimeError with its words."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send its words instead
        return RuntimeError(f"{type(err).__name__}: {err}")


def _alive(pid: int) -> bool:
    """Whether the process is running (a zombie, killed and not yet reaped by torchrun, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:   # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def join_world(device: torch.device, batch_size: int) -> World:
    """This process's world: a single process unless torchrun's variables are set; then the
    process group (gloo on a CPU, nccl on CUDA, one GPU per local rank) with the collective timeout.

    WorldError (exit 2) before any rendezvous for a batch the ranks cannot share evenly, a local
    rank without a GPU of its own, or a malformed environment.
    """
    if not launched():
        return World.single(device)
    try:
        size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise WorldError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise WorldError(f"RANK {rank} is not one of the WORLD_SIZE {size} ranks (torchrun sets them)")
    if batch_size % size:
        raise WorldError(f"train.batch_size {batch_size} is not divisible by the world size {size}: the global "
                         f"batch is split evenly among the ranks (use a multiple of {size}, or another "
                         "--nproc-per-node)")
    timeout = collective_timeout()
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise WorldError(f"local rank {local_rank} has no GPU of its own: this node has {count} CUDA "
                             f"device(s); start at most {count} processes per node (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    import torch.distributed as dist

    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    except ValueError as err:   # env:// without MASTER_ADDR or MASTER_PORT
        raise WorldError(f"cannot join the torch.distributed world: {err}") from None
    except RuntimeError as err:   # the rendezvous failed: the other ranks never came, the port is taken
        raise CollectiveError(f"cannot join the torch.distributed world: {_first_sentence(str(err))}") from err
    world = World(device=device, rank=rank, size=size, backend=backend)
    peers: list[Any] = [None] * size
    world._collective("meeting the other ranks",
                      lambda: dist.all_gather_object(peers, (socket.gethostname(), os.getpid())))
    world.peers = [tuple(peer) for peer in peers]
    return world


class AgreedControl(Control):
    """A control whose stop every rank takes at the same step.

    A signal on any rank only notes the request here (`request_stop`); the next step's all-reduce
    carries it to every rank (`agree`), and from then on `stop_requested` is True on all of them,
    so no rank leaves the loop while the others wait for it in a collective. There is no TUI under
    torchrun, hence no pause and no snapshot requests.
    """

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.asked_reason = ""   # asked of this rank, not yet agreed

    def request_stop(self, reason: str = "stopped by the user") -> None:
        if not self.asked_reason:
            self.asked_reason = reason

    @property
    def asked_here(self) -> bool:
        return bool(self.asked_reason)

    def agree(self, asked_by: list[int]) -> None:
        """The ranks that had been asked to stop, the same list on every rank."""
        if asked_by and not self.stop_requested:
            here = self.rank in asked_by
            super().request_stop(self.asked_reason if here else f"rank {asked_by[0]} was stopped")


class AllReduceStep(EagerStep):
    """One SGD step of the global batch `idx`: this rank's slice forward and backward, then one
    all-reduce of [gradients, loss, stop requests], averaged, before the same optimizer step on
    every rank. The square loss is the mean over the local slice, so the mean over the ranks of the
    gradients and losses is the global batch's mean. Weight-norm g and V are plain replicated
    parameters like any other. The stop requests are read one step late, so the host never waits
    for the step it has just queued (nccl); every rank reads them at the same step.
    """

    kind = "all_reduce"

    def __init__(self, model: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 targets: torch.Tensor, world: World, control: AgreedControl) -> None:
        super().__init__(model, optimizer, x, targets, f"{world.size} rank(s), {world.backend}")
        self.world, self.control = world, control
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.unread: tuple[torch.Tensor, torch.cuda.Event | None] | None = None   # the last step's stop requests

    def eager(self, idx: torch.Tensor) -> torch.Tensor:
        """One step; returns the global batch's mean loss as a device tensor."""
        world = self.world
        mine = idx[world.shard(idx.shape[0])]
        loss = square_loss(self.model(self.x[mine]), self.targets[mine])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        requests = torch.zeros(world.size, dtype=loss.dtype, device=loss.device)
        requests[world.rank] = float(self.control.asked_here)
        grads = [p.grad for p in self.params if p.grad is not None]
        buffer = torch.cat([*(g.reshape(-1) for g in grads), loss.detach().reshape(1), requests])
        world.sum_(buffer, what="the all-reduce of the gradients")
        buffer /= world.size
        offset = 0
        for g in grads:
            g.copy_(buffer[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        self.optimizer.step()
        self._agree_on_stop(buffer[offset + 1:])
        return buffer[offset]

    def _agree_on_stop(self, requests: torch.Tensor) -> None:
        """Tell the control which ranks had asked to stop as of the previous step. On CUDA the
        requests are copied to the host behind an event, and only the previous step's event is
        waited for, never the step just queued."""
        if requests.is_cuda:
            copy, done = requests.to("cpu", non_blocking=True), torch.cuda.Event()
            done.record()
        else:
            copy, done = requests.clone(), None   # not a view: the buffer goes
        if self.unread is not None:
            previous, previous_done = self.unread
            if previous_done is not None:
                previous_done.synchronize()
            self.control.agree([rank for rank, asked in enumerate(previous.tolist()) if asked])
        self.unread = (copy, done)

    __call__ = eager
