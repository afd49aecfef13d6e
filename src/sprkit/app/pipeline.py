"""The pipeline of `sprkit prune`: train with SPR, prune, fine-tune, compress, report.

One run folder (sprkit.app.config gives the settings) gets training/ (logs, checkpoint,
penalized.pt), network/ (the compressed network: JSON + weights_only state dict),
report.json, report.csv, layers.csv and kept_channels.png. With `init`, the network (and
the baseline) start from the weights of that file (sprkit.app.initial), checked to fit before
the run folder is marked.

Under torchrun (sprkit.networks.distributed) every process runs the pipeline: the trainings
and the test-set evaluations are shared among them; rank 0 alone takes the folder's lock, marks
it, writes files and measures MACs and latency (on CPU the other processes would disturb the
timing), and hands its figures to the others, so every process returns the same summary (up to
its own device).
The folder must be one that every process can read (one machine or a shared file system):
the other processes read the checkpoint to resume and penalized.pt once rank 0 wrote them.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from sprkit.app.config import PruneSettings
from sprkit.app.initial import load_strictly, read_state_dict
from sprkit.app.reports import write_report
from sprkit.app.runfolder import RunFolder
from sprkit.data.images import ImageData, load_image_data
from sprkit.errors import CheckpointError, ParameterError, first_line
from sprkit.networks import distributed
from sprkit.networks.architectures import model_constructor
from sprkit.networks.compression import Compression, fold_batchnorm
from sprkit.networks.graph import example_batch, output_channel_dim
from sprkit.networks.measure import (
    count_macs,
    count_parameters,
    latency_ms,
    max_logit_difference,
    top_k_accuracies,
)
from sprkit.networks.training import autocast_type, check_processes, train_spr


def _layer_table(
    dense: torch.nn.Module, masked: torch.nn.Module, layers: list[str], compression: Compression
) -> pd.DataFrame:
    """Per conv/Linear layer with structures: output channels dense, nonzero after masking,
    and kept by compression (0 for a layer of a residual branch folded into a bias)."""
    dense_modules, masked_modules = dict(dense.named_modules()), dict(masked.named_modules())
    rows = []
    for name in layers:
        dim = output_channel_dim(masked_modules[name], "weight")  # 1: a transposed conv
        weight = masked_modules[name].weight.detach().transpose(0, dim)
        rows.append(
            {
                "layer": name,
                "dense": dense_modules[name].weight.shape[dim],
                "masked": int((weight.reshape(len(weight), -1) != 0).any(dim=1).sum()),
                "compressed": len(compression.kept_channels.get(name, [])),
            }
        )
    return pd.DataFrame(rows)


def check_device(device: str) -> None:
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


def _load_weights(model: torch.nn.Module, path: Path, device: str) -> torch.nn.Module:
    """`model` with the state dict saved at `path`; CheckpointError if it is missing, damaged
    or of another architecture."""
    if not path.exists():
        raise CheckpointError(f"{path} is missing")
    try:
        model.load_state_dict(torch.load(path, weights_only=True, map_location=device))
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(
            f"{path} is damaged or from another network ({first_line(error)})"
        ) from None
    return model


ROW_MEANINGS = {
    "baseline": "trained without any penalty for the run's epochs (penalized + fine-tuning), "
    "same recipe otherwise: the unpruned reference (present when the setting baseline is true)",
    "penalized": "trained with the {penalty} penalty, just before pruning (all channels)",
    "pruned": "after pruning and fine-tuning, pruned structures held at zero (all channels "
    "still present)",
    "compressed": "the pruned network physically compressed (computes the same function)",
}


def measure_network(network, name: str, data, shape, settings: PruneSettings, device: str) -> dict:
    """One row of report.csv: `network`'s test accuracy, size, MACs and latency, the same in
    every process (accuracy over the processes'
    shards; the rest measured by rank 0)."""
    accuracy = top_k_accuracies(
        network, data.test, device, across_ranks=True, workers=settings.train.workers
    )
    costs = distributed.on_main(
        lambda: {
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
    return {"network": name, "top1": accuracy["top1"], "top5": accuracy["top5"]} | (
        distributed.from_main(costs)
    )


def train_baseline(
    model: torch.nn.Module,
    settings: PruneSettings,
    data: ImageData,
    folder: Path,
    *,
    device: str,
    resume: bool,
) -> None:
    """Train `model` as the unpruned reference of `settings` in `folder`: without any
    penalty for the run's whole budget (penalized + fine-tuning epochs), same recipe
    otherwise; `resume` continues (or reads back) the training there."""
    recipe = replace(
        settings.train,
        lam=0.0,
        prune=False,
        penalized_epochs=settings.train.penalized_epochs + settings.train.finetune_epochs,
        finetune_epochs=0,
    )
    train_spr(
        model,
        data.train,
        data.val,
        recipe,
        folder,
        resume=resume,
        device=device,
        augment=data.augment,
    )


def load_run_data(settings: PruneSettings, seed: int | None = None) -> ImageData:
    """The data of `settings` (split with `seed`, default the settings' seed)."""
    return load_image_data(
        settings.dataset,
        settings.data_dir,
        settings.seed if seed is None else seed,
        crop_size=settings.crop_size,
        resize_size=settings.resize_size,
    )


def check_classifier(network: torch.nn.Module, num_classes: int, input_shape) -> None:
    """ParameterError unless `network`'s forward, on a batch of two zero inputs of
    `input_shape`, returns one tensor of logits shaped (2, num_classes): what the training
    recipe's cross-entropy needs."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            output = network(example_batch(network, input_shape))
    except Exception as error:  # the user's forward: one line, not a traceback
        raise ParameterError(
            f"the model's forward failed on inputs of shape {(2, *input_shape)}: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None
    finally:
        network.train(was_training)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, num_classes):
        what = type(output).__name__
        if isinstance(output, torch.Tensor):
            what = f"a tensor of shape {tuple(output.shape)}"
        raise ParameterError(
            f"the model returns {what}; the recipe trains a classifier, whose forward returns "
            f"one tensor of logits shaped (batch, {num_classes})"
        )


def starting_network(
    constructor, data: ImageData, initial: dict[str, torch.Tensor] | None
) -> torch.nn.Module:
    """A new network for `data`, holding the weights `initial` when given (checked to fit)."""
    network = constructor(data.num_classes, data.input_shape[0])
    if initial is not None:
        network.load_state_dict(initial)
    return network


def run_prune(
    settings: PruneSettings,
    out: Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the pipeline into `out`; returns the report's summary. A folder that already holds
    a run is continued with `resume`, replaced with `overwrite` (the old run is set aside and
    deleted once the new one has written a checkpoint; a new run failing before that leaves
    the old one back in place, whole), and refused otherwise (RunExistsError); a folder in
    use by a live run is refused (RunFolderError). Under torchrun the processes are joined
    for the run (distributed.process_group)."""
    constructor = model_constructor(settings.arch)  # unknown: fail before loading data
    check_device(device)
    initial = read_state_dict(Path(settings.init)) if settings.init else None
    autocast_type(settings.train, torch.device(device))  # fp16 off CUDA: refused here
    with distributed.process_group(torch.device(device)), ExitStack() as held:
        # held: rank 0's lock of the folder, then the replacement of an old run
        check_processes(settings.train)  # before the folder is claimed

        def claim() -> RunFolder:
            folder = held.enter_context(RunFolder(out))
            folder.check_free(resume=resume, overwrite=overwrite)
            return folder

        folder = distributed.on_main(claim)
        data = load_run_data(settings)
        # a model or init file that does not fit: refused before the folder is marked
        network = constructor(data.num_classes, data.input_shape[0])
        if initial is not None:
            what = f"init file {settings.init} does not fit {settings.arch} with "
            what += f"{data.num_classes} classes"
            load_strictly(network, initial, what)
        check_classifier(network, data.num_classes, data.input_shape)

        def start() -> None:
            if overwrite:
                held.enter_context(folder.replacing())
            folder.mark()

        distributed.on_main(start)
        return _run(settings, out, data, constructor, device, resume, initial)


def _run(
    settings: PruneSettings,
    out: Path,
    data,
    constructor,
    device: str,
    resume: bool,
    initial: dict[str, torch.Tensor] | None,
):
    """The pipeline inside a locked, marked run folder (run_prune); the networks start from
    `initial` when given (checked to fit)."""
    shape = data.input_shape
    torch.manual_seed(settings.seed)

    model = starting_network(constructor, data, initial)
    rows = []
    if settings.baseline:
        baseline = starting_network(constructor, data, initial)
        train_baseline(baseline, settings, data, out / "baseline", device=device, resume=resume)
        rows.append(measure_network(baseline, "baseline", data, shape, settings, device))
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
    penalized = _load_weights(
        constructor(data.num_classes, shape[0]).to(device),
        out / "training" / "penalized.pt",
        device,
    )
    saved = distributed.on_main(
        lambda: pruner.save(
            out / "network", meta={"arch": settings.arch, "num_classes": data.num_classes}
        )
    )
    compressed = pruner.compress() if saved is None else saved  # the same network
    compression = pruner.compression
    for name, network in (
        ("penalized", penalized),
        ("pruned", masked),
        ("compressed", compressed),
    ):
        rows.append(measure_network(network, name, data, shape, settings, device))
    networks = pd.DataFrame(rows)
    by_name = {row["network"]: row for row in rows}
    before, after = by_name["penalized"], by_name["compressed"]
    reference = by_name.get("baseline", before)
    summary = {
        "arch": settings.arch,
        "dataset": settings.dataset,
        "device": str(device),
        "processes": distributed.world_size(),
        "torch_threads": torch.get_num_threads(),
        "conventions": "accuracy share on the test split; MACs via torch.utils.flop_counter "
        "(one input); latency median ms per forward pass on a batch of latency_batch, "
        "BatchNorm folded into the convs (deployed form) for every network",
        "rows": {
            name: meaning.format(penalty=settings.train.penalty)
            for name, meaning in ROW_MEANINGS.items()
            if name in by_name
        },
        "latency_batch": settings.latency_batch,
        "macs_removed": 1.0 - after["macs"] / before["macs"],
        "parameters_removed": 1.0 - after["parameters"] / before["parameters"],
        "mac_ratio": before["macs"] / after["macs"],
        "speedup": before["latency_ms"] / after["latency_ms"],
        "top1_change": after["top1"] - reference["top1"],
        "top1_change_against": reference["network"],
        "max_logit_difference_pruned_vs_compressed": max_logit_difference(
            masked,
            compressed,
            data.test,
            device,
            across_ranks=True,
            workers=settings.train.workers,
        ),
        "replaced_blocks": sorted(compression.replaced),
        "uncut_layers": dict(pruner.structures.uncut),
        "baseline": settings.baseline,
        "init": settings.init,
        "train": asdict(settings.train),
    }
    layers = [n for n, _ in penalized.named_modules() if n in pruner.structures.weight_layers]
    table = _layer_table(penalized, masked, layers, compression)
    distributed.on_main(lambda: write_report(out, summary, networks, table))
    return summary
