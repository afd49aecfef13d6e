"""The report files of a pruning run (report.json, report.csv, layers.csv, kept_channels.png)
and of a sweep (runs.csv, sweep.csv, sweep.md, sweep.png).

The figures in them are measured by sprkit.networks.measure (conventions there); `sprkit prune`
measures BatchNorm-folded copies of every network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sprkit.app.plots import plot_kept_channels, plot_sweep
from sprkit.atomic import write_atomically

REPORT_FILES = ("report.json", "report.csv", "layers.csv", "kept_channels.png")
SWEEP_FILES = ("runs.csv", "sweep.csv", "sweep.md", "sweep.png")


def write_report(folder: Path, summary: dict, networks: pd.DataFrame, layers: pd.DataFrame) -> None:
    """report.json (summary + both tables), report.csv (one row per network), layers.csv and
    kept_channels.png; each file replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        **summary,
        "networks": networks.to_dict(orient="records"),
        "layers": layers.to_dict(orient="records"),
    }
    writers = (
        lambda path: path.write_text(json.dumps(document, indent=1)),
        lambda path: networks.to_csv(path, index=False),
        lambda path: layers.to_csv(path, index=False),
        lambda path: plot_kept_channels(layers, path),
    )
    for name, write in zip(REPORT_FILES, writers, strict=True):
        write_atomically(folder / name, write)


def _budget_markdown(budgets: pd.DataFrame) -> str:
    """One row per MAC budget, one column per method: best top-1 (lam) within the budget."""
    cells = budgets.assign(
        cell=[
            "-" if pd.isna(top1) else f"{top1:.4f} ({lam:g})"
            for top1, lam in zip(budgets["top1"], budgets["lam"], strict=True)
        ],
        budget=[
            f"{share:.0%} ({macs:,.0f})"
            for share, macs in zip(budgets["share"], budgets["macs"], strict=True)
        ],
    )
    shown = cells.pivot(index="budget", columns="method", values="cell")
    shown = shown.loc[list(dict.fromkeys(cells["budget"])), list(dict.fromkeys(cells["method"]))]
    shown.index.name = "MACs at most (share of baseline)"
    return shown.reset_index().to_markdown(
        index=False, colalign=["left"] + ["right"] * len(shown.columns)
    )


def _sweep_markdown(table: pd.DataFrame, budgets: pd.DataFrame, context: list[str]) -> str:
    """sweep.md: the context lines, one table row per (method, lam), then the fronts read
    at MAC budgets."""
    shown = pd.DataFrame(
        {
            "method": table["method"],
            "lam": table["lam"].map(lambda lam: f"{lam:g}"),
            "seeds": table["seeds"],
            "top1": table["top1"].map(lambda v: f"{v:.4f}"),
            "top1 std": table["top1_std"].map(lambda v: f"{v:.4f}"),
            "val top1": table["val_top1"].map(lambda v: f"{v:.4f}"),
            "MACs": table["macs"].map(lambda v: f"{v:,.0f}"),
            "MACs removed": table["macs_removed"].map(lambda v: f"{v:.1%}"),
            "parameters": table["parameters"].map(lambda v: f"{v:,.0f}"),
            "latency ms": table["latency_ms"].map(lambda v: f"{v:.3f}"),
            "front (MACs)": table["pareto_macs"].map({True: "yes", False: ""}),
            "front (params)": table["pareto_parameters"].map({True: "yes", False: ""}),
        }
    )
    return "\n".join(
        [
            "# Trade-off sweep",
            "",
            "  \n".join(context),
            "",
            shown.to_markdown(index=False, colalign=["left"] + ["right"] * 11),
            "",
            "Figures of the compressed networks, means over the seeds; top1: test accuracy, "
            "val top1: validation accuracy at the end of training (for choosing lam). front: "
            "on the method's Pareto front of test top-1 (no other point of the method has at "
            "most its MACs, or parameters, and at least its top-1, one of them strictly).",
            "",
            "Each method's front read at MAC budgets: the best mean test top-1 (its lam) among "
            "the method's points within the budget.",
            "",
            _budget_markdown(budgets),
            "",
        ]
    )


def write_sweep_report(
    folder: Path,
    runs: pd.DataFrame,
    table: pd.DataFrame,
    budgets: pd.DataFrame,
    context: list[str],
    *,
    plot: bool,
) -> None:
    """runs.csv (one row per run), sweep.csv and sweep.md (`table`: one row per method and
    lam, `budgets`: the fronts at MAC budgets; sprkit.app.sweep.summarize, front_at_budgets)
    and, with `plot`, sweep.png; each file replaced atomically."""
    writers = {
        "runs.csv": lambda path: runs.to_csv(path, index=False),
        "sweep.csv": lambda path: table.to_csv(path, index=False),
        "sweep.md": lambda path: path.write_text(_sweep_markdown(table, budgets, context)),
    }
    if plot:
        writers["sweep.png"] = lambda path: plot_sweep(table, runs, path)
    for name, write in writers.items():
        write_atomically(folder / name, write)
