"""What a network measures: accuracy, size, cost and speed.

Conventions: accuracies are shares in [0, 1] over a data set (top-5 only with more than 5
classes); parameters are counted scalars; MACs are multiply-accumulates of one forward pass on
one input, counted with torch.utils.flop_counter (which reports FLOPs = 2 x MACs for
convolutions and matrix products; BatchNorm, activations, pooling and additions are not counted,
as is usual for ResNet tables); latency is the median wall time in milliseconds of one forward
pass on a batch, in eval mode, on the given device with the current torch threads.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from sprkit.networks import distributed
from sprkit.networks.batches import ordered_batches
from sprkit.networks.graph import example_batch

EVALUATION_BATCH = 512


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in the model's parameters (buffers such as BN statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass on a single input of `input_shape` (without batch dimension)."""
    example = example_batch(model, input_shape, 1)
    was_training = model.training
    model.eval()
    try:
        # Autograd on: under no_grad, eval-mode attention takes a fused kernel that the
        # counter does not see.
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def top_k_accuracies(
    model: nn.Module,
    data: Dataset,
    device: torch.device | str = "cpu",
    *,
    across_ranks: bool = False,
    workers: int = 0,
) -> dict[str, float | None]:
    """{"top1": ..., "top5": ... or None when there are 5 classes or fewer}, in eval mode
    (the model's mode is restored). The one evaluation loop of sprkit. `across_ranks`: in a
    run over several processes, each evaluates its shard and the counts are summed, so every
    process gets the accuracy over the whole set (every process must call it); `workers`:
    DataLoader processes for a data set that is not a TensorDataset."""
    rank, world = (distributed.rank(), distributed.world_size()) if across_ranks else (0, 1)
    was_training = model.training
    model.eval()
    # correct top-1, correct top-5, items, whether there are more than 5 classes: summed on
    # the device (no synchronization per batch), then over the processes.
    counts = torch.zeros(4, dtype=torch.int64, device=device)
    with torch.no_grad():
        for images, labels in ordered_batches(
            data, EVALUATION_BATCH, device, rank=rank, world=world, workers=workers
        ):
            logits = model(images)
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
            counts[0] += (ranked[:, 0] == labels).sum()
            counts[1] += (ranked == labels[:, None]).any(dim=1).sum()
            counts[2] += len(labels)
            counts[3] = int(logits.shape[1] > 5)
    model.train(was_training)
    if across_ranks:
        distributed.sum_across(counts)
    correct1, correct5, count, top5 = counts.tolist()
    return {"top1": correct1 / count, "top5": correct5 / count if top5 else None}


def max_logit_difference(
    first: nn.Module,
    second: nn.Module,
    data: Dataset,
    device: torch.device | str = "cpu",
    *,
    across_ranks: bool = False,
    workers: int = 0,
) -> float:
    """Largest |difference| between the two models' logits over `data` (eval mode);
    `across_ranks` and `workers` as in top_k_accuracies."""
    rank, world = (distributed.rank(), distributed.world_size()) if across_ranks else (0, 1)
    first.eval()
    second.eval()
    largest = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for images, _ in ordered_batches(
            data, EVALUATION_BATCH, device, rank=rank, world=world, workers=workers
        ):
            difference = (first(images) - second(images)).abs().max()
            largest = torch.maximum(largest, difference.to(largest.dtype))
    if across_ranks:
        distributed.max_across(largest)
    return float(largest)


def latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 64,
    repeats: int = 30,
    device: torch.device | str = "cpu",
    layout: torch.memory_format = torch.contiguous_format,
) -> float:
    """Median milliseconds of one forward pass on a batch of standard normal inputs (seeded;
    on a GPU, zeros can run faster than real data) after 3 warm-up passes; `layout` is the
    memory format of the model and of 4-d batches (torch.channels_last for NHWC). The model
    is left in eval mode on `device` in `layout`."""
    device = torch.device(device)
    model.eval().to(device, memory_format=layout)
    zeros = example_batch(model, input_shape, batch_size)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(zeros.shape, generator=generator, dtype=zeros.dtype).to(zeros.device)
    if batch.dim() == 4:
        batch = batch.contiguous(memory_format=layout)
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat >= 3:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
