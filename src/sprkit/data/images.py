"""Image classification data for pruning runs: train / validation / test splits, by name.

digits: the scikit-learn 8x8 digits (1 channel, pixels in [0, 1]), stratified 60/20/20 split.
cifar10, cifar100: the python-version archives (sprkit.data.cifar); the validation split is a
stratified 5,000 images held out of the 50,000 training images (the test set is only used for
the final report); pixels normalized per channel with the training split's mean and std;
training batches get the random crop + flip augmentation.
imagenet: the train/ and val/ folders of JPEGs (sprkit.data.imagenet), decoded per item; 10
images per class held out of train/ for validation, val/ is the test split; the training
split crops and flips each image as it is read (sprkit.data.transforms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from sprkit.data.augment import random_crop_flip
from sprkit.data.cifar import load_cifar
from sprkit.data.digits import digits_image_datasets
from sprkit.data.imagenet import CROP_SIZE, RESIZE_SIZE, load_imagenet
from sprkit.errors import SprkitInputError

CIFAR_VALIDATION = 5000


@dataclass(frozen=True)
class ImageData:
    """Splits as map-style Datasets of (float32 (C, H, W) image, int64 label) items, all of
    `input_shape`; `augment` transforms a training batch (None: the training split augments
    each item itself, or not at all)."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    input_shape: tuple[int, int, int]


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
        tuple(train.images.shape[1:]),
    )


def _digits(data_dir: Path | None, seed: int) -> ImageData:
    train, val, test = digits_image_datasets(seed)
    return ImageData(train, val, test, 10, None, tuple(train.tensors[0].shape[1:]))


def _imagenet(
    data_dir: Path, seed: int, *, crop_size: int = CROP_SIZE, resize_size: int = RESIZE_SIZE
) -> ImageData:
    splits = load_imagenet(data_dir, seed, crop_size=crop_size, resize_size=resize_size)
    classes = len(splits.classes)
    shape = (3, crop_size, crop_size)
    return ImageData(splits.train, splits.val, splits.test, classes, None, shape)


@dataclass(frozen=True)
class Source:
    """How a dataset is loaded: `load(data_dir, seed, **sizes)`; `data_dir`: what the
    folder holds (None: embedded data, no folder); `sized`: whether it takes the image-size
    settings crop_size and resize_size (images decoded from files, of any size)."""

    load: Callable[..., ImageData]
    data_dir: str | None
    sized: bool = False


DATASETS: dict[str, Source] = {
    "digits": Source(_digits, None),
    "cifar10": Source(partial(_cifar, "cifar10"), "cifar-10-python.tar.gz or its folder"),
    "cifar100": Source(partial(_cifar, "cifar100"), "cifar-100-python.tar.gz or its folder"),
    "imagenet": Source(_imagenet, "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG", sized=True),
}


def load_image_data(
    dataset: str,
    data_dir: str | Path | None,
    seed: int = 0,
    *,
    crop_size: int | None = None,
    resize_size: int | None = None,
) -> ImageData:
    """The named dataset (DATASETS); crop_size and resize_size in pixels for the datasets
    that take them (None: the dataset's default, 224 and 256 for imagenet). SprkitInputError
    says what is missing and where to get it."""
    if dataset not in DATASETS:
        raise SprkitInputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    source = DATASETS[dataset]
    sizes = {
        name: value
        for name, value in (("crop_size", crop_size), ("resize_size", resize_size))
        if value is not None
    }
    if sizes and not source.sized:
        raise SprkitInputError(
            f"{', '.join(sizes)}: {dataset} images have a fixed size (image sizes are "
            "settings of imagenet)"
        )
    if source.data_dir is None:
        return source.load(None, seed)
    if data_dir is None:
        raise SprkitInputError(
            f"dataset {dataset} needs data_dir, the folder holding {source.data_dir}"
        )
    return source.load(Path(data_dir), seed, **sizes)
