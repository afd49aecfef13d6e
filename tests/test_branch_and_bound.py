"""Branch and bound: agreement with SCIP on the hard regime, valid deductions (brute force),
scaling invariance, time limits."""

import dataclasses
import itertools
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
from reference import scip_miqp, spread_data, spread_design

from sprkit.errors import InstanceError, ParameterError, SolverError
from sprkit.instances import hard_case, make_instance, save_instance, synthetic_instance
from sprkit.optim import branch_and_bound
from sprkit.optim.bounds import compute_bounds
from sprkit.optim.diagonal import DiagonalAscent
from sprkit.optim.gram_error import GramGrowth, gram_margin, loses_directions
from sprkit.optim.mip import OPTIMAL, TIME_LIMIT, ExactSolver
from sprkit.optim.node_relaxation import FREE, KEPT, REMOVED, NodeRelaxation, free_shift
from sprkit.optim.presolve import QuadraticGrowth, reduced_cost_fixings
from sprkit.optim.spr_route import SPRRoute
from sprkit.optim.support import SupportProblem


def _hard(seed: int, structures: int):
    """A random instance of the hard regime (AR(1) design, low SNR, mostly weak ridge)."""
    rng = np.random.default_rng(1000 + seed)
    return hard_case(
        structures,
        correlation=float(rng.choice([0.0, 0.5, 0.8])),
        snr=float(rng.choice([1.0, 2.0, 5.0])),
        lam2=float(rng.choice([0.0005, 0.002, 0.01, 0.05])),
        keep_fraction=float(rng.uniform(0.1, 0.9)),
        c=int(rng.choice([1, 2, 3])),
        rows_per_group=int(rng.choice([1, 2])),
        seed=seed,
    )


@pytest.mark.parametrize("seed", range(30))
def test_hard_regime_agrees_with_scip(seed):
    case = _hard(seed, 12 + seed % 4)
    result = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    scip_objective, scip_kept = scip_miqp(case.instance, case.lam0, case.lam2, case.M)
    assert result.status == OPTIMAL and result.gap <= 1e-6
    assert result.objective == pytest.approx(scip_objective, rel=1e-6)
    if result.kept != scip_kept:  # only an exact tie may keep other structures
        assert abs(result.objective - scip_objective) <= 1e-9 * abs(scip_objective)
    # The certified bound is below the optimum SCIP found (up to its feasibility tolerance).
    assert result.bound <= scip_objective * (1 + 1e-7)
    assert result.bound <= result.objective


def _enumerate(case, state=None):
    """Scaled problem, exact fits of every support consistent with `state` (brute force)."""
    problem = ExactSolver(case.instance, case.M).scaled_problem(case.lam0, case.lam2)
    supports = SupportProblem(
        problem.reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
    )
    G = case.instance.n_structures
    state = np.full(G, FREE, dtype=np.int8) if state is None else state
    solutions = []
    for bits in itertools.product([False, True], repeat=G):
        support = np.array(bits)
        if np.any(support[state == REMOVED]) or not np.all(support[state == KEPT]):
            continue
        solutions.append(supports.solve(support))
    return problem, solutions


@pytest.mark.parametrize("seed", range(6))
def test_every_deduction_keeps_every_support_below_the_level(seed):
    """Reduced-cost fixing, growth fixing and M tightening, at the root and at a node, from an
    inexact relaxation (stopped early), checked against all supports by enumeration."""
    case = _hard(seed, 7)
    G = case.instance.n_structures
    rng = np.random.default_rng(seed)
    node_state = np.full(G, FREE, dtype=np.int8)
    node_state[rng.choice(G, 2, replace=False)] = [REMOVED, KEPT]
    for state in (np.full(G, FREE, dtype=np.int8), node_state):
        problem, solutions = _enumerate(case, state)
        best = min(s.value for s in solutions)
        level = best * 1.01  # every support within 1% of the node's optimum must survive
        below = [s for s in solutions if s.value < level]
        relaxation = NodeRelaxation(problem)
        shift = free_shift(problem.reduced.gram, problem.row_structure, state)
        bound = relaxation.solve(
            state,
            problem.M,
            np.zeros_like(problem.reduced.cross),
            tol=1e-3,
            max_iter=30,
            shift=shift,
        )
        assert bound.lower <= best * (1 + 1e-9)
        radius = level - bound.lower
        removed, kept = reduced_cost_fixings(bound.slopes, state == FREE, radius)
        rows = np.flatnonzero(state[problem.row_structure] != REMOVED)
        growth = QuadraticGrowth.from_matrix(
            problem.reduced.gram[np.ix_(rows, rows)], problem.row_structure[rows], G
        )
        # the growth of G goes with the certificate of the unshifted form at the same point
        radius = level - relaxation.certificate(state, problem.M, bound.W_dual)[0]
        center = bound.W_dual[rows]
        M = growth.tightened(problem.M, center, radius)
        forced = growth.forced_kept(center, radius) & (state == FREE)
        for solution in below:
            assert not np.any(solution.support & removed)
            assert np.all(solution.support[kept | forced])
            largest = np.zeros(G)
            np.maximum.at(largest, problem.row_structure, np.abs(solution.W_P).max(axis=1))
            assert np.all(largest <= M * (1 + 1e-9) + 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_strengthened_relaxation_is_valid_tight_and_grows_down_the_tree(seed):
    """free_shift: G - shift diag(free rows) is PSD on the rows not removed and not for a
    larger shift (eigenvalues of the whole matrix); the strengthened certificate stays below
    the node's optimum (enumeration) even when stopped early, and is at least the plain
    relaxation's value; a child's shift is at least its parent's (both directions)."""
    case = _hard(seed, 7)
    G = case.instance.n_structures
    rng = np.random.default_rng(seed)
    state = np.full(G, FREE, dtype=np.int8)
    state[rng.choice(G, 3, replace=False)] = [REMOVED, KEPT, KEPT]
    problem, solutions = _enumerate(case, state)
    gram, rows_of = problem.reduced.gram, problem.row_structure
    shifts = free_shift(gram, rows_of, state)
    assert shifts.shape == rows_of.shape  # one per row
    shift = float(shifts.max())
    assert np.all(shifts == shift)  # without a base diagonal: one scalar for all
    rows = np.flatnonzero(state[rows_of] != REMOVED)
    free_rows = (state[rows_of] == FREE)[rows].astype(float)

    def smallest(delta):
        return np.linalg.eigvalsh(gram[np.ix_(rows, rows)] - delta * np.diag(free_rows))[0]

    lam_max = np.linalg.eigvalsh(gram)[-1]
    assert shift > smallest(0.0) > 0  # more than the plain eigenvalue shift
    assert smallest(shift) >= -1e-12 * lam_max
    assert smallest(shift * 1.01 + 1e-9) < 0
    best = min(s.value for s in solutions)
    relaxation = NodeRelaxation(problem)
    warm = np.zeros_like(problem.reduced.cross)
    for iterations in (5, 50, 5000):
        early = relaxation.solve(state, problem.M, warm, max_iter=iterations, shift=shift)
        assert early.lower <= best * (1 + 1e-9)
    plain = relaxation.solve(state, problem.M, warm, tol=1e-10, max_iter=20000)
    strong = relaxation.solve(state, problem.M, warm, tol=1e-10, max_iter=20000, shift=shift)
    assert strong.lower >= plain.upper - 1e-9
    free = np.flatnonzero(state == FREE)
    for fix in (REMOVED, KEPT):
        child = state.copy()
        child[free[0]] = fix
        assert free_shift(gram, rows_of, child).max() >= shift * (1 - 1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rows_per_group", [1, 2, 3])
def test_root_form_is_valid_and_raises_the_root_bound(seed, rows_per_group):
    """DiagonalAscent: its form (a diagonal per structure with one row each, else a matrix
    per structure written in the frame of its eigenvectors) keeps G - E PSD; every node's
    shifts (the form plus the node's own delta) keep G - diag(free rows' shifts) PSD on the
    node's rows in the frame; the root bound it certifies is at least the scalar shift's and
    below the MIP optimum (all supports enumerated), and so is a node's, stopped early or
    not, in its frame, with W given back in the original rows."""
    rng = np.random.default_rng(seed)
    case = hard_case(
        8,
        correlation=0.8,
        snr=float(rng.choice([1.0, 2.0])),
        lam2=0.002,
        keep_fraction=0.5,
        c=int(rng.choice([1, 2])),
        rows_per_group=rows_per_group,
        seed=seed,
    )
    G = case.instance.n_structures
    problem, solutions = _enumerate(case)
    gram, rows_of = problem.reduced.gram, problem.row_structure
    lam_max = np.linalg.eigvalsh(gram)[-1]
    best = min(s.value for s in solutions)
    relaxation = NodeRelaxation(problem)
    root_state = np.full(G, FREE, dtype=np.int8)
    warm = np.zeros_like(problem.reduced.cross)
    scalar = relaxation.solve(
        root_state, problem.M, warm, tol=1e-10, shift=free_shift(gram, rows_of, root_state)
    )
    ascent = DiagonalAscent(relaxation, root_state, problem.M, scalar, tol=1e-10, max_iter=5000)
    ascent.advance(level=best * 2, until=np.inf)  # never reached: the ascent runs its course
    form, ascended = ascent.best_form, ascent.best
    assert form is not None, "no step of the ascent raised the root bound"
    assert (form.frame is None) == (rows_per_group == 1)
    framed = form.gram(problem)
    if form.frame is not None:
        rotation = form.frame.rotation
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(len(rows_of)), atol=1e-12)
        same = rows_of[:, None] == rows_of[None, :]
        assert np.all(rotation[~same] == 0)  # rows turn only within their structure
        np.testing.assert_allclose(framed, rotation.T @ gram @ rotation, atol=1e-12 * lam_max)
    assert np.all(form.base >= 0)
    assert np.linalg.eigvalsh(framed - np.diag(form.base))[0] >= -1e-12 * lam_max
    assert scalar.lower < ascended.lower <= best * (1 + 1e-9)
    state = root_state.copy()
    state[rng.choice(G, 3, replace=False)] = [REMOVED, KEPT, FREE]
    _, node_solutions = _enumerate(case, state)
    node_best = min(s.value for s in node_solutions)
    shifts = free_shift(framed, rows_of, state, form.base)
    free_rows = state[rows_of] == FREE
    assert np.all(shifts[free_rows] >= form.base[free_rows])
    rows = np.flatnonzero(state[rows_of] != REMOVED)
    shifted = framed - np.diag(np.where(free_rows, shifts, 0.0))
    assert np.linalg.eigvalsh(shifted[np.ix_(rows, rows)])[0] >= -1e-12 * lam_max
    for iterations in (5, 50, 5000):
        node = relaxation.solve(
            state, problem.M, warm, max_iter=iterations, shift=shifts, frame=form.frame
        )
        assert node.lower <= node_best * (1 + 1e-9)
    # solved to its tolerance, in the original rows (removed rows zero)
    assert node.upper - node.lower <= 1e-8 * abs(node.upper)
    assert np.all(node.W[state[rows_of] == REMOVED] == 0)


@pytest.mark.parametrize("seed", range(3))
def test_enumerating_a_node_finds_its_best_support(seed):
    """BranchAndBound._enumerate from the worst incumbent (the empty support): every support
    of the node offered, the incumbent ends at the node's optimum (all supports solved
    here one by one), and the node is reported closed."""
    case = _hard(seed, 9)
    G = case.instance.n_structures
    state = np.full(G, FREE, dtype=np.int8)
    state[np.random.default_rng(seed).choice(G, 2, replace=False)] = [REMOVED, KEPT]
    problem, solutions = _enumerate(case, state)
    search = branch_and_bound.BranchAndBound(problem)
    search._offer(np.zeros(G, dtype=bool))
    assert search._enumerate(state, deadline=np.inf)
    best = min(solutions, key=lambda solution: solution.value)
    assert search.incumbent.value == pytest.approx(best.value, rel=1e-12)
    assert not search._enumerate(state, deadline=time.perf_counter() - 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_a_leaf_whose_fit_was_cut_short_stays_open(seed, monkeypatch):
    """Every fit whose box binds comes back cut short (as at the deadline: the box-free fit
    clipped, not exact), enumeration off: a leaf solved so must stay open, so the bound
    stays below the optimum of brute force (a leaf was closed on its inexact value, and the
    bound of a run that ended 'optimal' came out above the optimum)."""
    support_module = branch_and_bound.SupportProblem
    exact_fit = support_module._fit

    def cut_short(self, factored):
        W_P, exact = exact_fit(self, factored)
        if factored is None or np.all(
            np.abs(factored.unconstrained)
            <= (self.bounds[self.row_structure[factored.rows]] * factored.jacobi)[:, None]
        ):
            return W_P, exact
        W_P[factored.rows] = np.clip(
            factored.unconstrained / factored.jacobi[:, None],
            -self.bounds[self.row_structure[factored.rows]][:, None],
            self.bounds[self.row_structure[factored.rows]][:, None],
        )
        return W_P, False

    rng = np.random.default_rng(9000 + seed)
    case = hard_case(
        8,
        correlation=0.8,
        snr=5.0,
        lam2=0.002,
        keep_fraction=0.6,
        c=int(rng.choice([1, 3])),
        rows_per_group=2,
        M=0.4,
        seed=seed,
    )
    problem, solutions = _enumerate(case)
    optimum = min(solution.value for solution in solutions) * problem.f_scale
    monkeypatch.setattr(support_module, "_fit", cut_short)
    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_enumerates", lambda *_: False)
    result = ExactSolver(case.instance, case.M).solve(
        case.lam0, case.lam2, method="bnb", time_limit=3
    )
    assert result.bound <= optimum * (1 + 1e-9)


def test_small_instances_with_slow_relaxations_are_enumerated():
    """Fewer samples than rows and no ridge (a flat relaxation that converges slowly), and
    columns over 12 orders of magnitude with a strong ridge: bnb and auto certify the
    optimum of brute force (all supports) within the limit (on the first, bnb had bound 0
    after 30 s)."""
    rng = np.random.default_rng(156)
    flat = make_instance(rng.normal(size=(5, 10)), rng.normal(size=(5, 8)), np.arange(10))
    X = rng.normal(size=(118, 9)) * 10.0 ** rng.uniform(-6, 6, size=9)
    spread = make_instance(X, X @ rng.normal(size=(9, 3)) + rng.normal(size=(118, 3)), np.arange(9))
    cases = [
        (flat, 0.01 * float(np.mean(flat.Y**2)), 0.0, 10.0),
        (spread, 0.05 * float(np.mean(spread.Y**2)), 1.0, 1e7),
    ]
    for instance, lam0, lam2, M in cases:
        case = dataclasses.make_dataclass("Case", ["instance", "lam0", "lam2", "M"])(
            instance, lam0, lam2, M
        )
        problem, solutions = _enumerate(case)
        best = min(solution.value for solution in solutions) * problem.f_scale
        for method in ("bnb", "auto"):
            result = ExactSolver(instance, M).solve(lam0, lam2, method=method, time_limit=30)
            assert result.status == OPTIMAL, method
            assert result.objective == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_a_few_structures_are_enumerated_before_any_relaxation(seed):
    """6 structures of two rows, n = 8 < d = 12, Y in the span of three columns, no ridge,
    M = 1e9: the root relaxation alone took 5-8 s (15-19 s on a sweep's instance, another
    run ending at 20 s with bound 0); its 64 supports take milliseconds. Certified within 3 s
    at the optimum of bounded least squares on the raw data over every support."""
    rng = np.random.default_rng(seed)
    X, groups = rng.standard_normal((8, 12)), np.repeat(np.arange(6), 2)
    Y = X[:, [0, 5, 9]] @ rng.standard_normal((3, 2))
    optimum, kept = _fits_by_enumeration(X, Y, groups, 1e-6, 0.0, 1e9)
    solver = ExactSolver(make_instance(X, Y, groups), 1e9)
    for method in ("bnb", "auto"):
        result = solver.solve(1e-6, 0.0, method=method, time_limit=3)
        assert result.status == OPTIMAL, method
        assert result.objective == pytest.approx(optimum, rel=1e-6), method


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_a_slow_root_relaxation_gives_way_to_enumeration(seed):
    """9 structures of 1-3 rows, n = d - 2, columns over 4 orders of magnitude, no ridge,
    M = 1e9: the 2^9 fits are predicted above the up-front threshold, and the root
    relaxation did not converge in 10 s (bound 0, an objective 10-30 % above the optimum;
    found by a sweep). The root now gets the enumeration's predicted time, and the
    enumeration follows: certified within 3 s at the optimum of bounded least squares on the
    raw data over every support."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(9), rng.integers(1, 4, size=9))
    X = rng.standard_normal((groups.size - 2, groups.size))
    X *= 10.0 ** rng.uniform(-1, 3, size=groups.size)
    Y = rng.standard_normal((groups.size - 2, 3))
    lam0 = 1e-5 * float(np.mean(Y**2))
    optimum, kept = _fits_by_enumeration(X, Y, groups, lam0, 0.0, 1e9)
    result = ExactSolver(make_instance(X, Y, groups), 1e9).solve(
        lam0, 0.0, method="bnb", time_limit=3
    )
    assert result.status == OPTIMAL
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_open_nodes_enumerated_instead_of_searched_agree_with_enumeration(seed, monkeypatch):
    """With enumeration predicted free, the search enumerates its open nodes right after the
    root (again, after twice the time, where the enumeration's time ran out and the search
    has not finished): certified at brute force's optimum."""
    case = _hard(seed, 12)
    problem, solutions = _enumerate(case)
    best = min(solution.value for solution in solutions) * problem.f_scale
    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_support_seconds", lambda self: 0.0)
    left_open = _record_open_enumerations(monkeypatch)
    result = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    assert left_open  # enumerated at least once (again after twice the time if cut short)
    assert result.status == OPTIMAL
    assert result.objective == pytest.approx(best, rel=1e-6)
    assert result.bound <= best * (1 + 1e-9)


def test_an_enumeration_resumed_offers_the_supports_left_in_order(monkeypatch):
    """`_enumerate` from the k-th support offers exactly the supports a full enumeration
    offers after its first k, and reports the count offered (what a cut-short enumeration
    resumes from)."""
    case = _hard(2, 7)
    problem = ExactSolver(case.instance, case.M).scaled_problem(case.lam0, case.lam2)
    state = np.full(problem.n_groups, FREE, dtype=np.int8)
    state[[1, 4]] = [KEPT, REMOVED]
    offers = []

    def record(search, support):
        offers.append(support.copy())
        return search.supports.solve(support)

    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_offer", record)
    search = branch_and_bound.BranchAndBound(problem)
    assert search._enumerate(state, np.inf) == 2**5
    every = [tuple(support) for support in offers]
    assert len(set(every)) == 2**5
    assert all(support[1] and not support[4] for support in every)
    offers.clear()
    assert search._enumerate(state, np.inf, 19) == 2**5
    assert [tuple(support) for support in offers] == every[19:]
    offers.clear()
    assert search._enumerate(state, time.perf_counter() - 1.0, 7) == 7  # deadline: none
    assert offers == []


def test_over_a_thousand_structures_search_without_overflow():
    """2^1030 supports overflow a float: the rules that count supports only look at nodes
    with at most ENUMERATE_FREE free structures (1,030 structures raised OverflowError)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 1030))
    Y = X[:, :5] @ rng.standard_normal((5, 2)) + 0.1 * rng.standard_normal((60, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ExactSolver(make_instance(X, Y, np.arange(1030)), 4.0).solve(
            0.01, 0.01, method="bnb", time_limit=2
        )
    assert result.status in (OPTIMAL, TIME_LIMIT) and result.bound <= result.objective


@pytest.mark.parametrize("seed", range(3))
def test_an_enumeration_cut_short_leaves_its_nodes_open(seed, monkeypatch):
    """Every enumeration stops before its first support (as at the end of its time): the
    nodes go back to the search, which still certifies brute force's optimum."""
    case = _hard(seed, 12)
    problem, solutions = _enumerate(case)
    best = min(solution.value for solution in solutions) * problem.f_scale
    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_support_seconds", lambda self: 0.0)
    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_enumerate", lambda *_: 0)
    left_open = _record_open_enumerations(monkeypatch)
    result = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    assert left_open and all(count > 0 for count in left_open)
    assert result.status == OPTIMAL
    assert result.objective == pytest.approx(best, rel=1e-6)
    assert result.bound <= best * (1 + 1e-9)


def _record_open_enumerations(monkeypatch) -> list[int]:
    """Wrap BranchAndBound._enumerate_open; the list returned fills with the number of
    nodes each call left open."""
    left_open: list[int] = []
    enumerate_open = branch_and_bound.BranchAndBound._enumerate_open

    def recorded(self, nodes, tol, deadline):
        left = enumerate_open(self, nodes, tol, deadline)
        left_open.append(len(left))
        return left

    monkeypatch.setattr(branch_and_bound.BranchAndBound, "_enumerate_open", recorded)
    return left_open


def test_fit_growth_bounds_every_support_below_the_level():
    """The presolve before any relaxation: ellipsoids of the unconstrained fits."""
    case = _hard(3, 7)
    problem, solutions = _enumerate(case)
    G = problem.n_groups
    level = min(s.value for s in solutions) * 1.02
    hessian = problem.reduced.gram + problem.lam2 * np.eye(problem.reduced.gram.shape[0])
    for matrix in (problem.reduced.gram, hessian):
        growth = QuadraticGrowth.from_matrix(matrix, problem.row_structure, G)
        center = np.linalg.solve(matrix, problem.reduced.cross)
        minimum = problem.reduced.const - float(np.sum(center * problem.reduced.cross))
        M = growth.tightened(problem.M, center, level - minimum - problem.lam0)
        forced = growth.forced_kept(center, level - minimum)
        for solution in (s for s in solutions if s.value < level):
            assert np.all(solution.support[forced])
            largest = np.zeros(G)
            np.maximum.at(largest, problem.row_structure, np.abs(solution.W_P).max(axis=1))
            kept = solution.support
            assert np.all(largest[kept] <= M[kept] * (1 + 1e-9) + 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_improving_turns_down_only_supports_whose_box_free_fit_reaches_the_value(seed):
    """`SupportProblem.improving` skips the box-constrained solve where the ridge fit without
    the box (computed here by a plain solve) is already at or above the value asked for."""
    case = _hard(seed, 7)
    case = dataclasses.replace(case, M=case.M * 0.05)  # the box binds on most supports
    problem, solutions = _enumerate(case)
    reduced = problem.reduced
    fresh = SupportProblem(
        reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
    )
    binding = 0
    for solution in solutions:
        rows = np.flatnonzero(solution.support[problem.row_structure])
        free = reduced.const + problem.lam0 * int(solution.support.sum())
        if rows.size:
            hessian = reduced.gram[np.ix_(rows, rows)] + problem.lam2 * np.eye(rows.size)
            fit = np.linalg.solve(hessian, reduced.cross[rows])
            free -= float(np.sum(reduced.cross[rows] * fit))
        assert solution.value >= free - 1e-12 * abs(free)
        binding += solution.value > free * (1 + 1e-9)
        for value in (free * (1 - 1e-6), free * (1 + 1e-6), solution.value * (1 + 1e-6)):
            answer = fresh.improving(solution.support, value)
            if value <= free:
                assert answer is None
            else:
                assert answer is not None and answer.value == pytest.approx(solution.value)
    assert binding >= len(solutions) // 2


def test_a_fit_cut_short_by_the_deadline_is_feasible_not_exact_and_not_cached():
    """A box-constrained fit at a passed deadline: W_P inside the box on the support, its
    value recomputed from the data and not below the exact fit's (enumeration's), flagged
    not exact and not cached (the same support solved later, in time, is exact)."""
    case = _hard(1, 7)
    case = dataclasses.replace(case, M=case.M * 0.05)  # the box binds
    problem, solutions = _enumerate(case)
    reduced = problem.reduced
    late = SupportProblem(
        reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
    )
    late.deadline = time.perf_counter() - 1.0
    checked = 0
    for solution in solutions:
        cut_short = late.solve(solution.support)
        W_P = cut_short.W_P
        outside = ~solution.support[problem.row_structure]
        assert np.all(W_P[outside] == 0)
        assert np.all(np.abs(W_P) <= problem.M[problem.row_structure][:, None])
        loss = reduced.loss(W_P)
        value = loss + problem.lam2 * np.sum(W_P**2) + problem.lam0 * solution.support.sum()
        assert cut_short.value == pytest.approx(value, rel=1e-12)
        assert cut_short.value >= solution.value * (1 - 1e-12)
        if not cut_short.exact:
            checked += 1
            assert not late.known(solution.support)
    assert checked >= len(solutions) // 2
    late.deadline = np.inf
    support = solutions[-1].support
    assert late.solve(support).exact and late.known(support)
    assert late.solve(support).value == pytest.approx(solutions[-1].value, rel=1e-12)


@pytest.mark.parametrize("method", ["bnb", "oa"])
@pytest.mark.parametrize("x_scale, y_scale", [(1e4, 1e-3), (1e-80, 1e-80)])
def test_units_do_not_change_the_answer(method, x_scale, y_scale):
    """The same MIP in other units (lam0, lam2, M transformed), down to data whose squares
    are 1e-160 (the solver's units once overflowed there), with no floating-point warning."""
    settings = dict(correlation=0.5, snr=2.0, lam2=0.002, keep_fraction=0.5, c=2, seed=5)
    base = hard_case(10, **settings)
    scaled = hard_case(10, **settings, x_scale=x_scale, y_scale=y_scale)
    ours = ExactSolver(base.instance, base.M).solve(base.lam0, base.lam2, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        other = ExactSolver(scaled.instance, scaled.M).solve(
            scaled.lam0, scaled.lam2, method=method
        )
    assert ours.status == other.status == OPTIMAL
    assert other.kept == ours.kept
    assert other.objective == pytest.approx(ours.objective * y_scale**2, rel=1e-6)
    W_ratio = y_scale / x_scale
    assert other.W[base.instance.groups >= 0] == pytest.approx(
        ours.W[base.instance.groups >= 0] * W_ratio, rel=1e-5, abs=1e-12 * W_ratio
    )


@pytest.mark.parametrize("method", ["bnb", "oa"])
def test_data_near_the_float_limit_is_solved_like_its_twin_in_unit_scale(method):
    """X and Y times 1e85 (squares near 1e170) against the same data in unit scale with lam0
    and lam2 divided by 1e170: the same MIP. The solver's units once underflowed to 0 there
    and certified the empty support as optimal."""
    settings = dict(correlation=0.5, snr=2.0, lam2=0.002, keep_fraction=0.5, c=2, seed=5)
    base = hard_case(8, **settings)
    X, Y, groups = base.instance.X, base.instance.Y, base.instance.groups
    big = make_instance(X * 1e85, Y * 1e85, groups)
    twin = ExactSolver(base.instance, base.M).solve(
        base.lam0 * 1e-170, base.lam2 * 1e-170, method=method
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ours = ExactSolver(big, base.M).solve(base.lam0, base.lam2, method=method)
    assert ours.status == twin.status == OPTIMAL
    assert ours.kept == twin.kept and len(ours.kept) > 0
    assert ours.objective == pytest.approx(twin.objective * 1e170, rel=1e-6)


@pytest.mark.parametrize("method", ["bnb", "oa"])
def test_dead_columns_tiny_columns_and_subnormal_penalties_solve_quietly(method):
    """Valid extremes, solved without a RuntimeWarning, as brute force says: every penalized
    column zero (keep nothing), columns times 1e-100 (a ridge of 1e198 in solver units: keep
    nothing), lam0 = lam2 = 1e-320 (keep everything, the plain least-squares fit, inside the
    box); and columns times 1e-160, whose squares leave float64's normal range: one
    InstanceError naming it (was an internal LinAlgError)."""
    rng = np.random.default_rng(0)
    X, Y, groups = rng.normal(size=(30, 6)), rng.normal(size=(30, 2)), np.arange(6)
    at_zero = float(np.sum(Y * Y)) / 30
    fit = np.linalg.lstsq(X, Y, rcond=None)[0]
    least_squares = float(np.sum((Y - X @ fit) ** 2)) / 30
    cases = [
        (np.zeros_like(X), 0.1, 0.01, [], at_zero),
        (X * 1e-100, 0.1, 0.01, [], at_zero),
        (X, 1e-320, 1e-320, list(range(6)), least_squares),
    ]
    for data, lam0, lam2, kept, objective in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            result = ExactSolver(make_instance(data, Y, groups), 5.0).solve(
                lam0, lam2, method=method
            )
        assert result.status == OPTIMAL
        assert result.kept == kept
        assert result.objective == pytest.approx(objective, rel=1e-9)
    with pytest.raises(InstanceError, match="normal range"):
        ExactSolver(make_instance(X * 1e-160, Y, groups), 5.0).solve(0.1, 0.01, method=method)


def test_badly_scaled_small_instance_is_certified_like_brute_force():
    """X times 1e6 with M left at 4 (M far too loose in these units): the search tightens it."""
    for seed in range(3):
        base = synthetic_instance(5, rows_per_group=2, n=60, c=2, support=2, noise=0.5, seed=seed)
        instance = make_instance(base.X * 1e6, base.Y, base.groups)
        case = type("Case", (), {"instance": instance, "lam0": 0.02, "lam2": 0.005, "M": 4.0})
        problem, solutions = _enumerate(case)
        best = min(solutions, key=lambda s: s.value)
        result = ExactSolver(instance, 4.0).solve(0.02, 0.005, time_limit=30)
        assert result.status == OPTIMAL
        assert result.objective == pytest.approx(problem.restore_objective(best.value), rel=1e-6)
        assert result.kept == np.flatnonzero(best.support).tolist()


def _run_cli(args, timeout):
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "sprkit", *args], capture_output=True, text=True, timeout=timeout
    )
    return completed, time.perf_counter() - start


@pytest.mark.parametrize("method", ["bnb", "oa"])
def test_time_limit_is_honoured_on_a_hard_instance(tmp_path, method):
    case = hard_case(
        120, correlation=0.8, snr=1.0, lam2=0.001, keep_fraction=0.4, c=3, rows_per_group=2
    )
    path = save_instance(tmp_path / "hard.npz", case.instance)
    args = ["solve", str(path), "--lam0", repr(case.lam0), "--lam2", repr(case.lam2)]
    args += ["--M", "4", "--time-limit", "1", "--json", "--method", method]
    completed, seconds = _run_cli(args, timeout=60)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == TIME_LIMIT and result["gap"] > 1e-6
    assert result["bound"] <= result["objective"] and result["nodes"] >= 1
    assert seconds < 1 + 4  # the limit plus imports and start-up, generously


def test_time_limit_covers_the_pyomo_model_build(tmp_path):
    """d = 500, c = 10: building the Pyomo model alone takes seconds; it stops at the limit."""
    instance = synthetic_instance(100, rows_per_group=5, n=600, c=10, support=30, seed=3)
    path = save_instance(tmp_path / "big.npz", instance)
    args = ["solve", str(path), "--lam0", "0.05", "--lam2", "0.001", "--M", "5"]
    args += ["--time-limit", "1", "--json", "--method", "pyomo:scip"]
    completed, seconds = _run_cli(args, timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == TIME_LIMIT and result["bound"] <= result["objective"]
    assert seconds < 1 + 4  # the limit plus imports and start-up, generously


def test_a_pyomo_solver_that_cannot_solve_a_miqp_is_a_solver_error():
    """HiGHS (through Pyomo) has no MIQP: it ends 'unknown' with no solution, which used to
    be reported as time_limit with the empty support."""
    case = hard_case(6, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5)
    solver = ExactSolver(case.instance, case.M)
    with pytest.raises(SolverError, match="did not solve the model"):
        solver.solve(case.lam0, case.lam2, method="pyomo:highs", time_limit=20)


def test_bounds_time_limit_says_what_did_not_converge(tmp_path):
    base = synthetic_instance(150, rows_per_group=2, n=400, c=3, support=40, seed=1)
    instance = make_instance(base.X * 1e6, base.Y, base.groups)
    path = save_instance(tmp_path / "scaled.npz", instance)
    args = ["bounds", str(path), "--lam0", "0.02", "--lam2", "0.005", "--M", "4"]
    completed, seconds = _run_cli([*args, "--time-limit", "0.5", "--json"], timeout=60)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["spr_lower_bound"] <= result["spr"]
    assert seconds < 0.5 + 6
    if not result["spr_converged"]:
        text, _ = _run_cli([*args, "--time-limit", "0.5"], timeout=60)
        assert "not converged" in text.stdout


def test_bounds_stop_the_conic_relaxations_at_the_limit():
    """d = 500, c = 10: compiling the conic models and Clarabel's first factorization check no
    clock (a 1 s share took 25 s); the relaxations now stop at their share of the limit."""
    instance = synthetic_instance(100, rows_per_group=5, n=600, c=10, support=30, seed=3)
    start = time.perf_counter()
    result = compute_bounds(instance, lam0=0.05, lam2=0.001, M=5.0, deadline=start + 2.0)
    assert time.perf_counter() - start < 2.0 + 3.0  # the limit, and slack for a loaded machine
    assert result["relaxation_status"]["perspective"] == "time_limit"
    assert result["perspective"] is None


def test_bounds_with_a_limit_equal_bounds_without_one():
    """With time enough, the relaxations solved in a child process give the same values."""
    case = hard_case(10, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5, seed=4)
    options = dict(lam0=case.lam0, lam2=case.lam2, M=case.M)
    limited = compute_bounds(case.instance, **options, deadline=time.perf_counter() + 300)
    free = compute_bounds(case.instance, **options)
    for kind in ("bigm", "perspective"):
        assert limited["relaxation_status"][kind] == free["relaxation_status"][kind] == "optimal"
        assert limited[kind] == pytest.approx(free[kind], rel=1e-12)


@pytest.mark.parametrize(
    ("method", "message"),
    [("bogus", "unknown method"), ("pyomo:nosuchsolver", "not installed or not available")],
)
def test_unknown_method_is_one_line(tmp_path, method, message):
    """As a process: Pyomo logs warnings with tracebacks (to stdout) when it probes a missing
    solver; only the one-line error may appear."""
    instance = synthetic_instance(4, n=20, c=1, support=2, seed=0)
    path = save_instance(tmp_path / "small.npz", instance)
    args = ["solve", str(path), "--lam0", "0.1", "--lam2", "0.01", "--M", "3"]
    completed, _ = _run_cli(args + ["--method", method], timeout=120)
    err = completed.stderr
    assert completed.returncode == 2 and message in err and len(err.strip().splitlines()) == 1
    assert completed.stdout == ""


def test_text_output_names_the_method_and_nodes(tmp_path, capsys):
    from sprkit.app.cli import main

    instance = synthetic_instance(6, n=30, c=2, support=2, seed=3)
    path = save_instance(tmp_path / "small.npz", instance)
    code = main(["solve", str(path), "--lam0", "0.1", "--lam2", "0.01", "--M", "3"])
    out = capsys.readouterr().out
    assert code == 0 and "status    optimal" in out and "bnb," in out and "nodes" in out


@pytest.mark.parametrize("seed", range(6))
def test_search_with_the_root_diagonal_from_the_start_agrees_with_enumeration(seed, monkeypatch):
    """The search chooses the root diagonal after some nodes (instances this small rarely get
    there, and then in portions): forced from the first node in one go, it must still certify
    the optimum of all supports."""
    monkeypatch.setattr(branch_and_bound, "_ASCENT_AFTER_NODES", 0)
    monkeypatch.setattr(branch_and_bound, "_ASCENT_RATIO", np.inf)
    case = _hard(100 + seed, 10)
    problem, solutions = _enumerate(case)
    best = min(solutions, key=lambda s: s.value)
    result = ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, method="bnb")
    assert result.status == OPTIMAL
    optimum = best.value * problem.f_scale
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-9)
    if result.kept != np.flatnonzero(best.support).tolist():  # only an exact tie
        assert abs(result.objective - optimum) <= 1e-9 * abs(optimum)


def _fits_by_enumeration(X, Y, groups, lam0, lam2, M) -> tuple[float, list[int]]:
    """min over supports of the box-constrained ridge fit on the raw data, each fit by
    bounded-variable least squares (scipy) with the ridge as extra rows: (value, kept ids)."""
    n = X.shape[0]
    ids = np.unique(groups[groups >= 0])
    best = (np.inf, [])
    for bits in itertools.product([False, True], repeat=ids.size):
        kept = ids[np.array(bits, dtype=bool)]
        columns = np.flatnonzero((groups == -1) | np.isin(groups, kept))
        penalized = groups[columns] >= 0
        A = np.vstack([X[:, columns] / np.sqrt(n), np.diag(np.sqrt(lam2) * penalized)])
        bound = np.where(penalized, M, np.inf)
        value = lam0 * kept.size
        for column in range(Y.shape[1]):
            target = np.r_[Y[:, column] / np.sqrt(n), np.zeros(columns.size)]
            fitted = scipy.optimize.lsq_linear(
                A, target, bounds=(-bound, bound), method="bvls", tol=1e-15
            )
            value += float(np.sum((A @ fitted.x - target) ** 2))
        best = min(best, (value, kept.tolist()), key=lambda pair: pair[0])
    return best


def _near_duplicates(seed: int, delta: float, n: int, c: int):
    """Columns x0 and x0 + delta z (z, x0 standard normal) and, for c = 1, a third column;
    Y driven by their difference (c = 1) or pure noise (c > 1)."""
    rng = np.random.default_rng(seed)
    x0, z = rng.standard_normal(n), rng.standard_normal(n)
    X = np.column_stack([x0, x0 + delta * z])
    if c > 1:
        return X, rng.standard_normal((n, c)), np.array([0, 1])
    X = np.column_stack([X, rng.standard_normal(n)])
    signal = X[:, 1] - X[:, 0] + 1e-4 * delta * rng.standard_normal(n) + 0.01 * delta * X[:, 2]
    return X, signal[:, None] / delta, np.array([0, 1, 2])


@pytest.mark.parametrize("seed", [5, 11, 23])
def test_near_duplicate_columns_under_a_binding_box_are_not_certified_above_the_optimum(seed):
    """Columns that differ by 2e-7 of their norm, Y driven by the difference, lam2 = 0, the box
    binding: the fit of a support with both dropped their difference (1.3e-14 of the largest
    eigenvalue, under a fixed 1e-13 cut), and `bnb` and `auto` certified 1.8 % above the
    optimum with the bound above it too (seed 5, found by a sweep). The cut is now the
    eigenvalues' rounding; against bounded least squares on the raw data over every support."""
    X, Y, groups = _near_duplicates(seed, 2e-7, 30, 1)
    lam0, M = 1e-9 * float(np.mean(Y**2)), 0.009 / 2e-7
    optimum, kept = _fits_by_enumeration(X, Y, groups, lam0, 0.0, M)
    solver = ExactSolver(make_instance(X, Y, groups), M)
    for method in ("bnb", "oa", "auto"):
        result = solver.solve(lam0, 0.0, method=method, time_limit=20)
        assert result.bound <= optimum * (1 + 1e-9), method
        assert result.objective == pytest.approx(optimum, rel=1e-6), method
        assert result.kept == kept, method


@pytest.mark.parametrize("seed", [5, 170])
def test_a_direction_the_gram_matrix_cannot_resolve_leaves_the_bound_honest(seed):
    """Columns that differ by 1.5e-8 of their norm, Y noise, lam2 = 0, M = 1e9: the optimum
    keeps both with weights near 1e7 along their difference, whose curvature (1e-16 of the
    largest) is below the Gram matrix's rounding. Every native method certified the better
    single column 0.3-0.6 % above the optimum (seed 170, found by a sweep). The bound is now
    lowered by how far the Gram form can be from the data within the box (gram_error):
    nothing is certified above the optimum."""
    X, Y, groups = _near_duplicates(seed, 1.5e-8, 290, 4)
    optimum, kept = _fits_by_enumeration(X, Y, groups, 5e-5, 0.0, 1e9)
    assert kept == [0, 1]
    solver = ExactSolver(make_instance(X, Y, groups), 1e9)
    for method in ("bnb", "oa", "auto"):
        result = solver.solve(5e-5, 0.0, method=method, time_limit=20)
        assert result.bound <= optimum * (1 + 1e-9), method
        assert result.status != OPTIMAL or result.objective <= optimum * (1 + 1e-6), method


def _gram_cases():
    """(instance, M, lam2, near-duplicates the Gram form cannot resolve?): exact duplicates,
    fewer samples than rows, columns 1e-3 apart, a free intercept, AR(1) with rho = 0.99,
    columns over 8 orders of magnitude; and two near-duplicate pairs under a huge box."""
    rng = np.random.default_rng(0)
    x, Y, z = rng.standard_normal((40, 6)), rng.standard_normal((40, 2)), rng.standard_normal(40)
    rows = np.arange(7)
    case = hard_case(20, correlation=0.99, snr=1.0, lam2=0.001, keep_fraction=0.5)
    return [
        (make_instance(np.column_stack([x, x[:, 0]]), Y, rows), 4.0, 0.0, False),
        (make_instance(rng.standard_normal((10, 30)), Y[:10], np.arange(30)), 4.0, 0.0, False),
        (make_instance(np.column_stack([x, x[:, 0] + 1e-3 * z]), Y, rows), 4.0, 0.0, False),
        (make_instance(np.column_stack([x, np.ones(40)]), Y, np.r_[np.arange(6), -1]), 4, 0, False),
        (case.instance, case.M, case.lam2, False),
        (make_instance(x * 10.0 ** rng.uniform(-4, 4, 6), Y, np.arange(6)), 1e7, 1.0, False),
        (make_instance(np.column_stack([x, x[:, 0] + 1e-9 * z]), Y, rows), 1e9, 0.0, True),
        (make_instance(*_near_duplicates(5, 1.5e-8, 290, 4)), 1e9, 0.0, True),
    ]


@pytest.mark.parametrize("index", range(8))
def test_the_gram_margin_bounds_the_gram_forms_error(index):
    """loses_directions finds exactly the near-duplicate pairs the Gram form cannot resolve
    (not exact duplicates, n < d, correlated designs, columns in very different units).
    gram_margin against the loss evaluated from the raw data in extended precision at random
    points of the box (the ridge's and the growth's radii hold for points below the
    objective: here the box only): |L - L_gram| <= margin / 2. The margin is below 1e-8 of
    the objective on ordinary designs, and the objective itself where near-duplicate
    columns under a huge box leave the Gram form unable to resolve their difference."""
    instance, M, lam2, unresolved = _gram_cases()[index]
    solver = ExactSolver(instance, M)
    reduced, rng = solver.reduced, np.random.default_rng(index)
    assert loses_directions(instance, reduced) == unresolved
    result = solver.solve(0.01 * float(np.mean(instance.Y**2)), lam2, time_limit=2)
    growth = GramGrowth.of(reduced, np.inf)
    margin = gram_margin(
        reduced, instance.n, solver.bounds[solver.row_structure], lam2, result.objective, growth
    )
    assert (margin >= result.objective) if unresolved else (margin <= 1e-8 * result.objective)
    box_only = gram_margin(
        reduced, instance.n, solver.bounds[solver.row_structure], 0.0, np.inf, None
    )
    X, Y = instance.X.astype(np.longdouble), instance.Y.astype(np.longdouble)
    limit = solver.bounds[solver.row_structure][:, None]
    for _ in range(20):
        W_P = rng.uniform(-1, 1, reduced.cross.shape) * limit * rng.uniform(0, 1)
        W = reduced.full_weights(W_P, instance.d).astype(np.longdouble)
        exact = float(np.sum((Y - X @ W) ** 2) / instance.n)
        assert abs(exact - reduced.loss(W_P)) <= 0.5 * box_only


@pytest.mark.parametrize("seed", [2, 5, 7])
def test_a_penalized_column_that_duplicates_a_free_one_is_fitted_exactly(seed):
    """A free column copies a penalized one, lam2 = 0, the box binds: after the free rows are
    minimized out the copy is rounding only, which Jacobi scaling blew up to O(1) in the
    fixed-support fits (seed 2: `optimal` 5.6 % above the optimum, the bound above it too).
    The reduction now zeroes such a column; every method agrees with enumeration."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(6), rng.integers(1, 3, 6))
    X = rng.standard_normal((16, groups.size))
    Y = X @ (5 * rng.standard_normal((groups.size, 3))) + rng.standard_normal((16, 3))
    X = np.column_stack([X, np.ones(16), X[:, 1]])
    groups = np.r_[groups, -1, -1]
    instance = make_instance(X, Y, groups)
    solver = ExactSolver(instance, 1.0)
    column = int(np.flatnonzero(solver.reduced.penalized_rows == 1)[0])
    assert not solver.reduced.gram[column].any()  # in the free columns' span: exactly zero
    optimum, kept = _fits_by_enumeration(X, Y, groups, 0.01, 0.0, 1.0)
    for method in ("bnb", "oa", "auto"):
        result = solver.solve(0.01, 0.0, method=method, time_limit=30)
        assert result.status == OPTIMAL, method
        assert result.objective == pytest.approx(optimum, rel=1e-6), method
        assert result.bound <= optimum * (1 + 1e-9), method


def test_a_column_with_a_large_offset_a_free_intercept_absorbs_is_kept():
    """The column 2e9 + t (t ~ N(0, 1)) beside a free intercept: its residual is 5e-10 of its
    norm, resolved by float64, and it carries the signal. A threshold of 1e-9 on that ratio
    zeroed it and certified 5.64 where keeping it gives 0.0185 (a review's example; at an
    offset of 1e13 a sweep found the same with a threshold of 1024 eps, docs/mip.md)."""
    rng = np.random.default_rng(0)
    t, other = rng.standard_normal(40), rng.standard_normal(40)
    X = np.column_stack([2e9 + t, other, np.ones(40)])
    Y = (3.0 * t + 0.1 * rng.standard_normal(40))[:, None]
    groups = np.array([0, 1, -1])
    # the reference on the centered column: the same problem (the intercept is free), which
    # bounded least squares can fit without the offset's conditioning
    centered = X.copy()
    centered[:, 0] -= np.round(centered[:, 0].mean())  # exact in float64: the same data
    optimum, kept = _fits_by_enumeration(centered, Y, groups, 0.01, 0.0, 10.0)
    assert kept == [0] and optimum < 0.02
    result = ExactSolver(make_instance(X, Y, groups), 10.0).solve(0.01, 0.0, method="bnb")
    assert result.status == OPTIMAL and result.kept == [0]
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-9)


@pytest.mark.parametrize("time_limit", [0.1, 0.3, 3.0])
def test_outer_approximation_bound_allows_for_the_master_tolerance(time_limit):
    """Found by a sweep: structure 2 is an all-zero column, lam2 = 0, lam0 = 2.4e-8 of the
    objective. HiGHS stopped on its own tolerance with the dual bound of the support that
    keeps the zero column, lam0 above the optimum (at limits of 0.1-0.3 s on this machine).
    The master's bound is now lowered by its tolerance."""
    data = np.load(Path(__file__).parent / "data" / "oa_zero_column.npz")
    X, Y, groups = data["X"], data["Y"], data["groups"]
    lam0, M = 1.6910022432728696e-08, 6.40275140308023
    optimum, kept = _fits_by_enumeration(X, Y, groups, lam0, 0.0, M)
    assert 2 not in kept
    result = ExactSolver(make_instance(X, Y, groups), M).solve(
        lam0, 0.0, method="oa", time_limit=time_limit
    )
    assert result.bound <= optimum * (1 + 1e-12)
    assert result.objective <= optimum * (1 + 1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_a_zero_optimum_through_the_free_rows_is_certified(seed):
    """Y in the span of the free rows: the optimum, with nothing kept, is 0 up to rounding
    (up to 6e-25 with a free block of condition number 765), below the bounds' rounding
    (7e-23): it used to end `stalled` on 4 of these 6 seeds."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.standard_normal((6, 4)), rng.standard_normal((6, 6))])
    Y = rng.standard_normal((6, 2))
    instance = make_instance(X, Y, np.array([0, 1, 2, 3] + [-1] * 6))
    result = ExactSolver(instance, 2.0).solve(0.1, 1e-3, method="bnb", time_limit=10)
    assert result.status == OPTIMAL and result.kept == []
    assert result.objective <= 1e-20 * float(np.sum(Y**2)) and result.bound == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_columns_in_very_different_units_do_not_fool_the_certificate(seed):
    """Columns scaled by 10^+-3.5 make the Gram matrix's condition number ~1e14: a fit that
    dropped its small eigenvalues returned a support value 4.5 % too high, certified as
    optimal with a bound above the true optimum. Against enumeration on the raw data."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(12, 7)) * 10.0 ** rng.uniform(-3.5, 3.5, size=7)
    Y = rng.normal(size=(12, 2))
    groups = np.array([0, 0, 1, 1, 1, 2, 2])
    optimum, kept = _fits_by_enumeration(X, Y, groups, 0.0, 1e-14, 100.0)
    result = ExactSolver(make_instance(X, Y, groups), 100.0).solve(0.0, 1e-14, method="bnb")
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-7)


@pytest.mark.parametrize(
    "seed, rows, dead", [(0, 1, False), (1, 1, False), (2, 2, False), (0, 1, True)]
)
def test_columns_in_units_1e8_apart_are_certified_by_bnb(seed, rows, dead):
    """Columns scaled by 10^U(-4, 4): the relaxations' plain gradient steps made no progress
    on the small columns (bound 0 after 60 s on 8 structures); the Jacobi-preconditioned
    steps certify, also beside an all-zero column (a dead unit: a zero diagonal of G had
    switched the preconditioning off). Against enumeration on the raw data."""
    rng = np.random.default_rng(seed)
    groups = np.r_[np.repeat(np.arange(8), rows), -1]
    X = spread_design(rng, 30, groups.size)
    if dead:  # structure 8: one all-zero column
        X, groups = np.c_[X[:, :-1], np.zeros(30), X[:, -1:]], np.r_[groups[:-1], 8, -1]
    W = rng.normal(size=(groups.size, rows)) / np.maximum(np.abs(X).mean(axis=0), 1e-300)[:, None]
    W[np.isin(groups, rng.choice(8, 5, replace=False))] = 0.0
    Y = X @ W + rng.normal(size=(30, rows)) * 0.3
    optimum, kept = _fits_by_enumeration(X, Y, groups, 0.05, 1e-3, 1e5)
    result = ExactSolver(make_instance(X, Y, groups), 1e5).solve(
        0.05, 1e-3, method="bnb", time_limit=30
    )
    assert result.status == OPTIMAL
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.kept == kept


@pytest.mark.parametrize("seed", [4, 6])
def test_restored_weights_stay_in_the_box_exactly(seed):
    """M' * w_scale can round one ulp past M: the returned W then left the box, and the SPR
    route's exact-form value was inf. Rows of 1-3 per structure, columns 1e8 apart."""
    rng = np.random.default_rng(seed)
    groups = np.r_[np.repeat(np.arange(5), rng.integers(1, 4, size=5)), -1]
    X, Y = spread_data(rng, groups)
    instance = make_instance(X, Y, groups)
    lam0, lam2, M = 0.02, 10 ** rng.uniform(-5, 0), 50.0
    result = ExactSolver(instance, M).solve(lam0, lam2, method="bnb")
    assert result.status == OPTIMAL
    assert np.abs(result.W[groups >= 0]).max() <= M
    route = SPRRoute(instance, M).solve(lam0, lam2)
    assert np.isfinite(route.value) and route.lower_bound <= route.value


def test_a_zero_optimum_is_certified():
    """Y in the span of X with lam0 = lam2 = 0: the optimum is 0 (up to rounding), which a
    purely relative gap could never certify; 0 is always a valid bound."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4))
    Y = X @ rng.normal(size=(4, 2))
    instance = make_instance(X, Y, np.array([0, 0, 1, -1]))
    for method in ("bnb", "oa", "auto"):
        result = ExactSolver(instance, 1e3).solve(0.0, 0.0, method=method, time_limit=30)
        assert result.status == OPTIMAL and result.bound == 0.0
        assert result.objective <= 1e-20 * float(np.sum(Y**2))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 8])
def test_a_tiny_optimum_with_collinear_columns_is_not_overclaimed(seed):
    """Y explained exactly by structures 0-3, two of whose columns are collinear up to 1e-7,
    lam0 = 1e-13 of the loss at W = 0: the optimum is 4 lam0 (keeping fewer structures
    leaves a loss of order 1). The bound and the fits are computed in float64 to about eps
    of that loss; a bound 1e-16 of it above 4 lam0 was reported `optimal` when the gap floor
    was 1e-12 of it. Reported bounds are at most the optimum; an `optimal` objective is
    within tol of it, relative to max(optimum, 1e-8 of the loss at W = 0)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 10))
    X[:, 3] = X[:, 0] + 1e-7 * rng.standard_normal(40)
    W = rng.standard_normal((10, 2))
    W[8:] = 0.0
    Y = X @ W
    at_zero = float(np.mean(np.sum(Y**2, axis=1)))
    lam0 = 1e-13 * at_zero
    optimum = 4 * lam0
    instance = make_instance(X, Y, np.repeat(np.arange(5), 2))
    for method in ("bnb", "auto"):
        result = ExactSolver(instance, 100.0).solve(lam0, 0.0, method=method, time_limit=30)
        assert result.bound <= optimum, method
        if result.status == OPTIMAL:
            assert result.objective - optimum <= 1e-6 * max(optimum, 1e-8 * at_zero), method


def test_an_offset_the_free_rows_absorb_does_not_loosen_the_gap():
    """Y + 1e8 beside a free intercept: the same problem as Y, but the objective at W = 0
    (1e16) is not its scale. With the gap floored at 1e-8 of that, a search stopped after
    3 ms was reported `optimal` 9.5 % above the optimum, with bound 0. An `optimal` result
    must be within tol of the optimum (enumeration on the data without the offset), and no
    bound above it."""
    case = hard_case(
        10, correlation=0.8, snr=1.0, lam2=0.0005, keep_fraction=0.5, c=1, rows_per_group=2,
        seed=4,
    )  # fmt: skip
    plain = case.instance
    X = np.hstack([plain.X, np.ones((plain.n, 1))])
    groups = np.append(plain.groups, -1)
    optimum, _ = _fits_by_enumeration(X, plain.Y, groups, case.lam0, case.lam2, case.M)
    shifted = make_instance(X, plain.Y + 1e8, groups)
    for limit in (0.003, 0.01, 60.0):
        result = ExactSolver(shifted, case.M).solve(
            case.lam0, case.lam2, method="bnb", time_limit=limit
        )
        assert result.bound <= optimum * (1 + 1e-9), limit
        if result.status == OPTIMAL:
            assert result.objective <= optimum * (1 + 2e-6), limit
    assert result.status == OPTIMAL


def test_a_flat_relaxation_is_certified_by_auto():
    """lam2 = 0 with fewer samples than rows (singular Gram): the perspective relaxation is
    the big-M one and bnb's branching alone stalled (60 % gap at 30 s). Up to 16 structures
    auto runs bnb, which enumerates such a node's supports; beyond, it runs oa first."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(8), 3)
    X = rng.normal(size=(14, groups.size))
    Y = X[:, :9] @ rng.normal(size=(9, 1)) + 0.3 * rng.normal(size=(14, 1))
    lam0 = 1e-3 * float(np.sum(Y**2)) / 14
    optimum, _ = _fits_by_enumeration(X, Y, groups, lam0, 0.0, 100.0)
    result = ExactSolver(make_instance(X, Y, groups), 100.0).solve(lam0, 0.0, time_limit=60)
    assert result.status == OPTIMAL and result.method == "bnb"
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-7)
    wide = np.repeat(np.arange(20), 2)
    X = rng.normal(size=(14, wide.size))
    Y = X[:, :9] @ rng.normal(size=(9, 1)) + 0.3 * rng.normal(size=(14, 1))
    result = ExactSolver(make_instance(X, Y, wide), 100.0).solve(lam0, 0.0, time_limit=2)
    assert result.method in ("oa", "oa+bnb")


def test_oa_with_no_ridge_and_a_huge_box_finds_the_optimum():
    """lam2 = 0 and M = 1e12: oa's root relaxation used to take the whole time limit, leaving
    an incumbent 15 % above the optimum; now it seeds the first cut within a share of it."""
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(8), 3)
    X = rng.normal(size=(40, groups.size))
    Y = X[:, :6] @ rng.normal(size=(6, 2)) + rng.normal(size=(40, 2))
    lam0 = 0.05 * float(np.sum(Y**2)) / 40
    optimum, _ = _fits_by_enumeration(X, Y, groups, lam0, 0.0, 1e12)
    result = ExactSolver(make_instance(X, Y, groups), 1e12).solve(
        lam0, 0.0, method="oa", time_limit=20
    )
    assert result.objective == pytest.approx(optimum, rel=1e-6)
    assert result.bound <= optimum * (1 + 1e-7)


def test_node_growth_backoff_doubles_after_useless_calls_and_resets_after_a_useful_one():
    """The schedule of the optional node growths: after k useless calls in a row, the next
    min(2^k, limit) - 1 offers are skipped; a useful call makes the next offer due."""
    schedule = branch_and_bound._Backoff()
    limit = branch_and_bound._BACKOFF_LIMIT

    def skipped_before_due() -> int:
        skipped = 0
        while not schedule.due():
            skipped += 1
        return skipped

    assert skipped_before_due() == 0
    for k in range(1, 9):
        schedule.record(False)
        assert skipped_before_due() == min(2**k, limit) - 1
    schedule.record(True)
    assert skipped_before_due() == 0


def test_only_new_factorizations_slow_the_growth_schedule_and_a_useful_growth_resets_it():
    """A useless growth factored for a node doubles the interval; the same growth reused
    from the cache (it cost nothing) leaves it; a useful one, cached or not, resets it."""
    case = _hard(3, 8)
    problem, _ = _enumerate(case)
    search = branch_and_bound.BranchAndBound(problem)
    state = np.full(problem.n_groups, FREE, dtype=np.int8)
    state[0] = REMOVED
    shift = search._shift(state)
    bound = search.relaxation.solve(
        state, problem.M, np.zeros_like(problem.reduced.cross), tol=1e-9, shift=shift
    )
    certificate = search.relaxation.certificate(state, problem.M, bound.W_dual)[0]
    base = max(bound.lower, certificate)
    loose = base + 1e6 * abs(base)  # an ellipsoid far wider than the box: nothing deduced
    tight = base + 1e-9 * abs(base)  # a tiny ellipsoid: every M_j cut
    schedule = search._growth_schedule
    search._deduce(state, problem.M, bound, loose, shift)
    assert schedule.interval == 2
    search._deduce(state, problem.M, bound, loose, shift)
    assert schedule.interval == 2
    search._deduce(state, problem.M, bound, tight, shift)
    assert schedule.interval == 1


def test_oa_certifies_an_optimum_far_below_the_objective_at_zero():
    """Y almost in the span of a few columns, n < d, no ridge: the optimum is about 1e-4 of
    the objective at W = 0. oa's master had an absolute feasibility tolerance in units of the
    latter, so its bound stopped 1e-9 of it short (a gap near 1e-5) and oa stalled."""
    rng = np.random.default_rng(121)
    groups = np.repeat(np.arange(10), [2, 2, 2, 1, 2, 2, 2, 1, 2, 1])
    X = rng.normal(size=(8, groups.size))
    Y = X[:, [0, 4, 9]] @ rng.normal(size=(3, 3)) + 1e-3 * rng.normal(size=(8, 3))
    lam0 = 2e-5 * float(np.sum(Y**2)) / 8
    optimum, kept = _fits_by_enumeration(X, Y, groups, lam0, 0.0, 3.0)
    assert optimum < 1e-3 * float(np.sum(Y**2)) / 8
    for method in ("oa", "auto"):
        result = ExactSolver(make_instance(X, Y, groups), 3.0).solve(
            lam0, 0.0, method=method, time_limit=30
        )
        assert result.status == OPTIMAL, (method, result.gap)
        assert result.objective == pytest.approx(optimum, rel=1e-6)
        assert result.bound <= optimum * (1 + 1e-7)


def test_scip_refusing_the_model_is_one_line(tmp_path):
    """A box of 1e30, beyond SCIP's infinity (1e20): SCIP refuses the model ("error in input
    data") and printed its own line from C on stderr before sprkit's. (Data x 1e40 was the
    example until the model was handed over in normalized units, which SCIP solves.)"""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), [1, 2, 1, 2, 1, 2])
    X = rng.normal(size=(40, groups.size))
    Y = X[:, :3] @ rng.normal(size=3)[:, None] + rng.normal(size=(40, 1))
    path = save_instance(tmp_path / "big.npz", make_instance(X, Y, groups))
    lam0 = 0.01 * float(np.sum(Y**2)) / 40
    args = ["solve", str(path), "--lam0", repr(lam0), "--lam2", "0", "--M", "1e30"]
    completed, _ = _run_cli([*args, "--method", "pyomo:scip"], timeout=60)
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_an_unknown_branching_rule_is_a_parameter_error():
    case = hard_case(6, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5)
    with pytest.raises(ParameterError, match="unknown branching rule 'xx'"):
        ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, branching="xx")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(time_limit="5"), "time_limit must be a finite number"),
        (dict(time_limit=None), "time_limit must be a finite number"),
        (dict(time_limit=True), "time_limit must be a finite number"),
        (dict(tol="1e-6"), "tol must be a number in"),
        (dict(method=None), "unknown method None"),
        (dict(method=3), "unknown method 3"),
        (dict(method="oa", branching="foo"), "unknown branching rule 'foo'"),
    ],
)
def test_solver_arguments_of_the_wrong_type_are_parameter_errors(arguments, message):
    """The Python API's arguments, typed wrong: one ParameterError (were raw TypeError and
    AttributeError)."""
    case = hard_case(6, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5)
    with pytest.raises(ParameterError, match=message):
        ExactSolver(case.instance, case.M).solve(case.lam0, case.lam2, **arguments)


@pytest.mark.parametrize("M", ["1", True, None, b"2", ["1", "2"]])
def test_an_m_that_is_not_a_number_is_a_parameter_error(M):
    """M = "1" and M = True were converted to 1.0, M = None to nan ("must be finite")."""
    case = hard_case(6, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5)
    with pytest.raises(ParameterError, match="M must be a number or an array of numbers"):
        ExactSolver(case.instance, M)


def test_an_instance_that_is_not_an_instance_is_a_parameter_error():
    """A file name in place of the instance was a raw AttributeError."""
    with pytest.raises(ParameterError, match="instance must be an sprkit Instance"):
        ExactSolver("instance.npz", 1.0)
