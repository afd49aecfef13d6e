"""Benchmark: SPR pruning of the small ResNet on the digits images, against the dense network
trained with the same budget and against group lasso and network slimming (BatchNorm-scale L1)
at equal MACs, all through the same pipeline (penalized phase, pruning, fine-tuning, physical
compression). Writes docs/benchmarks/digits_pruning.{md,csv}.

SPR prunes by its own rule (largest threshold within 1 point of validation accuracy); each
competitor is then pruned, by its own importance score, to at most the MACs of the SPR network
of the same seed, for each lam of its sweep; the table reports every lam (mean over seeds).

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

from sprkit.data.images import load_image_data
from sprkit.networks.architectures import build_model
from sprkit.networks.compression import compress
from sprkit.networks.measure import count_macs
from sprkit.networks.report import top_k_accuracies
from sprkit.networks.training import TrainConfig, train_spr
from sprkit.prune import resolve_settings

COMPETITORS = {"group_lasso": [2.0, 8.0, 32.0], "bn_l1": [1e-4, 1e-3, 1e-2]}


def run(config: TrainConfig, data, folder: Path) -> dict:
    """Train, prune, compress; test accuracy of the compressed network and its MACs."""
    shape = data.input_shape
    torch.manual_seed(config.seed)
    model = build_model("resnet-digits", data.num_classes, shape[0])
    started = time.perf_counter()
    masked, masks = train_spr(model, data.train, data.val, config, folder)
    compressed, _ = compress(masked.eval(), masks, shape)
    return {
        "top1": top_k_accuracies(compressed, data.test)["top1"],
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
            rows.append(
                {
                    "method": "dense",
                    "lam": 0.0,
                    "seed": seed,
                    **run(dense, data, Path(scratch) / f"dense{seed}"),
                }
            )
            spr = run(spr_config, data, Path(scratch) / f"spr{seed}")
            rows.append({"method": "spr", "lam": base.lam, "seed": seed, **spr})
            for penalty, lams in COMPETITORS.items():
                for lam in lams:
                    config = replace(spr_config, penalty=penalty, lam=lam, target_macs=spr["macs"])
                    result = run(config, data, Path(scratch) / f"{penalty}{lam}-{seed}")
                    rows.append({"method": penalty, "lam": lam, "seed": seed, **result})
            print(pd.DataFrame(rows).tail(2 + sum(map(len, COMPETITORS.values()))))
    table = pd.DataFrame(rows)
    table["macs_removed"] = 1.0 - table["macs"] / dense_macs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    summary = (
        table.groupby(["method", "lam"], sort=False)
        .agg(
            top1_mean=("top1", "mean"),
            top1_std=("top1", "std"),
            macs_removed_mean=("macs_removed", "mean"),
            seconds_per_run=("seconds", "mean"),
        )
        .reset_index()
    )
    dense_top1 = summary.loc[summary["method"] == "dense", "top1_mean"].item()
    summary["points_lost_vs_dense"] = 100.0 * (dense_top1 - summary["top1_mean"])
    spr_row = summary.loc[summary["method"] == "spr"].iloc[0]
    best = {
        method: summary.loc[summary["method"] == method].sort_values("top1_mean").iloc[-1]
        for method in COMPETITORS
    }
    paired = table.pivot_table(index="seed", columns=["method", "lam"], values="top1")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, cpu"
    lines = [
        "# SPR pruning of the small ResNet on the digits images",
        "",
        f"Command: `python benchmarks/digits_pruning.py --seeds {args.seeds}`  ",
        f"Machine: {machine}, {torch.get_num_threads()} torch threads  ",
        f"Data: scikit-learn digits, 8x8, stratified split train {len(data.train)} / validation "
        f"{len(data.val)} / test {len(data.test)} (accuracies below: test split).  ",
        f"Recipe (every method): {base.penalized_epochs} penalized + {base.finetune_epochs} "
        f"fine-tuning epochs, SGD lr {base.lr} momentum {base.momentum} weight decay "
        f"{base.weight_decay}, milestones {base.milestones}, batch {base.batch_size}, "
        f"grouping '{base.grouping}'. Dense: the same "
        f"{base.penalized_epochs + base.finetune_epochs} epochs, no penalty, no pruning. "
        "MACs of the dense network: "
        f"{dense_macs:,} (torch.utils.flop_counter).  ",
        f"SPR: lam {base.lam}, alpha {base.alpha}, pruned by its threshold rule within "
        f"{base.tolerance:.0%} validation accuracy. Competitors: pruned by their own score "
        "to at most the MACs of the same seed's SPR network (equal FLOPs), lam swept.",
        "",
        summary.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"- SPR removes {spr_row['macs_removed_mean']:.1%} of the MACs and loses "
        f"{spr_row['points_lost_vs_dense']:.2f} points of test accuracy against dense "
        "(target: >= 50% removed, <= 1 point lost).",
    ]
    for method, row in best.items():
        wins = int((paired[("spr", base.lam)] > paired[(method, row["lam"])]).sum())
        ties = int((paired[("spr", base.lam)] == paired[(method, row["lam"])]).sum())
        lines.append(
            f"- Best {method} (lam {row['lam']:g}) at equal MACs: {row['top1_mean']:.4f} vs SPR "
            f"{spr_row['top1_mean']:.4f} ({100 * (spr_row['top1_mean'] - row['top1_mean']):+.2f}"
            f" points for SPR; SPR better on {wins}, tied on {ties} of {args.seeds} seeds)."
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
