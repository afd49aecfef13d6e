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

from sprkit.optim.dense_cost import CHOLESKY, EIGH, TOP_EIGENVALUE, affordable
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
# a step's dense work (optim.dense_cost), at most: per try a projection (an eigendecomposition
# for blocks), a Cholesky factor and inverse of G - E, and the node's shift
_STEP_WORK = _TRIES * (EIGH + 3 * CHOLESKY + TOP_EIGENVALUE)
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


class DiagonalAscent:
    """The ascent of the module docstring, resumable: `advance` takes steps until a given
    time, and `best_form` and `best` hold the best form met so far and the root bound it
    certifies (None and the given `root` until a form improves on the scalar shift). A
    diagonal per structure, or a matrix per structure where some structure has several rows
    (plain steps and a ridge: the frame's relaxation needs both). `state`, `M`, `root`: the
    root node and its relaxation with the scalar shift; `tol`, `max_iter`: of each root
    solve; `deadline`: of the scalar shift it starts from (none, and no ascent, where that
    would overrun it). The branch and bound advances it in portions, so that the ascent
    costs no more than about the search it serves (docs/mip.md); no step is started whose
    dense factorizations are predicted to overrun the deadline (optim.dense_cost)."""

    def __init__(
        self,
        relaxation: NodeRelaxation,
        state: np.ndarray,
        M: np.ndarray,
        root: NodeBound,
        *,
        tol: float,
        max_iter: int,
        deadline: float = np.inf,
    ) -> None:
        problem = relaxation.problem
        self._relaxation, self._state, self._M = relaxation, state, M
        self._tol, self._max_iter = tol, max_iter
        gram, row_structure = problem.reduced.gram, problem.row_structure
        self._rows = np.flatnonzero(state[row_structure] != REMOVED)
        self._gram = gram[np.ix_(self._rows, self._rows)]
        root_structure = row_structure[self._rows]
        free = state == FREE
        free_rows = self._free_rows = free[root_structure]
        self._scale = float(np.max(free_shift(gram, row_structure, state, deadline=deadline)))
        matrices = (
            bool(np.any(np.bincount(root_structure) > 1))
            and relaxation.metric is None
            and problem.lam2 > 0
        )
        self._geometry = (
            _Blocks(root_structure, free_rows) if matrices else _Diagonal(root_structure, free)
        )
        self.best_form: StrengthenedForm | None = None
        self.best = root
        self.solves = 0
        self.finished = self._scale <= 0.0 or not np.any(free_rows)
        self._current = root
        self._part = self._barrier = None
        self._weight = self._step_size = None
        self._steps = self._idle = self._refused = 0

    def advance(self, *, level: float, until: float, deadline: float = np.inf) -> None:
        """Take steps until `finished` or time.perf_counter() passes `until` (checked after
        each step, so a call takes one step at least; the first call also solves the
        starting point; each root solve stops at `deadline` at the latest). `level`: the
        pruning level (the ascent stops once the root reaches it)."""
        if not affordable(self._rows.size, deadline, _STEP_WORK, share=0.5):
            self.finished = True  # a step's factorizations would overrun the deadline
        if not self.finished and self._part is None and not self._start(level, deadline):
            self.finished = True
        while not self.finished:
            self._step(level, deadline)
            if time.perf_counter() >= until:
                return

    def _step(self, level: float, deadline: float) -> None:
        """One step of the path (or the end of the ascent: `finished`)."""
        if (
            self._steps >= _STEPS
            or self.best.lower >= level
            or self._idle >= _PATIENCE
            or time.perf_counter() >= deadline
            or not affordable(self._rows.size, deadline, _STEP_WORK, share=0.5)
        ):
            self.finished = True
            return
        geometry = self._geometry
        direction = geometry.gradient(self._current, self._rows)
        direction = direction - self._weight * geometry.restrict(self._barrier.inverse)
        top = float(np.max(np.abs(direction)))
        if not top > 0:
            self.finished = True
            return
        self._steps += 1
        if self._step_size is None:
            self._step_size = _FIRST_STEP * self._scale / top
        accepted = self._try_steps(direction, deadline)
        if accepted is None:  # the barrier's maximizer for this weight, up to the solves
            self._refused += 1
            self.finished = self._refused > _REFUSALS
            self._weight *= 0.5
            self._step_size = None
            return
        self._refused = 0
        self._part, self._barrier, form, self._current = accepted
        self._step_size *= _GROW
        if self._steps % _MU_HALVES_EVERY == 0:
            self._weight *= 0.5
        gain = self._current.lower - self.best.lower
        useful = gain > _USEFUL_GAIN * _gap_left(level, self.best.lower)
        self._idle = 0 if useful else self._idle + 1
        if gain > 0:
            self.best_form, self.best = form, self._current

    def _start(self, level: float, deadline: float) -> bool:
        """The first point, strictly inside the PSD cone: half the scalar shift on the free
        rows; False where the scalar shift has no room left."""
        part = self._geometry.project(np.diag(np.where(self._free_rows, 0.5 * self._scale, 0.0)))
        barrier = _Barrier.at(self._gram, part)
        if barrier is None:
            return False
        form = self._geometry.form(self._relaxation.problem, self._rows, part)
        self._current = self._solve(form, deadline)
        if self._current.lower > self.best.lower:
            self.best_form, self.best = form, self._current
        self._part, self._barrier = part, barrier
        # barrier weight: its term's duality gap (weight x rows) starts at the gap left
        self._weight = _gap_left(level, self.best.lower) / self._rows.size
        return True

    def _try_steps(self, direction: np.ndarray, deadline: float):
        """(part, barrier, form, bound) of the first of _TRIES halving steps along
        `direction` whose merit (bound + weight log det) does not decrease, or None."""
        merit = self._current.upper + self._weight * self._barrier.log_det
        for _ in range(_TRIES):
            candidate = self._geometry.project(self._part + self._step_size * direction)
            if np.array_equal(candidate, self._part):  # the step only pushed against E >= 0
                return None
            inside = _Barrier.at(self._gram, candidate)
            if inside is not None:
                form = self._geometry.form(self._relaxation.problem, self._rows, candidate)
                trial = self._solve(form, deadline)
                if trial.upper + self._weight * inside.log_det >= merit:
                    return candidate, inside, form, trial
            self._step_size *= _SHRINK
        return None

    def _solve(self, form: StrengthenedForm, deadline: float) -> NodeBound:
        """The root relaxation in `form`, warm-started from the current point."""
        self.solves += 1
        problem = self._relaxation.problem
        return self._relaxation.solve(
            self._state,
            self._M,
            self._current.W,
            tol=self._tol,
            max_iter=self._max_iter,
            deadline=deadline,
            shift=free_shift(form.gram(problem), problem.row_structure, self._state, form.base),
            frame=form.frame,
        )


def _gap_left(level: float, lower: float) -> float:
    """The gap the ascent may close: to the level, at most _START_GAP of the bound's value."""
    return max(min(level - lower, _START_GAP * abs(lower)), 0.0)


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
