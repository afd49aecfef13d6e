"""The MIP's value function over supports and its cuts (y-space outer approximation).

For y in [0, 1]^G let v(y) = min_W L(W) + sum_j (lam2 ||w_j||^2 / y_j + lam0 y_j) subject to
|w_jk| <= M_j y_j; on binary y it is the MIP objective of the best W with support y. For any
penalized rows W (free rows minimized out, see ReducedLeastSquares) weak duality at the dual
point Theta = (2/n)(Y' - X' W) gives an affine minorant of v, valid for every y in [0, 1]^G:

    v(y) >= C(W) - sum_j y_j (psi_j(2 (B - G W)_j) - lam0),     C(W) = const - <W, G W>,

with psi_j(v) = z*_j(v) + lam0 the Huber sum of sprkit.formula (substitute w = y u in the
conjugate). When W solves the fixed-support problem of a binary y, the cut is tight at y
(strong duality of a convex QP). Minimizing the cut over y in [0, 1]^G gives the perspective
relaxation's dual bound, so the SPR route's solution yields the root cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize

from sprkit.formula import spr_conjugate_ragged
from sprkit.optim.dense_cost import EIGH, LEAST_SQUARES, affordable
from sprkit.optim.quadratic import ReducedLeastSquares


@dataclass(frozen=True)
class Cut:
    """eta >= constant - slopes @ y (slopes one per structure)."""

    constant: float
    slopes: np.ndarray

    def value(self, y: np.ndarray) -> float:
        return float(self.constant - self.slopes @ y)


def dual_cut(
    reduced: ReducedLeastSquares,
    entry_group: np.ndarray,
    bounds: np.ndarray,
    W_P: np.ndarray,
    *,
    lam0: float,
    lam2: float,
) -> Cut:
    """The affine minorant of v from the dual point of any penalized rows W_P
    (`entry_group`: structure position of each entry of W_P flattened row-major)."""
    gram_W = reduced.gram @ W_P
    duals = 2.0 * (reduced.cross - gram_W)
    psi = spr_conjugate_ragged(
        duals.ravel(), entry_group, bounds.size, lam0=0.0, lam2=lam2, M=bounds
    )
    return Cut(constant=reduced.const - float(np.sum(W_P * gram_W)), slopes=psi - lam0)


@dataclass(frozen=True)
class SupportSolution:
    """Optimum of the fixed-support problem: value v(y) and the penalized rows W_P; `exact`
    is False for a fit cut short by the deadline (a feasible W_P of that support, its value
    an upper bound on v(y))."""

    support: np.ndarray
    value: float
    W_P: np.ndarray
    cut: Cut
    exact: bool = True


@dataclass(frozen=True)
class _Factored:
    """The kept rows' ridge fit without the box, in Jacobi-scaled units (SupportProblem._factor):
    objective ||A U - T||^2 + const - ||T||^2, minimizer `unconstrained`, and `free_value`,
    the fit's MIP objective (lam0 included)."""

    rows: np.ndarray
    jacobi: np.ndarray
    A: np.ndarray
    T: np.ndarray
    unconstrained: np.ndarray
    free_value: float


_RCOND = 1e-10  # reciprocal condition number under which the Cholesky path is not used


def _cholesky(matrix: np.ndarray) -> np.ndarray | None:
    """Upper Cholesky factor R (matrix = R^T R), or None if the matrix is not positive
    definite or its estimated reciprocal condition number is below _RCOND."""
    factor, info = scipy.linalg.lapack.dpotrf(matrix, lower=False, clean=True)
    if info != 0:
        return None
    norm = float(np.max(np.sum(np.abs(matrix), axis=0)))  # 1-norm
    rcond, info = scipy.linalg.lapack.dpocon(factor, norm, uplo="U")
    if info != 0 or not rcond > _RCOND:
        return None
    return factor


class SupportProblem:
    """Fixed-support solves and cuts for one instance and one (lam0, lam2, M). `deadline`
    (time.perf_counter() seconds, may be set later): a box-constrained fit still running
    then finishes its columns with the fit without the box clipped into it (not exact)."""

    def __init__(
        self,
        reduced: ReducedLeastSquares,
        row_structure: np.ndarray,
        bounds: np.ndarray,
        *,
        lam0: float,
        lam2: float,
        deadline: float = np.inf,
    ) -> None:
        self.deadline = deadline
        self.reduced = reduced
        self.row_structure = row_structure  # structure position of each penalized row
        self.bounds = bounds
        self.lam0, self.lam2 = lam0, lam2
        self.n_groups = bounds.size
        self.entry_group = np.repeat(row_structure, reduced.cross.shape[1])
        self._cache: dict[bytes, SupportSolution] = {}
        self._free_values: dict[bytes, float] = {}  # of supports `improving` turned down

    def cut_at(self, W_P: np.ndarray) -> Cut:
        """The affine minorant of v from the dual point of any penalized rows W_P."""
        return dual_cut(
            self.reduced, self.entry_group, self.bounds, W_P, lam0=self.lam0, lam2=self.lam2
        )

    @staticmethod
    def _key(support: np.ndarray) -> bytes:
        return np.packbits(np.asarray(support, dtype=bool)).tobytes()

    def known(self, support: np.ndarray) -> bool:
        """Whether this support was solved (and its cut generated) already."""
        return self._key(support) in self._cache

    def solve(self, support: np.ndarray) -> SupportSolution:
        """min over W with rows outside `support` (bool per structure) at zero, cached; W = 0,
        not exact and not cached, where the fit is predicted to overrun the deadline."""
        support = np.asarray(support, dtype=bool)
        key = self._key(support)
        if key in self._cache:
            return self._cache[key]
        if not self._affords(support):
            return self._at_zero(support)
        return self._cached(key, self._solution(support, self._factor(support)))

    def _cached(self, key: bytes, solution: SupportSolution) -> SupportSolution:
        if solution.exact:
            self._cache[key] = solution
        return solution

    def improving(self, support: np.ndarray, value: float) -> SupportSolution | None:
        """The solution of `support` (cached, or solved); None, without the box-constrained
        solve, when the ridge fit without the box (a lower bound: the box only adds
        constraints) already reaches `value`; W = 0, not exact, where the fit would overrun the
        deadline (as in `solve`). Callers compare the value themselves."""
        support = np.asarray(support, dtype=bool)
        key = self._key(support)
        if key in self._cache:
            return self._cache[key]
        if self._free_values.get(key, -np.inf) >= value:
            return None
        if not self._affords(support):
            return self._at_zero(support)
        factored = self._factor(support)
        free_value = self.reduced.const if factored is None else factored.free_value
        if free_value >= value:
            self._free_values[key] = free_value
            return None
        return self._cached(key, self._solution(support, factored))

    def _affords(self, support: np.ndarray) -> bool:
        """Whether the support's factorization is predicted to fit in half the time left
        before the deadline (optim.dense_cost)."""
        rows = int(np.count_nonzero(support[self.row_structure]))
        return affordable(rows, self.deadline, EIGH, share=0.5)  # its fallback, if ill posed

    def _at_zero(self, support: np.ndarray) -> SupportSolution:
        """W_P = 0 as the support's solution, not exact: a feasible point (its value an
        upper bound on the support's), where its fit would overrun the deadline."""
        W_P = np.zeros_like(self.reduced.cross)
        value = self.reduced.const + self.lam0 * int(support.sum())
        return SupportSolution(support, value, W_P, self.cut_at(W_P), exact=False)

    def _solution(self, support: np.ndarray, factored: _Factored | None) -> SupportSolution:
        W_P, exact = self._fit(factored)
        value = (
            self.reduced.loss(W_P)
            + self.lam2 * float(np.sum(W_P * W_P))
            + self.lam0 * int(support.sum())
        )
        return SupportSolution(support, value, W_P, self.cut_at(W_P), exact)

    def _factor(self, support: np.ndarray) -> _Factored | None:
        """The ridge fit of the kept rows without the box (None for the empty support).

        Solved for U = S W with S = sqrt(diag(hessian)) (Jacobi scaling): columns of X in
        very different units make the Gram matrix ill conditioned by the square of their
        scale ratio, which the scaling removes; the box becomes |u_r| <= M s_r per row.
        hessian = A^T A, so that the objective is ||A U - T||^2 + const - ||T||^2:
        Cholesky (A = R upper triangular) when it is well conditioned, else through the
        eigendecomposition (also handles lam2 = 0 with a singular Gram matrix)."""
        rows = np.flatnonzero(support[self.row_structure])
        if rows.size == 0:
            return None
        hessian = self.reduced.gram[np.ix_(rows, rows)] + self.lam2 * np.eye(rows.size)
        target = self.reduced.cross[rows]
        jacobi = np.sqrt(np.diag(hessian))
        jacobi = np.where(jacobi > 0, jacobi, 1.0)
        hessian = hessian / jacobi[:, None] / jacobi[None, :]
        target = target / jacobi[:, None]
        factored = _cholesky(hessian)
        if factored is not None:
            A = factored
            T = scipy.linalg.solve_triangular(A, target, trans="T", check_finite=False)
            unconstrained = scipy.linalg.solve_triangular(A, T, check_finite=False)
        else:
            eigenvalues, vectors = np.linalg.eigh(hessian)
            # directions below the eigenvalues' rounding (size eps of the largest) are noise;
            # every one above is the data's: a fixed 1e-13 dropped a near-duplicate pair's
            # difference (1.3e-14 of the largest) that the binding box makes the fit use, and
            # the fit came out 0.8 % high (and marked exact)
            positive = eigenvalues > eigenvalues.max() * rows.size * np.finfo(np.float64).eps
            scale = np.sqrt(eigenvalues[positive])
            A = scale[:, None] * vectors[:, positive].T
            T = (vectors[:, positive].T @ target) / scale[:, None]
            unconstrained = np.linalg.lstsq(A, T, rcond=None)[0]
        free_value = self.reduced.const - float(np.sum(T * T)) + self.lam0 * int(support.sum())
        return _Factored(rows, jacobi, A, T, unconstrained, free_value)

    def _fit(self, factored: _Factored | None) -> tuple[np.ndarray, bool]:
        """(W_P, exact): ridge fit of the kept rows inside the box |w| <= M, one column at a
        time if the box binds (bounded-variable least squares, an exact active-set method);
        columns left at the deadline get the fit without the box, clipped (not exact)."""
        W_P = np.zeros_like(self.reduced.cross)
        if factored is None:
            return W_P, True
        rows, jacobi, A, T = factored.rows, factored.jacobi, factored.A, factored.T
        row_bound = self.bounds[self.row_structure[rows]] * jacobi
        limit = self.bounds[self.row_structure[rows]][:, None]
        # the box holds exactly after unscaling (x / s could exceed M by an ulp)
        W_P[rows] = np.clip(factored.unconstrained / jacobi[:, None], -limit, limit)
        if np.all(np.abs(factored.unconstrained) <= row_bound[:, None]):
            return W_P, True
        for column in range(T.shape[1]):
            # bounded-variable least squares solves a few least-squares problems of this size
            # (and cannot be interrupted): not started where they would overrun the deadline
            if time.perf_counter() >= self.deadline or not affordable(
                rows.size, self.deadline, 4 * LEAST_SQUARES, share=0.5
            ):
                return W_P, False
            fitted = scipy.optimize.lsq_linear(
                A, T[:, column], bounds=(-row_bound, row_bound), method="bvls", tol=1e-14
            )
            W_P[rows, column] = np.clip(fitted.x / jacobi, -limit[:, 0], limit[:, 0])
        return W_P, True
