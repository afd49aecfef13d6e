"""Image classification data for pruning runs: train / validation / test tensors.

digits: the scikit-learn 8x8 digits (1 channel, pixels in [0, 1]), stratified 60/20/20 split.
cifar10, cifar100: the python-version archives (sprkit.data.cifar); the validation split is a
stratified 5,000 images held out of the 50,000 training images (the test set is only used for
the final report); pixels normalized per channel with the training split's mean and std;
training batches get the random crop + flip augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from sprkit.data.augment import random_crop_flip
from sprkit.data.cifar import load_cifar
from sprkit.data.digits import digits_image_datasets
from sprkit.errors import SprkitInputError

DATASETS = ("digits", "cifar10", "cifar100")
CIFAR_VALIDATION = 5000


@dataclass(frozen=True)
class ImageData:
    """Splits as TensorDatasets of float32 (N, C, H, W) images and int64 labels."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.tensors[0].shape[1:])


def _normalized(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    scaled = images.astype(np.float32) / 255.0
    return torch.from_numpy((scaled - mean[:, None, None]) / std[:, None, None])


def _cifar(dataset: str, data_dir: Path, seed: int) -> ImageData:
    train, test = load_cifar(dataset, data_dir)
    if len(train.labels) < 2:
        raise SprkitInputError(f"{dataset} in {data_dir} has fewer than 2 training images")
    validation = max(1, min(CIFAR_VALIDATION, len(train.labels) // 5))
    counts = np.bincount(train.labels, minlength=train.num_classes)
    stratify = train.labels if counts.min() >= 2 and validation >= train.num_classes else None
    fit, held = train_test_split(
        np.arange(len(train.labels)), test_size=validation, stratify=stratify, random_state=seed
    )
    pixels = train.images[fit].astype(np.float64) / 255.0
    mean = pixels.mean(axis=(0, 2, 3)).astype(np.float32)
    std = pixels.std(axis=(0, 2, 3)).astype(np.float32)
    std[std == 0] = 1.0

    def split(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
        return TensorDataset(_normalized(images, mean, std), torch.as_tensor(labels))

    return ImageData(
        split(train.images[fit], train.labels[fit]),
        split(train.images[held], train.labels[held]),
        split(test.images, test.labels),
        train.num_classes,
        random_crop_flip,
    )


def load_image_data(dataset: str, data_dir: str | Path | None, seed: int = 0) -> ImageData:
    """The named dataset; SprkitInputError says what is missing and where to get it."""
    if dataset == "digits":
        train, val, test = digits_image_datasets(seed)
        return ImageData(train, val, test, 10, None)
    if dataset in ("cifar10", "cifar100"):
        if data_dir is None:
            raise SprkitInputError(f"dataset {dataset} needs data_dir, the folder of its archives")
        return _cifar(dataset, Path(data_dir), seed)
    raise SprkitInputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
