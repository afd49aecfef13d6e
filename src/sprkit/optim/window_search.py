"""Incumbent improvement by exact re-optimization of windows of coupled structures (a large
neighbourhood search).

A window is a seed structure and the structures most coupled to it through the Gram matrix
(Frobenius norm of the block G[rows of j, rows of k]); seeds are taken in index order, each
structure not yet in the core (the first third) of an earlier window of the pass. Outside the
window the incumbent's support is kept and its weights are minimized out exactly under the ridge
(the box is left out there, so the window's problem is a model, not a restriction); the window's
MIP is solved by branch and bound and each support it yields is verified by the exact
fixed-support solve of the whole problem (sprkit.optim.support), so that an accepted incumbent
is always exactly evaluated. Single add/drop/swap moves (local_search) cannot exchange a pair of
correlated structures for another pair; a window can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import scipy.linalg

from sprkit.optim.problem import ScaledProblem
from sprkit.optim.support import SupportProblem, SupportSolution

WINDOW_SIZE = 30
_WINDOW_SECONDS = 1.0  # each window's branch and bound stops here (its incumbent still counts)


def coupling(problem: ScaledProblem) -> np.ndarray:
    """Structure-by-structure coupling: Frobenius norm of each block of the Gram matrix."""
    groups, structure = problem.n_groups, problem.row_structure
    squared = np.zeros((groups, groups))
    gram = problem.reduced.gram
    np.add.at(squared, (structure[:, None], structure[None, :]), gram**2)
    return np.sqrt(squared)


def windows(problem: ScaledProblem, size: int = WINDOW_SIZE) -> list[np.ndarray]:
    """The windows of one pass (sorted structure positions), covering every structure."""
    strength = coupling(problem)
    groups = problem.n_groups
    cored = np.zeros(groups, dtype=bool)
    result = []
    for seed in range(groups):
        if cored[seed]:
            continue
        order = np.argsort(-strength[seed], kind="stable")
        members = np.concatenate(([seed], order[order != seed]))[:size]
        cored[members[: max(1, size // 3)]] = True
        result.append(np.sort(members))
    return result


def window_problem(
    problem: ScaledProblem, support: np.ndarray, window: np.ndarray
) -> ScaledProblem | None:
    """The problem in the window's structures (`window`: sorted positions) with the rest fixed
    to `support` and its kept weights minimized out under the ridge (None if that elimination
    is singular). Only gram, cross and const of its `reduced` are the window's; its other
    fields (free rows, row maps) still describe the whole problem and are not used."""
    reduced, structure = problem.reduced, problem.row_structure
    inside = np.isin(structure, window)
    rows = np.flatnonzero(inside)
    fixed = np.flatnonzero(~inside & support[structure])
    gram, cross = reduced.gram, reduced.cross
    const = reduced.const + problem.lam0 * int(np.count_nonzero(support) - support[window].sum())
    window_gram, window_cross = gram[np.ix_(rows, rows)], cross[rows]
    if fixed.size:
        hessian = gram[np.ix_(fixed, fixed)] + problem.lam2 * np.eye(fixed.size)
        try:
            factor = scipy.linalg.cho_factor(hessian)
        except np.linalg.LinAlgError:
            return None
        coupled = gram[np.ix_(fixed, rows)]
        solved = scipy.linalg.cho_solve(factor, np.hstack([coupled, cross[fixed]]))
        window_gram = window_gram - coupled.T @ solved[:, : rows.size]
        window_gram = 0.5 * (window_gram + window_gram.T)
        window_cross = window_cross - coupled.T @ solved[:, rows.size :]
        const -= float(np.sum(cross[fixed] * solved[:, rows.size :]))
    return replace(
        problem,
        reduced=replace(reduced, gram=window_gram, cross=window_cross, const=const),
        row_structure=np.searchsorted(window, structure[rows]),
        M=problem.M[window],
        given_M=problem.given_M[window],
    )


def window_search(
    problem: ScaledProblem,
    supports: SupportProblem,
    start: SupportSolution,
    solve_window: Callable[[ScaledProblem, float], np.ndarray],
    *,
    deadline: float = np.inf,
    size: int = WINDOW_SIZE,
) -> SupportSolution:
    """Best incumbent found by passes over the windows until a pass improves nothing.
    `solve_window(window_problem, deadline)` returns the window's best support; deadlines
    are time.perf_counter() seconds (a window's setup can run past `deadline` by one
    factorization of the kept rows)."""
    best = start
    if problem.n_groups <= size:
        return best
    passes = windows(problem, size)
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for window in passes:
            if time.perf_counter() >= deadline:
                break
            local = window_problem(problem, best.support, window)
            if local is None:
                continue
            support = best.support.copy()
            window_deadline = min(deadline, time.perf_counter() + _WINDOW_SECONDS)
            support[window] = solve_window(local, window_deadline)
            if np.array_equal(support, best.support):
                continue
            target = best.value - 1e-12 * abs(best.value)
            candidate = supports.improving(support, target)
            if candidate is not None and candidate.value < target:
                best, improved = candidate, True
    return best
