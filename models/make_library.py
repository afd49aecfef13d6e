"""Rebuild the instance library: instances, certified optima (sprkit), SCIP cross-check.

    .venv/bin/python models/make_library.py

Writes models/<name>.npz and models/<name>__<k>.sol for the settings below. SCIP (pyscipopt,
the `scip` extra) re-solves each MIQP; a disagreement beyond 1e-6 relative or a different kept
set stops the script before anything is written for that instance.
"""

from __future__ import annotations

from pathlib import Path

from sprkit import __version__
from sprkit.instances import digits_mlp_instance, save_instance, synthetic_instance
from sprkit.instances.solutions import SolutionRecord, write_solution
from sprkit.optim.mip import ExactSolver
from sprkit.optim.scip_reference import scip_solve

HERE = Path(__file__).resolve().parent
LIBRARY = {
    "synth_g8_r1": (
        lambda: synthetic_instance(8, n=40, c=2, support=3, noise=0.5, seed=1),
        [(0.3, 0.05, 2.0), (0.05, 0.2, 2.0)],
    ),
    "synth_g8_r3": (
        lambda: synthetic_instance(8, rows_per_group=3, n=40, c=2, support=2, noise=0.5, seed=2),
        [(0.2, 0.05, 1.0), (0.5, 0.0, 3.0)],
    ),
    "synth_g10_r2_nobias": (
        lambda: synthetic_instance(
            10, rows_per_group=2, n=30, c=2, support=3, noise=0.3, bias=False, seed=3
        ),
        [(0.1, 0.1, 2.0)],
    ),
    "digits_h8": (lambda: digits_mlp_instance(8, seed=0), [(5.0, 1.0, 20.0), (1.0, 0.5, 20.0)]),
}


def main() -> None:
    for name, (make, settings) in LIBRARY.items():
        instance = make()
        records = []
        for lam0, lam2, M in settings:
            result = ExactSolver(instance, M).solve(lam0, lam2, tol=1e-9)
            scip = scip_solve(instance, lam0, lam2, M, limit=600.0, gap=1e-9)
            scip_objective, scip_kept = scip["scip_objective"], scip["scip_kept"]
            agree = abs(result.objective - scip_objective) <= 1e-6 * abs(result.objective)
            if result.status != "optimal" or not agree or scip_kept != result.kept:
                raise SystemExit(
                    f"{name} {lam0} {lam2} {M}: sprkit {result.objective} "
                    f"{result.kept} vs SCIP {scip_objective} {scip_kept}"
                )
            records.append(
                SolutionRecord(
                    f"{name}.npz",
                    lam0,
                    lam2,
                    M,
                    result.objective,
                    result.bound,
                    result.kept,
                    f"scip {scip_objective!r}",
                )
            )
        save_instance(HERE / f"{name}.npz", instance)
        for k, record in enumerate(records):
            write_solution(
                HERE / f"{name}__{k}.sol",
                record,
                header=f"sprkit {__version__} certified optimum (gap <= 1e-9)",
            )
        print(f"{name}: {len(records)} solution(s)")


if __name__ == "__main__":
    main()
