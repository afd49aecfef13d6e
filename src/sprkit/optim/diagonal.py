"""A diagonal for the strengthened node relaxations, chosen at the root by a barrier ascent.

The strengthened form moves a diagonal D of the loss's curvature into the free structures'
ridge (docs/mip.md): any D >= 0, constant over the rows of a structure, with G - D positive
semidefinite gives a valid relaxation, and the bound it certifies is a concave function of D
(a minimum over W of functions affine in D). With (W, y) a minimizer of the root relaxation,
structure j's term changes with d_j as

    d/d d_j [ -d_j ||w_j||^2 + d_j ||w_j||^2 / y_j ] = ||w_j||^2 (1 / y_j - 1) >= 0,

a supergradient (Danskin), large where a structure is fractional with weights. The best D
(the one the semidefinite relaxation implies) maximizes that bound over the PSD constraint;
the ascent follows the path of bound(D) + mu log det(G - D) (a log barrier, gradient
-mu diag((G - D)^-1)) from half the scalar shift, with backtracking steps and mu halved on
a schedule and whenever no step improves (the barrier's maximizer for that mu is reached).
A uniform pull-back into the cone instead (the previous rule) stalled early: root gaps of
instances 21 and 24 (200 structures) 0.54 and 0.33 % against 0.43 and 0.29 %, and the
best D's 4.04 % on instance 18, 5.55 % against 4.91 % (docs/mip.md). The best D met
is kept for the whole tree (every node adds its own scalar on top,
`node_relaxation.free_shift`, which also re-checks positivity). The maximal-trace diagonal,
by contrast, gave weaker root bounds than the scalar shift at 200 structures
(docs/benchmarks.md): the bound, not the trace, has to drive the choice.

Where structures have several rows, the part moved is a full matrix E_j per structure (G - E
PSD, E block diagonal, each block PSD), whose supergradient is W_j W_j' (1 / y_j - 1): its
orientation matters (a diagonal per row gains little, docs/mip.md). The nodes then work in
the frame of E's eigenvectors (`node_relaxation.Frame`), where E is a diagonal per rotated
row.
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

_STEPS = 60
_FIRST_STEP = 2.0  # largest change of a d_j at the first step, in units of the root's shift
_GROW, _SHRINK = 1.5, 0.5  # step size after an accepted / a refused step
_MU_HALVES_EVERY = 5  # steps between two halvings of the barrier weight
_PATIENCE = 10  # steps without a useful gain before stopping
_USEFUL_GAIN = 0.01  # a gain counts when it closes this share of the gap left to the level
_TRIES = 6  # step sizes tried (halving) before the barrier weight is halved
_REFUSALS = 3  # weights halved in a row without a step before the ascent stops
_START_GAP = 0.1  # the most of the root's value the ascent counts on closing
_MARGIN = 1e-12  # smallest pivot^2 / largest diagonal of a Cholesky factor counted as definite


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
    """(form, root bound with it): the best form met by the ascent (module docstring) and
    the root relaxation solved with it; (None, `root`) when no form met (the starting half
    shift included) improved on `root` (solved with the scalar shift). A diagonal per
    structure, or a matrix per structure where some structure has several rows (plain steps
    and a ridge: the frame's relaxation needs both). `level`: the pruning level (the ascent
    stops once the root reaches it); `tol`, `max_iter`: of each root solve."""
    problem = relaxation.problem
    gram, row_structure = problem.reduced.gram, problem.row_structure
    rows = np.flatnonzero(state[row_structure] != REMOVED)
    root_gram, root_structure = gram[np.ix_(rows, rows)], row_structure[rows]
    free = state == FREE
    free_rows = free[root_structure]
    scale = float(np.max(free_shift(gram, row_structure, state)))
    if scale <= 0.0 or not np.any(free_rows):
        return None, root
    matrices = (
        bool(np.any(np.bincount(root_structure) > 1))
        and relaxation.metric is None
        and problem.lam2 > 0
    )
    geometry = _Blocks(root_structure, free_rows) if matrices else _Diagonal(root_structure, free)
    # start strictly inside the PSD cone: half the scalar shift on the free rows
    part = geometry.project(np.diag(np.where(free_rows, 0.5 * scale, 0.0)))
    barrier = _Barrier.at(root_gram, part)
    if barrier is None:  # the scalar shift has no room left
        return None, root
    form = geometry.form(problem, rows, part)
    current = _solve(
        relaxation, state, M, current=root, form=form, tol=tol, max_iter=max_iter, deadline=deadline
    )
    best_form, best = (form, current) if current.lower > root.lower else (None, root)
    # barrier weight: its term's duality gap (weight x rows) starts at the gap left
    weight = _gap_left(level, best.lower) / rows.size
    step_size, idle, refused = None, 0, 0
    for step in range(_STEPS):
        if best.lower >= level or time.perf_counter() >= deadline or idle >= _PATIENCE:
            break
        direction = geometry.gradient(current, rows) - weight * geometry.restrict(barrier.inverse)
        top = float(np.max(np.abs(direction)))
        if not top > 0:
            break
        if step_size is None:
            step_size = _FIRST_STEP * scale / top
        merit = current.upper + weight * barrier.log_det
        accepted = None
        for _ in range(_TRIES):
            candidate = geometry.project(part + step_size * direction)
            if np.array_equal(candidate, part):  # the step only pushed against E >= 0
                break
            inside = _Barrier.at(root_gram, candidate)
            if inside is not None:
                form = geometry.form(problem, rows, candidate)
                trial = _solve(
                    relaxation,
                    state,
                    M,
                    current=current,
                    form=form,
                    tol=tol,
                    max_iter=max_iter,
                    deadline=deadline,
                )
                if trial.upper + weight * inside.log_det >= merit:
                    accepted = (candidate, inside, form, trial)
                    break
            step_size *= _SHRINK
        if accepted is None:  # the barrier's maximizer for this weight, up to the solves
            refused += 1
            if refused > _REFUSALS:
                break
            weight *= 0.5
            step_size = None
            continue
        refused = 0
        part, barrier, form, current = accepted
        step_size *= _GROW
        if step % _MU_HALVES_EVERY == _MU_HALVES_EVERY - 1:
            weight *= 0.5
        gain = current.lower - best.lower
        idle = 0 if gain > _USEFUL_GAIN * _gap_left(level, best.lower) else idle + 1
        if gain > 0:
            best_form, best = form, current
    return best_form, best


def _gap_left(level: float, lower: float) -> float:
    """The gap the ascent may close: to the level, at most _START_GAP of the bound's value."""
    return max(min(level - lower, _START_GAP * abs(lower)), 0.0)


def _solve(relaxation, state, M, *, current, form, tol, max_iter, deadline) -> NodeBound:
    """The root relaxation in `form`, warm-started from `current`."""
    problem = relaxation.problem
    return relaxation.solve(
        state,
        M,
        current.W,
        tol=tol,
        max_iter=max_iter,
        deadline=deadline,
        shift=free_shift(form.gram(problem), problem.row_structure, state, form.base),
        frame=form.frame,
    )


@dataclass(frozen=True)
class _Barrier:
    """log det(G - E) and (G - E)^-1 on the root's rows, at an E strictly inside the cone."""

    log_det: float
    inverse: np.ndarray

    @classmethod
    def at(cls, gram: np.ndarray, part: np.ndarray) -> _Barrier | None:
        """None where G - E is not positive definite (up to a rounding margin)."""
        try:
            factor = scipy.linalg.cholesky(gram - part, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        diagonal = np.diag(factor)
        if diagonal.min() ** 2 <= _MARGIN * float(np.max(np.diag(gram))):
            return None
        inverse = scipy.linalg.cho_solve((factor, True), np.eye(gram.shape[0]))
        return cls(2.0 * float(np.sum(np.log(diagonal))), inverse)


class _Diagonal:
    """E = diag(d_j on each free structure's rows): d_j >= 0, one value per structure."""

    def __init__(self, root_structure: np.ndarray, free: np.ndarray) -> None:
        self.root_structure, self.free = root_structure, free

    def gradient(self, bound: NodeBound, rows: np.ndarray) -> np.ndarray:
        """d bound / d E as a diagonal: ||w_j||^2 (1 / y_j - 1) on structure j's rows."""
        sq_norm = np.bincount(
            self.root_structure,
            weights=np.sum(bound.W[rows] ** 2, axis=1),
            minlength=self.free.size,
        )
        ascent = np.zeros(self.free.size)
        positive = self.free & (bound.y > 0)
        ascent[positive] = sq_norm[positive] * (1.0 / bound.y[positive] - 1.0)
        return np.diag(ascent[self.root_structure])

    def restrict(self, matrix: np.ndarray) -> np.ndarray:
        """The matrix's trace on each free structure's rows, as a diagonal (the gradient of
        <matrix, E> in d_j, spread over the structure's rows)."""
        sums = np.bincount(self.root_structure, weights=np.diag(matrix), minlength=self.free.size)
        return np.diag(np.where(self.free, sums, 0.0)[self.root_structure])

    def project(self, part: np.ndarray) -> np.ndarray:
        """Nearest admissible E: the diagonal, averaged per structure, clipped at 0, free
        structures only."""
        counts = np.bincount(self.root_structure, minlength=self.free.size)
        sums = np.bincount(self.root_structure, weights=np.diag(part), minlength=self.free.size)
        values = np.where(self.free, sums / np.maximum(counts, 1), 0.0)
        return np.diag(np.maximum(values, 0.0)[self.root_structure])

    def form(self, problem: ScaledProblem, rows: np.ndarray, part: np.ndarray) -> StrengthenedForm:
        base = np.zeros(problem.row_structure.size)
        base[rows] = np.diag(part)
        return StrengthenedForm(base, None)


class _Blocks:
    """E block diagonal, a PSD block on each free structure's rows (nodes in its frame)."""

    def __init__(self, root_structure: np.ndarray, free_rows: np.ndarray) -> None:
        self.root_structure = root_structure
        self.mask = (root_structure[:, None] == root_structure[None, :]) & free_rows[:, None]
        self.mask &= free_rows[None, :]

    def gradient(self, bound: NodeBound, rows: np.ndarray) -> np.ndarray:
        """d bound / d E: W_j W_j' (1 / y_j - 1) on each free structure's block."""
        factor = np.zeros(bound.y.size)
        positive = bound.y > 0
        factor[positive] = 1.0 / bound.y[positive] - 1.0
        W = bound.W[rows]
        return (W @ W.T) * self.mask * factor[self.root_structure][:, None]

    def restrict(self, matrix: np.ndarray) -> np.ndarray:
        return matrix * self.mask

    def project(self, part: np.ndarray) -> np.ndarray:
        """Nearest admissible E: symmetric, free blocks only, each block's eigenvalues
        clipped at 0 (a spectral function of a block-diagonal matrix is block diagonal:
        the mask only removes rounding)."""
        part = 0.5 * (part + part.T) * self.mask
        values, vectors = scipy.linalg.eigh(part, check_finite=False)
        return ((vectors * np.maximum(values, 0.0)) @ vectors.T) * self.mask

    def form(self, problem: ScaledProblem, rows: np.ndarray, part: np.ndarray) -> StrengthenedForm:
        """The frame of each structure's block of E (its eigenvectors; the identity on the
        rows not in `rows`) and the base shift per rotated row (its eigenvalues)."""
        size = problem.row_structure.size
        rotation, base = np.eye(size), np.zeros(size)
        for j in np.unique(self.root_structure):
            local = np.flatnonzero(self.root_structure == j)
            values, vectors = np.linalg.eigh(part[np.ix_(local, local)])
            rotation[np.ix_(rows[local], rows[local])] = vectors
            base[rows[local]] = np.maximum(values, 0.0)
        return StrengthenedForm(base, Frame.rotate(problem, rotation))
