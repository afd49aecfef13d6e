"""The perspective relaxation at a branch-and-bound node, solved with a dual certificate.

A node fixes some structures to 0 (removed: w_j = 0) and some to 1 (kept: penalty
lam2 ||w_j||^2 + lam0, box |w_jk| <= M_j) and leaves the others free, where the perspective
relaxation contributes the closed form z_j (sprkit.formula, exact form, the node's M_j). Its
value is minimized by accelerated proximal gradient (FISTA with adaptive restart, as the SPR
route), warm-started from the parent's W, on the rows of the structures not removed.

The bound is the Fenchel dual certificate at the current W (docs/mip.md): with the dual point
V = 2 (B - G W) and s_j = psi_j(V_j) - lam0 (psi_j: the Huber sum of the conjugate),

    D(W) = const - <W, G W> - sum_{kept} s_j - sum_{free} max(0, s_j)  <=  node optimum,

valid for any W, so a node stopped early still has a proven bound. The affine function
y -> const - <W, G W> - sum_j y_j s_j underestimates the MIP objective over the node's
subtree (its minimum over the node's y-box is D), which the search uses for reduced-cost
fixing.

Strengthened form: with `shift` = delta_r >= 0 per row the node is written with Gram
G - diag(delta of the free structures' rows) and ridge lam2 + delta_r on the free rows, the
same objective at every point of the node, and a stronger relaxation while that Gram stays
positive semidefinite (`free_shift`, docs/mip.md). In a `Frame` (an orthogonal change of each
structure's rows) the same is done on the rotated rows, which moves a full matrix per
structure into its penalty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from sprkit.formula import (
    Case,
    RaggedProx,
    SPRClosedForm,
    group_reductions,
    spr_conjugate_ragged,
    spr_from_reductions,
)
from sprkit.optim.dense_cost import CHOLESKY, TOP_EIGENVALUE, dense_seconds
from sprkit.optim.problem import ScaledProblem
from sprkit.optim.quadratic import top_eigenvalue

FREE, REMOVED, KEPT = -1, 0, 1
_CHECK_EVERY = 10
_PRECONDITION_SPREAD = 10.0  # largest / smallest diagonal of G beyond which steps use it


@dataclass(frozen=True)
class NodeBound:
    """lower: the dual certificate; upper: the relaxation's objective at W (so the node's
    relaxation optimum lies in [lower, upper]); W: all penalized rows (removed ones zero);
    y: indicator per structure (closed form's y* for free ones, 0/1 for fixed ones); nonzero:
    w_j != 0 per structure; W_dual and slopes: the point where `lower` was certified and the
    s_j of its affine minorant; iterations: proximal-gradient steps taken."""

    lower: float
    upper: float
    W: np.ndarray
    y: np.ndarray
    nonzero: np.ndarray
    W_dual: np.ndarray
    slopes: np.ndarray
    iterations: int

    @property
    def relative_gap(self) -> float:
        return (self.upper - self.lower) / max(abs(self.upper), 1e-300)


@dataclass(frozen=True)
class Frame:
    """An orthogonal change of each structure's rows, w_j = R_j u_j, in which node relaxations
    are written: `rotation` R (rows x rows, block diagonal over the structures), `gram`
    R' G R, `cross` R' B, and `box` per row: |u_k| <= box_k M_j y_j holds at every point of
    the MIP (box_k = ||R e_k||_1, since |w| <= M_j y_j entry-wise), so the relaxation with
    that box is valid; it is the MIP's box when R_j is the identity."""

    rotation: np.ndarray
    gram: np.ndarray
    cross: np.ndarray
    box: np.ndarray

    @classmethod
    def rotate(cls, problem: ScaledProblem, rotation: np.ndarray) -> Frame:
        reduced = problem.reduced
        gram = rotation.T @ reduced.gram @ rotation
        gram = 0.5 * (gram + gram.T)
        return cls(rotation, gram, rotation.T @ reduced.cross, np.abs(rotation).sum(axis=0))


class NodeRelaxation:
    """Node relaxations of one scaled problem (step size computed once; `lipschitz` may be
    passed when known, it does not depend on the lambdas).

    Where the Gram matrix's diagonal spreads over more than _PRECONDITION_SPREAD (columns of
    X in very different units: the solver units fix one overall scale only), the proximal
    gradient steps are taken in the metric of that diagonal D (Jacobi preconditioning: step
    1 / (2 lambda_max(D^-1/2 G D^-1/2)), gradient divided by D, prox in the D-norm,
    `RaggedProx(metric=...)`). With unit-spread columns a plain step converges at the rate of
    G's conditioning; with scales 1e-4 to 1e4 it made no progress at all on the small ones.
    The certificate does not depend on how W was found. `deadline`: where the top eigenvalue
    would take more than a quarter of the time left, the step comes from an upper bound on
    it (quadratic.top_eigenvalue)."""

    def __init__(
        self, problem: ScaledProblem, lipschitz: float | None = None, deadline: float = np.inf
    ) -> None:
        self.problem = problem
        gram = problem.reduced.gram
        diagonal = np.diag(gram)
        positive = diagonal[diagonal > 0]
        self.metric = None
        if positive.size and positive.max() > _PRECONDITION_SPREAD * positive.min():
            # a zero diagonal is a zero row of G (PSD): any weight serves there
            self.metric = np.where(diagonal > 0, diagonal, positive.min())
        if self.metric is None:
            if lipschitz is None:
                lipschitz = problem.reduced.lipschitz(deadline)
            self.step = 1.0 / lipschitz
        else:
            root = 1.0 / np.sqrt(self.metric)
            top = top_eigenvalue(root[:, None] * gram * root[None, :], deadline)
            self.step = 1.0 / (2.0 * top)

    def solve(
        self,
        state: np.ndarray,
        M: np.ndarray,
        warm_start: np.ndarray,
        *,
        prune_at: float = np.inf,
        tol: float = 1e-9,
        loose_tol: float | None = None,
        max_iter: int = 5000,
        deadline: float = np.inf,
        shift: np.ndarray | float = 0.0,
        frame: Frame | None = None,
    ) -> NodeBound:
        """Relaxation of the node (`state` per structure: FREE, REMOVED or KEPT; `M` per
        structure), in its strengthened form when `shift` (a scalar or one value per row, in
        `frame` if one is given: plain steps only) is positive (module docstring; at most
        `free_shift` of the node). Stops when the certificate reaches `prune_at` (the node
        can be pruned), when the relative gap is <= `tol`, when it is <= `loose_tol` and the
        objective is already below `prune_at` (the node must be branched on anyway; default:
        `tol`), at `max_iter` or at `deadline` (time.perf_counter() seconds). W and W_dual
        come back in the original rows."""
        loose_tol = tol if loose_tol is None else loose_tol
        problem = self.problem
        reduced = problem.reduced
        groups = problem.n_groups
        rows = np.flatnonzero(state[problem.row_structure] != REMOVED)
        W_full = np.zeros_like(reduced.cross)
        if rows.size == 0:  # everything removed: W = 0 is the only point
            value = reduced.const
            nothing = np.zeros(groups)
            return NodeBound(
                value, value, W_full, nothing, nothing > 0, W_full, nothing - problem.lam0, 0
            )
        if frame is not None and self.metric is not None:
            raise ValueError("a frame needs plain proximal-gradient steps (no metric)")
        free_group = state == FREE
        kept_group = state == KEPT
        form = _Form.of(problem, rows, state, M, shift, frame)
        gram = self._gram(rows, free_group, form.shift, frame)
        cross = (reduced.cross if frame is None else frame.cross)[rows]
        entry_group, kept_entry, M_entry = form.entry_group, form.kept_entry, form.box
        lam0, lam2, step = problem.lam0, problem.lam2, self.step
        metric = None if self.metric is None else self.metric[rows]
        metric_entry = 1.0 if metric is None else np.repeat(metric, cross.shape[1])
        shrink = 1.0 / (1.0 + 2.0 * step * lam2 / metric_entry)

        def evaluate(x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
            """(objective, certificate, slopes, gram @ x) at x."""
            gram_x = gram @ x
            sq_norm, closed = form.closed_form(x.ravel(), lam0)
            penalty = np.where(kept_group, lam2 * sq_norm + lam0, 0.0)
            penalty = penalty + np.where(free_group, closed.value, 0.0)
            objective = float(np.sum(x * gram_x)) - 2.0 * float(np.sum(x * cross))
            objective += reduced.const + float(np.sum(penalty))
            certificate, slopes = self._certificate(x, gram_x, cross, state, form)
            return objective, certificate, slopes, closed

        # the free structures' prox, on the free structures numbered 0..k-1 (with one entry
        # each, RaggedProx skips its segment sums); the kept ones' is a shrink-and-clip
        free_entry = ~kept_entry
        free_number = np.cumsum(free_group) - 1
        prox = RaggedProx(
            free_number[entry_group[free_entry]],
            int(np.count_nonzero(free_group)),
            step=step,
            lam0=lam0,
            lam2=form.ridge[free_entry],
            M=M_entry[free_entry],
            metric=None if metric is None else metric_entry[free_entry],
            per_entry=True,
        )
        row_metric = 1.0 if metric is None else metric[:, None]
        x = warm_start[rows].copy() if frame is None else frame.rotation[:, rows].T @ warm_start
        x[np.abs(x) > form.row_box[:, None]] = 0.0  # outside a tightened box
        best_x = best_dual_x = x
        best_upper, best_lower, best_slopes = np.inf, -np.inf, None
        best_closed = None
        momentum_point, theta = x.copy(), 1.0
        y_groups = None
        iteration = 0
        while True:
            if iteration % _CHECK_EVERY == 0:
                upper, lower, slopes, closed = evaluate(x)
                if upper < best_upper:
                    best_upper, best_x, best_closed = upper, x, closed
                if lower > best_lower:
                    best_lower, best_slopes, best_dual_x = lower, slopes, x
                gap = (best_upper - best_lower) / max(abs(best_upper), 1e-300)
                if (
                    best_lower >= prune_at
                    or gap <= tol
                    or (gap <= loose_tol and best_upper < prune_at)
                    or iteration >= max_iter
                    or time.perf_counter() >= deadline
                ):
                    break
            iteration += 1
            gradient = 2.0 * (gram @ momentum_point - cross)
            target = (momentum_point - step * gradient / row_metric).ravel()
            flat = np.minimum(np.maximum(target * shrink, -M_entry), M_entry)
            flat[free_entry], y_groups = prox(target[free_entry], y_groups)
            x_new = flat.reshape(x.shape)
            moved = x_new - x
            # adaptive restart: the momentum points against the step just taken
            if metric is None:
                restart = np.vdot(momentum_point - x_new, moved) > 0
            else:
                restart = np.sum(row_metric * (momentum_point - x_new) * moved) > 0
            if restart:
                theta = 1.0
            theta_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * theta * theta))
            momentum_point = x_new + ((theta - 1.0) / theta_new) * moved
            x, theta = x_new, theta_new
        W_full[rows] = best_x
        W_dual = np.zeros_like(W_full)
        W_dual[rows] = best_dual_x
        if frame is not None:
            W_full, W_dual = frame.rotation @ W_full, frame.rotation @ W_dual
        y = np.where(kept_group, 1.0, np.where(free_group, best_closed.indicator, 0.0))
        nonzero = np.where(free_group, best_closed.case != Case.ZERO, kept_group)
        return NodeBound(best_lower, best_upper, W_full, y, nonzero, W_dual, best_slopes, iteration)

    def certificate(
        self, state: np.ndarray, M: np.ndarray, W: np.ndarray, shift: np.ndarray | float = 0.0
    ) -> tuple[float, np.ndarray]:
        """(D(W), slopes s_j) of the node's relaxation (form `shift`, per row or a scalar)
        at W (all penalized rows; removed rows ignored)."""
        problem = self.problem
        rows = np.flatnonzero(state[problem.row_structure] != REMOVED)
        x = W[rows]
        form = _Form.of(problem, rows, state, M, shift, None)
        gram_x = self._gram(rows, state == FREE, form.shift, None) @ x
        return self._certificate(x, gram_x, problem.reduced.cross[rows], state, form)

    def _gram(
        self, rows: np.ndarray, free_group: np.ndarray, shift: np.ndarray, frame: Frame | None
    ) -> np.ndarray:
        """G (in `frame`) on `rows`, less the shift (one value per row of `rows`) on the
        diagonal of the free rows; read only (G itself where that leaves it unchanged: a
        copy of a large G costs seconds)."""
        matrix = self.problem.reduced.gram if frame is None else frame.gram
        free_rows = np.flatnonzero(free_group[self.problem.row_structure[rows]] & (shift > 0))
        if rows.size == matrix.shape[0] and free_rows.size == 0:
            return matrix
        gram = matrix[np.ix_(rows, rows)]
        gram[free_rows, free_rows] -= shift[free_rows]
        return gram

    def _certificate(
        self,
        x: np.ndarray,
        gram_x: np.ndarray,
        cross: np.ndarray,
        state: np.ndarray,
        form: _Form,
    ) -> tuple[float, np.ndarray]:
        """The Fenchel certificate D and its slopes at x (rows of the structures not removed,
        gram_x = G' x on those rows, G' the Gram of the form `form`)."""
        problem = self.problem
        duals = 2.0 * (cross - gram_x).ravel()
        psi = spr_conjugate_ragged(
            duals,
            form.entry_group,
            problem.n_groups,
            lam0=0.0,
            lam2=form.ridge,
            M=form.box,
            per_entry=True,
        )
        slopes = psi - problem.lam0
        certificate = problem.reduced.const - float(np.sum(x * gram_x))
        certificate -= float(np.sum(slopes[state == KEPT]))
        certificate -= float(np.sum(np.maximum(slopes[state == FREE], 0.0)))
        return certificate, slopes


@dataclass(frozen=True)
class _Form:
    """A node's penalty on the rows of the structures not removed, one value per entry (rows
    times outputs, row-major): ridge (lam2, plus the shift on free rows) and box (M_j times
    the frame's factor), with the rows' shift and box. The closed form depends on
    sum_k ridge_k w_k^2 and max_k |w_k| / box_k only: it is evaluated as reference_j * sq_j
    with reference_j the group's largest ridge (`ratio` = ridge / reference per entry, None
    where all are 1) and box_j, the group's largest box (`scale` = box_j / box per entry)."""

    entry_group: np.ndarray
    kept_entry: np.ndarray
    ridge: np.ndarray
    box: np.ndarray
    shift: np.ndarray
    row_box: np.ndarray
    reference: np.ndarray
    group_box: np.ndarray
    ratio: np.ndarray | None
    scale: np.ndarray | None

    @classmethod
    def of(
        cls,
        problem: ScaledProblem,
        rows: np.ndarray,
        state: np.ndarray,
        M: np.ndarray,
        shift: np.ndarray | float,
        frame: Frame | None,
    ) -> _Form:
        groups = problem.n_groups
        row_group = problem.row_structure[rows]
        row_shift = np.broadcast_to(
            np.asarray(shift, dtype=np.float64), problem.row_structure.shape
        )[rows]
        row_ridge = problem.lam2 + np.where(state[row_group] == FREE, row_shift, 0.0)
        row_box = M[row_group] * (1.0 if frame is None else frame.box[rows])
        reference = np.zeros(groups)
        np.maximum.at(reference, row_group, row_ridge)
        group_box = np.ones(groups)
        group_box[row_group] = 0.0
        np.maximum.at(group_box, row_group, row_box)
        row_ratio = np.where(reference[row_group] > 0, row_ridge, 1.0) / np.where(
            reference[row_group] > 0, reference[row_group], 1.0
        )
        row_scale = group_box[row_group] / row_box
        outputs = problem.reduced.cross.shape[1]
        entry_group = np.repeat(row_group, outputs)
        return cls(
            entry_group,
            state[entry_group] == KEPT,
            np.repeat(row_ridge, outputs),
            np.repeat(row_box, outputs),
            row_shift,
            row_box,
            reference,
            group_box,
            None if np.all(row_ratio == 1.0) else np.repeat(row_ratio, outputs),
            None if np.all(row_scale == 1.0) else np.repeat(row_scale, outputs),
        )

    def closed_form(self, flat: np.ndarray, lam0: float) -> tuple[np.ndarray, SPRClosedForm]:
        """(sum of squares per group, the closed form per group) at the flat point."""
        index, groups = self.entry_group, self.reference.size
        if self.ratio is None and self.scale is None:
            sq_norm, max_abs = group_reductions(flat, index, groups)
        else:
            weights = flat * flat if self.ratio is None else self.ratio * flat * flat
            sq_norm = np.bincount(index, weights=weights, minlength=groups)
            scaled = flat if self.scale is None else flat * self.scale
            _, max_abs = group_reductions(scaled, index, groups)
        closed = spr_from_reductions(
            sq_norm,
            max_abs,
            lam0=lam0,
            lam2=self.reference,
            M=self.group_box,
            outside="exact",
            check_M=False,
        )
        return sq_norm, closed


_EIGEN_MARGIN = 1e-9  # relative to lambda_max(G): rounding of the eigenvalue computation


def free_shift(
    gram: np.ndarray,
    row_structure: np.ndarray,
    state: np.ndarray,
    base: np.ndarray | None = None,
    deadline: float = np.inf,
) -> np.ndarray:
    """The node's strengthened form, one shift per row: `base` (per row, with G - diag(base)
    positive semidefinite on the rows of the structures not removed at the root; default 0)
    plus delta, the smallest eigenvalue of the Schur complement of the kept rows in
    G - diag(base of the free rows) restricted to the rows not removed, less a rounding
    margin. `gram` is G in the frame the node is solved in (a Frame's, or the original).
    Shifts are read on free rows only. Falls back to the scalar rule (base 0) where delta
    comes out negative, and to 0 where the kept block cannot be factored. delta never
    decreases from a node to its children (docs/mip.md) where it is computed: where the
    factorizations are predicted to take more than a quarter of the time left before
    `deadline`, delta is 0 (the form `base` alone, valid by itself: the root's barrier kept
    G - diag(base) positive definite with a margin, and every node's rows are a principal
    submatrix of the root's)."""
    zero = np.zeros(row_structure.size)
    row_state = state[row_structure]
    free = np.flatnonzero(row_state == FREE)
    if free.size == 0:
        return zero
    kept = np.flatnonzero(row_state == KEPT)
    if np.isfinite(deadline):
        cost = dense_seconds(free.size, TOP_EIGENVALUE) + dense_seconds(kept.size, CHOLESKY)
        if cost > 0.25 * (deadline - time.perf_counter()):
            return zero if base is None else base.copy()
    schur = gram[np.ix_(free, free)]
    if base is not None:
        schur = schur - np.diag(base[free])
    if kept.size:
        try:
            factor = scipy.linalg.cho_factor(gram[np.ix_(kept, kept)], check_finite=False)
        except np.linalg.LinAlgError:
            return zero
        coupling = gram[np.ix_(kept, free)]
        schur = schur - coupling.T @ scipy.linalg.cho_solve(factor, coupling, check_finite=False)
    smallest = scipy.linalg.eigh(
        schur, eigvals_only=True, subset_by_index=[0, 0], driver="evr", check_finite=False
    )[0]
    largest = float(np.max(np.diag(gram)))  # >= lambda_max / rows, a scale for the margin
    delta = float(smallest) * (1.0 - 1e-6) - _EIGEN_MARGIN * gram.shape[0] * largest
    if delta < 0.0:
        return zero if base is None else free_shift(gram, row_structure, state)
    return delta + (zero if base is None else base)
