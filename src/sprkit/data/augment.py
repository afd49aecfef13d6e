"""Batch augmentation for CIFAR-style training, on tensors.

Written here rather than taken from torchvision because torchvision is an optional extra (its
registry wheel does not import beside the CPU torch wheel); this is the standard random crop
(zero padding 4) and horizontal flip, drawn from a torch.Generator so runs are reproducible.
One batched gather on the images' device does the whole batch (no per-image Python work): on
a GPU the batch never leaves it; the few random numbers per image are drawn on the CPU
generator, so a run draws the same crops on any device.
"""

from __future__ import annotations

import torch


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4
) -> torch.Tensor:
    """Per image: a random crop of the zero-padded image at the original size, then a
    horizontal flip with probability 1/2. `images` is (N, C, H, W); the result is in
    channels-last memory layout, the gather's own (.contiguous() gives the default one)."""
    count, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    # Drawn on the CPU, copied without waiting for the device's queued work (a blocking
    # copy would make the host wait for the previous step at every batch).
    top, left, flip = (
        draw.to(images.device, non_blocking=True)
        for draw in (
            torch.randint(0, 2 * padding + 1, (count,), generator=generator),
            torch.randint(0, 2 * padding + 1, (count,), generator=generator),
            torch.rand(count, generator=generator) < 0.5,
        )
    )
    rows = top[:, None] + torch.arange(height, device=images.device)
    columns = left[:, None] + torch.arange(width, device=images.device)
    columns = torch.where(flip[:, None], columns.flip(1), columns)
    batch = torch.arange(count, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], columns[:, None, :]]
    return cropped.permute(0, 3, 1, 2)
