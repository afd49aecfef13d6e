"""Benchmark: time to certified optimality of the MIP, sprkit (HiGHS, y-space outer
approximation) against SCIP on the same MIQP, for growing numbers of structures.

Instances: synthetic, n = 1000 samples, c = 10 outputs, planted support of size G/10, one row
per structure plus a free bias row; alpha = 0.5, lam = fraction x lam_max (two regimes), M =
2 x max |least-squares weight|. SCIP gets the compact form of the same MIQP (loss through the
thin-QR factor: d x c residuals instead of n x c) and the same relative gap, 1e-6.

    .venv/bin/python benchmarks/mip_scaling.py [--sizes 10 20 50 100 200] [--scip-limit 120]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import pandas as pd
import pyscipopt

from sprkit.formula import resolve_lambdas
from sprkit.instances import synthetic_instance
from sprkit.optim import SPRRoute
from sprkit.optim.mip import ExactSolver
from sprkit.optim.quadratic import least_squares_bound
from sprkit.optim.scip_reference import scip_solve

ALPHA = 0.5


def run(sizes: list[int], fractions: list[float], scip_limit: float, limit: float):
    rows = []
    for fraction in fractions:
        for structures in sizes:
            instance = synthetic_instance(
                structures, n=1000, c=10, support=max(2, structures // 10), noise=1.0, seed=0
            )
            M = least_squares_bound(instance)
            lam = fraction * SPRRoute(instance, M).lam_max(ALPHA)
            lam0, lam2 = resolve_lambdas(lam=lam, alpha=ALPHA)
            start = time.perf_counter()
            ours = ExactSolver(instance, M).solve(lam0, lam2, tol=1e-6, time_limit=limit)
            ours_seconds = time.perf_counter() - start
            row = {
                "lam_fraction": fraction,
                "structures": structures,
                "sprkit_status": ours.status,
                "sprkit_s": ours_seconds,
                "sprkit_objective": ours.objective,
                "sprkit_gap": ours.gap,
                "kept": len(ours.kept),
                "nodes": ours.nodes,
            }
            scip = scip_solve(instance, lam0, lam2, M, scip_limit)
            row["same_kept"] = scip.pop("scip_kept", None) == ours.kept
            row.update(scip)
            row["scip_over_sprkit_time"] = row["scip_s"] / ours_seconds
            row["objective_rel_diff"] = (ours.objective - row["scip_objective"]) / abs(
                ours.objective
            )
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 100, 200])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--scip-limit", type=float, default=120.0, help="SCIP seconds")
    parser.add_argument("--limit", type=float, default=600.0, help="sprkit seconds")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/mip_scaling.md"))
    args = parser.parse_args()
    table = run(args.sizes, args.fractions, args.scip_limit, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = (
        "python benchmarks/mip_scaling.py --sizes "
        + " ".join(map(str, args.sizes))
        + " --fractions "
        + " ".join(map(str, args.fractions))
        + f" --scip-limit {args.scip_limit:g} --limit {args.limit:g}"
    )
    args.out.write_text(
        "# Exact MIP: sprkit (HiGHS, y-space outer approximation) against SCIP\n\n"
        f"Command: `{command}`  \nMachine: {machine}, CPU only, SCIP {pyscipopt.__version__} "
        "(pyscipopt) single thread, HiGHS single thread.  \n"
        "Instances: synthetic, n = 1000, c = 10, planted support G/10, noise 1.0, alpha = 0.5, "
        "lam = lam_fraction x lam_max, M = 2 x max |least-squares weight|. Seconds are wall "
        "clock, model build included. Both sides use relative gap 1e-6; objectives are "
        "recomputed from each solver's W.\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
