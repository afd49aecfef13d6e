"""The SPR route: minimize L(W) + sum_j z(w_j) with z the exact (boxed) closed form.

Its optimum equals the perspective relaxation's (DESIGN.md identity 2). Method: accelerated
proximal gradient (FISTA with the gradient-based adaptive restart of O'Donoghue and Candes) on
the penalized rows, the free rows being minimized out exactly (ReducedLeastSquares); the prox
of z is exact (sprkit.formula.prox). Each run carries a certificate: a Fenchel dual bound

    D(W) = const - <W, G W> - sum_j z*_j(2 (B - G W)_j)  <=  optimum  <=  P(W),

evaluated at the dual point induced by the current residual, so "converged" means the relative
duality gap (P - D) / P is at most `tol`, not merely that the iterates stopped moving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from sprkit.formula import (
    Case,
    SPRClosedForm,
    resolve_lambdas,
    spr_closed_form_ragged,
    spr_conjugate_ragged,
    spr_prox_ragged,
)
from sprkit.instances.format import Instance
from sprkit.optim.quadratic import ReducedLeastSquares
from sprkit.optim.relaxations import structure_bounds
from sprkit.optim.support import dual_cut

_CHECK_EVERY = 10


@dataclass(frozen=True)
class SPRResult:
    """value: L(W) + sum z(w_j) recomputed from the data (upper bound on the relaxation);
    lower_bound: the dual certificate; y: y*(w_j) per structure; kept: w_j != 0."""

    value: float
    lower_bound: float
    W: np.ndarray
    y: np.ndarray
    kept: np.ndarray
    iterations: int
    converged: bool
    seconds: float

    @property
    def relative_gap(self) -> float:
        return (self.value - self.lower_bound) / max(abs(self.value), 1e-300)


class SPRRoute:
    """Precomputes the reduced quadratic once; :meth:`solve` runs for any (lam0, lam2)."""

    def __init__(self, instance: Instance, M: float | np.ndarray) -> None:
        self.instance = instance
        self.bounds = structure_bounds(instance, M)
        self.reduced = ReducedLeastSquares.from_instance(instance)
        self.n_groups = instance.n_structures
        row_structure = instance.row_structure[self.reduced.penalized_rows]
        self.entry_group = np.repeat(row_structure, instance.c)  # row-major flattening of W_P
        self.step = 1.0 / self.reduced.lipschitz()

    def _closed_form(self, W_P: np.ndarray, lam0: float, lam2: float) -> SPRClosedForm:
        """z (exact form), y* and case of every structure at penalized rows W_P."""
        return spr_closed_form_ragged(
            W_P.ravel(),
            self.entry_group,
            self.n_groups,
            lam0=lam0,
            lam2=lam2,
            M=self.bounds,
            outside="exact",
        )

    def _objective(self, W_P: np.ndarray, lam0: float, lam2: float) -> float:
        penalty = self._closed_form(W_P, lam0, lam2).value
        return self.reduced.loss(W_P) + float(np.sum(penalty))

    def _dual(self, W_P: np.ndarray, lam0: float, lam2: float) -> float:
        """Fenchel dual bound at W_P: the minimum over y in [0, 1]^G of its y-space cut."""
        cut = dual_cut(self.reduced, self.entry_group, self.bounds, W_P, lam0=lam0, lam2=lam2)
        return cut.constant - float(np.sum(np.maximum(cut.slopes, 0.0)))

    def lam0_max(self, lam2: float) -> float:
        """Smallest lam0 at which W = 0 (every structure pruned) is optimal, for this lam2."""
        psi = spr_conjugate_ragged(
            2.0 * self.reduced.cross.ravel(),
            self.entry_group,
            self.n_groups,
            lam0=0.0,
            lam2=lam2,
            M=self.bounds,
        )
        return float(np.max(psi))

    def lam_max(self, alpha: float) -> float:
        """The paper's lam at which every structure is pruned, for this alpha."""
        resolve_lambdas(lam=1.0, alpha=alpha)  # validates alpha

        def excess(lam: float) -> float:
            return self.lam0_max(lam * alpha) - lam * (1.0 - alpha)

        upper = 1.0
        while excess(upper) > 0:
            upper *= 2.0
        return float(scipy.optimize.brentq(excess, 0.0, upper, xtol=1e-12, rtol=1e-12))

    def solve(
        self,
        lam0: float | None = None,
        lam2: float | None = None,
        *,
        lam: float | None = None,
        alpha: float | None = None,
        tol: float = 1e-9,
        max_iter: int = 200_000,
        warm_start: np.ndarray | None = None,
    ) -> SPRResult:
        """Run to relative duality gap <= tol (or max_iter). warm_start: a d x c W."""
        lam0, lam2 = resolve_lambdas(lam0, lam2, lam=lam, alpha=alpha)
        start = time.perf_counter()
        reduced, step = self.reduced, self.step
        shape = reduced.cross.shape
        x = np.zeros(shape) if warm_start is None else warm_start[reduced.penalized_rows].copy()
        momentum_point, theta = x.copy(), 1.0
        y_groups = None
        best_x, best_primal, best_dual = x, np.inf, -np.inf
        converged, iteration = False, 0
        for iteration in range(1, max_iter + 1):
            gradient = 2.0 * (reduced.gram @ momentum_point - reduced.cross)
            flat, y_groups = spr_prox_ragged(
                (momentum_point - step * gradient).ravel(),
                self.entry_group,
                self.n_groups,
                step=step,
                lam0=lam0,
                lam2=lam2,
                M=self.bounds,
                y_start=y_groups,
            )
            x_new = flat.reshape(shape)
            if np.sum((momentum_point - x_new) * (x_new - x)) > 0:  # adaptive restart
                theta = 1.0
            theta_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * theta * theta))
            momentum_point = x_new + ((theta - 1.0) / theta_new) * (x_new - x)
            x, theta = x_new, theta_new
            if iteration % _CHECK_EVERY == 0 or iteration == max_iter:
                primal = self._objective(x, lam0, lam2)
                if primal < best_primal:
                    best_primal, best_x = primal, x
                best_dual = max(best_dual, self._dual(x, lam0, lam2))
                if best_primal - best_dual <= tol * max(abs(best_primal), 1e-12):
                    converged = True
                    break
        W = reduced.full_weights(best_x, self.instance.d)
        closed = self._closed_form(best_x, lam0, lam2)
        value = self.instance.loss(W) + float(np.sum(closed.value))
        return SPRResult(
            value=value,
            lower_bound=best_dual,
            W=W,
            y=closed.indicator,
            kept=closed.case != Case.ZERO,
            iterations=iteration,
            converged=converged,
            seconds=time.perf_counter() - start,
        )


def lambda_max(instance: Instance, M: float | np.ndarray, *, alpha: float) -> float:
    """The paper's lam above which SPR prunes every structure of `instance`."""
    return SPRRoute(instance, M).lam_max(alpha)
