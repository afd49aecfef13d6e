"""How far the Gram form of the loss can be from the data's, over the points that matter.

The native methods see L(W) = (1/n) ||Y - X W||^2 only through G = X'X / n, B = X'Y / n and
the fitted constant c0 (sprkit.optim.quadratic.ReducedLeastSquares), which float64 holds to
about eps of their entries. In u = sqrt(D) w (D = diag(G): each column's squared norm / n),
a dot product of n terms is exact to gamma = n eps of the product of the norms, so
|G_rs - G*_rs| <= gamma sqrt(D_r D_s) and |B_rk - B*_rk| <= gamma sqrt(D_r) ||y_k|| / sqrt(n),
and for ||U|| <= R (Cauchy-Schwarz, sum_r |u_r| <= sqrt(d) ||u||)

    |L(W) - L_gram(W)| <= gamma (d R^2 + 2 sqrt(d c0) R) = error(R).

A bound proven on the Gram form therefore holds for the data less error(R) (twice that: the
Gram matrix's rounding also bends the convexity its certificates use), R any radius that
contains every feasible point below the reported objective T. Three such radii: the box
(R^2 = sum_r c M_r^2 D_r), the ridge (lam2 ||W||^2 <= T, so R^2 <= T max(D) / lam2), and the
growth of L_gram around its minimizer (GramGrowth). Within the growth's radius the margin is
a few eps of the objective on ordinary data and is always applied; uniform over the box it
is loose where the box is huge and the Gram matrix singular (n < d), so there it is applied
only where `loses_directions` finds near-duplicate columns the Gram form cannot resolve (or
could not be checked in time), where the error is real (docs/mip.md, "Near-duplicate
columns").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from sprkit.instances.format import Instance
from sprkit.optim.dense_cost import EIGH, affordable
from sprkit.optim.quadratic import ReducedLeastSquares

_EPS = np.finfo(np.float64).eps
# a direction of X counts as resolved by the Gram matrix when its squared singular value is
# this many times the Gram matrix's rounding (its curvature then known to 1e-6, relative)
_GRAM_RESOLUTION = 1e6


def loses_directions(instance: Instance, reduced: ReducedLeastSquares) -> bool:
    """Whether the penalized columns (projected off the free ones) have a direction that X
    resolves and their Gram matrix does not resolve to _GRAM_RESOLUTION: with the columns
    scaled to unit norm, a singular value sigma of X above X's own rounding
    (eps max(n, d) sigma_max) whose square is within 1 / _GRAM_RESOLUTION of the Gram
    matrix's rounding (eps d sigma_max^2), as near-duplicate columns that differ by less than
    about 2e-5 sqrt(d) of their norm have. Weights along such a direction change the loss by
    amounts the Gram form gets wrong by more than that share (below 1e-8 apart, entirely).
    Exact duplicates and n < d (sigma at rounding level: nothing to see) are not such."""
    gram_diagonal = np.diag(reduced.gram)
    columns = np.flatnonzero(gram_diagonal > 0)
    if columns.size < 2:
        return False
    penalized = instance.X[:, reduced.penalized_rows[columns]]
    if reduced.free_rows.size:
        penalized = penalized - instance.X[:, reduced.free_rows] @ reduced.free_map[:, columns]
    normalized = penalized / np.sqrt(instance.n * gram_diagonal[columns])
    sigma = np.linalg.svd(normalized, compute_uv=False)
    resolved = sigma > _EPS * max(normalized.shape) * sigma[0]
    rounding = _EPS * columns.size * sigma[0] ** 2
    if np.any(resolved & (sigma**2 < _GRAM_RESOLUTION * rounding)):
        return True
    # With n < d the singular values of all columns hide a near-duplicate pair (a direction
    # only a support holding both resolves): pairs whose cosine is within the band, their
    # difference measured on the columns themselves, not through the Gram matrix
    root = np.sqrt(gram_diagonal[columns])  # the Gram matrix has the cosines already
    cosine = reduced.gram[np.ix_(columns, columns)] / root[:, None] / root[None, :]
    np.fill_diagonal(cosine, 0.0)
    band = _GRAM_RESOLUTION * _EPS * columns.size
    for r, t in zip(*np.nonzero(np.triu(np.abs(cosine) > 1.0 - band)), strict=True):
        # the pair's smaller singular value is |x_r -+ x_t| / sqrt(2)
        small = np.linalg.norm(normalized[:, r] - np.sign(cosine[r, t]) * normalized[:, t]) / 2**0.5
        if _EPS * max(normalized.shape) < small and small**2 < band:
            return True
    return False


@dataclass(frozen=True)
class GramGrowth:
    """L_gram(U) >= minimum + curvature ||U - U*||^2 with ||U*|| <= center_norm (u = sqrt(D) w
    on the rows with D > 0); curvature is lambda_min of the Jacobi-scaled Gram matrix less
    its rounding."""

    curvature: float
    center_norm: float
    minimum: float

    @classmethod
    def of(cls, reduced: ReducedLeastSquares, deadline: float) -> GramGrowth | None:
        """None where the scaled Gram matrix is singular to its rounding, or its
        eigendecomposition would take more than a tenth of the time left."""
        diagonal = np.diag(reduced.gram)
        rows = np.flatnonzero(diagonal > 0)
        if rows.size == 0 or not affordable(rows.size, deadline, EIGH, share=0.1):
            return None
        root = np.sqrt(diagonal[rows])
        scaled = reduced.gram[np.ix_(rows, rows)] / root[:, None] / root[None, :]
        lowest = scipy.linalg.eigh(scaled, eigvals_only=True, subset_by_index=[0, 0])[0]
        curvature = float(lowest) - 4.0 * _EPS * rows.size * float(np.max(np.diag(scaled)))
        if curvature <= 0:
            return None
        target = reduced.cross[rows] / root[:, None]
        center = scipy.linalg.solve(scaled, target, assume_a="pos")
        residual = float(np.linalg.norm(scaled @ center - target))
        value = float(np.sum(center * (scaled @ center)) - 2.0 * np.sum(center * target))
        # the exact minimizer is within residual / curvature of `center`, and the minimum
        # at most residual^2 / curvature below its value
        return cls(
            curvature,
            float(np.linalg.norm(center)) + residual / curvature,
            value + reduced.const - residual**2 / curvature,
        )


def gram_margin(
    reduced: ReducedLeastSquares,
    n: int,
    row_bounds: np.ndarray,
    lam2: float,
    objective: float,
    growth: GramGrowth | None,
) -> float:
    """What a bound proven on the Gram form is lowered by (module docstring), for the box
    `row_bounds` (M per penalized row), ridge lam2 and reported objective (instance units)."""
    diagonal = np.diag(reduced.gram)
    d, c = int(np.count_nonzero(diagonal > 0)), reduced.cross.shape[1]
    if d == 0:
        return 0.0
    gamma = n * _EPS
    linear = np.sqrt(d * max(reduced.const, 0.0))

    def error(radius: float) -> float:
        return gamma * (d * radius**2 + 2.0 * linear * radius)

    radius_squared = float(np.sum(c * row_bounds**2 * diagonal))
    if lam2 > 0:
        radius_squared = min(radius_squared, objective * float(diagonal.max()) / lam2)
    radius = np.sqrt(radius_squared)
    if growth is not None and growth.curvature > gamma * d:
        # points below the objective: curvature rho^2 - error(a + rho) < objective - minimum
        a = growth.center_norm
        slope = 2.0 * gamma * (d * a + linear)
        constant = max(objective - growth.minimum, 0.0) + error(a)
        quadratic = growth.curvature - gamma * d
        rho = (slope + np.sqrt(slope**2 + 4.0 * quadratic * constant)) / (2.0 * quadratic)
        radius = min(radius, a + rho)
    return 2.0 * error(radius)
