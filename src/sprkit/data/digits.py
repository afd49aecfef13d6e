"""The scikit-learn digits images (1797 real 8x8 handwritten digits, shipped with sklearn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class DigitsSplit:
    """Pixels scaled to [0, 1] as (n, 64) float32 rows, labels 0..9, stratified splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(
    seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> DigitsSplit:
    """Deterministic stratified train/validation/test split of the digits data."""
    bunch = load_digits()
    pixels = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        pixels, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=y_rest,
        random_state=seed,
    )
    return DigitsSplit(x_train, y_train, x_val, y_val, x_test, y_test)


def digits_image_datasets(seed: int = 0):
    """(train, val, test) TensorDatasets of (1, 8, 8) float32 images and int64 labels."""
    import torch
    from torch.utils.data import TensorDataset

    split = digits_split(seed)

    def as_dataset(pixels: np.ndarray, labels: np.ndarray) -> TensorDataset:
        images = torch.as_tensor(pixels).reshape(-1, 1, 8, 8)
        return TensorDataset(images, torch.as_tensor(labels))

    return (
        as_dataset(split.x_train, split.y_train),
        as_dataset(split.x_val, split.y_val),
        as_dataset(split.x_test, split.y_test),
    )
