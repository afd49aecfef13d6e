"""Settings of `sprkit prune`: the dataset's defaults, a TOML config file, the command line.

Later layers win. A config file has top-level keys arch, dataset, data_dir, seed,
latency_batch, baseline, init (a state-dict file the network starts from), crop_size and
resize_size (imagenet's image sizes, pixels) and a [train] table of
sprkit.networks.training.TrainConfig fields; every key and type is checked here, the values'
domains by TrainConfig, SPRParams and the data loaders.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sprkit.data.images import DATASETS
from sprkit.errors import SprkitInputError
from sprkit.networks.training import TrainConfig

# The embedded default: the small ResNet on the digits images, sized to run in about 10 s
# on 2 CPU cores. CIFAR defaults are the paper's recipe (300 + 200 epochs, TrainConfig's
# defaults); ImageNet's are the authors' ImageNet recipe (configs/imagenet-resnet50.toml says
# why these milestones).
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "arch": "resnet-digits",
        "baseline": True,
        "train": {
            "penalized_epochs": 40,
            "finetune_epochs": 20,
            "lr": 0.1,
            "milestones": [30, 50],
            "batch_size": 64,
            "lam": 2.0,
            "alpha": 0.5,
            "tolerance": 0.01,
        },
    },
    "cifar10": {"arch": "resnet56", "train": {}},
    "cifar100": {"arch": "resnet56", "train": {}},
    "imagenet": {
        "arch": "resnet50-imagenet",
        "train": {
            "penalized_epochs": 150,
            "finetune_epochs": 50,
            "lr": 0.1,
            "weight_decay": 1e-4,
            "milestones": [50, 100, 175],
            "batch_size": 256,
            "workers": 8,
        },
    },
}
TOP_LEVEL_KEYS = {
    "arch",
    "dataset",
    "data_dir",
    "seed",
    "latency_batch",
    "baseline",
    "init",
    "crop_size",
    "resize_size",
    "train",
}
SETTING_TYPES = {
    "arch": str,
    "data_dir": str,
    "seed": int,
    "latency_batch": int,
    "baseline": bool,
    "init": str,
    "crop_size": int,
    "resize_size": int,
}
# Expected TOML types of the [train] keys (an int is accepted where a float is expected).
TRAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "penalized_epochs": int,
    "finetune_epochs": int,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "milestones": list,
    "gamma": float,
    "batch_size": int,
    "lam": float,
    "alpha": float,
    "M_scale": float,
    "tolerance": float,
    "keep_fraction": float,
    "grouping": str,
    "penalty": str,
    "target_macs": int,
    "round_to": int,
    "prune": bool,
    "seed": int,
    "workers": int,
    "precision": str,
    "channels_last": bool,
}


def _check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    """SprkitInputError naming `name` unless `value` is of the expected TOML type."""
    accepted = (int, float) if kind is float else kind
    if isinstance(value, bool) and kind is not bool:
        accepted = ()
    if not isinstance(value, accepted) or (
        kind is list and not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        expected = {
            list: "a list of integers",
            int: "an integer",
            float: "a number",
            str: "a string",
            bool: "true or false",
        }[kind]
        raise SprkitInputError(f"{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class PruneSettings:
    """Everything a run needs; `train` holds the recipe."""

    arch: str
    dataset: str
    data_dir: str | None
    train: TrainConfig
    seed: int = 0
    latency_batch: int = 64
    baseline: bool = False  # also train the network without the penalty, as the reference
    init: str | None = None  # state-dict file the network (and the baseline) start from
    crop_size: int | None = None  # imagenet image sizes in pixels (None: 224 and 256)
    resize_size: int | None = None


def read_config(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; unknown keys and unreadable files are named in the error."""
    try:
        config = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SprkitInputError(f"config file {path} does not exist") from None
    except OSError as error:
        raise SprkitInputError(f"config file {path} cannot be read: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SprkitInputError(f"config file {path} is not valid TOML: {error}") from None
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        raise SprkitInputError(f"config file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    return config


def resolve_settings(
    dataset: str | None, config: dict[str, Any], overrides: dict[str, Any]
) -> PruneSettings:
    """Defaults of the dataset, then the config file, then command-line `overrides`."""
    dataset = overrides.get("dataset") or dataset or config.get("dataset")
    if dataset is None:
        raise SprkitInputError("no dataset: give --dataset or `dataset` in the config file")
    if dataset not in DATASETS:
        raise SprkitInputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    merged: dict[str, Any] = {**DEFAULTS[dataset], "dataset": dataset}
    if not isinstance(config.get("train", {}), dict):
        raise SprkitInputError("train must be a table ([train] section) of recipe settings")
    train = {**DEFAULTS[dataset]["train"], **config.get("train", {})}
    merged.update({k: v for k, v in config.items() if k != "train"})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(train) - known
    if unknown:
        raise SprkitInputError(f"[train]: unknown key(s) {', '.join(sorted(unknown))}")
    for key, value in train.items():
        _check_type(f"[train] {key}", value, TRAIN_TYPES[key])
    for key, kind in SETTING_TYPES.items():
        if merged.get(key) is not None:
            _check_type(key, merged[key], kind)
    if not 1 <= int(merged.get("latency_batch", 64)) <= 65536:
        raise SprkitInputError(
            f"latency_batch must lie in [1, 65536], got {merged['latency_batch']}"
        )
    if not 0 <= int(merged.get("seed", 0)) < 2**32:
        raise SprkitInputError(f"seed must lie in [0, 2^32), got {merged['seed']}")
    if overrides.get("seed") is not None or "seed" not in train:  # --seed wins over [train]
        train["seed"] = merged.get("seed", 0)
    train_config = TrainConfig(**train)
    return PruneSettings(
        arch=merged["arch"],
        dataset=dataset,
        data_dir=merged.get("data_dir"),
        train=train_config,
        seed=int(merged.get("seed", 0)),
        latency_batch=int(merged.get("latency_batch", 64)),
        baseline=bool(merged.get("baseline", False)),
        init=merged.get("init"),
        crop_size=merged.get("crop_size"),
        resize_size=merged.get("resize_size"),
    )
