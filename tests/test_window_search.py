"""Window search: the window's problem is the whole problem with the rest fixed, and the search
only ever returns exactly evaluated, better supports."""

import itertools

import numpy as np
import pytest

from sprkit.instances import hard_case
from sprkit.optim import branch_and_bound
from sprkit.optim.mip import OPTIMAL, ExactSolver
from sprkit.optim.support import SupportProblem
from sprkit.optim.window_search import window_problem, window_search, windows


def _supports(problem) -> SupportProblem:
    return SupportProblem(
        problem.reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
    )


def _problem(seed: int, structures: int, M: float):
    """The scaled problem of a hard-regime instance (as ExactSolver builds it) and its exact
    fixed-support solver."""
    case = hard_case(
        structures,
        correlation=0.5,
        snr=2.0,
        lam2=0.002,
        keep_fraction=0.5,
        c=2,
        rows_per_group=2,
        M=M,
        seed=seed,
    )
    solver = ExactSolver(case.instance, case.M)
    problem = solver.scaled_problem(case.lam0, case.lam2)
    return problem, _supports(problem)


def _brute_force(problem) -> np.ndarray:
    """The best support of a small problem by enumeration."""
    supports = _supports(problem)
    candidates = (
        np.array(bits) for bits in itertools.product([False, True], repeat=problem.n_groups)
    )
    return min((supports.solve(s) for s in candidates), key=lambda s: s.value).support


@pytest.mark.parametrize("seed", range(3))
def test_the_window_problem_is_the_whole_problem_with_the_rest_fixed(seed):
    problem, supports = _problem(seed, 10, M=1e6)  # the box never binds: the model is exact
    rng = np.random.default_rng(seed)
    support = rng.random(10) < 0.5
    window = np.sort(rng.choice(10, size=4, replace=False))
    local = window_problem(problem, support, window)
    local_supports = _supports(local)
    for bits in itertools.product([False, True], repeat=4):
        inside = np.array(bits)
        whole = support.copy()
        whole[window] = inside
        expected = supports.solve(whole).value
        assert local_supports.solve(inside).value == pytest.approx(expected, rel=1e-9)


def test_windows_cover_every_structure_and_follow_the_coupling():
    problem, _ = _problem(0, 40, M=4.0)
    found = windows(problem, size=6)
    assert set(np.concatenate(found)) == set(range(40))
    assert all(len(w) == 6 and np.all(np.diff(w) > 0) for w in found)


@pytest.mark.parametrize("seed", range(3))
def test_search_ends_better_and_no_window_can_improve_it(seed):
    problem, supports = _problem(seed, 14, M=1e6)
    start = supports.solve(np.zeros(14, dtype=bool))
    result = window_search(
        problem, supports, start, lambda local, deadline: _brute_force(local), size=5
    )
    assert result.value <= start.value
    assert result.value == supports.solve(result.support).value  # exactly evaluated
    for window in windows(problem, size=5):  # a local optimum over every window
        for bits in itertools.product([False, True], repeat=5):
            flipped = result.support.copy()
            flipped[window] = bits
            assert supports.solve(flipped).value >= result.value * (1 - 1e-12)


def test_certified_answer_is_the_same_with_windows_from_the_first_node(monkeypatch):
    case = hard_case(
        36, correlation=0.8, snr=1.0, lam2=0.002, keep_fraction=0.5, c=1, rows_per_group=1, seed=5
    )
    without = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    monkeypatch.setattr(branch_and_bound, "_WINDOWS_AFTER_NODES", 0)
    called = []
    original = branch_and_bound.window_search
    monkeypatch.setattr(
        branch_and_bound,
        "window_search",
        lambda *args, **kwargs: called.append(1) or original(*args, **kwargs),
    )
    with_windows = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    assert called
    assert without.status == with_windows.status == OPTIMAL
    assert with_windows.objective == pytest.approx(without.objective, rel=1e-6)
