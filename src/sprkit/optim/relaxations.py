"""Continuous relaxations of the structured-pruning MIP in cvxpy (DESIGN.md section 2).

Both models keep lam0 and lam2 as cvxpy Parameters, so a lambda path re-solves the same
compiled problem. M (scalar or one value per structure, in the units of W) is fixed at build.

- big-M:       L(W) + lam2 sum_j ||w_j||^2 + lam0 sum_j y_j,   |w_jk| <= M_j y_j, y in [0, 1]
- perspective: L(W) + lam2 sum_j ||w_j||^2 / y_j + lam0 sum_j y_j, same constraints.

The perspective terms are written per row as rotated second-order cones
||w_r||^2 <= q_r * y_{g(r)} (one vectorized SOC constraint for all rows; the rows of one
structure share its y, so sum_r q_r = ||w_j||^2 / y_j at the optimum), and the loss in its
compressed form ||A W - B||^2 + const (thin QR of X), so the model size does not grow with n.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from sprkit.formula import resolve_lambdas
from sprkit.instances.format import Instance
from sprkit.optim.problem import structure_bounds
from sprkit.optim.quadratic import compressed_least_squares


@dataclass(frozen=True)
class RelaxationResult:
    """Optimal value (the bound), W (d x c), y (per structure, in structure_ids order)."""

    value: float
    W: np.ndarray
    y: np.ndarray
    status: str
    seconds: float


@dataclass
class RelaxationModel:
    """A compiled relaxation: the cvxpy Problem, its variables and lambda Parameters."""

    kind: str
    problem: cp.Problem
    W: cp.Variable
    y: cp.Variable
    lam0: cp.Parameter
    lam2: cp.Parameter

    def solve(
        self,
        lam0: float | None = None,
        lam2: float | None = None,
        *,
        lam: float | None = None,
        alpha: float | None = None,
        solver: str = "CLARABEL",
        **solver_options,
    ) -> RelaxationResult:
        """Set the Parameters and solve; raises RuntimeError if the solver fails."""
        self.lam0.value, self.lam2.value = resolve_lambdas(lam0, lam2, lam=lam, alpha=alpha)
        start = time.perf_counter()
        self.problem.solve(solver=solver, **solver_options)
        seconds = time.perf_counter() - start
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"{self.kind} relaxation: solver status {self.problem.status}")
        return RelaxationResult(
            value=float(self.problem.value),
            W=np.asarray(self.W.value),
            y=np.asarray(self.y.value),
            status=self.problem.status,
            seconds=seconds,
        )


def _build(instance: Instance, M: float | np.ndarray, kind: str) -> RelaxationModel:
    bounds = structure_bounds(instance, M)
    A, B, const = compressed_least_squares(instance)
    penalized = np.flatnonzero(instance.groups >= 0)
    row_structure = instance.row_structure[penalized]
    p, c, G = penalized.size, instance.c, instance.n_structures
    # Row -> structure selection matrix: (S @ y)[r] = y of the structure owning penalized row r.
    S = sp.csr_matrix((np.ones(p), (np.arange(p), row_structure)), shape=(p, G))

    W = cp.Variable((instance.d, c), name="W")
    y = cp.Variable(G, name="y")
    lam0 = cp.Parameter(nonneg=True, name="lam0")
    lam2 = cp.Parameter(nonneg=True, name="lam2")
    W_P = W[penalized, :]
    row_y = S @ y
    row_bound = cp.reshape(cp.multiply(bounds[row_structure], row_y), (p, 1), order="C")
    constraints = [y >= 0, y <= 1, cp.abs(W_P) <= row_bound @ np.ones((1, c))]
    loss = cp.sum_squares(A @ W - B) + const
    if kind == "bigm":
        l2_term = cp.sum_squares(W_P)
    else:
        q = cp.Variable(p, name="q")
        cone_args = cp.hstack([2 * W_P, cp.reshape(q - row_y, (p, 1), order="C")])
        constraints.append(cp.SOC(q + row_y, cone_args, axis=1))
        l2_term = cp.sum(q)
    problem = cp.Problem(cp.Minimize(loss + lam2 * l2_term + lam0 * cp.sum(y)), constraints)
    return RelaxationModel(kind=kind, problem=problem, W=W, y=y, lam0=lam0, lam2=lam2)


def bigm_relaxation(instance: Instance, M: float | np.ndarray) -> RelaxationModel:
    """The big-M relaxation (y relaxed to [0, 1], objective unchanged)."""
    return _build(instance, M, "bigm")


def perspective_relaxation(instance: Instance, M: float | np.ndarray) -> RelaxationModel:
    """The perspective relaxation (lam2 ||w_j||^2 replaced by its perspective)."""
    return _build(instance, M, "perspective")
