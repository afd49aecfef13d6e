"""Runs over several processes (torchrun): the process group, ranks, work done by rank 0 alone.

`torchrun --nproc_per_node=N` starts N copies of a program and sets RANK, WORLD_SIZE and
LOCAL_RANK in each one's environment; `process_group` joins them (NCCL on CUDA, one GPU per
process: cuda:LOCAL_RANK; gloo on CPU). Everything else here reads torch.distributed's own
state, so a library user who calls init_process_group themselves gets the same behaviour, and
with no process group every function is the single-process identity (rank 0 of 1).

Conventions of a distributed run in sprkit: every process computes the same things on the same
weights (the penalty, the pruning decision, the masks), sees each epoch's disjoint shard of the
training data, and sums its counts into all-reduced metrics; rank 0 alone writes files, inside
`on_main`, which also tells every other process whether the writing failed, so that a failure
on rank 0 ends every process (RankFailedError) instead of leaving them waiting in the next
collective. A process that dies outright is handled by torchrun, which stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from sprkit.errors import ParameterError, TrainingError, first_line

T = TypeVar("T")
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class RankFailedError(TrainingError):
    """Rank 0 failed in work it did for every process; its own message names the cause."""


def launched() -> bool:
    """Whether torchrun (or a launcher setting the same variables) started this process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def process_device(device: str) -> str:
    """The device of this process: under torchrun, "cuda" means cuda:LOCAL_RANK (one GPU per
    process); ParameterError for an explicit cuda:N there, which every process would share."""
    if not launched():
        return device
    if device == "cuda":
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if device.startswith("cuda:"):
        raise ParameterError(
            f"--device {device}: under torchrun give --device cuda (each process takes "
            "cuda:LOCAL_RANK) or cpu"
        )
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the processes torchrun started for the block: NCCL with cuda:LOCAL_RANK as this
    process's current device, or gloo on CPU; the group is destroyed at the end. Nothing is
    done outside torchrun or when a process group already exists."""
    if not launched() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def on_main(work: Callable[[], T]) -> T | None:
    """Run `work()` on rank 0 only (in every process when there is no process group): rank 0
    returns its result, the others None once it has finished. If it fails, rank 0 raises its
    error and every other process RankFailedError quoting it. Every process must call this at
    the same point (it is a collective: a barrier)."""
    if not active():
        return work()
    result: T | None = None
    failure: BaseException | None = None
    outcome: list[str | None] = [None]
    if rank() == 0:
        try:
            result = work()
        except BaseException as error:  # every kind, Ctrl-C included: the others must know
            failure = error
            outcome = [f"{type(error).__name__}: {first_line(error)}"]
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        raise RankFailedError(f"rank 0 failed: {outcome[0]}")
    return result


def from_main(value: T) -> T:
    """Rank 0's `value` in every process (any picklable object; a collective)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the processes, in place (on the process's device); returned."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def max_across(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`'s elementwise maximum over the processes, in place; returned."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def broadcast_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics). DDP sends them before each
    forward pass; this also covers the last step of an epoch, so that every process evaluates
    and ends with the same model."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel (gradients averaged over the processes) when there
    are several processes; `model` itself otherwise."""
    if not active():
        return model
    one_gpu = device.type == "cuda" and device.index is not None
    device_ids = [device.index] if one_gpu else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
