"""Benchmark: cost of the SPR term in a ResNet-56 training step (CIFAR-sized batch).

One run times, on the same model and batch, a full SGD step (forward, cross-entropy, backward,
update) without the penalty, with sprkit's SPRPenalty (closed form evaluated once for all
structures; with the paper's per-layer structures and with the dependency-graph structures,
the default), and with a straightforward per-layer loop of the same penalty (one closed-form call
per layer over the rows its per-layer structures own), and writes
docs/benchmarks/regularizer_overhead.md.

    .venv/bin/python benchmarks/regularizer_overhead.py [--batch 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from sprkit import spr_penalty_ragged
from sprkit.networks import SPRPenalty, derive_structures
from sprkit.networks.architectures import build_model
from sprkit.networks.graph import example_batch


class PerLayerLoop:
    """The same penalty as `penalty` (per-layer structures), one closed-form call per layer
    (unit) over the rows of the Structures slices its structures own: the straightforward
    version."""

    def __init__(self, model: nn.Module, penalty: SPRPenalty, lam: float, alpha: float) -> None:
        structures = penalty.structures
        self.model, self.penalty, self.lam, self.alpha = model, penalty, lam, alpha
        self.names = [piece.parameter for piece in structures.slices]
        self.layers = []  # per unit: its ids, and (slice, rows, local owner) of its slices
        for unit in structures.units:
            local = torch.full((structures.n,), -1, dtype=torch.long)
            local[unit] = torch.arange(len(unit))
            pieces = []
            for index, piece in enumerate(structures.slices):
                owner = local[piece.owner]
                mine = owner >= 0
                if bool(mine.any()):
                    pieces.append((index, piece.rows[mine], owner[mine]))
            self.layers.append((unit, pieces))

    def __call__(self) -> torch.Tensor:
        named = dict(self.model.named_parameters())
        parameters = [named[name] for name in self.names]
        sizes = self.penalty.structures.sizes
        total = 0.0
        for unit, pieces in self.layers:
            values, index = [], []
            for slice_index, rows, owner in pieces:
                parameter = parameters[slice_index]
                block = parameter.index_select(0, rows.to(parameter.device))
                block = block.reshape(len(rows), -1)
                values.append(block.flatten())
                index.append(owner.to(parameter.device).repeat_interleave(block.shape[1]))
            z = spr_penalty_ragged(
                torch.cat(values),
                torch.cat(index),
                len(unit),
                M=self.penalty.M[unit.to(self.penalty.M.device)],
                lam=self.lam,
                alpha=self.alpha,
            )
            total = total + (sizes[unit].to(z) * z).sum()
        return total / sizes.sum()


def time_steps(model, batch, labels, penalty, steps: int, device: str) -> float:
    """Median seconds of one SGD step (after two warm-up steps)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    times = []
    for step in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(batch), labels)
        if penalty is not None:
            loss = loss + penalty()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return float(pd.Series(times).median())


def time_penalty(model, penalty, repeats: int, device: str) -> float:
    """Median seconds of the penalty's own forward and backward (what it adds to a step)."""
    if penalty is None:
        return 0.0
    times = []
    for repeat in range(repeats + 2):
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        penalty().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if repeat >= 2:
            times.append(time.perf_counter() - start)
    return float(pd.Series(times).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/regularizer_overhead.md"))
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = build_model("resnet56", num_classes=10).to(device)
    batch = torch.randn(args.batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    lam, alpha = 1e-1, 0.5
    example = example_batch(model, (3, 32, 32))
    layer = derive_structures(model, example, grouping="layer")
    graph = derive_structures(model, example, grouping="graph")
    regularizer = SPRPenalty(model, layer, lam=lam, alpha=alpha, M_scale=1.0)
    coupled = SPRPenalty(model, graph, lam=lam, alpha=alpha, M_scale=1.0)
    loop = PerLayerLoop(model, regularizer, lam, alpha)
    with torch.no_grad():
        gap = (regularizer() - loop()).abs().item()
    variants = {
        "no penalty": None,
        "SPR, vectorized (sprkit), per-layer structures": regularizer,
        "SPR, vectorized (sprkit), dependency-graph structures": coupled,
        "SPR, per-layer loop": loop,
    }
    rows = []
    for _round in range(args.rounds):  # interleave rounds so drift hits every variant alike
        for name, penalty in variants.items():
            rows.append(
                {
                    "variant": name,
                    "step_s": time_steps(model, batch, labels, penalty, args.steps, device),
                    "penalty_alone_s": time_penalty(model, penalty, 30, device),
                }
            )
    table = pd.DataFrame(rows).groupby("variant", sort=False).min().reset_index()
    base = table.loc[table["variant"] == "no penalty", "step_s"].item()
    table["step_vs_no_penalty"] = table["step_s"] / base - 1.0
    table["penalty_share_of_step"] = table["penalty_alone_s"] / base
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {device}"
    command = (
        f"python benchmarks/regularizer_overhead.py --batch {args.batch} --steps {args.steps} "
        f"--rounds {args.rounds}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# SPR regularizer overhead in a ResNet-56 training step\n\n"
        f"Command: `{command}`  \nMachine: {machine}  \n"
        f"Step: SGD momentum 0.9, weight decay 5e-4, batch {args.batch} of 3x32x32, "
        f"{len(layer.units)} pruned layers, "
        f"{layer.n} channels ({graph.n} dependency-graph structures). "
        f"Median of {args.steps} steps after 2 warm-up "
        f"steps, best of {args.rounds} interleaved rounds; penalty_alone_s: median of 30 forward + "
        "backward passes of the penalty alone; its share of the no-penalty step is the "
        "overhead without the step's run-to-run noise. |vectorized - loop| penalty value: "
        f"{gap:.2e}.\n\n" + table.to_markdown(index=False, floatfmt=".4g") + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
