"""Every figure sprkit writes (PNG files).

matplotlib is imported inside each function and only its object-oriented API is used
(matplotlib.figure.Figure, no pyplot): a figure touches no global state, so the caller's
backend and open figures are left as they were.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _figure(**options):
    from matplotlib.figure import Figure

    return Figure(**options)


def plot_kept_channels(layers: pd.DataFrame, path: Path) -> None:
    """Bar chart per conv/Linear layer: output channels before pruning and channels kept."""
    figure = _figure(figsize=(max(6.0, 0.25 * len(layers)), 4.0))
    axis = figure.subplots()
    positions = range(len(layers))
    axis.bar(positions, layers["dense"], color="#cccccc", label="before pruning")
    axis.bar(positions, layers["compressed"], color="#1f77b4", label="kept (compressed)")
    axis.set_xticks(list(positions), layers["layer"], rotation=90, fontsize=7)
    axis.set_ylabel("output channels")
    axis.set_title("Channels kept per layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")


def plot_bounds(table: pd.DataFrame, path: Path) -> None:
    """Bounds and the MIP optimum against lam (log x axis)."""
    figure = _figure(figsize=(7, 4.5))
    axis = figure.subplots()
    axis.plot(table["lam"], table["bigm"], "o-", label="big-M relaxation")
    axis.plot(table["lam"], table["perspective"], "s-", label="perspective relaxation")
    axis.plot(table["lam"], table["spr"], "x--", label="SPR route")
    axis.plot(table["lam"], table["mip"], "k^-", label="MIP optimum")
    axis.set_xscale("log")
    axis.set_xlabel("lam (paper's parametrization)")
    axis.set_ylabel("objective")
    axis.legend(loc="upper left")
    axis.set_title("Digits MLP: relaxation bounds and the exact MIP along the lambda path")
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")


def plot_pruning(table: pd.DataFrame, dense_accuracy: float, path: Path) -> None:
    """Test accuracy and kept neurons of the MIP- and SPR-pruned networks against lam."""
    figure = _figure(figsize=(7, 6))
    accuracy_axis, kept_axis = figure.subplots(2, 1, sharex=True)
    accuracy_axis.plot(table["lam"], table["mip_accuracy"], "k^-", label="MIP-pruned")
    accuracy_axis.plot(table["lam"], table["spr_accuracy"], "x--", label="SPR-pruned")
    accuracy_axis.axhline(dense_accuracy, color="gray", linestyle=":", label="dense")
    accuracy_axis.set_ylabel("test accuracy")
    accuracy_axis.legend(loc="lower left")
    kept_axis.plot(table["lam"], table["mip_kept"], "k^-", label="MIP")
    kept_axis.plot(table["lam"], table["spr_kept"], "x--", label="SPR (w_j != 0)")
    kept_axis.set_xscale("log")
    kept_axis.set_xlabel("lam (paper's parametrization)")
    kept_axis.set_ylabel("hidden neurons kept")
    kept_axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")


ACCURACY_TICKS = (0.01, 0.1, 0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def plot_sweep(table: pd.DataFrame, runs: pd.DataFrame, path: Path) -> None:
    """Top-1 against MACs (left) and against parameters (right), one colour per method: its
    points (`table`: means over the seeds), its single runs (`runs`: small faint dots, the
    seed-to-seed spread), its Pareto front (a staircase: the best top-1 at most that cost
    reaches) and the baseline (black star, dotted line). Log cost axes, logit accuracy axis."""
    figure = _figure(figsize=(12, 5))
    axes = figure.subplots(1, 2, sharey=True)
    methods = [m for m in dict.fromkeys(table["method"]) if m != "baseline"]
    colours = {method: f"C{index}" for index, method in enumerate(methods)}
    baseline = table[table["method"] == "baseline"]
    for axis, cost, label in zip(
        axes, ("macs", "parameters"), ("MACs (one input)", "parameters"), strict=True
    ):
        for method in methods:
            rows = table[table["method"] == method]
            single = runs[runs["method"] == method]
            axis.plot(single[cost], single["top1"], ".", color=colours[method], alpha=0.3)
            axis.plot(rows[cost], rows["top1"], "o", color=colours[method], label=method)
            front = rows[rows[f"pareto_{cost}"]].sort_values(cost)
            axis.step(front[cost], front["top1"], where="post", color=colours[method])
        if len(baseline):
            axis.plot(
                baseline[cost], baseline["top1"], "k*", markersize=12, label="baseline (dense)"
            )
            axis.axhline(baseline["top1"].iloc[0], color="k", linestyle=":", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel(f"{label} (log scale)")
        axis.grid(alpha=0.3)
    # logit: spreads the accurate end (0.9 to 0.99) without hiding collapsed runs near 0.1
    axes[0].set_yscale("logit", nonpositive="clip")
    low, high = axes[0].get_ylim()
    ticks = [tick for tick in ACCURACY_TICKS if low <= tick <= high]
    axes[0].set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    axes[0].set_yticks([], minor=True)
    axes[0].set_ylim(low, high)
    axes[0].set_ylabel("top-1 test accuracy (logit scale)")
    axes[0].legend(loc="upper left")
    figure.suptitle(
        "Accuracy against cost: each method's points (means over seeds; dots: single runs) "
        "and Pareto front"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")
