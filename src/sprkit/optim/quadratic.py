"""Equivalent compact forms of the loss L(W) = (1/n) ||Y - X W||_F^2.

- :func:`compressed_least_squares`: L(W) = ||A W - B||_F^2 + const with A having at most d rows
  (thin QR of X when n > d), so conic models carry d x c residuals instead of n x c.
- :class:`ReducedLeastSquares`: the free rows (group -1) minimized out exactly, leaving a
  quadratic in the penalized rows only: L = <W, G W> - 2 <W, B> + const (Gram form).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from sprkit.instances.format import Instance
from sprkit.optim.dense_cost import TOP_EIGENVALUE, affordable


def compressed_least_squares(instance: Instance) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, B, const) with (1/n)||Y - X W||^2 == ||A W - B||^2 + const for every W."""
    scale = 1.0 / np.sqrt(instance.n)
    X, Y = instance.X * scale, instance.Y * scale
    if instance.n <= instance.d:
        return X, Y, 0.0
    Q, R = np.linalg.qr(X, mode="reduced")
    B = Q.T @ Y
    const = float(max(np.sum(Y * Y) - np.sum(B * B), 0.0))
    return R, B, const


_ROW_BLOCK = 256  # rows per block of a one-pass bound on a large matrix

# relative residual below which a column counts as in the free columns' span (rounding only)
_IN_SPAN = 16 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class ReducedLeastSquares:
    """L restricted to penalized rows P after the exact minimization over free rows F.

    gram = X_P'^T X_P' / n, cross = X_P'^T Y' / n, const = ||Y'||^2 / n where ' denotes the
    projection onto the orthogonal complement of span(X_F). `free_map` gives the optimal free
    rows for penalized rows W_P: W_F = free_offset - free_map @ W_P.
    """

    penalized_rows: np.ndarray
    free_rows: np.ndarray
    gram: np.ndarray
    cross: np.ndarray
    const: float
    free_map: np.ndarray
    free_offset: np.ndarray

    @classmethod
    def from_instance(cls, instance: Instance) -> ReducedLeastSquares:
        penalized = np.flatnonzero(instance.groups >= 0)
        free = np.flatnonzero(instance.groups < 0)
        X_P, X_F, Y = instance.X[:, penalized], instance.X[:, free], instance.Y
        if free.size:
            # Least squares through lstsq (rank-revealing) so duplicate free columns are fine.
            coef_P = np.linalg.lstsq(X_F, X_P, rcond=None)[0]
            coef_Y = np.linalg.lstsq(X_F, Y, rcond=None)[0]
            projected = X_P - X_F @ coef_P
            # A penalized column in the span of the free ones (a duplicate of one) is left
            # with rounding only: its weight does nothing the free rows do not. Kept, that
            # noise reads as a column of its own (and Jacobi scaling in the fixed-support
            # fits amplifies it to O(1): fits 5 % off, certified). A residual at the
            # subtraction's rounding level (_IN_SPAN: a few ulps of the column) is zero. Not
            # more: a large offset a free intercept absorbs leaves a residual that float64
            # still resolves and that matters (1e13 + t, t of spread 1: 7.9e-14 of the
            # column, 356 ulps, t stored to 0.2 %; zeroed at 1024 ulps, it was certified at
            # 34 times the optimum).
            in_span = np.linalg.norm(projected, axis=0) <= _IN_SPAN * np.linalg.norm(X_P, axis=0)
            X_P = np.where(in_span, 0.0, projected)
            Y = Y - X_F @ coef_Y
        else:
            coef_P = np.zeros((0, penalized.size))
            coef_Y = np.zeros((0, instance.c))
        n = instance.n
        gram = X_P.T @ X_P
        gram /= n  # in place: a fresh d x d array costs seconds at d = 8,000 (page faults)
        return cls(
            penalized_rows=penalized,
            free_rows=free,
            gram=gram,
            cross=X_P.T @ Y / n,
            const=float(np.sum(Y * Y) / n),
            free_map=coef_P,
            free_offset=coef_Y,
        )

    def loss(self, W_P: np.ndarray) -> float:
        """L at the penalized rows W_P with the free rows at their optimum."""
        return float(np.sum(W_P * (self.gram @ W_P)) - 2.0 * np.sum(W_P * self.cross) + self.const)

    def full_weights(self, W_P: np.ndarray, d: int) -> np.ndarray:
        """The d x c matrix W: penalized rows W_P, free rows at their exact optimum."""
        W = np.zeros((d, W_P.shape[1]))
        W[self.penalized_rows] = W_P
        W[self.free_rows] = self.free_offset - self.free_map @ W_P
        return W

    def lipschitz(self, deadline: float = np.inf) -> float:
        """A Lipschitz constant of grad L = 2 (gram W - cross): twice the top eigenvalue of
        gram, or twice an upper bound on it where computing it is predicted to take more
        than a quarter of the time left before `deadline` (time.perf_counter() seconds)."""
        return 2.0 * top_eigenvalue(self.gram, deadline)


def top_eigenvalue(matrix: np.ndarray, deadline: float = np.inf) -> float:
    """The largest eigenvalue of a symmetric PSD matrix (1 where it is 0: any step serves
    for a constant gradient), or, where computing it is predicted to take more than a
    quarter of the time left before `deadline`, the largest absolute row sum, an upper
    bound on it (Gershgorin) computed in one pass: steps of 1 / bound stay convergent,
    only slower."""
    size = matrix.shape[0]
    if affordable(size, deadline, TOP_EIGENVALUE, share=0.25):
        top = float(
            scipy.linalg.eigh(matrix, eigvals_only=True, subset_by_index=[size - 1, size - 1])[0]
        )
    else:  # by blocks of rows: |matrix| whole would be a fresh copy of it (seconds, large)
        top = max(
            (
                float(np.max(np.sum(np.abs(matrix[start : start + _ROW_BLOCK]), axis=1)))
                for start in range(0, size, _ROW_BLOCK)
            ),
            default=0.0,
        )
    return top if top > 0 else 1.0


def least_squares_bound(instance: Instance, scale: float = 2.0) -> float:
    """A default M: `scale` times the largest |entry| of the penalized rows of the unpenalized
    least-squares fit (minimum-norm solution), so the box does not bind at the dense fit."""
    W = np.linalg.lstsq(instance.X, instance.Y, rcond=None)[0]
    return float(scale * np.max(np.abs(W[instance.groups >= 0])))
