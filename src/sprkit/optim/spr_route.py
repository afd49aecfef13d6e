"""The SPR route: minimize L(W) + sum_j z(w_j) with z the exact (boxed) closed form.

Its optimum equals the perspective relaxation's (DESIGN.md identity 2). It is the root of the
branch and bound: the node relaxation with every structure free (sprkit.optim.node_relaxation:
accelerated proximal gradient with the exact prox of z, free rows minimized out, in solver
units). Each run carries a certificate, the Fenchel dual bound

    D(W) = const - <W, G W> - sum_j z*_j(2 (B - G W)_j)  <=  optimum  <=  P(W),

so "converged" means the relative duality gap (P - D) / P is at most `tol`, not merely that the
iterates stopped moving; a run stopped early (iterations, deadline) still has a valid bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from sprkit.formula import (
    Case,
    spr_closed_form_ragged,
    spr_conjugate_ragged,
)
from sprkit.instances.format import Instance
from sprkit.optim.node_relaxation import FREE, NodeRelaxation
from sprkit.optim.problem import scale_problem
from sprkit.optim.quadratic import ReducedLeastSquares
from sprkit.params import SPRParams, check_alpha, structure_bounds


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
    """Precomputes the reduced quadratic once; :meth:`solve` runs for any (lam0, lam2).
    `deadline` (time.perf_counter() seconds): where the top eigenvalue of the Gram matrix
    would take too much of the time left, the step comes from an upper bound on it."""

    def __init__(self, instance: Instance, M: float | np.ndarray, deadline: float = np.inf) -> None:
        self.instance = instance
        self.bounds = structure_bounds(M, instance.n_structures)
        self.reduced = ReducedLeastSquares.from_instance(instance)
        self.n_groups = instance.n_structures
        row_structure = instance.row_structure[self.reduced.penalized_rows]
        self.entry_group = np.repeat(row_structure, instance.c)  # row-major flattening of W_P
        self.scaled = scale_problem(self.reduced, row_structure, self.bounds, lam0=0.0, lam2=0.0)
        self.lipschitz = self.scaled.reduced.lipschitz(deadline)

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
        check_alpha(alpha)  # validates alpha

        def excess(lam: float) -> float:
            return self.lam0_max(lam * alpha) - lam * (1.0 - alpha)

        upper = 1.0
        while excess(upper) > 0:
            upper *= 2.0
        return float(scipy.optimize.brentq(excess, 0.0, upper, xtol=1e-12, rtol=1e-12))

    def solve(
        self,
        lam0: float,
        lam2: float,
        *,
        tol: float = 1e-9,
        max_iter: int = 200_000,
        warm_start: np.ndarray | None = None,
        deadline: float = np.inf,
    ) -> SPRResult:
        """Run to relative duality gap <= tol, max_iter or `deadline` (time.perf_counter()
        seconds). warm_start: a d x c W."""
        params = SPRParams(lam0, lam2)
        lam0, lam2 = params.lam0, params.lam2
        start = time.perf_counter()
        problem = self.scaled.with_lambdas(lam0, lam2)
        penalized = self.reduced.penalized_rows
        warm = (
            np.zeros_like(self.reduced.cross)
            if warm_start is None
            else warm_start[penalized] / problem.w_scale
        )
        node = NodeRelaxation(problem, self.lipschitz).solve(
            np.full(self.n_groups, FREE, dtype=np.int8),
            problem.M,
            warm,
            tol=tol,
            max_iter=max_iter,
            deadline=deadline,
        )
        W_P = problem.restore_weights(node.W)
        W = self.reduced.full_weights(W_P, self.instance.d)
        closed = spr_closed_form_ragged(
            W_P.ravel(),
            self.entry_group,
            self.n_groups,
            lam0=lam0,
            lam2=lam2,
            M=self.bounds,
            outside="exact",
        )
        value = self.instance.loss(W) + float(np.sum(closed.value))
        lower = problem.restore_objective(node.lower)
        return SPRResult(
            value=value,
            lower_bound=lower,
            W=W,
            y=closed.indicator,
            kept=closed.case != Case.ZERO,
            iterations=node.iterations,
            converged=node.relative_gap <= tol,
            seconds=time.perf_counter() - start,
        )


def lambda_max(instance: Instance, M: float | np.ndarray, *, alpha: float) -> float:
    """The paper's lam above which SPR prunes every structure of `instance`."""
    return SPRRoute(instance, M).lam_max(alpha)
