"""`sprkit demo`: the MIP study on the digits-MLP instance along a lambda path.

For each lam: big-M and perspective bounds, the SPR-route value, the exact MIP optimum, the
share of the root gap the perspective relaxation closes, the hidden neurons kept by the MIP
and by the SPR solution, and the test accuracy of the network pruned each way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from sprkit.app.plots import plot_bounds, plot_pruning
from sprkit.atomic import write_atomically
from sprkit.instances import digits_mlp_instance
from sprkit.instances.digits_mlp import pruned_network_accuracy
from sprkit.optim.mip import ExactSolver
from sprkit.optim.quadratic import least_squares_bound
from sprkit.optim.relaxations import bigm_relaxation, perspective_relaxation
from sprkit.optim.spr_route import SPRRoute
from sprkit.params import SPRParams, check_alpha

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
    check_alpha(alpha)  # validates alpha before the training starts
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
        params = SPRParams.paper(lam, alpha)
        lam0, lam2 = params.lam0, params.lam2
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


def run_demo(out: Path, *, points: int = 8, hidden: int = 32, alpha: float = 0.5) -> pd.DataFrame:
    """Run the study, print the table, write demo_bounds.csv and two PNG plots under `out`."""
    table, dense_accuracy = lambda_path_study(hidden=hidden, points=points, alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "demo_bounds.csv", lambda path: table.to_csv(path, index=False))
    write_atomically(out / "demo_bounds.png", lambda path: plot_bounds(table, path))
    write_atomically(
        out / "demo_pruning.png", lambda path: plot_pruning(table, dense_accuracy, path)
    )
    print(table[TABLE_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print(f"dense network test accuracy {dense_accuracy:.4f}; {hidden} hidden neurons")
    print(f"wrote {out / 'demo_bounds.csv'}, {out / 'demo_bounds.png'}, {out / 'demo_pruning.png'}")
    return table
