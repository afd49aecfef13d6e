"""ImageNet (ILSVRC-2012) in its standard folder layout, decoded with Pillow.

Under data_dir: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the validation images sorted into
one folder per class, the layout torchvision's ImageFolder and most training scripts read).
Classes are the sorted wnid folders of train/ (label = position); every folder of val/ must be
one of them. Image files: .JPEG, .jpg, .jpeg, .png, in any case; hidden files (.DS_Store) are
skipped; any other file, a folder inside a class folder, an empty file or an empty class
folder is refused by name. Scanning only lists files (name and size: ImageNet has 1.3 million
of them); a file that does not decode is named when it is read.

Splits: the held-out validation split (what the pruning rule sees) is VALIDATION_PER_CLASS
images per class drawn with the seed from train/, at most a fifth of a class but at least one
from a class of two or more (10,000 images on ImageNet-1k); training is the rest of train/;
the test split of the report is val/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sprkit.data.transforms import Transform, imagenet_transforms
from sprkit.errors import SprkitInputError, first_line

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
VALIDATION_PER_CLASS = 10
CROP_SIZE, RESIZE_SIZE = 224, 256  # the standard evaluation: resize to 256, center 224
MAX_IMAGE_SIZE = 4096  # beyond, one decoded image takes over 200 MB as float32


class ImageFiles(Dataset):
    """(transform(image), label) per image file root/classes[label]/name, decoded with
    Pillow as RGB. `names` holds the UTF-8 file names as one numpy bytes array: 1.3 million
    of them take about 30 MB, and DataLoader workers read them without touching per-file
    Python objects (whose reference counts would copy the pages into every worker)."""

    def __init__(
        self,
        root: Path,
        classes: list[str],
        names: np.ndarray,
        labels: np.ndarray,
        transform: Transform,
    ) -> None:
        self.root, self.classes, self.transform = root, classes, transform
        self.names, self.labels = names, labels

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.labels[index])
        path = self.root / self.classes[label] / self.names[index].decode()
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except Exception as error:  # Pillow raises many kinds on a damaged or foreign file
            raise SprkitInputError(
                f"{path} cannot be decoded as an image ({first_line(error)})"
            ) from None
        return self.transform(rgb), label


@dataclass(frozen=True)
class ImageNetSplits:
    """The three splits (module docstring) and the class wnids (label = position)."""

    train: ImageFiles
    val: ImageFiles
    test: ImageFiles
    classes: list[str]


def _class_folders(split: Path) -> list[str]:
    """Sorted names of the class folders of `split` (train/ or val/)."""
    if not split.is_dir():
        raise SprkitInputError(
            f"{split} is missing: ImageNet needs {split.name}/<wnid>/*.JPEG under data_dir"
        )
    with os.scandir(split) as entries:
        names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise SprkitInputError(
            f"{split} has no class folders: expected {split.name}/<wnid>/*.JPEG, one folder "
            "per class"
        )
    return names


def _image_names(folder: Path) -> list[str]:
    """Sorted file names of the images of one class folder (module docstring)."""
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            if not entry.is_file():
                raise SprkitInputError(f"{path} is not an image file (class folders hold images)")
            if os.path.splitext(entry.name)[1].lower() not in IMAGE_SUFFIXES:
                raise SprkitInputError(
                    f"{path} is not an image file (sprkit reads .JPEG, .jpg, .jpeg, .png)"
                )
            if entry.stat().st_size == 0:
                raise SprkitInputError(f"{path} is an empty file, not an image")
            names.append(entry.name)
    if not names:
        raise SprkitInputError(f"{folder} holds no images")
    return sorted(names)


def _scan(split: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(file names as UTF-8 bytes, labels) of the images of `split`, in class then name
    order; every class folder must be one of `classes`."""
    known = {wnid: label for label, wnid in enumerate(classes)}
    names, labels = [], []
    for wnid in _class_folders(split):
        if wnid not in known:
            raise SprkitInputError(
                f"{split / wnid}: {wnid} is not a class of train/ (the folders of "
                f"{split.name}/ must be wnids of train/)"
            )
        files = _image_names(split / wnid)
        names += [name.encode() for name in files]
        labels += [known[wnid]] * len(files)
    return np.array(names, dtype=np.bytes_), np.array(labels, dtype=np.int64)


def _held_out(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Boolean mask of the held-out validation images (module docstring); `labels` sorted."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    held = np.zeros(len(labels), dtype=bool)
    for start, count in zip(starts, counts, strict=True):
        take = 0 if count < 2 else min(VALIDATION_PER_CLASS, max(1, count // 5))
        held[start + rng.choice(count, size=take, replace=False)] = True
    return held


def check_sizes(crop_size: int, resize_size: int) -> None:
    """SprkitInputError unless 1 <= crop_size <= resize_size <= MAX_IMAGE_SIZE (pixels)."""
    if not 1 <= crop_size <= resize_size <= MAX_IMAGE_SIZE:
        raise SprkitInputError(
            f"image sizes must satisfy 1 <= crop_size <= resize_size <= {MAX_IMAGE_SIZE}, "
            f"got crop_size={crop_size}, resize_size={resize_size}"
        )


def load_imagenet(
    data_dir: str | Path,
    seed: int = 0,
    *,
    crop_size: int = CROP_SIZE,
    resize_size: int = RESIZE_SIZE,
) -> ImageNetSplits:
    """The splits of the ImageNet folder `data_dir` (module docstring): training images with
    the random augmentation, validation and test images with the evaluation transform, all
    (3, crop_size, crop_size) (sprkit.data.transforms)."""
    check_sizes(crop_size, resize_size)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SprkitInputError(f"data_dir {data_dir} is not a directory")
    classes = _class_folders(data_dir / "train")
    names, labels = _scan(data_dir / "train", classes)
    test_names, test_labels = _scan(data_dir / "val", classes)
    held = _held_out(labels, len(classes), seed)
    if not held.any():
        raise SprkitInputError(
            f"{data_dir / 'train'}: no class has 2 images, none can be held out for validation"
        )
    augment, evaluate = imagenet_transforms(crop_size, resize_size)
    train = data_dir / "train"
    return ImageNetSplits(
        train=ImageFiles(train, classes, names[~held], labels[~held], augment),
        val=ImageFiles(train, classes, names[held], labels[held], evaluate),
        test=ImageFiles(data_dir / "val", classes, test_names, test_labels, evaluate),
        classes=classes,
    )
