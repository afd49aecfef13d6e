"""Benchmark: time to certified optimality of the MIP on the planted family, sprkit's branch
and bound (`bnb`) and outer approximation (`oa`) against SCIP, for growing numbers of structures.

Instances: synthetic, n = 1000 samples, c = 10 outputs, planted support of size G/10, one row
per structure plus a free bias row; alpha = 0.5, lam = fraction x lam_max (two regimes), M =
2 x max |least-squares weight|. SCIP gets sprkit's Pyomo model (`pyomo:scip`: the compact loss
through the thin-QR factor, d x c residuals) and the same relative gap, 1e-6; its time is
measured inside the solver. Every solver single threaded.

    .venv/bin/python benchmarks/mip_scaling.py [--sizes 10 20 50 100 200] [--scip-limit 120]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per solver (before numpy)

import argparse  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pyscipopt  # noqa: E402

from sprkit.instances import synthetic_instance  # noqa: E402
from sprkit.optim import SPRRoute  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402
from sprkit.optim.quadratic import least_squares_bound  # noqa: E402
from sprkit.params import SPRParams  # noqa: E402

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
            params = SPRParams.paper(lam, ALPHA)
            lam0, lam2 = params.lam0, params.lam2
            solver = ExactSolver(instance, M)
            row = {"lam_fraction": fraction, "structures": structures}
            results = {}
            for name, method, seconds in (
                ("bnb", "bnb", limit),
                ("oa", "oa", limit),
                ("scip", "pyomo:scip", scip_limit),
            ):
                options = {"parallel/maxnthreads": 1} if name == "scip" else None
                result = solver.solve(
                    lam0,
                    lam2,
                    tol=1e-6,
                    time_limit=seconds,
                    method=method,
                    solver_options=options,
                )
                results[name] = result
                row[f"{name}_status"] = result.status
                row[f"{name}_s"] = (
                    result.solver_seconds if result.solver_seconds is not None else result.seconds
                )
                row[f"{name}_gap"] = result.gap
                row[f"{name}_nodes"] = result.nodes
            row["kept"] = len(results["bnb"].kept)
            row["same_kept"] = results["bnb"].kept == results["oa"].kept == results["scip"].kept
            row["objective_rel_diff_scip"] = (
                results["bnb"].objective - results["scip"].objective
            ) / abs(results["bnb"].objective)
            row["scip_over_bnb_time"] = row["scip_s"] / row["bnb_s"]
            row["oa_over_bnb_time"] = row["oa_s"] / row["bnb_s"]
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
        "# Exact MIP on the planted family: sprkit bnb and oa against SCIP\n\n"
        f"Command: `{command}`  \nMachine: {machine}, CPU only, pyscipopt {pyscipopt.__version__} "
        "(SCIP, through sprkit's Pyomo model), every solver single threaded.  \n"
        "Instances: synthetic, n = 1000, c = 10, planted support G/10, noise 1.0, alpha = 0.5, "
        "lam = lam_fraction x lam_max, M = 2 x max |least-squares weight|. Seconds: wall clock "
        "of the whole solve for sprkit, inside the solver for SCIP. Relative gap 1e-6; "
        "objectives are recomputed from each solver's kept set.\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
