"""Rebuild the instance library: instances, certified optima (sprkit), independent check.

    .venv/bin/python models/make_library.py [--only NAME ...]

Writes models/<name>.npz and models/<name>__<k>.sol for the settings below. Each optimum is
certified by sprkit's branch and bound at relative gap 1e-9, then re-solved by SCIP on sprkit's
Pyomo model (`pyomo:scip`, pyscipopt: the `scip` extra), an independent branch and bound on the
MIQP; a disagreement beyond 1e-6 relative or a different kept set stops the script before
anything is written for that instance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sprkit import __version__
from sprkit.instances import hard_case, save_instance, synthetic_instance
from sprkit.instances.digits_mlp import digits_mlp_instance
from sprkit.instances.solutions import SolutionRecord, write_solution
from sprkit.optim.mip import ExactSolver


def _hard(**spec):
    """(instance, [(lam0, lam2, M)]) of the hard regime (AR(1), weak ridge)."""
    case = hard_case(**spec)
    return lambda: case.instance, [(case.lam0, case.lam2, case.M)]


# Settings of the rescaled instances' twins in natural units (besides correlation and snr).
LIBRARY_TWINS = {
    "hard_g12_ar08_scaled": dict(
        structures=12, lam2=0.001, keep_fraction=0.4, c=2, rows_per_group=2, seed=14
    ),
}


def _scip_check(name: str, instance, lam0: float, lam2: float, M: float):
    """SCIP's (objective, kept) for the MIP. A rescaled instance is checked through its twin in
    natural units (the same MIP; objectives differ by y_scale^2): SCIP does not certify the
    rescaled form at gap 1e-9 within minutes, which is the point of having it here."""
    meta = instance.meta
    if "x_scale" not in meta:
        result = ExactSolver(instance, M).solve(
            lam0, lam2, tol=1e-9, time_limit=600.0, method="pyomo:scip"
        )
        return result.objective, result.kept
    spec = {k: meta[k] for k in ("correlation", "snr")}
    spec.update(LIBRARY_TWINS[name])
    twin = hard_case(**spec)
    result = ExactSolver(twin.instance, twin.M).solve(
        twin.lam0, twin.lam2, tol=1e-9, time_limit=600.0, method="pyomo:scip"
    )
    return result.objective * meta["y_scale"] ** 2, result.kept


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
    # The hard regime: correlated AR(1) designs, low signal-to-noise, weak ridge.
    "hard_g14_ar08_c2_r2": _hard(
        structures=14,
        correlation=0.8,
        snr=1.0,
        lam2=0.001,
        keep_fraction=0.5,
        c=2,
        rows_per_group=2,
        seed=11,
    ),
    "hard_g16_ar05_c1": _hard(
        structures=16, correlation=0.5, snr=2.0, lam2=0.0005, keep_fraction=0.3, c=1, seed=12
    ),
    "hard_g15_ar0_c3": _hard(
        structures=15, correlation=0.0, snr=1.0, lam2=0.002, keep_fraction=0.7, c=3, seed=13
    ),
    "hard_g12_ar08_scaled": _hard(
        structures=12,
        correlation=0.8,
        snr=5.0,
        lam2=0.001,
        keep_fraction=0.4,
        c=2,
        rows_per_group=2,
        x_scale=1e3,
        y_scale=1e-2,
        seed=14,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="names to rebuild")
    args = parser.parse_args()
    for name, (make, settings) in LIBRARY.items():
        if args.only and name not in args.only:
            continue
        instance = make()
        records = []
        for lam0, lam2, M in settings:
            result = ExactSolver(instance, M).solve(lam0, lam2, tol=1e-9, method="bnb")
            scip_objective, scip_kept = _scip_check(name, instance, lam0, lam2, M)
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
                header=f"sprkit {__version__} certified optimum (branch and bound, gap <= 1e-9)",
            )
        print(f"{name}: {len(records)} solution(s)", flush=True)


if __name__ == "__main__":
    main()
