"""Continuous relaxations of the structured-pruning MIP in cvxpy (DESIGN.md section 2).

Both models keep lam0 and lam2 as cvxpy Parameters, so a lambda path re-solves the same
compiled problem. M (scalar or one value per structure, in the units of W) is fixed at build.

- big-M:       L(W) + lam2 sum_j ||w_j||^2 + lam0 sum_j y_j,   |w_jk| <= M_j y_j, y in [0, 1]
- perspective: L(W) + lam2 sum_j ||w_j||^2 / y_j + lam0 sum_j y_j, same constraints.

The perspective terms are written per row as rotated second-order cones
||w_r||^2 <= q_r * y_{g(r)} (one vectorized SOC constraint for all rows; the rows of one
structure share its y, so sum_r q_r = ||w_j||^2 / y_j at the optimum), and the loss in its
compressed form ||A W - B||^2 + const (thin QR of X), so the model size does not grow with n.

Units. The conic solver sees the problem in units where every column of A has squared norm
1 (each row r of W scaled by its own t_r, on top of one w_scale for all, so that columns of X
in different units do not reach the solver as an ill-conditioned problem) and the objective
is divided by f_scale: the loss at W = 0, or a given estimate of the optimum (clipped to
[SMALLEST_UNIT, 1] times that loss), so that the solver's tolerances are relative to the
optimum even when it is far below the loss at W = 0 (measured: n = 4 < d = 7, lam0 = 0,
lam2 = 1e-8, an optimum 3.6e-8 of that loss: big-M and perspective values 2.1e-4 and 6.7e-4
above it, reported optimal, with the loss as unit; 9e-12 and 4e-11 with the SPR route's value
as estimate). W_r = w_scale t_r W'_r (w_scale from the loss at W = 0),
objective = f_scale objective', lam0' = lam0 / f_scale, lam2' = lam2 w_scale^2 / f_scale
(times t_r^2 on row r), M'_r = M / (w_scale t_r) (an exact change of variables). Its
tolerances then mean the same on any data: Y x 1e6 with M = 1e7 is the same problem as Y with
M = 10. Parameters beyond LARGEST_SCALED in units where the loss at W = 0 is 1 (lam0 or lam2
that outweigh the whole loss 1e8 times, an M 1e8 times the natural size of W) are refused.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from sprkit.errors import ParameterError
from sprkit.instances.format import Instance
from sprkit.optim.quadratic import compressed_least_squares
from sprkit.params import SPRParams, structure_bounds


class OutOfScale(ParameterError):
    """A parameter beyond LARGEST_SCALED in the solver's units (module docstring)."""


class RelaxationFailed(RuntimeError):
    """The conic solver ended without an optimal point (`status`: cvxpy's status name)."""

    def __init__(self, kind: str, status: str) -> None:
        super().__init__(f"{kind} relaxation: solver status {status}")
        self.status = status


@dataclass(frozen=True)
class RelaxationResult:
    """Optimal value (the bound), W (d x c), y (per structure, in structure_ids order).
    `value` is the relaxation's objective recomputed at the returned (W, y), clipped into
    the constraints: a solver's own objective can carry slack (the perspective epigraph
    variables) that this does not."""

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
    root_lam2: cp.Parameter
    w_scale: float
    f_scale: float  # the objective's unit: estimate of the optimum, or the loss at W = 0
    at_zero: float  # the loss at W = 0 (objective units)
    row_scale: np.ndarray
    loss: cp.Expression
    penalized: np.ndarray  # rows of W in structures
    row_structure: np.ndarray  # structure position of each penalized row
    bounds: np.ndarray  # M per penalized row, solver units

    def solve(
        self,
        lam0: float,
        lam2: float,
        *,
        solver: str = "CLARABEL",
        **solver_options,
    ) -> RelaxationResult:
        """Set the Parameters and solve; RelaxationFailed if the solver ends without an
        optimal point (a time limit, numerical trouble)."""
        params = SPRParams(lam0, lam2)
        scaled = {
            "lam0": params.lam0 / self.f_scale,
            "lam2": params.lam2 * self.w_scale**2 / self.f_scale,
        }
        for name, value in scaled.items():  # checked in units where the loss at W = 0 is 1
            _check_scaled(name, value * self.f_scale / self.at_zero, getattr(params, name))
        self.lam0.value, self.lam2.value = scaled["lam0"], scaled["lam2"]
        self.root_lam2.value = np.sqrt(scaled["lam2"])
        if solver == "CLARABEL":  # the gap relative to the optimum, however small it is
            solver_options = {**_CLARABEL_GAPS, **solver_options}
        start = time.perf_counter()
        try:
            self._solve_once(solver, solver_options)
        except cp.error.SolverError:  # cvxpy raises for numerical trouble (no status set)
            raise RelaxationFailed(self.kind, "solver_error") from None
        seconds = time.perf_counter() - start
        if self.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RelaxationFailed(self.kind, self.problem.status)
        y = np.clip(np.asarray(self.y.value, dtype=float), 0.0, 1.0)
        value = self._objective_at(y, scaled["lam0"], scaled["lam2"])
        return RelaxationResult(
            value=value * self.f_scale,
            W=np.asarray(self.W.value) * (self.w_scale * self.row_scale[:, None]),
            y=y,
            status=self.problem.status,
            seconds=seconds,
        )

    def _solve_once(self, solver: str, solver_options: dict) -> None:
        """One solve; Clarabel's numerical failure retried once with 10x its default static
        regularization, in the time left (measured: boxes 1e-6 to 350 in solver units
        failed, then solved to 2e-10 of the SPR route's value)."""
        start = time.perf_counter()
        with warnings.catch_warnings():  # "may be inaccurate": the status says it
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            try:
                self.problem.solve(solver=solver, **solver_options)
            except cp.error.SolverError:
                if solver != "CLARABEL" or "static_regularization_constant" in solver_options:
                    raise
                retry = {**solver_options, "static_regularization_constant": 1e-7}
                if "time_limit" in retry:
                    spent = time.perf_counter() - start
                    retry["time_limit"] = max(retry["time_limit"] - spent, 1e-3)
                self.problem.solve(solver=solver, **retry)

    def _objective_at(self, y: np.ndarray, lam0: float, lam2: float) -> float:
        """The objective (solver units) at the solver's W with its penalized rows clipped into
        the box M y (W.value is set to that point) and `y` in [0, 1]."""
        W = np.asarray(self.W.value, dtype=float).copy()
        row_y = y[self.row_structure]
        limit = (self.bounds * row_y)[:, None]
        W[self.penalized] = np.clip(W[self.penalized], -limit, limit)
        self.W.value = W
        squares = np.sum((W[self.penalized] * self.row_scale[self.penalized, None]) ** 2, axis=1)
        if self.kind == "perspective":
            squares = np.divide(squares, row_y, out=np.zeros_like(squares), where=row_y > 0)
        return float(self.loss.value) + lam2 * float(np.sum(squares)) + lam0 * float(np.sum(y))


# Clarabel's default absolute gap (1e-8) is loose for optima far below the objective at
# W = 0 (1 in solver units without an estimate of the optimum); the relative gap is tightened
# with it (measured: big-M and perspective values 3e-7 above the MIP optimum with the
# defaults, 6e-9 with these).
_CLARABEL_GAPS = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-10}


LARGEST_SCALED = 1e8
SMALLEST_UNIT = 1e-12  # the smallest unit of objective, relative to the loss at W = 0


def _check_scaled(name: str, scaled: float, given: float) -> None:
    """OutOfScale if a parameter is beyond LARGEST_SCALED in solver units."""
    if scaled > LARGEST_SCALED:
        raise OutOfScale(
            f"{name} = {given:g} is out of scale for this instance: {scaled:.3g} in the "
            "solver's units (loss at W = 0 is 1, W of size 1), where the relaxations accept "
            f"up to {LARGEST_SCALED:g}"
        )


def _units(A: np.ndarray, B: np.ndarray, const: float) -> tuple[float, float]:
    """(w_scale, loss at W = 0) of the module docstring's solver units."""
    at_zero = float(np.sum(B * B)) + const
    at_zero = at_zero if at_zero > 0 else 1.0
    mean_column = float(np.mean(np.sum(A * A, axis=0)))
    w_scale = np.sqrt(at_zero / mean_column) if mean_column > 0 else 1.0
    return float(w_scale), at_zero


def _objective_unit(at_zero: float, estimate: float | None) -> float:
    """f_scale: the estimate of the optimum (objective units) kept within
    [SMALLEST_UNIT * at_zero, at_zero] (the optimum is at most the loss at W = 0), or
    `at_zero` without one."""
    if estimate is None or not np.isfinite(estimate) or estimate <= 0:
        return at_zero
    return float(np.clip(estimate, SMALLEST_UNIT * at_zero, at_zero))


def _row_scales(A: np.ndarray) -> np.ndarray:
    """Per row of W (column of A): sqrt(mean squared column norm / its own), 1 for zero
    columns, so that every column of the scaled A has the same norm. Columns of X in units
    1e8 apart otherwise reach Clarabel as a condition number of 1e16, where it reported
    "optimal" for a big-M value 30 % above the relaxation's optimum."""
    norms = np.sum(A * A, axis=0)
    mean = float(np.mean(norms)) if norms.size else 0.0
    return np.where(norms > 0, np.sqrt(mean / np.where(norms > 0, norms, 1.0)), 1.0)


def _build(
    instance: Instance, M: float | np.ndarray, kind: str, estimate: float | None
) -> RelaxationModel:
    A, B, const = compressed_least_squares(instance)
    w_scale, at_zero = _units(A, B, const)
    f_scale = _objective_unit(at_zero, estimate)
    row_scale = _row_scales(A)
    penalized = np.flatnonzero(instance.groups >= 0)
    row_structure = instance.row_structure[penalized]
    given = structure_bounds(M, instance.n_structures)
    bounds = given[row_structure] / (w_scale * row_scale[penalized])  # per penalized row
    if bounds.size:
        largest = int(np.argmax(bounds))
        _check_scaled("M", bounds[largest], given[row_structure[largest]])
    A = A * (w_scale / np.sqrt(f_scale)) * row_scale[None, :]  # w_scale: from at_zero
    B, const = B / np.sqrt(f_scale), const / f_scale
    ridge_scale = row_scale[penalized][:, None]  # ||w_r||^2 = w_scale^2 t_r^2 ||w'_r||^2
    p, c, G = penalized.size, instance.c, instance.n_structures
    # Row -> structure selection matrix: (S @ y)[r] = y of the structure owning penalized row r.
    S = sp.csr_matrix((np.ones(p), (np.arange(p), row_structure)), shape=(p, G))

    W = cp.Variable((instance.d, c), name="W")
    y = cp.Variable(G, name="y")
    lam0 = cp.Parameter(nonneg=True, name="lam0")
    lam2 = cp.Parameter(nonneg=True, name="lam2")
    root_lam2 = cp.Parameter(nonneg=True, name="root_lam2")  # sqrt(lam2), set with it
    W_P = W[penalized, :]
    row_y = S @ y
    row_bound = cp.reshape(cp.multiply(bounds, row_y), (p, 1), order="C")
    constraints = [y >= 0, y <= 1, cp.abs(W_P) <= row_bound @ np.ones((1, c))]
    loss = cp.sum_squares(A @ W - B) + const
    if kind == "bigm":
        ridge = lam2 * cp.sum_squares(cp.multiply(ridge_scale, W_P))
    else:
        # q_r >= lam2 ||w_r||^2 / y: lam2 inside the cone (as sqrt(lam2)), so that q is in
        # units of the objective; with q >= ||w_r||^2 / y and lam2 ~ 1e-8 outside, q grew
        # huge and Clarabel's "optimal" was 5.7 % above the relaxation's optimum
        q = cp.Variable(p, name="q")
        scaled_rows = cp.multiply(2 * ridge_scale, W_P) * root_lam2
        cone_args = cp.hstack([scaled_rows, cp.reshape(q - row_y, (p, 1), order="C")])
        constraints.append(cp.SOC(q + row_y, cone_args, axis=1))
        ridge = cp.sum(q)
    problem = cp.Problem(cp.Minimize(loss + ridge + lam0 * cp.sum(y)), constraints)
    return RelaxationModel(
        kind=kind,
        problem=problem,
        W=W,
        y=y,
        lam0=lam0,
        lam2=lam2,
        root_lam2=root_lam2,
        w_scale=w_scale,
        f_scale=f_scale,
        at_zero=at_zero,
        row_scale=row_scale,
        loss=loss,
        penalized=penalized,
        row_structure=row_structure,
        bounds=bounds,
    )


def bigm_relaxation(
    instance: Instance, M: float | np.ndarray, *, estimate: float | None = None
) -> RelaxationModel:
    """The big-M relaxation (y relaxed to [0, 1], objective unchanged). `estimate`: of its
    optimum (objective units), the solver's unit of objective (module docstring)."""
    return _build(instance, M, "bigm", estimate)


def perspective_relaxation(
    instance: Instance, M: float | np.ndarray, *, estimate: float | None = None
) -> RelaxationModel:
    """The perspective relaxation (lam2 ||w_j||^2 replaced by its perspective). `estimate`:
    as for bigm_relaxation."""
    return _build(instance, M, "perspective", estimate)
