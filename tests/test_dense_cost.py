"""Time limits on large instances: factorizations predicted to overrun the deadline are not
started (sprkit.optim.dense_cost), and what replaces them is still valid."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sprkit.instances import synthetic_instance
from sprkit.optim.dense_cost import CHOLESKY, EIGH, affordable, dense_seconds
from sprkit.optim.mip import ExactSolver
from sprkit.optim.node_relaxation import FREE, KEPT, free_shift
from sprkit.optim.quadratic import top_eigenvalue
from sprkit.optim.result import TIME_LIMIT


def _gram(size: int, seed: int = 0) -> np.ndarray:
    factor = np.random.default_rng(seed).standard_normal((size + 20, size))
    return factor.T @ factor / (size + 20)


def test_predicted_cost_grows_as_the_cube_and_small_matrices_are_free():
    assert dense_seconds(300) == 0.0 and affordable(300, time.perf_counter() - 1.0)
    large = dense_seconds(800)
    assert large > 0 and dense_seconds(1600) == pytest.approx(8 * large)
    assert dense_seconds(800, CHOLESKY) == pytest.approx(CHOLESKY / EIGH * large)
    assert affordable(5000, np.inf)  # no deadline: everything is affordable
    assert not affordable(5000, time.perf_counter() + 1e-3)


def test_top_eigenvalue_falls_back_to_an_upper_bound_near_the_deadline():
    gram = _gram(400)
    exact = np.linalg.eigvalsh(gram)[-1]
    assert top_eigenvalue(gram) == pytest.approx(exact, rel=1e-10)
    bound = top_eigenvalue(gram, deadline=time.perf_counter())  # no time left
    assert bound == pytest.approx(np.abs(gram).sum(axis=1).max()) and bound >= exact
    assert top_eigenvalue(np.zeros((400, 400)), deadline=time.perf_counter()) == 1.0


def test_free_shift_without_time_keeps_the_valid_base():
    """Past the deadline the node's own delta is 0: the form `base` alone (or no shift)."""
    gram = _gram(400, seed=1)
    row_structure = np.arange(400) // 2
    state = np.full(200, FREE, dtype=np.int8)
    state[:50] = KEPT
    full = free_shift(gram, row_structure, state)
    assert full[row_structure >= 50].min() > 0
    late = time.perf_counter()
    assert not free_shift(gram, row_structure, state, deadline=late).any()
    base = np.full(400, 0.01)
    np.testing.assert_array_equal(free_shift(gram, row_structure, state, base, late), base)


@pytest.mark.parametrize("method", ["bnb", "oa", "auto"])
def test_time_limit_holds_where_one_factorization_takes_seconds(method):
    """d = 2,400 rows: an eigendecomposition takes seconds here, and the search used to start
    three of them (and a full-support fit) before looking at the clock (11.5 s for a limit
    of 1 s). Now it returns with a valid answer within a second of the limit."""
    instance = synthetic_instance(
        800, rows_per_group=3, n=2450, c=2, support=200, correlation=0.5, design="ar1", seed=4
    )
    solver = ExactSolver(instance, 4.0)  # the data's reduction is not part of the solve
    result = solver.solve(1e-3, 1e-3, time_limit=1.0, method=method)
    assert result.seconds < 1.0 + 1.0
    assert result.status == TIME_LIMIT and 0.0 <= result.bound <= result.objective
    W = result.W
    recomputed = instance.loss(W) + 1e-3 * float(np.sum(W[instance.groups >= 0] ** 2))
    assert result.objective == pytest.approx(recomputed + 1e-3 * len(result.kept), rel=1e-9)
