"""Benchmark: epochs per second of the CIFAR ResNet-56 recipe, through sprkit's training loop.

What `sprkit prune` runs in a penalized CIFAR epoch, on synthetic tensors of CIFAR's shape
(45,000 training images 3x32x32, normal pixels, 10 random classes: dense kernels take the
same time on any values): EpochBatches (the TensorDataset held on the device, batches cut by
indexing), the random crop + flip (sprkit.data.augment), and run_epoch with a TrainingStep:
ResNet-56, batch 128, SGD (lr 0.1, momentum 0.9, weight decay 5e-4), the SPR penalty of the
dependency-graph structures (lam 1, alpha 0.5), autocast and memory layout as the recipe
chooses them for the device ("auto") or as given (--penalty none: the same step without the
penalty, to see its share). After --warmup steps, --steps steps are
timed together (wall clock; CUDA synchronized before and after); images per second, the
implied seconds per epoch (45,000 images / images per second: 352 steps, the last one of 72
images) and epochs per second are reported with the device and its threads. --steps 0 times a
whole epoch. Writes --out (.md) and the same table beside it as .csv.

    python benchmarks/cifar_epoch.py [--steps 20] [--warmup 3] [--device cuda]
        [--precision auto fp32 bf16] [--layout auto channels_last contiguous]
        [--penalty spr none]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from sprkit.data.augment import random_crop_flip
from sprkit.networks.architectures import build_model
from sprkit.networks.batches import EpochBatches
from sprkit.networks.graph import example_batch
from sprkit.networks.pruner import SPRPruner
from sprkit.networks.training import (
    TrainConfig,
    TrainingStep,
    autocast_type,
    memory_layout,
    run_epoch,
)

TRAIN_IMAGES = 45_000  # CIFAR's 50,000 training images less the 5,000 held out
LAYOUTS = {"auto": None, "channels_last": True, "contiguous": False}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_recipe(
    data: TensorDataset,
    config: TrainConfig,
    device: torch.device,
    steps: int,
    warmup: int,
    penalized: bool,
) -> dict:
    """One row: the recipe's steps timed on `device` with `config`'s precision and layout,
    with the SPR penalty in the loss or not."""
    torch.manual_seed(0)
    model = build_model("resnet56", num_classes=10).to(device)
    pruner = SPRPruner(model, example_batch(model, (3, 32, 32)), lam=config.lam, alpha=config.alpha)
    dtype, layout = autocast_type(config, device), memory_layout(config, model, device)
    model.to(memory_format=layout)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    step = TrainingStep(model, pruner, optimizer, device, dtype=dtype, layout=layout)
    batches = EpochBatches(data, config.batch_size, device, seed=0)
    generator = torch.Generator().manual_seed(0)
    per_epoch = -(-len(data) // config.batch_size)
    timed = steps or per_epoch
    for epoch, count in ((0, warmup), (1, timed)):  # warm-up, then the steps timed
        synchronize(device)
        start = time.perf_counter()
        losses = run_epoch(
            step,
            itertools.islice(batches(epoch), count),
            random_crop_flip,
            generator,
            penalized=penalized,
            pruned=False,
        )
    synchronize(device)
    seconds = time.perf_counter() - start
    images = min(timed * config.batch_size, len(data))
    per_second = images / seconds
    return {
        "device": str(device),
        "penalty": "spr" if penalized else "none",
        "precision": str(dtype or torch.float32).removeprefix("torch."),
        "layout": "channels_last" if layout == torch.channels_last else "contiguous",
        "batch": config.batch_size,
        "steps_timed": timed,
        "seconds": seconds,
        "images_per_s": per_second,
        "s_per_epoch": len(data) / per_second,
        "epochs_per_s": per_second / len(data),
        "mean_loss": float(losses[0] / losses[1]),  # cross-entropy + penalty: finite
        "steps_per_epoch": per_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps timed (0: one epoch)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", nargs="+", default=["auto"])
    parser.add_argument("--layout", nargs="+", choices=list(LAYOUTS), default=["auto"])
    parser.add_argument("--penalty", nargs="+", choices=["spr", "none"], default=["spr"])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/cifar_epoch.md"))
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(TRAIN_IMAGES, 3, 32, 32, generator=generator),
        torch.randint(0, 10, (TRAIN_IMAGES,), generator=generator),
    )
    recipe = TrainConfig()  # the paper's CIFAR recipe: batch 128, SGD 0.1 / 0.9 / 5e-4, SPR
    rows = [
        time_recipe(
            data,
            replace(recipe, precision=precision, channels_last=LAYOUTS[layout]),
            device,
            args.steps,
            args.warmup,
            penalty == "spr",
        )
        for penalty, precision, layout in itertools.product(
            args.penalty, args.precision, args.layout
        )
    ]
    table = pd.DataFrame(rows)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    machine = (
        f"{platform.machine()} ({name or 'CPU'}), {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    command = (
        f"python benchmarks/cifar_epoch.py --steps {args.steps} --warmup {args.warmup} "
        f"--device {args.device} --precision {' '.join(args.precision)} "
        f"--layout {' '.join(args.layout)} --penalty {' '.join(args.penalty)}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.write_text(
        "# CIFAR ResNet-56 recipe: seconds per epoch\n\n"
        f"Command: `{command}`  \nMachine: {machine}  \n"
        f"Date: {time.strftime('%Y-%m-%d')}. Synthetic tensors of CIFAR's shape "
        f"({TRAIN_IMAGES:,} images 3x32x32) through sprkit's training loop (module docstring "
        f"of benchmarks/cifar_epoch.py): {args.warmup} warm-up step(s), then the steps timed "
        "together; s_per_epoch = 45,000 / images_per_s.\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
