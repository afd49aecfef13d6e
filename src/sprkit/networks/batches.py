"""Batches of a data set for training and evaluation, for this process of a run.

Training (EpochBatches): every process draws the same permutation of the training set for
each epoch (torch's DistributedSampler, seeded by (seed, epoch)), padded to a multiple of the
number of processes N; process r takes every N-th index from r and cuts its share into batches
of batch_size / N. Batch k of a run on N processes is then, across the processes, the same
images as batch k of a run on one process, and every process has as many batches as the others
(DDP waits for every process at each step: a missing batch would hang the run).

Two paths, chosen by the data set's type:
- a TensorDataset is moved to the training device once and batches are cut from it by
  indexing on the device: no per-image Python work, no copy to the device per batch (the fast
  path: CIFAR on a GPU);
- any other map-style Dataset (e.g. JPEG files decoded by Pillow) goes through a DataLoader
  with `workers` worker processes and pinned memory on CUDA; worker seeds come from a
  generator seeded by (seed, epoch, rank), so a run is reproducible for a given `workers`.

Evaluation (ordered_batches): the data in order, optionally this process's shard (every N-th
item from r: disjoint, together the whole set), by the same two paths.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

# Seeds of two runs (seed, epoch) and (seed', epoch') never coincide: epochs stay below this.
SEED_STRIDE = 1_000_003
AUGMENT_STREAM, WORKER_STREAM = 1, 2


def stream_generator(seed: int, epoch: int, rank: int, stream: int) -> torch.Generator:
    """A CPU generator for one random stream (AUGMENT_STREAM, WORKER_STREAM) of one epoch of
    one process; numpy's SeedSequence makes the (seed, epoch, rank, stream) seeds independent."""
    state = np.random.SeedSequence((seed, epoch, rank, stream)).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def on_device(data: Dataset, device: torch.device) -> Dataset:
    """A TensorDataset with its tensors moved to `device` (once); any other data set as is."""
    if isinstance(data, TensorDataset):
        return TensorDataset(*(tensor.to(device) for tensor in data.tensors))
    return data


class EpochBatches:
    """`batches(epoch)` yields this process's (inputs, labels) of one epoch, on `device`
    (module docstring). `batch_size` is the global batch: a multiple of `world`."""

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        device: torch.device,
        *,
        seed: int,
        workers: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.data = on_device(data, device)
        self.device = device
        self.per_process = batch_size // world
        self.seed, self.workers, self.rank = seed, workers, rank
        self.sampler = DistributedSampler(
            self.data, num_replicas=world, rank=rank, shuffle=True, seed=seed * SEED_STRIDE
        )

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        if isinstance(self.data, TensorDataset):
            inputs, labels = self.data.tensors
            indices = torch.tensor(list(self.sampler), device=self.device)
            for batch in indices.split(self.per_process):
                yield inputs[batch], labels[batch]
            return
        loader = DataLoader(
            self.data,
            batch_size=self.per_process,
            sampler=self.sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            generator=stream_generator(self.seed, epoch, self.rank, WORKER_STREAM),
        )
        for inputs, labels in loader:
            yield (
                inputs.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )


def ordered_batches(
    data: Dataset,
    batch_size: int,
    device: torch.device | str,
    *,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) on `device`, in order, of items rank, rank + world, ... of `data`:
    sliced from a TensorDataset's tensors, or through a DataLoader with `workers` processes."""
    device = torch.device(device)
    if isinstance(data, TensorDataset):
        inputs, labels = (tensor[rank::world] for tensor in data.tensors)
        for start in range(0, len(labels), batch_size):
            stop = start + batch_size
            yield inputs[start:stop].to(device), labels[start:stop].to(device)
        return
    shard = data if world == 1 else Subset(data, range(rank, len(data), world))
    loader = DataLoader(
        shard, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda"
    )
    for inputs, labels in loader:
        yield inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
