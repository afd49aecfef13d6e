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
`resume=True` continues from it (loaded with weights_only=True) and, on CPU (one process or
several gloo processes), ends at the
same weights as an uninterrupted run: batches are drawn from a permutation seeded by
(seed, epoch) and augmented from a generator seeded by (seed, epoch, rank). A non-finite
loss (checked once per epoch: a check per step would stall a GPU at every step) stops the
run with NonFiniteLossError, leaving the last good checkpoint in place.

Speed (sprkit.networks.batches): a TensorDataset is held on the training device and batched
by indexing there; the augmentation is a batched tensor operation; on CUDA the forward pass
runs under bf16 autocast (no GradScaler needed; fp16 with one where bf16 is missing) with
conv nets in channels-last memory layout. On CPU the same code runs in float32 by default.

Several processes (torchrun, sprkit.networks.distributed): the model is wrapped in
DistributedDataParallel, each process trains on its shard of each epoch's batches (the
global batch is `batch_size`), the penalty is computed on the unwrapped model in every
process (identical, so DDP's averaging leaves its gradient unchanged), the pruning rule sees
validation accuracies summed over the processes' shards (identical decisions everywhere),
metrics are reduced across processes, and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from sprkit.atomic import write_atomically
from sprkit.errors import CheckpointError, ParameterError, TrainingError, first_line
from sprkit.networks import distributed
from sprkit.networks.batches import AUGMENT_STREAM, EpochBatches, on_device, stream_generator
from sprkit.networks.compression import check_round_to
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
MAX_WORKERS = 256
# "auto": bf16 on CUDA where the GPU has it (fp16 with a GradScaler where not), fp32 on CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_TYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or Inf."""


@dataclass(frozen=True)
class TrainConfig:
    """Recipe settings. The optimizer, schedule and epochs default to the paper's CIFAR recipe
    (300 + 200 epochs); grouping defaults to the dependency graph (the paper's per-channel
    structures: grouping="layer"); lam, alpha and M_scale are this project's defaults.
    batch_size is the global batch (split evenly over the processes of a distributed run).
    Execution: `workers` DataLoader processes per training process for a data set that is not
    a TensorDataset; `precision` of the forward pass (PRECISIONS); `channels_last` memory
    layout (None: on CUDA for a model with 2-D convolutions)."""

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
    workers: int = 4
    precision: str = "auto"
    channels_last: bool | None = None

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
        check_round_to(self.round_to)
        if self.target_macs is not None and not self.target_macs > 0:
            raise ParameterError(f"target_macs must be > 0, got {self.target_macs}")
        if self.grouping not in GROUPINGS:
            raise ParameterError(
                f"unknown grouping {self.grouping!r}; known: {', '.join(GROUPINGS)}"
            )
        if not 0 <= self.seed < 2**32:
            raise ParameterError(f"seed must lie in [0, 2^32), got {self.seed}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ParameterError(f"workers must lie in [0, {MAX_WORKERS}], got {self.workers}")
        if self.precision not in PRECISIONS:
            raise ParameterError(
                f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}"
            )


def accuracy(model: nn.Module, data: Dataset, device: torch.device, workers: int = 0) -> float:
    """Top-1 accuracy (eval mode; the model's mode is restored), over the whole of `data`
    in every process of a distributed run (each evaluates its shard; a collective)."""
    return top_k_accuracies(model, data, device, across_ranks=True, workers=workers)["top1"]


def check_processes(config: TrainConfig) -> None:
    """ParameterError unless the global batch splits evenly over the run's processes."""
    world = distributed.world_size()
    if config.batch_size % world:
        raise ParameterError(
            f"batch_size {config.batch_size} is the global batch: it must be a multiple of "
            f"the {world} processes"
        )


def autocast_type(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward pass (None: float32); ParameterError for fp16 off
    CUDA (its GradScaler is a CUDA tool)."""
    if config.precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if config.precision == "fp16" and device.type != "cuda":
        raise ParameterError("precision fp16 needs a CUDA device; use bf16 or fp32")
    return AUTOCAST_TYPES[config.precision]


def memory_layout(
    config: TrainConfig, model: nn.Module, device: torch.device
) -> torch.memory_format:
    """channels_last for a conv net on CUDA (or as configured), the default layout otherwise."""
    wanted = config.channels_last
    if wanted is None:
        wanted = device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.channels_last if wanted else torch.contiguous_format


class TrainingStep:
    """One optimizer step of the recipe on one batch: forward pass under autocast (`dtype`;
    None: float32) through `network` (the model or its DDP wrapper), cross-entropy, plus the
    penalty on the unwrapped model in float32 when `penalized`, backward (DDP averages the
    gradients over the processes), a penalty acting on gradients (tp_group_norm) added to the
    averaged, unscaled gradients when `penalized`, the SGD step (through a GradScaler for
    float16), and the removed structures re-zeroed when `pruned`. Returns the loss, detached,
    on the device."""

    def __init__(
        self,
        network: nn.Module,
        pruner: SPRPruner,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        *,
        dtype: torch.dtype | None,
        layout: torch.memory_format,
    ) -> None:
        self.network, self.pruner, self.optimizer = network, pruner, optimizer
        self.device, self.dtype, self.layout = device, dtype, layout
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, *, penalized: bool, pruned: bool
    ) -> torch.Tensor:
        if images.dim() == 4:
            images = images.contiguous(memory_format=self.layout)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = nn.functional.cross_entropy(self.network(images), labels)
        if penalized:
            loss = loss + self.pruner.penalty()
        self.scaler.scale(loss).backward()
        if penalized and self.pruner.regularizes_gradients:  # Torch-Pruning's regularizer
            self.scaler.unscale_(self.optimizer)  # it adds to the true (unscaled) gradients
            self.pruner.regularize()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if pruned:
            self.pruner.apply_masks()
        return loss.detach()


def run_epoch(
    step: TrainingStep,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    generator: torch.Generator,
    *,
    penalized: bool,
    pruned: bool,
) -> torch.Tensor:
    """`step` on each of `batches` (augmented from `generator` first), in training mode;
    returns (sum of the losses, number of batches) as a float64 tensor on the step's device,
    never synchronized with it in between."""
    step.network.train()
    losses = torch.zeros(2, dtype=torch.float64, device=step.device)
    for images, labels in batches:
        if augment is not None:
            images = augment(images, generator)
        losses[0] += step(images, labels, penalized=penalized, pruned=pruned)
        losses[1] += 1
    return losses


def _write_log(log: list[dict], run_dir: Path) -> None:
    """log.csv and log.json of the epochs so far, each replaced atomically."""
    table = pd.DataFrame(log)
    write_atomically(run_dir / "log.csv", lambda path: table.to_csv(path, index=False))
    write_atomically(run_dir / "log.json", lambda path: path.write_text(json.dumps(log)))


def _save_atomically(state: dict, path: Path) -> None:
    write_atomically(path, lambda temporary: torch.save(state, temporary))


def _save_epoch(log: list[dict], state: dict, run_dir: Path) -> None:
    """The files of a finished epoch: the log, then the checkpoint."""
    _write_log(log, run_dir)
    _save_atomically(state, run_dir / "checkpoint.pt")


def _prune(pruner: SPRPruner, val_data: Dataset, config: TrainConfig, device: torch.device) -> None:
    """Zero the structures to remove, by the configured rule: with `target_macs`, the fewest
    lowest-scoring structures that bring the compressed network within the MAC budget;
    otherwise the largest weight threshold within the validation tolerance (SPR, group
    lasso) or the most lowest-scoring structures within it (bn_l1: |gamma|, tp_group_norm:
    Torch-Pruning's importance). In a distributed run every process takes the same decision:
    same weights, accuracies summed over shards."""
    model = pruner.model

    def evaluate(candidate: nn.Module) -> float:
        return accuracy(candidate, val_data, device, config.workers)

    if config.target_macs is not None:
        try:
            pruner.prune(target_macs=config.target_macs)
        except ParameterError:
            raise ParameterError(
                f"target_macs {config.target_macs} cannot be reached: removing every "
                "structure that can go (each essential layer keeps a channel) leaves more"
            ) from None
    elif config.penalty in RANKED_BY_SCORE:
        reference = evaluate(model)
        keep = fewest_removed(
            pruner.structures,
            pruner.scores(),
            lambda mask: (
                reference - evaluate(masked_copy(model, pruner.structures, mask))
                <= config.tolerance
            ),
            want="most",
        )
        pruner.set_masks(keep)
    else:
        pruner.prune(
            tolerance=config.tolerance,
            evaluate=evaluate,
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
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    device: torch.device | str = "cpu",
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ignored_layers: list[nn.Module] | None = None,
) -> SPRPruner:
    """Run the recipe; returns the SPRPruner of the model (pruner.model: masked after
    pruning, in the default memory layout; pruner.keep: the structures kept). The weights at
    the end of the penalized phase, just before pruning, are kept in run_dir/penalized.pt.
    `augment` transforms each training batch on the device (seeded per epoch and process).
    Data: (input, label) items; a TensorDataset takes the fast path (module docstring). In a
    distributed run every process calls this with the same arguments."""
    device = torch.device(device)
    check_processes(config)
    distributed.on_main(lambda: run_dir.mkdir(parents=True, exist_ok=True))
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
    layout = memory_layout(config, model, device)
    model.to(memory_format=layout)
    try:
        _train(pruner, train_data, val_data, config, run_dir, resume, device, augment, layout)
    finally:
        model.to(memory_format=torch.contiguous_format)
    return pruner


def _train(
    pruner: SPRPruner,
    train_data: Dataset,
    val_data: Dataset,
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    device: torch.device,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    layout: torch.memory_format,
) -> None:
    """The epochs of train_spr, on its pruner's model."""
    model, rank = pruner.model, distributed.rank()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.gamma)
    dtype = autocast_type(config, device)
    checkpoint_path = run_dir / "checkpoint.pt"
    log: list[dict] = []
    pruned = False
    start_epoch = 0
    total_epochs = config.penalized_epochs + config.finetune_epochs
    step = TrainingStep(
        distributed.wrap(model, device), pruner, optimizer, device, dtype=dtype, layout=layout
    )
    if resume and checkpoint_path.exists():  # every process loads it
        state = _load_checkpoint(checkpoint_path, config, device)
        _restore(state, checkpoint_path, model, optimizer, scheduler, step.scaler, pruner)
        pruned = bool(state["pruned"])
        log = json.loads(state["log"])
        start_epoch = int(state["epoch"])
    batches = EpochBatches(
        train_data,
        config.batch_size,
        device,
        seed=config.seed,
        workers=config.workers,
        rank=rank,
        world=distributed.world_size(),
    )
    val_data = on_device(val_data, device)

    def save_penalized() -> None:
        _save_atomically(model.state_dict(), run_dir / "penalized.pt")

    for epoch in tqdm(
        range(start_epoch, total_epochs),
        desc="training",
        unit="epoch",
        initial=start_epoch,
        total=total_epochs,
        disable=rank != 0,
    ):
        if epoch == config.penalized_epochs and not pruned and config.prune:
            distributed.on_main(save_penalized)
            _prune(pruner, val_data, config, device)
            pruned = True
        penalized = epoch < config.penalized_epochs
        augment_generator = stream_generator(config.seed, epoch, rank, AUGMENT_STREAM)
        losses = run_epoch(
            step, batches(epoch), augment, augment_generator, penalized=penalized, pruned=pruned
        )
        scheduler.step()
        distributed.broadcast_buffers(model)
        total, count = distributed.sum_across(losses).tolist()
        train_loss = total / max(count, 1)
        if not math.isfinite(train_loss):  # the same sum in every process: all stop here
            kept = (
                f"the last good checkpoint is {checkpoint_path}"
                if checkpoint_path.exists()
                else "no epoch had finished, so no checkpoint was written"
            )
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}; {kept}")
        log.append(
            {
                "epoch": epoch + 1,
                "phase": "penalized" if penalized else "finetune",
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": train_loss,
                "val_accuracy": accuracy(model, val_data, device, config.workers),
                "kept_structures": int(pruner.keep.sum()) if pruned else None,
            }
        )
        checkpoint = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "M": getattr(pruner.regularizer, "M", torch.zeros(0)),
            "keep": pruner.keep,
            "pruned": pruned,
            "log": json.dumps(log),
            "epoch": epoch + 1,
            "config": json.dumps(asdict(config)),
            "scaler": step.scaler.state_dict(),
        }
        distributed.on_main(partial(_save_epoch, log, checkpoint, run_dir))
    if not config.prune:
        distributed.on_main(save_penalized)
    elif not pruned:  # no fine-tuning phase: prune at the end
        distributed.on_main(save_penalized)
        _prune(pruner, val_data, config, device)
