"""The structured-pruning instance: data, validation, atomic .npz storage.

An instance is (X, Y, groups) with loss L(W) = (1/n) ||Y - X W||_F^2 over W in R^{d x c};
row r of W belongs to structure groups[r] (an integer >= 0), or is free (-1: no penalty,
no bound, e.g. a bias row). Extra arrays (e.g. the weights of the network the instance was
cut from) and a JSON `meta` string may ride along in the same file.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sprkit.atomic import write_atomically
from sprkit.errors import InstanceError
from sprkit.params import LARGEST

REQUIRED_KEYS = ("X", "Y", "groups")
MAX_ENTRIES = 50_000_000  # X entries (400 MB as float64): generators refuse larger up front


@dataclass(frozen=True)
class Instance:
    """A validated instance; arrays are float64 (X, Y) and int64 (groups)."""

    X: np.ndarray
    Y: np.ndarray
    groups: np.ndarray
    meta: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_arrays(self.X, self.Y, self.groups)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def c(self) -> int:
        return self.Y.shape[1]

    @property
    def structure_ids(self) -> np.ndarray:
        """Sorted distinct structure ids (groups >= 0)."""
        return np.unique(self.groups[self.groups >= 0])

    @property
    def n_structures(self) -> int:
        return len(self.structure_ids)

    @property
    def row_structure(self) -> np.ndarray:
        """Per row: position of its structure in `structure_ids` (0..G-1), or -1 if free."""
        position = np.searchsorted(self.structure_ids, self.groups)
        return np.where(self.groups >= 0, position, -1)

    def loss(self, W: np.ndarray) -> float:
        """(1/n) ||Y - X W||_F^2."""
        residual = self.Y - self.X @ W
        return float(np.sum(residual * residual) / self.n)


def validate_arrays(X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> None:
    """Raise InstanceError naming the first inconsistency."""
    _check_structure(X, Y, groups)
    for name, array in (("X", X), ("Y", Y)):
        if not np.all(np.isfinite(array)):
            raise InstanceError(f"{name} contains NaN or Inf")
        largest = float(np.max(np.abs(array)))
        if largest > LARGEST:
            raise InstanceError(
                f"{name} has entries up to {largest:g}; beyond {LARGEST:g} its products "
                "overflow float64: rescale the data (the solvers do not depend on units)"
            )


def _check_structure(X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> None:
    """The checks of validate_arrays that do not read X's and Y's values (shapes, dtypes,
    groups): what the raw arrays must pass before their conversion to float64."""
    if X.ndim != 2:
        raise InstanceError(f"X must be 2-D (n x d), got shape {X.shape}")
    if Y.ndim != 2:
        raise InstanceError(f"Y must be 2-D (n x c), got shape {Y.shape}")
    if groups.ndim != 1:
        raise InstanceError(f"groups must be 1-D (d entries), got shape {groups.shape}")
    n, d = X.shape
    if n == 0 or d == 0 or Y.shape[1] == 0:
        raise InstanceError(f"empty instance: X {X.shape}, Y {Y.shape}")
    if Y.shape[0] != n:
        raise InstanceError(f"Y has {Y.shape[0]} rows but X has n={n}")
    if groups.shape[0] != d:
        raise InstanceError(f"groups has {groups.shape[0]} entries but X has d={d} columns")
    for name, array in (("X", X), ("Y", Y)):
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(
            array.dtype, np.integer
        ):
            raise InstanceError(f"{name} must be numeric, got dtype {array.dtype}")
    if not np.issubdtype(groups.dtype, np.integer):
        raise InstanceError(f"groups must be integers, got dtype {groups.dtype}")
    if np.any(groups < -1):
        raise InstanceError("groups must be >= -1 (-1 marks a free row)")
    if groups.size and int(groups.max()) > np.iinfo(np.int64).max:  # uint64 ids beyond int64
        raise InstanceError(f"groups must fit in int64, got an id of {int(groups.max())}")
    if not np.any(groups >= 0):
        raise InstanceError("no prunable group: every row is free (group -1)")


def make_instance(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    meta: dict | None = None,
    extras: dict[str, np.ndarray] | None = None,
) -> Instance:
    """Build an Instance, converting dtypes after checking the raw arrays' shapes and dtypes
    (the values are validated once, converted, by Instance)."""
    X, Y, groups = np.asarray(X), np.asarray(Y), np.asarray(groups)
    _check_structure(X, Y, groups)
    if meta is not None and not isinstance(meta, dict):
        raise InstanceError(f"meta must be a dict (a JSON object), got {type(meta).__name__}")
    return Instance(
        X=X.astype(np.float64),
        Y=Y.astype(np.float64),
        groups=groups.astype(np.int64),
        meta=dict(meta or {}),
        extras={k: np.asarray(v) for k, v in (extras or {}).items()},
    )


_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`; InstanceError for anything else (a single .npy
    array, a text file, a damaged archive, arrays of Python objects)."""
    with open(path, "rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if head == _NPY_MAGIC[: len(_ZIP_MAGIC)]:
        raise InstanceError(f"{path} holds one .npy array, not an .npz archive of X, Y, groups")
    if head != _ZIP_MAGIC:
        raise InstanceError(f"{path} is not an .npz archive (no zip header)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):  # refused on purpose: unpickling can run code
            raise InstanceError(f"{path} holds arrays of Python objects; refused") from None
        raise InstanceError(f"{path} is not a readable .npz archive: {error}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise InstanceError(f"{path} is not a readable .npz archive: {error}") from None
    not_arrays = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if not_arrays:  # numpy hands a zip member that is not a .npy file over as raw bytes
        raise InstanceError(f"{path}: member(s) {', '.join(not_arrays)} are not .npy arrays")
    return arrays


def load_instance(path: str | os.PathLike) -> Instance:
    """Read and validate an instance .npz; InstanceError names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise InstanceError(f"instance file not found: {path}")
    if path.is_dir():
        raise InstanceError(f"{path} is a directory, not an instance file")
    arrays = _read_archive(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise InstanceError(f"{path} is not an instance: missing array(s) {', '.join(missing)}")
    meta_raw = arrays.pop("meta", None)
    try:
        meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
    except json.JSONDecodeError:
        raise InstanceError(f"{path}: 'meta' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise InstanceError(f"{path}: 'meta' must hold a JSON object, got {type(meta).__name__}")
    X, Y, groups = (arrays.pop(key) for key in REQUIRED_KEYS)
    try:
        return make_instance(X, Y, groups, meta=meta, extras=arrays)
    except InstanceError as exc:
        raise InstanceError(f"{path}: {exc}") from None


def save_instance(path: str | os.PathLike, instance: Instance) -> Path:
    """Write atomically (temporary file + rename): an existing file is never left half-written."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InstanceError(f"instance files end in .npz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "X": instance.X,
        "Y": instance.Y,
        "groups": instance.groups,
        "meta": np.array(json.dumps(instance.meta)),
        **instance.extras,
    }

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a handle: np.savez would append ".npz"
            np.savez(handle, **arrays)

    write_atomically(path, write)
    return path
