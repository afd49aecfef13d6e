"""`sprkit prune`: train with SPR, prune, fine-tune, compress, report (one run folder).

Settings come from three layers, later ones winning: the dataset's defaults (DEFAULTS), a
TOML config file (top-level keys arch, dataset, data_dir, seed, latency_batch and a [train]
table of sprkit.networks.training.TrainConfig fields), and the command line. The run folder
gets training/ (logs, checkpoint, penalized.pt), network/ (the compressed network: JSON +
weights_only state dict), report.json, report.csv, layers.csv and kept_channels.png.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sprkit.data.images import DATASETS, load_image_data
from sprkit.errors import ParameterError, SprkitInputError
from sprkit.networks.architectures import model_constructor
from sprkit.networks.compression import Compression, fold_batchnorm
from sprkit.networks.graph import example_batch
from sprkit.networks.measure import count_macs, count_parameters
from sprkit.networks.report import latency_ms, max_logit_difference, top_k_accuracies, write_report
from sprkit.networks.training import TrainConfig, train_spr

# The embedded default: the small ResNet on the digits images, sized to run in about 10 s
# on 2 CPU cores. CIFAR defaults are the paper's recipe (300 + 200 epochs).
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "arch": "resnet-digits",
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
}
TOP_LEVEL_KEYS = {"arch", "dataset", "data_dir", "seed", "latency_batch", "train"}
SETTING_TYPES = {"arch": str, "data_dir": str, "seed": int, "latency_batch": int}
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
    )


def _layer_table(
    dense: torch.nn.Module, masked: torch.nn.Module, layers: list[str], compression: Compression
) -> pd.DataFrame:
    """Per conv/Linear layer with structures: output channels dense, nonzero after masking,
    and kept by compression (0 for a layer of a residual branch folded into a bias)."""
    dense_modules, masked_modules = dict(dense.named_modules()), dict(masked.named_modules())
    rows = []
    for name in layers:
        weight = masked_modules[name].weight.detach()
        rows.append(
            {
                "layer": name,
                "dense": dense_modules[name].weight.shape[0],
                "masked": int((weight.reshape(len(weight), -1) != 0).any(dim=1).sum()),
                "compressed": len(compression.kept_channels.get(name, [])),
            }
        )
    return pd.DataFrame(rows)


def _check_device(device: str) -> None:
    """ParameterError unless `device` is cpu or an available CUDA device."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ParameterError(
            f"--device {device!r} is not a torch device (cpu, cuda, cuda:N)"
        ) from None
    if parsed.type not in ("cpu", "cuda") or (parsed.type == "cpu" and parsed.index):
        raise ParameterError(f"--device {device!r}: sprkit runs on cpu or cuda[:N]")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ParameterError(
            f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)"
        )


def run_prune(
    settings: PruneSettings,
    out: Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the pipeline into `out`; returns the report's summary. A folder that already holds
    a run is continued with `resume`, replaced with `overwrite`, and refused otherwise."""
    constructor = model_constructor(settings.arch)  # unknown: fail before loading data
    _check_device(device)
    blocking = next((f for f in (out, *out.parents) if f.exists() and not f.is_dir()), None)
    if blocking is not None:
        raise SprkitInputError(f"--out {out}: {blocking} is a file, not a folder")
    holds_run = (out / "training").exists() or (out / "report.json").exists()
    if holds_run and not (resume or overwrite):
        raise SprkitInputError(
            f"{out} already holds a run; --resume continues it, --overwrite replaces it"
        )
    data = load_image_data(settings.dataset, settings.data_dir, settings.seed)
    shape = data.input_shape
    if overwrite and not resume and (out / "training").exists():
        shutil.rmtree(out / "training")
    torch.manual_seed(settings.seed)
    model = constructor(data.num_classes, shape[0])
    pruner = train_spr(
        model,
        data.train,
        data.val,
        settings.train,
        out / "training",
        resume=resume,
        device=device,
        augment=data.augment,
    )
    masked = pruner.model.eval()
    penalized = constructor(data.num_classes, shape[0]).to(device)
    penalized_path = out / "training" / "penalized.pt"
    if not penalized_path.exists():
        raise SprkitInputError(f"{penalized_path} is missing: --overwrite starts the run again")
    penalized.load_state_dict(torch.load(penalized_path, weights_only=True, map_location=device))
    compressed = pruner.save(
        out / "network",
        meta={"arch": settings.arch, "num_classes": data.num_classes},
    )
    compression = pruner.compression
    rows = []
    for name, network in (("dense", penalized), ("masked", masked), ("compressed", compressed)):
        accuracy = top_k_accuracies(network, data.test, device)
        rows.append(
            {
                "network": name,
                "top1": accuracy["top1"],
                "top5": accuracy["top5"],
                "parameters": count_parameters(network),
                "macs": count_macs(network, shape),
                "latency_ms": latency_ms(
                    fold_batchnorm(network, example_batch(network, shape)),
                    shape,
                    batch_size=settings.latency_batch,
                    device=device,
                ),
            }
        )
    networks = pd.DataFrame(rows)
    dense_row, compressed_row = rows[0], rows[2]
    summary = {
        "arch": settings.arch,
        "dataset": settings.dataset,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "conventions": "accuracy share on the test split; MACs via torch.utils.flop_counter "
        "(one input); latency median ms per forward pass on a batch of latency_batch, "
        "BatchNorm folded into the convs (deployed form) for every network",
        "dense_means": f"the network trained with the {settings.train.penalty} penalty, just "
        "before pruning (all channels)",
        "latency_batch": settings.latency_batch,
        "macs_removed": 1.0 - compressed_row["macs"] / dense_row["macs"],
        "parameters_removed": 1.0 - compressed_row["parameters"] / dense_row["parameters"],
        "mac_ratio": dense_row["macs"] / compressed_row["macs"],
        "speedup": dense_row["latency_ms"] / compressed_row["latency_ms"],
        "max_logit_difference_masked_vs_compressed": max_logit_difference(
            masked, compressed, data.test, device
        ),
        "replaced_blocks": sorted(compression.replaced),
        "train": asdict(settings.train),
    }
    layers = [n for n, _ in penalized.named_modules() if n in pruner.structures.weight_layers]
    write_report(out, summary, networks, _layer_table(penalized, masked, layers, compression))
    return summary
