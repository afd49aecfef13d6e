"""The Pyomo MIQP model is the same problem the exact solver certifies."""

import pyomo.environ as pyo
import pytest

from sprkit.instances import synthetic_instance
from sprkit.optim.mip import ExactSolver
from sprkit.optim.pyomo_model import build_pyomo_model
from sprkit.optim.quadratic import compressed_least_squares


def _violation(model) -> float:
    worst = 0.0
    for constraint in model.component_data_objects(pyo.Constraint, active=True):
        body = pyo.value(constraint.body)
        if constraint.has_lb():
            worst = max(worst, pyo.value(constraint.lower) - body)
        if constraint.has_ub():
            worst = max(worst, body - pyo.value(constraint.upper))
    return worst


def test_pyomo_model_at_the_certified_optimum_is_feasible_with_the_same_objective():
    instance = synthetic_instance(6, rows_per_group=2, n=30, c=2, support=2, noise=0.5, seed=4)
    lam0, lam2, M = 0.2, 0.1, 2.0
    result = ExactSolver(instance, M).solve(lam0, lam2, method="oa")
    model = build_pyomo_model(instance, lam0=lam0, lam2=lam2, M=M, cuts=result.cuts)
    A, B, _ = compressed_least_squares(instance)
    residual = A @ result.W - B
    for (r, k), var in model.W.items():
        var.set_value(result.W[r, k])
    for (i, k), var in model.residual.items():
        var.set_value(residual[i, k])
    for j in model.structures:
        model.y[j].set_value(1.0 if j in result.kept else 0.0)
    assert pyo.value(model.objective) == pytest.approx(result.objective, rel=1e-10)
    # Feasible, cuts included (they are valid inequalities; the tightest one is active).
    assert _violation(model) <= 1e-9 * max(1.0, result.objective)
    assert len(model.cuts) == len(result.cuts) > 0
    assert min(c.slack() for c in model.cuts.values()) == pytest.approx(0.0, abs=1e-8)


def test_pruned_structure_forces_its_rows_to_zero():
    instance = synthetic_instance(3, n=10, c=1, support=1, seed=0)
    model = build_pyomo_model(instance, lam0=1.0, lam2=0.0, M=1.5)
    model.y[0].set_value(0.0)
    model.W[0, 0].set_value(1e-3)
    assert pyo.value(model.upper_bound[0, 0].body) > pyo.value(model.upper_bound[0, 0].upper)


def test_pyomo_scip_method_agrees_with_branch_and_bound():
    instance = synthetic_instance(7, rows_per_group=2, n=40, c=2, support=3, noise=0.8, seed=9)
    solver = ExactSolver(instance, 2.5)
    ours = solver.solve(0.1, 0.02, method="bnb")
    scip = solver.solve(0.1, 0.02, method="pyomo:scip")
    assert scip.method == "pyomo:scip" and scip.status == "optimal"
    assert scip.kept == ours.kept
    assert scip.objective == pytest.approx(ours.objective, rel=1e-7)
    assert scip.bound <= scip.objective and ours.bound <= ours.objective


def test_an_optimum_of_zero_up_to_rounding_is_certified():
    """Y explained exactly by a free row (a bias column): keeping nothing is optimal, with an
    objective that is rounding (~1e-30). The gap is floored at 1e-12 of the objective at
    W = 0, free rows included (here 9), not of the rounding: SCIP's answer, bound 0, is
    optimal (it was 'stalled' with gap 1), and so is bnb's."""
    import numpy as np

    from sprkit.instances.format import make_instance

    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(30, 6)), np.ones((30, 1))])
    instance = make_instance(X, np.full((30, 2), 3.0), np.append(np.arange(6), -1))
    for method in ("pyomo:scip", "bnb"):
        result = ExactSolver(instance, 5.0).solve(0.1, 0.01, method=method, time_limit=60)
        assert result.status == "optimal", method
        assert result.kept == []
        assert 0.0 <= result.objective <= 1e-20


def test_pyomo_scip_does_not_depend_on_the_units_of_x_and_y():
    """The same MIP in other units (X x 1e3, Y x 1e-2: an exact change of units) is
    certified by SCIP with the same kept set and the objective in the fixed ratio 1e-4 (it
    ended 'stalled' at a gap of 3e-3 when SCIP's absolute tolerances met Y's units)."""
    from sprkit.instances import hard_case

    spec = dict(
        structures=8, correlation=0.0, snr=5.0, lam2=0.0005, keep_fraction=0.5, c=10,
        rows_per_group=2, seed=784564, M=0.1, n=8,
    )  # fmt: skip
    results = []
    for scales in ({}, dict(x_scale=1e3, y_scale=1e-2)):
        case = hard_case(**spec, **scales)
        solver = ExactSolver(case.instance, case.M)
        results.append(solver.solve(case.lam0, case.lam2, method="pyomo:scip", time_limit=60))
    plain, scaled = results
    assert plain.status == scaled.status == "optimal"
    assert plain.kept == scaled.kept
    assert scaled.objective == pytest.approx(plain.objective * 1e-4, rel=1e-9)
