"""A diagonal for the strengthened node relaxations, chosen at the root by supergradient ascent.

The strengthened form moves a diagonal D of the loss's curvature into the free structures'
ridge (docs/mip.md): any D >= 0, constant over the rows of a structure, with G - D positive
semidefinite gives a valid relaxation, and the bound it certifies is a concave function of D
(a minimum over W of functions affine in D). With (W, y) a minimizer of the root relaxation,
structure j's term changes with d_j as

    d/d d_j [ -d_j ||w_j||^2 + d_j ||w_j||^2 / y_j ] = ||w_j||^2 (1 / y_j - 1) >= 0,

a supergradient (Danskin), large where a structure is fractional with weights. Ascent steps
along it, pulled back into the PSD cone by a uniform decrease, move the curvature where the
relaxation is loose; the best diagonal met is kept for the whole tree (every node adds its
own scalar on top, `node_relaxation.free_shift`, which also re-checks positivity). The
maximal-trace diagonal, by contrast, gave weaker root bounds than the scalar shift at 200
structures (docs/benchmarks.md): the bound, not the trace, has to drive the choice.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from sprkit.optim.node_relaxation import FREE, REMOVED, NodeBound, NodeRelaxation, free_shift

_STEPS = 25
_FIRST_STEP = 2.0  # largest change of a d_j at the first step, in units of the root's shift
_DECAY = 0.8  # step sizes decrease geometrically
_PATIENCE = 5  # steps without a useful gain before stopping
_USEFUL_GAIN = 0.01  # a gain counts when it closes this share of the gap left to the level
_PULL_BACK_TRIES = 10


def ascend_diagonal(
    relaxation: NodeRelaxation,
    state: np.ndarray,
    M: np.ndarray,
    root: NodeBound,
    *,
    level: float,
    tol: float,
    max_iter: int,
    deadline: float,
) -> tuple[np.ndarray | None, NodeBound]:
    """(diagonal per structure, root bound with it): the best diagonal met by the ascent from
    the scalar shift and the root relaxation solved with it; (None, `root`) when no step
    improved on `root` (solved with the scalar shift). `level`: the pruning level (the ascent
    stops once the root reaches it); `tol`, `max_iter`: of each root solve."""
    problem = relaxation.problem
    gram, row_structure = problem.reduced.gram, problem.row_structure
    rows = np.flatnonzero(state[row_structure] != REMOVED)
    root_gram, root_structure = gram[np.ix_(rows, rows)], row_structure[rows]
    scale = float(np.max(free_shift(gram, row_structure, state)))
    if scale <= 0.0:
        scale = 1e-3 * float(np.mean(np.diag(root_gram)))
    free = state == FREE
    diagonal = np.zeros(problem.n_groups)
    best_diagonal, best, current = None, root, root
    idle = 0
    for step in range(_STEPS):
        if best.lower >= level or time.perf_counter() >= deadline or idle >= _PATIENCE:
            break
        ascent = _supergradient(current, row_structure, free)
        if not np.any(ascent > 0):
            break
        size = _FIRST_STEP * scale * _DECAY**step
        candidate = _pull_back(root_gram, root_structure, diagonal + size * ascent / ascent.max())
        if candidate is None:
            break
        diagonal = candidate
        current = relaxation.solve(
            state,
            M,
            current.W,
            tol=tol,
            max_iter=max_iter,
            deadline=deadline,
            shift=free_shift(gram, row_structure, state, diagonal),
        )
        gain = current.lower - best.lower
        idle = 0 if gain > _USEFUL_GAIN * (level - best.lower) else idle + 1
        if gain > 0:
            best_diagonal, best = diagonal, current
    return best_diagonal, best


def _supergradient(bound: NodeBound, row_structure: np.ndarray, free: np.ndarray) -> np.ndarray:
    """||w_j||^2 (1 / y_j - 1) per free structure at the relaxation's point, 0 elsewhere."""
    sq_norm = np.bincount(row_structure, weights=np.sum(bound.W**2, axis=1), minlength=free.size)
    positive = free & (bound.y > 0)
    ascent = np.zeros(free.size)
    ascent[positive] = sq_norm[positive] * (1.0 / bound.y[positive] - 1.0)
    return ascent


def _pull_back(
    gram: np.ndarray, row_structure: np.ndarray, diagonal: np.ndarray
) -> np.ndarray | None:
    """`diagonal` decreased uniformly (clipped at 0) until G - D is positive semidefinite on
    the given rows; None if that fails within a few tries."""
    for _ in range(_PULL_BACK_TRIES):
        smallest = scipy.linalg.eigh(
            gram - np.diag(diagonal[row_structure]),
            eigvals_only=True,
            subset_by_index=[0, 0],
            driver="evr",
            check_finite=False,
        )[0]
        if smallest >= 0.0:
            return diagonal
        # twice the violation: the clipping at 0 gives some of it back, and any slack left
        # returns as the uniform part delta of free_shift
        diagonal = np.maximum(diagonal + 2.0 * smallest, 0.0)
    return None
