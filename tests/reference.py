"""Independent reference computations for the tests (straightforward, not the package's code)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
from scipy.optimize import minimize_scalar


def z_by_minimizing_over_y(w: np.ndarray, lam0: float, lam2: float, M: float) -> float:
    """min over y in [||w||_inf / M, 1] of lam2 ||w||^2 / y + lam0 y by a bounded 1-D search."""
    sq = float(np.sum(w * w))
    if sq == 0.0:
        return 0.0
    low = float(np.max(np.abs(w))) / M
    assert low <= 1.0

    def objective(y: float) -> float:
        return lam2 * sq / y + lam0 * y

    if low == 1.0:
        return objective(1.0)
    found = minimize_scalar(
        objective, bounds=(low, 1.0), method="bounded", options={"xatol": 1e-13, "maxiter": 2000}
    )
    return min(found.fun, objective(low), objective(1.0))


def perspective_by_loop(X, Y, groups, lam0, lam2, M, relaxation="perspective") -> float:
    """The relaxation written plainly: raw (1/n)||Y - XW||^2, one quad_over_lin per group."""
    n, d = X.shape
    W = cp.Variable((d, Y.shape[1]))
    ids = np.unique(groups[groups >= 0])
    y = cp.Variable(len(ids))
    objective = cp.sum_squares(Y - X @ W) / n + lam0 * cp.sum(y)
    constraints = [y >= 0, y <= 1]
    for position, gid in enumerate(ids):
        rows = np.flatnonzero(groups == gid)
        block = W[rows, :]
        constraints.append(cp.abs(block) <= M * y[position])
        if relaxation == "perspective":
            objective += lam2 * cp.quad_over_lin(block, y[position])
        else:
            objective += lam2 * cp.sum_squares(block)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(solver="CLARABEL")
    return float(problem.value)


def integral_objective(X, Y, groups, kept_ids, lam0, lam2, M) -> float:
    """Objective of a feasible MIP point: keep `kept_ids`, refit their rows within the box."""
    n, d = X.shape
    W = cp.Variable((d, Y.shape[1]))
    pruned = np.flatnonzero((groups >= 0) & ~np.isin(groups, kept_ids))
    kept = np.flatnonzero(np.isin(groups, kept_ids))
    constraints = [W[pruned, :] == 0] if pruned.size else []
    if kept.size:
        constraints.append(cp.abs(W[kept, :]) <= M)
    ridge = cp.sum_squares(W[kept, :]) if kept.size else 0
    problem = cp.Problem(cp.Minimize(cp.sum_squares(Y - X @ W) / n + lam2 * ridge), constraints)
    problem.solve(solver="CLARABEL")
    return float(problem.value) + lam0 * len(kept_ids)


def scip_miqp(instance, lam0: float, lam2: float, M: float) -> tuple[float, list[int]]:
    """The MIQP solved directly by SCIP (an independent solver): residuals r = X W - Y as
    variables, (1/n) sum r^2 in the objective through an epigraph, big-M on binaries.
    Returns SCIP's kept set and the objective of its W recomputed from the data (SCIP's own
    value may sit below by its feasibility tolerance on the quadratic constraint)."""
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("limits/gap", 1e-10)
    model.setParam("limits/absgap", 0.0)
    n, d = instance.X.shape
    c = instance.c
    W = [[model.addVar(lb=None, ub=None) for _ in range(c)] for _ in range(d)]
    y = {int(j): model.addVar(vtype="B") for j in instance.structure_ids}
    for r in range(d):
        group = int(instance.groups[r])
        if group >= 0:
            for k in range(c):
                model.addCons(W[r][k] <= M * y[group])
                model.addCons(-W[r][k] <= M * y[group])
    residuals = []
    for i in range(n):
        for k in range(c):
            residual = model.addVar(lb=None, ub=None)
            model.addCons(
                residual
                == instance.Y[i, k]
                - pyscipopt.quicksum(instance.X[i, r] * W[r][k] for r in range(d))
            )
            residuals.append(residual)
    epigraph = model.addVar(lb=0.0)
    ridge = pyscipopt.quicksum(
        W[r][k] * W[r][k] for r in range(d) if instance.groups[r] >= 0 for k in range(c)
    )
    model.addCons(pyscipopt.quicksum(v * v for v in residuals) / n + lam2 * ridge <= epigraph)
    model.setObjective(epigraph + lam0 * pyscipopt.quicksum(y.values()))
    model.optimize()
    kept = sorted(j for j, var in y.items() if model.getVal(var) > 0.5)
    weights = np.array([[model.getVal(v) for v in row] for row in W])
    penalized = weights[instance.groups >= 0]
    objective = instance.loss(weights) + lam2 * float(np.sum(penalized**2)) + lam0 * len(kept)
    return objective, kept


def spread_design(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """n x width normal design whose columns are scaled by 10^U(-4, 4) (units 1e8 apart), the
    last column all ones (a bias)."""
    X = rng.normal(size=(n, width)) * 10.0 ** rng.uniform(-4, 4, size=width)
    X[:, -1] = 1.0
    return X


def spread_data(
    rng: np.random.Generator, groups: np.ndarray, n: int = 40, outputs: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y): spread_design and a dense linear signal of each column's natural size plus unit
    noise."""
    X = spread_design(rng, n, groups.size)
    Y = X @ (rng.normal(size=(groups.size, outputs)) / np.abs(X).mean(axis=0)[:, None])
    return X, Y + rng.normal(size=(n, outputs))
