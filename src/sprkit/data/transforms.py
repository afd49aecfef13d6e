"""The standard ImageNet transforms of one Pillow image into a normalized tensor.

Training: random resized crop (area share in [0.08, 1], aspect ratio in [3/4, 4/3], resized
to crop_size x crop_size) and a horizontal flip with probability 1/2; evaluation: the shorter
side resized to resize_size, then the center crop_size x crop_size. Both end as float32
(3, crop_size, crop_size) tensors of pixels / 255 normalized with the ImageNet mean and std.

torchvision.transforms is used when it imports. Otherwise the same transforms, written here on
Pillow, are used: torchvision is an optional extra (its registry wheel does not import beside
the CPU torch wheel). They follow torchvision's algorithm step by step (Pillow's bilinear
filter, the same rounding of sizes and offsets, the same draws from torch's global random
generator in the same order), so either backend gives the same tensors. Randomness comes from
torch's global generator, as torchvision's does: DataLoader workers seed it from the loader's
generator, the main process from torch.manual_seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SCALE = (0.08, 1.0)  # area share of the random crop
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # width / height of the random crop

Transform = Callable[[Image.Image], torch.Tensor]


def to_normalized_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 of an RGB image: pixels / 255, minus the ImageNet mean, over its
    std (torchvision's ToTensor then Normalize)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    scaled = pixels.permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return scaled.sub(mean).div(std)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """Bilinear resize so that the shorter side is `size` pixels, the longer one
    int(size x longer / shorter) (torchvision's Resize(int))."""
    width, height = image.size
    if width <= height:
        return image.resize((size, int(size * height / width)), Image.Resampling.BILINEAR)
    return image.resize((int(size * width / height), size), Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size pixels (offsets rounded as torchvision's CenterCrop); the
    image must be at least that large."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def random_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop of CROP_SCALE area share and CROP_RATIO
    aspect ratio, drawn as torchvision's RandomResizedCrop.get_params: up to 10 tries, then
    the central crop of the largest allowed ratio."""
    area = height * width
    log_ratio = torch.log(torch.tensor(CROP_RATIO))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(*CROP_SCALE).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        crop_width = int(round(math.sqrt(target_area * aspect)))
        crop_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = torch.randint(0, height - crop_height + 1, size=(1,)).item()
            left = torch.randint(0, width - crop_width + 1, size=(1,)).item()
            return top, left, crop_height, crop_width
    ratio = width / height
    if ratio < min(CROP_RATIO):
        crop_width, crop_height = width, int(round(width / min(CROP_RATIO)))
    elif ratio > max(CROP_RATIO):
        crop_width, crop_height = int(round(height * max(CROP_RATIO))), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class TrainTransform:
    """Random resized crop to crop_size, horizontal flip (p = 1/2), normalized tensor."""

    def __init__(self, crop_size: int) -> None:
        self.crop_size = crop_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        top, left, height, width = random_crop_box(*image.size)
        image = image.crop((left, top, left + width, top + height))
        image = image.resize((self.crop_size, self.crop_size), Image.Resampling.BILINEAR)
        if torch.rand(1) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_normalized_tensor(image)


class EvalTransform:
    """Shorter side to resize_size, center crop_size crop, normalized tensor."""

    def __init__(self, crop_size: int, resize_size: int) -> None:
        self.crop_size, self.resize_size = crop_size, resize_size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = center_crop(resize_shorter_side(image, self.resize_size), self.crop_size)
        return to_normalized_tensor(image)


def _torchvision_transforms():
    """torchvision.transforms, or None where torchvision does not import."""
    try:
        from torchvision import transforms
    except Exception:  # absent, or built for another torch (RuntimeError, OSError, ...)
        return None
    return transforms


def imagenet_transforms(crop_size: int, resize_size: int) -> tuple[Transform, Transform]:
    """(training, evaluation) transforms (module docstring): torchvision's where it imports,
    else this module's Pillow ones."""
    transforms = _torchvision_transforms()
    if transforms is None:
        return TrainTransform(crop_size), EvalTransform(crop_size, resize_size)
    tensor = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(crop_size, scale=CROP_SCALE, ratio=CROP_RATIO),
            transforms.RandomHorizontalFlip(),
            *tensor,
        ]
    )
    evaluation = transforms.Compose(
        [transforms.Resize(resize_size), transforms.CenterCrop(crop_size), *tensor]
    )
    return train, evaluation
