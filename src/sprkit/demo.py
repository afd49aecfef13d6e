"""`sprkit demo`: the MIP study on the digits-MLP instance along a lambda path.

For each lam: big-M and perspective bounds, the SPR-route value, the exact MIP optimum, the
share of the root gap the perspective relaxation closes, the hidden neurons kept by the MIP
and by the SPR solution, and the test accuracy of the network pruned each way.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sprkit.formula import resolve_lambdas  # noqa: E402
from sprkit.instances import digits_mlp_instance  # noqa: E402
from sprkit.instances.digits_mlp import pruned_network_accuracy  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402
from sprkit.optim.quadratic import least_squares_bound  # noqa: E402
from sprkit.optim.relaxations import bigm_relaxation, perspective_relaxation  # noqa: E402
from sprkit.optim.spr_route import SPRRoute  # noqa: E402

TABLE_COLUMNS = [
    "lam",
    "bigm",
    "perspective",
    "mip",
    "mip_status",
    "gap_closed",
    "mip_kept",
    "spr_kept",
    "kept_jaccard",
    "mip_accuracy",
    "spr_accuracy",
]


def _jaccard(first: set[int], second: set[int]) -> float:
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def lambda_path_study(
    *,
    hidden: int = 32,
    points: int = 8,
    alpha: float = 0.5,
    M_scale: float = 2.0,
    seed: int = 0,
    mip_time_limit: float = 15.0,
) -> tuple[pd.DataFrame, float]:
    """Rows for lam = lam_max * geomspace(1, 1e-2, points); also returns the dense accuracy.

    lam_max is the paper's lam above which SPR prunes every hidden neuron. Relaxation models
    are compiled once and re-solved with new Parameter values along the path.
    """
    resolve_lambdas(lam=1.0, alpha=alpha)  # validates alpha before the training starts
    instance = digits_mlp_instance(hidden, seed=seed)
    M = least_squares_bound(instance, M_scale)
    exact = ExactSolver(instance, M)
    route = SPRRoute(instance, M)
    models = {
        "bigm": bigm_relaxation(instance, M),
        "perspective": perspective_relaxation(instance, M),
    }
    dense_W = np.vstack([instance.extras["output_weight"].T, instance.extras["output_bias"]])
    dense_accuracy = pruned_network_accuracy(instance, dense_W)
    rows = []
    lam_max = route.lam_max(alpha)
    for lam in tqdm(lam_max * np.geomspace(1.0, 1e-2, points), desc="lambda path", unit="lam"):
        lam0, lam2 = resolve_lambdas(lam=lam, alpha=alpha)
        row = {"lam": lam, "lam0": lam0, "lam2": lam2, "M": M}
        for name, model in models.items():
            result = model.solve(lam0, lam2)
            row[name], row[f"{name}_seconds"] = result.value, result.seconds
        spr = route.solve(lam0, lam2)
        mip = exact.solve(lam0, lam2, time_limit=mip_time_limit)
        spr_kept = set(instance.structure_ids[spr.kept].tolist())
        root_gap = mip.objective - row["bigm"]
        row.update(
            spr=spr.value,
            spr_lower_bound=spr.lower_bound,
            spr_seconds=spr.seconds,
            mip=mip.objective,
            mip_bound=mip.bound,
            mip_status=mip.status,
            mip_seconds=mip.seconds,
            gap_closed=(row["perspective"] - row["bigm"]) / root_gap if root_gap > 0 else 1.0,
            mip_kept=len(mip.kept),
            spr_kept=len(spr_kept),
            kept_jaccard=_jaccard(set(mip.kept), spr_kept),
            mip_accuracy=pruned_network_accuracy(instance, mip.W),
            spr_accuracy=pruned_network_accuracy(instance, spr.W),
            structures=instance.n_structures,
        )
        rows.append(row)
    return pd.DataFrame(rows), dense_accuracy


def plot_bounds(table: pd.DataFrame, path: Path) -> None:
    """Bounds and the MIP optimum against lam (log x axis)."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
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
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_pruning(table: pd.DataFrame, dense_accuracy: float, path: Path) -> None:
    """Test accuracy and kept neurons of the MIP- and SPR-pruned networks against lam."""
    figure, (accuracy_axis, kept_axis) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
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
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_demo(out: Path, *, points: int = 8, hidden: int = 32, alpha: float = 0.5) -> pd.DataFrame:
    """Run the study, print the table, write demo_bounds.csv and two PNG plots under `out`."""
    table, dense_accuracy = lambda_path_study(hidden=hidden, points=points, alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "demo_bounds.csv", index=False)
    plot_bounds(table, out / "demo_bounds.png")
    plot_pruning(table, dense_accuracy, out / "demo_pruning.png")
    print(table[TABLE_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"dense network test accuracy {dense_accuracy:.4f}; {hidden} hidden neurons")
    print(f"wrote {out / 'demo_bounds.csv'}, {out / 'demo_bounds.png'}, {out / 'demo_pruning.png'}")
    return table
