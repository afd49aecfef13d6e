"""The MIP of one instance in solver units: the least-squares reduction, scaled (reduce/restore).

The exact solvers work on the quadratic of the penalized rows (free rows minimized out, see
ReducedLeastSquares) in units where the objective at W = 0 is 1 and the mean diagonal of the
Gram matrix is 1: f_scale = const, w_scale = sqrt(f_scale / mean diagonal). With
W = w_scale * W', dividing the objective by f_scale:

    gram' = w_scale^2 gram / f_scale,  cross' = w_scale cross / f_scale,  const' = const / f_scale
    lam2' = lam2 w_scale^2 / f_scale,  lam0' = lam0 / f_scale,           M' = M / w_scale,

an exact equivalence (same minimizers, objectives in a fixed ratio, the same relative gaps), so
no tolerance or step of the solver depends on the units of X and Y. The factors are applied as
1 / mean diagonal and 1 / sqrt(f_scale * mean diagonal), never as w_scale^2 / f_scale, which
overflows or underflows for data near the limits of floating point (X and Y times 1e85 or
1e-80).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sprkit.errors import InstanceError
from sprkit.optim.quadratic import ReducedLeastSquares


@dataclass(frozen=True)
class ScaledProblem:
    """min <W, G W> - 2 <W, B> + const + sum_j (lam2 ||w_j||^2 + lam0) [w_j != 0],
    |w_jk| <= M_j, in solver units (module docstring); `reduced` holds G, B, const there.

    row_structure: structure position (0..G-1) of each penalized row; given_M: M in the
    instance's units (restore_weights clips to it: M' * w_scale may round one ulp past M).
    """

    reduced: ReducedLeastSquares
    row_structure: np.ndarray
    lam0: float
    lam2: float
    M: np.ndarray
    w_scale: float
    f_scale: float
    given_M: np.ndarray

    @property
    def n_groups(self) -> int:
        return self.M.size

    @property
    def entry_group(self) -> np.ndarray:
        """Structure position of each entry of W_P flattened row-major."""
        return np.repeat(self.row_structure, self.reduced.cross.shape[1])

    def with_lambdas(self, lam0: float, lam2: float) -> ScaledProblem:
        """The same data and M with other penalties (given in the instance's units)."""
        return replace(
            self, lam0=lam0 / self.f_scale, lam2=lam2 * (self.w_scale / np.sqrt(self.f_scale)) ** 2
        )

    def restore_weights(self, W_P: np.ndarray) -> np.ndarray:
        """Penalized rows in the instance's units, within the instance's box exactly."""
        bound = self.given_M[self.row_structure][:, None]
        return np.clip(W_P * self.w_scale, -bound, bound)

    def restore_objective(self, value: float) -> float:
        return value * self.f_scale


def scale_problem(
    reduced: ReducedLeastSquares,
    row_structure: np.ndarray,
    M: np.ndarray,
    *,
    lam0: float,
    lam2: float,
) -> ScaledProblem:
    """The reduced quadratic of an instance in solver units (module docstring); InstanceError
    where the data's scale leaves float64 there (columns of X whose mean square is below the
    smallest normal float, or penalties overflowing in solver units)."""
    mean_diagonal = float(np.mean(np.diag(reduced.gram))) if reduced.gram.size else 0.0
    if 0 < mean_diagonal < np.finfo(np.float64).tiny:
        raise InstanceError(
            f"the penalized columns of X have a mean square of {mean_diagonal:.3g}, below "
            "float64's normal range: rescale X"
        )
    mean_diagonal = mean_diagonal if mean_diagonal > 0 else 1.0
    f_scale = reduced.const if reduced.const > 0 else 1.0
    root_f, root_diagonal = np.sqrt(f_scale), np.sqrt(mean_diagonal)
    scaled = replace(
        reduced,
        gram=reduced.gram / mean_diagonal,
        cross=reduced.cross / root_f / root_diagonal,
        const=reduced.const / f_scale,
    )
    lam0_scaled, lam2_scaled = lam0 / f_scale, lam2 / mean_diagonal
    if not (np.isfinite(lam0_scaled) and np.isfinite(lam2_scaled)):
        raise InstanceError(
            f"lam0 = {lam0:g} and lam2 = {lam2:g} overflow float64 against the data's scale "
            f"(loss at W = 0: {f_scale:.3g}, mean square of the penalized columns: "
            f"{mean_diagonal:.3g}): rescale X and Y"
        )
    return ScaledProblem(
        reduced=scaled,
        row_structure=row_structure,
        lam0=lam0_scaled,
        lam2=lam2_scaled,
        M=np.asarray(M, dtype=np.float64) / root_f * root_diagonal,
        w_scale=float(root_f / root_diagonal),
        f_scale=f_scale,
        given_M=np.asarray(M, dtype=np.float64),
    )
