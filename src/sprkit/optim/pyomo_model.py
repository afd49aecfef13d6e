"""The structured-pruning MIQP as a Pyomo model, to inspect, extend or hand to any Pyomo solver.

    min  loss + lam2 sum_j l2_j + lam0 sum_j y_j
    s.t. loss >= sum_{i,k} residual_ik^2 + const,   residual = A W - B   (compact loss, thin QR)
         l2_j >= sum_{r in j, k} W_rk^2                                  (per-structure epigraph)
         -M_j y_j <= W_rk <= M_j y_j  for rows r of structure j,  y_j binary,

with free rows (group -1) unbounded and unpenalized. Optional y-space cuts from
sprkit.optim.support (valid inequalities: objective >= constant - slopes . y) go into the
ConstraintList `cuts`. HiGHS cannot take the quadratic constraints directly; sprkit's own
exact solver (sprkit.optim.mip) works on the y-space projection of this model instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyomo.environ as pyo

from sprkit.instances.format import Instance
from sprkit.optim.quadratic import compressed_least_squares
from sprkit.optim.relaxations import structure_bounds
from sprkit.optim.support import Cut


def build_pyomo_model(
    instance: Instance,
    *,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    cuts: Iterable[Cut] = (),
) -> pyo.ConcreteModel:
    """The MIQP of DESIGN.md section 1 for `instance` (structures in structure_ids order)."""
    bounds = structure_bounds(instance, M)
    A, B, const = compressed_least_squares(instance)
    ids = [int(j) for j in instance.structure_ids]
    bound_of = dict(zip(ids, bounds, strict=True))
    rows_of = {j: np.flatnonzero(instance.groups == j).tolist() for j in ids}

    model = pyo.ConcreteModel(name="sprkit structured-pruning MIQP")
    model.rows = pyo.RangeSet(0, instance.d - 1)
    model.outputs = pyo.RangeSet(0, instance.c - 1)
    model.factor_rows = pyo.RangeSet(0, A.shape[0] - 1)
    model.structures = pyo.Set(initialize=ids, ordered=True)
    model.W = pyo.Var(model.rows, model.outputs)
    model.y = pyo.Var(model.structures, within=pyo.Binary)
    model.residual = pyo.Var(model.factor_rows, model.outputs)
    model.loss = pyo.Var(within=pyo.NonNegativeReals)
    model.l2 = pyo.Var(model.structures, within=pyo.NonNegativeReals)

    @model.Constraint(model.factor_rows, model.outputs)
    def residual_definition(m, i, k):
        terms = sum(float(A[i, r]) * m.W[r, k] for r in range(instance.d) if A[i, r] != 0)
        return m.residual[i, k] == terms - float(B[i, k])

    model.loss_epigraph = pyo.Constraint(
        expr=model.loss >= sum(v**2 for v in model.residual.values()) + const
    )

    @model.Constraint(model.structures)
    def l2_epigraph(m, j):
        return m.l2[j] >= sum(m.W[r, k] ** 2 for r in rows_of[j] for k in m.outputs)

    penalized = [(r, k) for j in ids for r in rows_of[j] for k in range(instance.c)]
    model.penalized = pyo.Set(initialize=penalized, dimen=2)

    @model.Constraint(model.penalized)
    def upper_bound(m, r, k):
        j = int(instance.groups[r])
        return m.W[r, k] <= bound_of[j] * m.y[j]

    @model.Constraint(model.penalized)
    def lower_bound(m, r, k):
        j = int(instance.groups[r])
        return -m.W[r, k] <= bound_of[j] * m.y[j]

    model.objective_value = pyo.Expression(
        expr=model.loss
        + lam2 * pyo.quicksum(model.l2.values())
        + lam0 * pyo.quicksum(model.y.values())
    )
    model.objective = pyo.Objective(expr=model.objective_value, sense=pyo.minimize)
    model.cuts = pyo.ConstraintList()
    for cut in cuts:
        add_cut(model, cut)
    return model


def add_cut(model: pyo.ConcreteModel, cut: Cut) -> None:
    """Add objective >= constant - slopes . y (slopes in structure_ids order)."""
    y = [model.y[j] for j in model.structures]
    model.cuts.add(
        model.objective_value
        >= cut.constant - sum(float(s) * v for s, v in zip(cut.slopes, y, strict=True))
    )
