"""Benchmark: measured inference speed-up of compressed networks against their MAC ratio.

Removal patterns, each compressed by sprkit.networks.compression, for every architecture and
MAC-reduction target (dense MACs / compressed MACs):
- "uniform": in every unit of structures (sprkit.networks.structures, dependency-graph
  grouping: the structures of one pruning group of coupled channels) the same share of
  lowest-l2-norm structures is removed, one always kept (share found by bisection);
- "global": the lowest-norm structures of the whole network are removed, whatever their layer
  (on a randomly initialized ResNet this keeps the residual streams whole and thins the
  branches: the hard case for speed, as BatchNorm, additions and activations on full-width
  streams cost time that MACs do not count);
and, in the same run, Torch-Pruning's own MagnitudePruner (L1 importance, uniform ratio, same
MAC target), plus the SPR-trained small ResNet of `sprkit prune --dataset digits`.
Latency: the best over interleaved rounds of the median ms of a forward pass on a batch, eval
mode, torch.inference_mode, with BatchNorm folded into the convs for dense and compressed
alike (sprkit.networks.compression.fold_batchnorm), on this machine's CPU or on --device
cuda (float32 weights; --layout channels_last for NHWC). Speed-up = dense latency /
compressed latency; efficiency = speed-up / MAC ratio. Writes docs/benchmarks/latency.{md,csv}.

    .venv/bin/python benchmarks/latency.py [--archs resnet56 resnet18] [--batch 64]
        [--round-to 8] [--device cuda] [--layout channels_last]

Each sprkit uniform pattern is also compressed with `round_to` (every layer group keeps a
multiple of that many channels, zero channels added back), and so is the digits network.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
from pathlib import Path

import pandas as pd
import torch
import torch_pruning as tp

from sprkit.app.config import resolve_settings
from sprkit.app.pipeline import run_prune
from sprkit.networks.architectures import build_model
from sprkit.networks.compression import compress, fold_batchnorm
from sprkit.networks.graph import CUSTOM_PRUNERS, example_batch
from sprkit.networks.measure import count_macs, count_parameters, latency_ms
from sprkit.networks.penalties import structure_scores
from sprkit.networks.rules import fewest_removed, masked_copy
from sprkit.networks.serialization import load_compressed
from sprkit.networks.structures import Structures, derive_structures

SHAPE = (3, 32, 32)
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _compressed(
    dense: torch.nn.Module,
    structures: Structures,
    keep: torch.Tensor,
    round_to: int | None = None,
) -> torch.nn.Module:
    """The compressed network of `dense` without the structures keep = False (each layer
    group's kept channels rounded up to a multiple of `round_to`)."""
    masked = masked_copy(dense, structures, keep).eval()
    return compress(masked, example_batch(masked, SHAPE), round_to=round_to)[0]


def _macs(dense: torch.nn.Module, structures: Structures, keep: torch.Tensor) -> int:
    return count_macs(_compressed(dense, structures, keep), SHAPE)


def global_pattern(dense: torch.nn.Module, target_macs: int) -> torch.nn.Module:
    """Fewest lowest-norm structures of the whole network removed to meet the MAC target."""
    structures = derive_structures(dense, example_batch(dense, SHAPE))
    keep = fewest_removed(
        structures,
        structure_scores(dense, structures, "spr"),
        lambda keep: _macs(dense, structures, keep) <= target_macs,
        want="fewest",
    )
    return _compressed(dense, structures, keep)


def uniform_pattern(
    dense: torch.nn.Module, target_macs: int, round_to: int | None = None
) -> torch.nn.Module:
    """The same share of lowest-norm structures removed in every unit of structures (the
    share meets the MAC target without rounding; `round_to` then widens layers a little)."""
    structures = derive_structures(dense, example_batch(dense, SHAPE))
    scores = structure_scores(dense, structures, "spr")
    ranked = [unit[torch.argsort(scores[unit], stable=True)] for unit in structures.units]

    def keep_for(share: float) -> torch.Tensor:
        keep = torch.ones(structures.n, dtype=torch.bool)
        for ids in ranked:
            keep[ids[: min(int(share * len(ids)), len(ids) - 1)]] = False
        return keep

    low, high = 0.0, 1.0
    for _ in range(14):
        middle = 0.5 * (low + high)
        fits = _macs(dense, structures, keep_for(middle))
        low, high = (low, middle) if fits <= target_macs else (middle, high)
    return _compressed(dense, structures, keep_for(high), round_to)


def spr_digits_networks(round_to: int) -> dict[tuple[str, float], torch.nn.Module]:
    """A dense resnet-digits (latency depends on shapes only, not on weights), the compressed
    network of the embedded SPR run (`sprkit prune --dataset digits`) and the same masked
    network compressed with `round_to`."""

    def dense() -> torch.nn.Module:
        return build_model("resnet-digits", 10, 1)

    with tempfile.TemporaryDirectory() as folder:
        run_prune(resolve_settings("digits", {}, {}), Path(folder))
        compressed, _ = load_compressed(Path(folder) / "network", dense)
        masked = dense()
        state = torch.load(Path(folder) / "training" / "checkpoint.pt", weights_only=True)
        masked.load_state_dict(state["model"])
    rounded, _ = compress(masked.eval(), example_batch(masked, (1, 8, 8)), round_to=round_to)
    return {
        ("dense", 1.0): dense().eval(),
        ("sprkit SPR-trained", 0.0): compressed,
        (f"sprkit SPR-trained, round_to={round_to}", 0.0): rounded,
    }


def torch_pruning_compressed(dense: torch.nn.Module, target_macs: int) -> torch.nn.Module:
    """Torch-Pruning's MagnitudePruner with the uniform ratio that meets the MAC target."""

    def pruned(ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(dense).eval()
        pruner = tp.pruner.MagnitudePruner(
            model,
            torch.zeros(1, *SHAPE),
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=[model.fc],
            customized_pruners=CUSTOM_PRUNERS,
        )
        pruner.step()
        return model

    low, high = 0.0, 0.95
    for _ in range(12):
        middle = 0.5 * (low + high)
        low, high = (
            (low, middle)
            if count_macs(pruned(middle), SHAPE) <= target_macs
            else (
                middle,
                high,
            )
        )
    return pruned(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet56", "resnet18"])
    parser.add_argument("--targets", nargs="+", type=float, default=[2.0, 3.0, 4.0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--digits-batch", type=int, default=1024)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="contiguous")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/latency"))
    args = parser.parse_args()
    layout = LAYOUTS[args.layout]
    suites = []  # (arch, input shape, batch, {(method, target): network})
    for arch in args.archs:
        torch.manual_seed(0)
        dense = build_model(arch, num_classes=10).eval()
        dense_macs = count_macs(dense, SHAPE)
        models = {("dense", 1.0): dense}
        for target in args.targets:
            budget = int(dense_macs / target)
            models[("sprkit uniform", target)] = uniform_pattern(dense, budget)
            models[(f"sprkit uniform, round_to={args.round_to}", target)] = uniform_pattern(
                dense, budget, args.round_to
            )
            models[("sprkit global", target)] = global_pattern(dense, budget)
            models[("torch-pruning", target)] = torch_pruning_compressed(dense, budget)
        suites.append((arch, SHAPE, args.batch, models))
    spr_models = spr_digits_networks(args.round_to)
    suites.append(("resnet-digits", (1, 8, 8), args.digits_batch, spr_models))
    rows = []
    for arch, shape, batch, models in suites:
        folded = {
            key: fold_batchnorm(model, example_batch(model, shape)) for key, model in models.items()
        }
        best = dict.fromkeys(models, float("inf"))
        for _round in range(args.rounds):  # interleaved, so drift hits every model alike
            for key, model in folded.items():
                measured = latency_ms(
                    model,
                    shape,
                    batch_size=batch,
                    repeats=args.repeats,
                    device=args.device,
                    layout=layout,
                )
                best[key] = min(best[key], measured)
        for (method, target), model in models.items():
            rows.append(
                {
                    "arch": arch,
                    "batch": batch,
                    "method": method,
                    "target": target,
                    "macs": count_macs(model, shape),
                    "parameters": count_parameters(model),
                    "latency_ms": best[(method, target)],
                }
            )
        print(pd.DataFrame(rows).tail(len(models)))
    table = pd.DataFrame(rows)
    dense_of = table[table["method"] == "dense"].set_index("arch")
    table["mac_ratio"] = table["arch"].map(dense_of["macs"]) / table["macs"]
    table["speedup"] = table["arch"].map(dense_of["latency_ms"]) / table["latency_ms"]
    table["efficiency"] = table["speedup"] / table["mac_ratio"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    pruned = table[table["method"] != "dense"]
    summary = (
        pruned.groupby("method", sort=False)["efficiency"].agg(["min", "mean", "max"]).reset_index()
    )
    theirs = pruned[pruned["method"] == "torch-pruning"].set_index(["arch", "target"])
    uniform = pruned[pruned["method"] == "sprkit uniform"].set_index(["arch", "target"])
    ratio = uniform["efficiency"] / theirs["efficiency"]
    device = torch.device(args.device)
    processor = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {processor}, "
        f"{args.layout}"
    )
    command = (
        f"python benchmarks/latency.py --archs {' '.join(args.archs)} --targets "
        f"{' '.join(f'{t:g}' for t in args.targets)} --batch {args.batch} "
        f"--digits-batch {args.digits_batch} --repeats {args.repeats} --rounds {args.rounds} "
        f"--round-to {args.round_to} --device {args.device} --layout {args.layout}"
    )
    text = [
        "# Measured speed-up of compressed networks against the MAC ratio",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}, {torch.get_num_threads()} torch threads  ",
        f"Latency = best over {args.rounds} interleaved rounds of the median of "
        f"{args.repeats} forward passes (after 3 warm-up passes), BatchNorm folded into the "
        "convs for every network; batch per row. Patterns: see the script's docstring.",
        "",
        table.to_markdown(index=False, floatfmt=".4g"),
        "",
        "Efficiency (speed-up / MAC ratio) by method:",
        "",
        summary.to_markdown(index=False, floatfmt=".3g"),
        "",
        f"- sprkit uniform efficiency / torch-pruning efficiency, same arch and target: min "
        f"{ratio.min():.2f}, mean {ratio.mean():.2f}.",
        "- Target >= 0.8 x MAC ratio; Torch-Pruning's published ResNet-50 figure is about 0.57.",
    ]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
