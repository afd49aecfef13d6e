"""The same MIQP handed to SCIP (pyscipopt, optional extra `scip`), for cross-checks and
benchmarks: an independent branch-and-bound on the compact form of the loss (thin-QR factor,
d x c residual variables), big-M constraints on binaries, one convex quadratic constraint.
"""

from __future__ import annotations

import time

import numpy as np

from sprkit.instances.format import Instance
from sprkit.optim.quadratic import compressed_least_squares


def scip_solve(
    instance: Instance, lam0: float, lam2: float, M: float, limit: float, gap: float = 1e-6
) -> dict:
    """SCIP on the compact MIQP; objective recomputed from SCIP's W and kept set."""
    import pyscipopt

    A, B, const = compressed_least_squares(instance)
    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("limits/gap", gap)
    model.setParam("limits/time", limit)
    model.setParam("parallel/maxnthreads", 1)
    d, c = instance.d, instance.c
    W = [[model.addVar(lb=None, ub=None) for _ in range(c)] for _ in range(d)]
    y = {int(j): model.addVar(vtype="B") for j in instance.structure_ids}
    for r in range(d):
        group = int(instance.groups[r])
        if group >= 0:
            for k in range(c):
                model.addCons(W[r][k] <= M * y[group])
                model.addCons(-W[r][k] <= M * y[group])
    residuals = []
    for i in range(A.shape[0]):
        for k in range(c):
            residual = model.addVar(lb=None, ub=None)
            model.addCons(
                residual
                == pyscipopt.quicksum(A[i, r] * W[r][k] for r in range(d) if A[i, r] != 0) - B[i, k]
            )
            residuals.append(residual)
    epigraph = model.addVar(lb=0.0)
    ridge = pyscipopt.quicksum(
        W[r][k] * W[r][k] for r in range(d) if instance.groups[r] >= 0 for k in range(c)
    )
    model.addCons(pyscipopt.quicksum(v * v for v in residuals) + lam2 * ridge <= epigraph)
    model.setObjective(epigraph + const + lam0 * pyscipopt.quicksum(y.values()))
    start = time.perf_counter()
    model.optimize()
    seconds = time.perf_counter() - start
    if model.getNSols() == 0:
        return {"scip_status": model.getStatus(), "scip_s": seconds, "scip_objective": np.nan}
    kept = [j for j, var in y.items() if model.getVal(var) > 0.5]
    weights = np.array([[model.getVal(v) for v in row] for row in W])
    penalized = weights[instance.groups >= 0]
    objective = instance.loss(weights) + lam2 * float(np.sum(penalized**2)) + lam0 * len(kept)
    return {
        "scip_status": model.getStatus(),
        "scip_s": seconds,
        "scip_objective": objective,
        "scip_kept": sorted(kept),
        "scip_gap": model.getGap(),
    }
