"""Benchmark: SPR pruning of the small ResNet on the digits images, against the dense network
trained with the same budget, and against group lasso and network slimming (BatchNorm-scale
L1) at equal MACs, all through the same pipeline (penalized phase, pruning, fine-tuning,
physical compression). Writes docs/benchmarks/digits_pruning.{md,csv}.

Two parts, per seed:
1. SPR as shipped (`sprkit prune --dataset digits` settings): pruned by its own rule, the
   largest threshold within 1 point of validation accuracy. Its MACs set the budget.
2. Equal MACs: SPR, group lasso and slimming, each for every lam of its sweep, pruned by its
   own structure score to at most that budget. Each method's lam is chosen on the validation
   split (mean over seeds); the test accuracy of that choice is compared.

    .venv/bin/python benchmarks/digits_pruning.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from sprkit.app.config import resolve_settings
from sprkit.data.images import load_image_data
from sprkit.networks.architectures import build_model
from sprkit.networks.measure import count_macs, top_k_accuracies
from sprkit.networks.training import TrainConfig, train_spr

SWEEPS = {
    "spr": [0.5, 1.0, 2.0, 4.0],
    "group_lasso": [8.0, 32.0, 128.0, 512.0],
    "bn_l1": [1e-4, 1e-3, 1e-2, 1e-1],
}


def run(config: TrainConfig, data, folder: Path) -> dict:
    """Train, prune, compress; test accuracy of the compressed network and its MACs."""
    shape = data.input_shape
    torch.manual_seed(config.seed)
    model = build_model("resnet-digits", data.num_classes, shape[0])
    started = time.perf_counter()
    pruner = train_spr(model, data.train, data.val, config, folder)
    compressed = pruner.compress()
    return {
        "top1": top_k_accuracies(compressed, data.test)["top1"],
        "val_top1": top_k_accuracies(compressed, data.val)["top1"],
        "macs": count_macs(compressed, shape),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/digits_pruning"))
    args = parser.parse_args()
    data = load_image_data("digits", None)
    base = resolve_settings("digits", {}, {}).train
    dense_macs = count_macs(build_model("resnet-digits", 10, 1), data.input_shape)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            spr_config = replace(base, seed=seed)
            dense = replace(spr_config, lam=0.0, prune=False)
            result = run(dense, data, Path(scratch) / f"dense{seed}")
            rows.append({"method": "dense", "lam": 0.0, "seed": seed, **result})
            shipped = run(spr_config, data, Path(scratch) / f"spr{seed}")
            rows.append({"method": "spr (shipped rule)", "lam": base.lam, "seed": seed, **shipped})
            for penalty, lams in SWEEPS.items():
                for lam in lams:
                    config = replace(
                        spr_config, penalty=penalty, lam=lam, target_macs=shipped["macs"]
                    )
                    result = run(config, data, Path(scratch) / f"{penalty}{lam}-{seed}")
                    rows.append({"method": penalty, "lam": lam, "seed": seed, **result})
            print(pd.DataFrame(rows).tail(2 + sum(map(len, SWEEPS.values()))))
    table = pd.DataFrame(rows)
    table["macs_removed"] = 1.0 - table["macs"] / dense_macs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    summary = (
        table.groupby(["method", "lam"], sort=False)
        .agg(
            val_top1=("val_top1", "mean"),
            top1_mean=("top1", "mean"),
            top1_std=("top1", "std"),
            macs_removed_mean=("macs_removed", "mean"),
            seconds_per_run=("seconds", "mean"),
        )
        .reset_index()
    )
    dense_top1 = summary.loc[summary["method"] == "dense", "top1_mean"].item()
    summary["points_lost_vs_dense"] = 100.0 * (dense_top1 - summary["top1_mean"])
    shipped_row = summary.loc[summary["method"] == "spr (shipped rule)"].iloc[0]
    chosen = {
        method: summary.loc[summary["method"] == method].sort_values("val_top1").iloc[-1]
        for method in SWEEPS
    }
    paired = table.pivot_table(index="seed", columns=["method", "lam"], values="top1")
    spr_choice = paired[("spr", chosen["spr"]["lam"])]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, cpu"
    lines = [
        "# SPR pruning of the small ResNet on the digits images",
        "",
        f"Command: `python benchmarks/digits_pruning.py --seeds {args.seeds}`  ",
        f"Machine: {machine}, {torch.get_num_threads()} torch threads  ",
        f"Data: scikit-learn digits, 8x8, stratified split train {len(data.train)} / validation "
        f"{len(data.val)} / test {len(data.test)}; top1 = test accuracy, val_top1 = validation "
        "accuracy (used only to choose lam).  ",
        f"Recipe (every method): {base.penalized_epochs} penalized + {base.finetune_epochs} "
        f"fine-tuning epochs, SGD lr {base.lr} momentum {base.momentum} weight decay "
        f"{base.weight_decay}, milestones {base.milestones}, batch {base.batch_size}, "
        f"grouping '{base.grouping}'. Dense: the same "
        f"{base.penalized_epochs + base.finetune_epochs} epochs, no penalty, no pruning. "
        f"MACs of the dense network: {dense_macs:,} (torch.utils.flop_counter). Means over "
        f"{args.seeds} seeds (initialization and batch order).  ",
        f"Shipped SPR: lam {base.lam}, alpha {base.alpha}, pruned by its threshold rule within "
        f"{base.tolerance:.0%} validation accuracy. Equal-MAC rows (spr, group_lasso, bn_l1): "
        "pruned by their own score (structure l2 norm; mean |gamma| for bn_l1) to at most the "
        "MACs of the same seed's shipped SPR network.",
        "",
        summary.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"- Shipped SPR removes {shipped_row['macs_removed_mean']:.1%} of the MACs and loses "
        f"{shipped_row['points_lost_vs_dense']:.2f} points of test accuracy against dense "
        "(target: >= 50% removed, <= 1 point lost).",
        "- Equal MACs, lam chosen on validation: "
        + "; ".join(
            f"{method} lam {row['lam']:g}: test {row['top1_mean']:.4f}"
            for method, row in chosen.items()
        )
        + ".",
    ]
    for method in ("group_lasso", "bn_l1"):
        other = paired[(method, chosen[method]["lam"])]
        lines.append(
            f"- SPR vs {method} at equal MACs: "
            f"{100 * (spr_choice.mean() - other.mean()):+.2f} points for SPR (better on "
            f"{int((spr_choice > other).sum())}, tied on {int((spr_choice == other).sum())}, "
            f"worse on {int((spr_choice < other).sum())} of {args.seeds} seeds)."
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
