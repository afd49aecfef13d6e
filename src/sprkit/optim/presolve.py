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

_SINGULAR = 1e-10  # relative smallest eigenvalue under which Q counts as singular


def reduced_cost_fixings(
    slopes: np.ndarray, free: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(removed, kept): free structures forced to 0 or to 1 below the level D + radius."""
    return free & (-slopes >= radius), free & (slopes >= radius)


@dataclass(frozen=True)
class QuadraticGrowth:
    """Q^-1's diagonal and the blocks ((Q^-1)_jj)^-1 of one positive definite Q."""

    inverse_diagonal: np.ndarray
    block_inverse: np.ndarray  # block diagonal, P x P
    row_structure: np.ndarray
    n_groups: int

    @classmethod
    def from_matrix(
        cls, Q: np.ndarray, row_structure: np.ndarray, n_groups: int
    ) -> QuadraticGrowth | None:
        """None if Q is singular (no ellipsoid then)."""
        eigenvalues, vectors = np.linalg.eigh(Q)
        if eigenvalues.size == 0 or eigenvalues[0] <= _SINGULAR * max(eigenvalues[-1], 1e-300):
            return None
        inverse = (vectors / eigenvalues) @ vectors.T
        block_inverse = np.zeros_like(inverse)
        for j in range(n_groups):
            rows = np.flatnonzero(row_structure == j)
            if rows.size:
                block_inverse[np.ix_(rows, rows)] = np.linalg.inv(inverse[np.ix_(rows, rows)])
        return cls(np.diag(inverse).copy(), block_inverse, row_structure, n_groups)

    def tightened(self, M: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
        """min(M_j, largest |w_rk| over the ellipsoid) per structure (radius = T - D >= 0);
        structures without rows here keep their M."""
        reach = np.abs(center).max(axis=1) + np.sqrt(max(radius, 0.0) * self.inverse_diagonal)
        per_group = np.full(self.n_groups, np.inf)
        np.minimum.at(per_group, self.row_structure, -np.inf)  # marks groups that have rows
        np.maximum.at(per_group, self.row_structure, reach)
        return np.minimum(M, per_group)

    def forced_kept(self, center: np.ndarray, radius: float) -> np.ndarray:
        """Per structure: True where w_j = 0 lies outside the ellipsoid (j must be kept)."""
        distance = np.sum(center * (self.block_inverse @ center), axis=1)
        per_group = np.bincount(self.row_structure, weights=distance, minlength=self.n_groups)
        return per_group > radius
