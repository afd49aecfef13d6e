"""CIFAR-10/100 from the official python-version archives, read without torchvision.

Accepted under `data_dir`: the archive itself (cifar-10-python.tar.gz, cifar-100-python.tar.gz)
or its extracted folder (cifar-10-batches-py/, cifar-100-python/). The batches are pickles;
they are read with an unpickler that only admits the numpy types the official files use, so a
tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprkit.errors import SprkitInputError

SOURCES = {
    "cifar10": (
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        b"labels",
        10,
    ),
    "cifar100": (
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        ["train"],
        ["test"],
        b"fine_labels",
        100,
    ),
}
URL = "https://www.cs.toronto.edu/~kriz/"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")


@dataclass(frozen=True)
class ImageSet:
    """Images as (N, 3, 32, 32) uint8 and labels as (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int


def _parse(raw: bytes, label_key: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (
        pickle.UnpicklingError,
        KeyError,
        TypeError,
        ValueError,
        EOFError,
        OverflowError,
        IndexError,
    ) as exc:
        raise SprkitInputError(
            f"CIFAR batch {name} is damaged or not a CIFAR batch: {exc}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data) or not len(data):
        raise SprkitInputError(
            f"CIFAR batch {name} has data of shape {data.shape}, "
            f"{len(labels)} labels; expected (N, 3072) and N >= 1 labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(dataset: str, data_dir: str | Path) -> tuple[ImageSet, ImageSet]:
    """(train, test) of `dataset` ('cifar10' or 'cifar100') from `data_dir`."""
    if dataset not in SOURCES:
        raise SprkitInputError(f"unknown CIFAR dataset {dataset!r}; use cifar10 or cifar100")
    archive_name, folder_name, train_files, test_files, label_key, classes = SOURCES[dataset]
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SprkitInputError(f"data_dir {data_dir} is not a directory")
    wanted = train_files + test_files
    folder, archive = data_dir / folder_name, data_dir / archive_name
    if folder.is_dir():
        missing = [name for name in wanted if not (folder / name).is_file()]
        if missing:
            raise SprkitInputError(
                f"{folder} lacks {', '.join(missing)}; re-extract {archive_name} from {URL}"
            )
        raw = {name: (folder / name).read_bytes() for name in wanted}
    elif archive.is_file():
        raw = {}
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name in wanted:
                    member = tar.extractfile(f"{folder_name}/{name}")
                    if member is None:
                        raise KeyError(name)
                    raw[name] = member.read()
        except KeyError:
            raise SprkitInputError(
                f"{archive} lacks {folder_name}/{name}; download it again from {URL}{archive_name}"
            ) from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SprkitInputError(
                f"{archive} is damaged ({exc}); download it again from {URL}{archive_name}"
            ) from None
    else:
        raise SprkitInputError(
            f"{dataset} not found in {data_dir}: expected {archive_name} or "
            f"the folder {folder_name}/ (download {URL}{archive_name})"
        )

    def join(names: list[str]) -> ImageSet:
        parts = [_parse(raw[name], label_key, name) for name in names]
        labels = np.concatenate([p[1] for p in parts])
        if labels.min() < 0 or labels.max() >= classes:
            raise SprkitInputError(f"{dataset} labels outside 0..{classes - 1}")
        return ImageSet(np.concatenate([p[0] for p in parts]), labels, classes)

    return join(train_files), join(test_files)
