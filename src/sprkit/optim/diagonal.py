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

Where structures have several rows, the part moved is a full matrix E_j per structure (G - E
PSD, E block diagonal), whose supergradient is W_j W_j' (1 / y_j - 1): its orientation
matters (a diagonal per row gains little, docs/mip.md). The nodes then work in the frame of
E's eigenvectors (`node_relaxation.Frame`), where E is a diagonal per rotated row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from sprkit.optim.node_relaxation import (
    FREE,
    REMOVED,
    Frame,
    NodeBound,
    NodeRelaxation,
    free_shift,
)
from sprkit.optim.problem import ScaledProblem

_STEPS = 25
_FIRST_STEP = 2.0  # largest change of a d_j at the first step, in units of the root's shift
_DECAY = 0.8  # step sizes decrease geometrically
_PATIENCE = 5  # steps without a useful gain before stopping
_USEFUL_GAIN = 0.01  # a gain counts when it closes this share of the gap left to the level
_PULL_BACK_TRIES = 10


@dataclass(frozen=True)
class StrengthenedForm:
    """The root's choice for the whole tree: `base`, one shift per row (G - diag(base) PSD
    on the root's rows, in `frame`'s rows when there is one: a matrix per structure)."""

    base: np.ndarray
    frame: Frame | None

    def gram(self, problem: ScaledProblem) -> np.ndarray:
        """G in the form's frame."""
        return problem.reduced.gram if self.frame is None else self.frame.gram


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
) -> tuple[StrengthenedForm | None, NodeBound]:
    """(form, root bound with it): the best form met by the ascent from the scalar shift and
    the root relaxation solved with it; (None, `root`) when no step improved on `root`
    (solved with the scalar shift). A diagonal per structure, or a matrix per structure
    where some structure has several rows (plain steps and a ridge: the frame's relaxation
    needs both). `level`: the pruning level (the ascent stops once the root reaches it);
    `tol`, `max_iter`: of each root solve."""
    problem = relaxation.problem
    gram, row_structure = problem.reduced.gram, problem.row_structure
    rows = np.flatnonzero(state[row_structure] != REMOVED)
    root_gram, root_structure = gram[np.ix_(rows, rows)], row_structure[rows]
    scale = float(np.max(free_shift(gram, row_structure, state)))
    if scale <= 0.0:
        scale = 1e-3 * float(np.mean(np.diag(root_gram)))
    free = state == FREE
    matrices = (
        bool(np.any(np.bincount(root_structure) > 1))
        and relaxation.metric is None
        and problem.lam2 > 0
    )
    if matrices:  # each structure's block of the rows, and the matrix part on them
        same = root_structure[:, None] == root_structure[None, :]
        part = np.zeros((rows.size, rows.size))
    else:
        part = np.zeros(problem.n_groups)
    best_form, best, current = None, root, root
    idle = 0
    for step in range(_STEPS):
        if best.lower >= level or time.perf_counter() >= deadline or idle >= _PATIENCE:
            break
        if matrices:
            ascent = _matrix_supergradient(current, rows, root_structure, free, same)
            top = float(scipy.linalg.eigvalsh(ascent, subset_by_index=[rows.size - 1] * 2)[0])
        else:
            ascent = _supergradient(current, row_structure, free)
            top = float(ascent.max())
        if not top > 0:
            break
        size = _FIRST_STEP * scale * _DECAY**step
        if matrices:
            candidate = _pull_back_matrix(root_gram, part + size * ascent / top, same)
        else:
            candidate = _pull_back(root_gram, root_structure, part + size * ascent / top)
        if candidate is None:
            break
        part = candidate
        form = (
            _frame_form(problem, rows, part)
            if matrices
            else StrengthenedForm(part[row_structure], None)
        )
        current = relaxation.solve(
            state,
            M,
            current.W,
            tol=tol,
            max_iter=max_iter,
            deadline=deadline,
            shift=free_shift(form.gram(problem), row_structure, state, form.base),
            frame=form.frame,
        )
        gain = current.lower - best.lower
        idle = 0 if gain > _USEFUL_GAIN * (level - best.lower) else idle + 1
        if gain > 0:
            best_form, best = form, current
    return best_form, best


def _matrix_supergradient(
    bound: NodeBound,
    rows: np.ndarray,
    root_structure: np.ndarray,
    free: np.ndarray,
    same: np.ndarray,
) -> np.ndarray:
    """W_j W_j' (1 / y_j - 1) on each free structure's block (on `rows`), 0 elsewhere."""
    factor = np.zeros(free.size)
    positive = free & (bound.y > 0)
    factor[positive] = 1.0 / bound.y[positive] - 1.0
    W = bound.W[rows]
    return (W @ W.T) * same * factor[root_structure][:, None]


def _pull_back_matrix(gram: np.ndarray, part: np.ndarray, same: np.ndarray) -> np.ndarray | None:
    """The block-diagonal `part` decreased uniformly, each block's eigenvalues clipped at 0,
    until G - part is positive semidefinite; None if that fails within a few tries. (A
    spectral function of a block-diagonal matrix is block diagonal: the mask only removes
    rounding.)"""
    identity = np.eye(gram.shape[0])
    for _ in range(_PULL_BACK_TRIES):
        smallest = scipy.linalg.eigh(
            gram - part, eigvals_only=True, subset_by_index=[0, 0], check_finite=False
        )[0]
        if smallest >= 0.0:
            return part
        values, vectors = scipy.linalg.eigh(part + 2.0 * smallest * identity, check_finite=False)
        part = ((vectors * np.maximum(values, 0.0)) @ vectors.T) * same
    return None


def _frame_form(problem: ScaledProblem, rows: np.ndarray, part: np.ndarray) -> StrengthenedForm:
    """The frame of each structure's block of `part` (its eigenvectors; the identity on the
    rows not in `rows`) and the base shift per rotated row (its eigenvalues)."""
    size = problem.row_structure.size
    rotation, base = np.eye(size), np.zeros(size)
    structure = problem.row_structure[rows]
    for j in np.unique(structure):
        local = np.flatnonzero(structure == j)
        values, vectors = np.linalg.eigh(part[np.ix_(local, local)])
        rotation[np.ix_(rows[local], rows[local])] = vectors
        base[rows[local]] = np.maximum(values, 0.0)
    return StrengthenedForm(base, Frame.rotate(problem, rotation))


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
