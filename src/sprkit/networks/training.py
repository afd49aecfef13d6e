"""The SPR training recipe: penalized phase, pruning, fine-tuning with frozen masks.

One SGD (momentum, weight decay) run on one multi-step learning-rate schedule over
`penalized_epochs + finetune_epochs` epochs. During the penalized epochs the loss is
cross-entropy + the penalty of an SPRPruner built on the model at the start (SPR with M
fixed from the model then, or a competitor's penalty, sprkit.networks.penalties; Torch-
Pruning's tp_group_norm acts on the gradients after backward() instead). At the
switch, structures are pruned (the largest threshold whose validation accuracy drop is within
`tolerance`, or a MAC budget; sprkit.networks.rules), and from then on the penalty is off
and the removed structures are re-zeroed after every step; `prune=False` trains a dense
network with the same schedule.
Each epoch appends a row to log.csv and log.json and writes checkpoint.pt atomically;
`resume=True` continues from it (loaded with weights_only=True) and, on CPU, ends at the
same weights as an uninterrupted run: batches are shuffled by a generator seeded with
(seed, epoch). A non-finite loss stops the run with NonFiniteLossError, leaving the last
good checkpoint in place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from sprkit.atomic import write_atomically
from sprkit.errors import CheckpointError, ParameterError, TrainingError, first_line
from sprkit.networks.graph import example_batch
from sprkit.networks.measure import top_k_accuracies
from sprkit.networks.penalties import PENALTIES, RANKED_BY_SCORE, SPRPenalty
from sprkit.networks.pruner import SPRPruner
from sprkit.networks.rules import fewest_removed, masked_copy
from sprkit.networks.structures import GROUPINGS
from sprkit.params import SPRParams

# Beyond these, SGD's float32 updates overflow or the weights vanish in one step on any network.
MAX_LR = 100.0
MAX_WEIGHT_DECAY = 10.0
MAX_M_SCALE = 1e6  # M = M_scale x the largest starting |w|: beyond, the box never binds


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or Inf."""


@dataclass(frozen=True)
class TrainConfig:
    """Recipe settings. The optimizer, schedule and epochs default to the paper's CIFAR recipe
    (300 + 200 epochs); grouping defaults to the dependency graph (the paper's per-channel
    structures: grouping="layer"); lam, alpha and M_scale are this project's defaults."""

    penalized_epochs: int = 300
    finetune_epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [150, 250, 350, 450])
    gamma: float = 0.1
    batch_size: int = 128
    lam: float = 1.0
    alpha: float = 0.5
    M_scale: float = 1.0
    tolerance: float = 0.01
    keep_fraction: float = 0.5
    grouping: str = "graph"
    penalty: str = "spr"
    target_macs: int | None = None
    round_to: int | None = None
    prune: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        finite = ("lr", "momentum", "weight_decay", "gamma", "lam", "alpha", "M_scale")
        for name in (*finite, "tolerance", "keep_fraction"):
            if not math.isfinite(getattr(self, name)):
                raise ParameterError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.penalized_epochs < 0 or self.finetune_epochs < 0:
            raise ParameterError("epochs must be >= 0")
        if not 0 < self.lr <= MAX_LR or not self.batch_size > 0:
            raise ParameterError(
                f"lr must lie in (0, {MAX_LR:g}] and batch_size be > 0, got lr={self.lr:g}, "
                f"batch_size={self.batch_size}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ParameterError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise ParameterError(
                f"weight_decay must lie in [0, {MAX_WEIGHT_DECAY:g}], got {self.weight_decay:g}"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ParameterError(
                f"gamma (learning-rate factor) must lie in (0, 1], got {self.gamma}"
            )
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ParameterError(
                f"milestones must be increasing epochs >= 1, got {self.milestones}"
            )
        SPRParams.paper(self.lam, self.alpha)  # the domains of lam and alpha
        if not 0 < self.M_scale <= MAX_M_SCALE:
            raise ParameterError(f"M_scale must lie in (0, {MAX_M_SCALE:g}], got {self.M_scale:g}")
        if not 0.0 <= self.tolerance <= 1.0:
            raise ParameterError(
                f"tolerance must lie in [0, 1] (accuracy share), got {self.tolerance}"
            )
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ParameterError(f"keep_fraction must lie in (0, 1], got {self.keep_fraction}")
        if self.penalty not in PENALTIES:
            raise ParameterError(f"unknown penalty {self.penalty!r}; known: {', '.join(PENALTIES)}")
        if self.round_to is not None and not self.round_to >= 1:
            raise ParameterError(f"round_to must be >= 1, got {self.round_to}")
        if self.target_macs is not None and not self.target_macs > 0:
            raise ParameterError(f"target_macs must be > 0, got {self.target_macs}")
        if self.grouping not in GROUPINGS:
            raise ParameterError(
                f"unknown grouping {self.grouping!r}; known: {', '.join(GROUPINGS)}"
            )
        if not 0 <= self.seed < 2**32:
            raise ParameterError(f"seed must lie in [0, 2^32), got {self.seed}")


def accuracy(model: nn.Module, data: TensorDataset, device: torch.device) -> float:
    """Top-1 accuracy (eval mode; the model's mode is restored)."""
    return top_k_accuracies(model, data, device)["top1"]


def _write_log(log: list[dict], run_dir: Path) -> None:
    """log.csv and log.json of the epochs so far, each replaced atomically."""
    table = pd.DataFrame(log)
    write_atomically(run_dir / "log.csv", lambda path: table.to_csv(path, index=False))
    write_atomically(run_dir / "log.json", lambda path: path.write_text(json.dumps(log)))


def _save_atomically(state: dict, path: Path) -> None:
    write_atomically(path, lambda temporary: torch.save(state, temporary))


def _prune(
    pruner: SPRPruner, val_data: TensorDataset, config: TrainConfig, device: torch.device
) -> None:
    """Zero the structures to remove, by the configured rule: with `target_macs`, the fewest
    lowest-scoring structures that bring the compressed network within the MAC budget;
    otherwise the largest weight threshold within the validation tolerance (SPR, group
    lasso) or the most lowest-scoring structures within it (bn_l1: |gamma|, tp_group_norm:
    Torch-Pruning's importance)."""
    model = pruner.model
    if config.target_macs is not None:
        try:
            pruner.prune(target_macs=config.target_macs)
        except ParameterError:
            raise ParameterError(
                f"target_macs {config.target_macs} cannot be reached: removing every "
                "structure that can go (each essential layer keeps a channel) leaves more"
            ) from None
    elif config.penalty in RANKED_BY_SCORE:
        reference = accuracy(model, val_data, device)
        keep = fewest_removed(
            pruner.structures,
            pruner.scores(),
            lambda mask: (
                reference - accuracy(masked_copy(model, pruner.structures, mask), val_data, device)
                <= config.tolerance
            ),
            want="most",
        )
        pruner.set_masks(keep)
    else:
        pruner.prune(
            tolerance=config.tolerance,
            evaluate=lambda candidate: accuracy(candidate, val_data, device),
            keep_fraction=config.keep_fraction,
        )


# What a checkpoint holds, and the type of each part (checked whole before anything is used).
CHECKPOINT_PARTS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "M": torch.Tensor,
    "keep": torch.Tensor,
    "pruned": bool,
    "log": str,
    "epoch": int,
    "config": str,
    "scaler": dict,
}


def _load_checkpoint(path: Path, config: TrainConfig, device: torch.device) -> dict:
    """The checkpoint's state (weights_only), every part present and of its type;
    CheckpointError if it is unreadable, incomplete, damaged or was written with other
    settings than `config` (a resumed run must continue the same run)."""
    try:
        state = torch.load(path, weights_only=True, map_location=device)
    except Exception as error:  # any unreadable file: torch raises many kinds
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({first_line(error)})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint of sprkit (not a dict)")
    missing = [key for key in CHECKPOINT_PARTS if key not in state]
    wrong = [
        key
        for key, kind in CHECKPOINT_PARTS.items()
        if key in state and not isinstance(state[key], kind)
    ]
    if missing or wrong:
        problems = [f"missing {', '.join(missing)}"] * bool(missing)
        problems += [f"{', '.join(wrong)} of the wrong type"] * bool(wrong)
        raise CheckpointError(f"{path} is damaged: {'; '.join(problems)}")
    try:
        saved = json.loads(state["config"])
        log = json.loads(state["log"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} is damaged: its config or log is not JSON") from None
    if not isinstance(saved, dict) or not isinstance(log, list):
        raise CheckpointError(f"{path} is damaged: its config or log has the wrong shape")
    current = json.loads(json.dumps(asdict(config)))
    changed = sorted(key for key in current if saved.get(key) != current[key])
    if changed:
        raise CheckpointError(
            f"{path} was written with other settings ({', '.join(changed)}); "
            "resume with the same settings or start a new run"
        )
    total = config.penalized_epochs + config.finetune_epochs
    if not 0 <= state["epoch"] <= total:
        raise CheckpointError(f"{path} is damaged: epoch {state['epoch']} outside 0..{total}")
    return state


def _restore(
    state: dict, path: Path, model, optimizer, scheduler, scaler, pruner: SPRPruner
) -> None:
    """Load a checked checkpoint into the run's objects; CheckpointError if a part does not
    fit them (another architecture, another number of structures)."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and scaler.is_enabled():  # a CPU run saves an empty scaler state
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path} does not fit the network to train ({first_line(error)})"
        ) from None
    keep = state["keep"]
    if keep.dtype != torch.bool or keep.shape != pruner.keep.shape:
        raise CheckpointError(
            f"{path} is damaged: 'keep' must be {pruner.keep.numel()} booleans, got "
            f"{keep.dtype} {tuple(keep.shape)}"
        )
    if isinstance(pruner.regularizer, SPRPenalty):
        if state["M"].shape != pruner.regularizer.M.shape:
            raise CheckpointError(f"{path} is damaged: 'M' has the wrong shape")
        pruner.regularizer.M = state["M"].to(pruner.regularizer.M.device)
    pruner.keep = keep.cpu()


def train_spr(
    model: nn.Module,
    train_data: TensorDataset,
    val_data: TensorDataset,
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ignored_layers: list[nn.Module] | None = None,
) -> SPRPruner:
    """Run the recipe; returns the SPRPruner of the model (pruner.model: masked after
    pruning; pruner.keep: the structures kept). The weights at the end of the penalized
    phase, just before pruning, are kept in run_dir/penalized.pt. `augment` transforms each
    training batch (seeded per epoch)."""
    device = torch.device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    pruner = SPRPruner(
        model,
        example_batch(model, tuple(train_data[0][0].shape)),
        lam=config.lam,
        alpha=config.alpha,
        M_scale=config.M_scale,
        grouping=config.grouping,
        penalty=config.penalty,
        ignored_layers=ignored_layers or (),
        round_to=config.round_to,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.gamma)
    checkpoint_path = run_dir / "checkpoint.pt"
    log: list[dict] = []
    pruned = False
    start_epoch = 0
    total_epochs = config.penalized_epochs + config.finetune_epochs
    scaler_enabled = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=scaler_enabled)
    if resume and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, config, device)
        _restore(state, checkpoint_path, model, optimizer, scheduler, scaler, pruner)
        pruned = bool(state["pruned"])
        log = json.loads(state["log"])
        start_epoch = int(state["epoch"])
    for epoch in tqdm(
        range(start_epoch, total_epochs),
        desc="training",
        unit="epoch",
        initial=start_epoch,
        total=total_epochs,
    ):
        if epoch == config.penalized_epochs and not pruned and config.prune:
            _save_atomically(model.state_dict(), run_dir / "penalized.pt")
            _prune(pruner, val_data, config, device)
            pruned = True
        penalized = epoch < config.penalized_epochs
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        augment_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch + 7919)
        loader = DataLoader(
            train_data, batch_size=config.batch_size, shuffle=True, generator=generator
        )
        model.train()
        running, batches = 0.0, 0
        for images, labels in loader:
            if augment is not None:
                images = augment(images, augment_generator)
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=scaler_enabled):
                loss = nn.functional.cross_entropy(model(images), labels)
            if penalized:
                loss = loss + pruner.penalty()
            if not math.isfinite(loss.item()):
                kept = (
                    f"the last good checkpoint is {checkpoint_path}"
                    if checkpoint_path.exists()
                    else "no epoch had finished, so no checkpoint was written"
                )
                raise NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}; {kept}")
            scaler.scale(loss).backward()
            if penalized and pruner.regularizes_gradients:  # Torch-Pruning's regularizer
                scaler.unscale_(optimizer)  # it adds to the true (unscaled) gradients
                pruner.regularize()
            scaler.step(optimizer)
            scaler.update()
            if pruned:
                pruner.apply_masks()
            running += loss.item()
            batches += 1
        scheduler.step()
        log.append(
            {
                "epoch": epoch + 1,
                "phase": "penalized" if penalized else "finetune",
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": running / max(batches, 1),
                "val_accuracy": accuracy(model, val_data, device),
                "kept_structures": int(pruner.keep.sum()) if pruned else None,
            }
        )
        _write_log(log, run_dir)
        _save_atomically(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "M": getattr(pruner.regularizer, "M", torch.zeros(0)),
                "keep": pruner.keep,
                "pruned": pruned,
                "log": json.dumps(log),
                "epoch": epoch + 1,
                "config": json.dumps(asdict(config)),
                "scaler": scaler.state_dict(),
            },
            checkpoint_path,
        )
    if not config.prune:
        _save_atomically(model.state_dict(), run_dir / "penalized.pt")
        return pruner
    if not pruned:  # no fine-tuning phase: prune at the end
        _save_atomically(model.state_dict(), run_dir / "penalized.pt")
        _prune(pruner, val_data, config, device)
    return pruner
