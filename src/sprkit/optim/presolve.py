"""Valid fixings and bound tightening for the branch and bound (docs/mip.md, "Deductions").

Reduced-cost fixing. A certificate D at a node comes with an affine minorant of the MIP
objective over the node, y -> C - sum_j s_j y_j, whose minimum over the node's y-box is D. For
a free structure j, every point with y_j = 1 has objective >= D + max(0, -s_j) and every point
with y_j = 0 has objective >= D + max(0, s_j); if that reaches the level T, the other value is
forced.

Quadratic growth. For a convex objective whose smooth part is the quadratic <W, Q W> + ...,
any point W_bar and any lower bound D certified at W_bar give

    objective(W) >= D + <W - W_bar, Q (W - W_bar)>        for every W of the region,

(for the perspective relaxation: Q = G and D the Fenchel certificate at W_bar; for the ridge
fit: Q = G + lam2 I and D its minimum). A solution that can still improve on the incumbent
has objective < T, so W lies in the ellipsoid <Delta, Q Delta> < r = T - D, whence

    |w_rk| <= |w_bar_rk| + sqrt(r (Q^-1)_rr)         (a smaller M per structure), and
    w_j = 0 needs r > sum_k w_bar_jk' ((Q^-1)_jj)^-1 w_bar_jk   (else structure j is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

_SINGULAR = 1e-10  # relative smallest eigenvalue under which Q counts as singular
_SLACK = 1e-9  # relative margin kept by every deduction (solver units: values near 1)


def reduced_cost_fixings(
    slopes: np.ndarray, free: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(removed, kept): free structures forced to 0 or to 1 below the level D + radius."""
    return free & (-slopes >= radius), free & (slopes >= radius)


def _block_inverses(factor: np.ndarray, row_structure: np.ndarray) -> np.ndarray:
    """Block-diagonal matrix of the inverses of the diagonal blocks (rows of one structure) of
    Q^-1 = factor' factor (only those blocks of Q^-1 are formed)."""
    order = np.argsort(row_structure, kind="stable")
    _, sizes = np.unique(row_structure, return_counts=True)
    result = np.zeros((factor.shape[1], factor.shape[1]))
    if np.all(sizes == sizes[0]):  # equal blocks: one batched inverse
        rows = order.reshape(-1, sizes[0])
        columns = factor[:, rows]  # (P, blocks, size)
        blocks = np.einsum("kbi,kbj->bij", columns, columns)
        result[rows[:, :, None], rows[:, None, :]] = np.linalg.inv(blocks)
        return result
    for rows in np.split(order, np.cumsum(sizes)[:-1]):
        columns = factor[:, rows]
        result[np.ix_(rows, rows)] = np.linalg.inv(columns.T @ columns)
    return result


@dataclass(frozen=True)
class QuadraticGrowth:
    """Q^-1's diagonal and the blocks ((Q^-1)_jj)^-1 of one positive definite Q."""

    inverse_diagonal: np.ndarray
    block_inverse: np.ndarray  # block diagonal, P x P
    row_structure: np.ndarray
    n_groups: int

    @classmethod
    def from_matrix(
        cls,
        Q: np.ndarray,
        row_structure: np.ndarray,
        n_groups: int,
        *,
        known_definite: bool = False,
    ) -> QuadraticGrowth | None:
        """None if Q is singular or ill-conditioned (no ellipsoid then). `known_definite`:
        the caller knows Q is well conditioned (a principal submatrix of a matrix that passed
        this check: its eigenvalues lie between that matrix's extreme ones, Cauchy
        interlacing), so a Cholesky factorization replaces the eigendecomposition."""
        if Q.size == 0:
            return None
        if known_definite:
            # Q = L L', Q^-1 = L^-T L^-1: the triangular inverse is all that is needed
            lower = scipy.linalg.cholesky(Q, lower=True, check_finite=False)
            factor, info = scipy.linalg.lapack.dtrtri(lower, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("singular Cholesky factor")
        else:
            eigenvalues, vectors = np.linalg.eigh(Q)
            if eigenvalues[0] <= _SINGULAR * max(eigenvalues[-1], 1e-300):
                return None
            factor = vectors.T / np.sqrt(eigenvalues)[:, None]  # Q^-1 = factor' factor
        return cls(
            np.einsum("ki,ki->i", factor, factor),
            _block_inverses(factor, row_structure),
            row_structure,
            n_groups,
        )

    def tightened(self, M: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
        """min(M_j, largest |w_rk| over the ellipsoid) per structure (radius = T - D >= 0);
        structures without rows here keep their M."""
        reach = np.abs(center).max(axis=1) + np.sqrt(max(radius, 0.0) * self.inverse_diagonal)
        reach = reach * (1.0 + _SLACK) + _SLACK  # rounding of the inverse and of D
        per_group = np.full(self.n_groups, np.inf)
        np.minimum.at(per_group, self.row_structure, -np.inf)  # marks groups that have rows
        np.maximum.at(per_group, self.row_structure, reach)
        return np.minimum(M, per_group)

    def forced_kept(self, center: np.ndarray, radius: float) -> np.ndarray:
        """Per structure: True where w_j = 0 lies outside the ellipsoid (j must be kept)."""
        distance = np.sum(center * (self.block_inverse @ center), axis=1)
        per_group = np.bincount(self.row_structure, weights=distance, minlength=self.n_groups)
        return per_group > radius * (1.0 + _SLACK) + _SLACK
