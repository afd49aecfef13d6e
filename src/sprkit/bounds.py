"""One call computing the three bounds of an instance: big-M, perspective, SPR route."""

from __future__ import annotations

import time

import numpy as np

from sprkit.instances.format import Instance
from sprkit.optim.mip import ExactSolver
from sprkit.optim.relaxations import bigm_relaxation, perspective_relaxation
from sprkit.optim.spr_route import SPRRoute


def compute_bounds(
    instance: Instance,
    *,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    tol: float = 1e-9,
    mip_time_limit: float | None = None,
) -> dict:
    """Bounds and wall-clock seconds (model build included) for each method.

    Keys: bigm, perspective, spr (the SPR-route objective), spr_lower_bound (its dual
    certificate), spr_kept (number of structures with w_j != 0), seconds (per method); with
    `mip_time_limit` also mip (the exact MIP objective) and mip_status, mip_bound, mip_gap.
    """
    seconds: dict[str, float] = {}
    values: dict[str, float] = {}
    for name, build in (("bigm", bigm_relaxation), ("perspective", perspective_relaxation)):
        start = time.perf_counter()
        values[name] = build(instance, M).solve(lam0, lam2).value
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    spr = SPRRoute(instance, M).solve(lam0, lam2, tol=tol)
    seconds["spr"] = time.perf_counter() - start
    mip = {}
    if mip_time_limit is not None:
        start = time.perf_counter()
        exact = ExactSolver(instance, M).solve(lam0, lam2, time_limit=mip_time_limit)
        seconds["mip"] = time.perf_counter() - start
        mip = {
            "mip": exact.objective,
            "mip_status": exact.status,
            "mip_bound": exact.bound,
            "mip_gap": exact.gap,
        }
    return {
        **mip,
        "bigm": values["bigm"],
        "perspective": values["perspective"],
        "spr": spr.value,
        "spr_lower_bound": spr.lower_bound,
        "spr_kept": int(spr.kept.sum()),
        "spr_converged": spr.converged,
        "seconds": seconds,
    }
