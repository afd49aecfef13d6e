"""Certified solution of the structured-pruning MIP: one entry point, several methods.

- ``bnb``: branch and bound on the perspective relaxation (sprkit.optim.branch_and_bound);
- ``oa``: outer approximation in y-space with HiGHS (sprkit.optim.outer_approximation);
- ``auto``: ``bnb``, the faster of the two on every family measured, except where the
  relaxation is flat (no ridge and a singular Gram matrix): ``oa`` (docs/mip.md);
- ``pyomo:<solver>``: the Pyomo model (sprkit.optim.pyomo_model) handed to an installed Pyomo
  MIQP solver, e.g. ``pyomo:gurobi`` or ``pyomo:scip``, for cross-checks.

Whatever the method, the returned objective is recomputed from the data at the incumbent's W
(the exact fit of its kept set, or a feasible point of it where the time limit cut the fit
short), the bound is the method's proven lower bound, and the status is
``optimal`` only when their relative gap is within ``tol``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from sprkit.errors import ParameterError
from sprkit.instances.format import Instance
from sprkit.optim.branch_and_bound import (
    ENUMERATE_FREE,
    BranchAndBound,
    Branching,
    check_branching,
)
from sprkit.optim.dense_cost import LEAST_SQUARES, affordable
from sprkit.optim.gram_error import GramGrowth, gram_margin, loses_directions
from sprkit.optim.node_relaxation import FREE, free_shift
from sprkit.optim.outer_approximation import outer_approximation
from sprkit.optim.problem import ScaledProblem, scale_problem
from sprkit.optim.quadratic import ReducedLeastSquares
from sprkit.optim.result import (
    BOUND_ROUNDING,
    GAP_FLOOR,
    OPTIMAL,
    STALLED,
    TIME_LIMIT,
    MIPResult,
    Progress,
    relative_gap,
)
from sprkit.optim.support import Cut, SupportProblem
from sprkit.params import SPRParams, structure_bounds

METHODS = ("auto", "bnb", "oa", "pyomo:<solver>")
_FLAT = 1e-9  # ridge + shift below this share of the mean curvature: `auto` picks `oa`
_LOG_EVERY = 1.0  # seconds between two lines of a solve's log


def check_method(method: str) -> str:
    """The method name, validated (ParameterError naming the choices)."""
    named = isinstance(method, str) and (
        method in ("auto", "bnb", "oa") or (method.startswith("pyomo:") and len(method) > 6)
    )
    if named:
        return method
    raise ParameterError(f"unknown method {method!r}: choose auto, bnb, oa or pyomo:<solver>")


def _flat_relaxation(problem: ScaledProblem, deadline: float) -> bool:
    """Whether the perspective relaxation has no curvature to work with: ridge and shift
    (lambda_min of G) both below _FLAT of the mean curvature (solver units: 1). Its bound is
    then the big-M one, and `oa`, whose cuts are exact at integral points, certified the
    instances `bnb` could not (lam2 = 0 with fewer samples than rows; docs/mip.md). A shift
    too slow to compute before `deadline` counts as none."""
    state = np.full(problem.n_groups, FREE, dtype=np.int8)
    shift = free_shift(problem.reduced.gram, problem.row_structure, state, deadline=deadline)
    mean_curvature = float(np.mean(np.diag(problem.reduced.gram)))
    return problem.lam2 + float(np.max(shift)) <= _FLAT * mean_curvature


def _is_number(value: object) -> bool:
    """A real number (not a string, not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class _ProgressLog:
    """A native method's progress (SearchProgress, solver units) handed on as Progress
    lines in the instance's units, at most one every _LOG_EVERY seconds (the first at once)."""

    def __init__(
        self,
        log: Callable[[Progress], None],
        problem: ScaledProblem,
        start: float,
        *,
        floor: float,
        margin: float,
    ) -> None:
        """`floor` of the gaps and rounding `margin` of the bounds: ExactSolver's."""
        self.log, self.problem, self.start = log, problem, start
        self.floor, self.margin = floor, margin
        self.due = start
        # what a method run earlier in the same solve (oa, before bnb) ended with, solver units
        self.nodes_before, self.best, self.proven = 0, np.inf, -np.inf

    def hand_over(self, nodes: int, incumbent: float, lower: float) -> None:
        """Count the earlier method's nodes, incumbent and proven bound in later lines."""
        self.nodes_before, self.best, self.proven = nodes, incumbent, lower

    def __call__(self, nodes: int, open_nodes: int | None, lower: float, incumbent: float) -> None:
        now = time.perf_counter()
        if now < self.due:
            return
        self.due = now + _LOG_EVERY
        # both methods' bounds are proven bounds of the same MIP
        objective = float(self.problem.restore_objective(min(incumbent, self.best)))
        bound = float(self.problem.restore_objective(max(lower, self.proven)) - self.margin)
        bound = min(max(bound, 0.0), objective)
        gap = relative_gap(objective, bound, self.floor)
        nodes += self.nodes_before
        self.log(Progress(now - self.start, nodes, open_nodes, objective, bound, gap))


class ExactSolver:
    """Certified solution of the MIP for one instance and M, for any (lam0, lam2)."""

    def __init__(self, instance: Instance, M: float | np.ndarray) -> None:
        if not isinstance(instance, Instance):
            raise ParameterError(
                "instance must be an sprkit Instance (sprkit.instances.load_instance reads a "
                f"file), got {type(instance).__name__}"
            )
        self.instance = instance
        self.bounds = structure_bounds(M, instance.n_structures)
        self.reduced = ReducedLeastSquares.from_instance(instance)
        self.row_structure = instance.row_structure[self.reduced.penalized_rows]
        self._blind: bool | None = None  # whether the Gram form loses directions of X
        self._growth: GramGrowth | None = None  # the Gram form's growth (_check_resolution)

    def scaled_problem(self, lam0: float, lam2: float) -> ScaledProblem:
        """The MIP in solver units (sprkit.optim.problem), as the native methods solve it."""
        return scale_problem(self.reduced, self.row_structure, self.bounds, lam0=lam0, lam2=lam2)

    def solve(
        self,
        lam0: float,
        lam2: float,
        *,
        tol: float = 1e-6,
        time_limit: float = 600.0,
        method: str = "auto",
        branching: Branching = "fractional",
        solver_options: dict | None = None,
        log: Callable[[Progress], None] | None = None,
    ) -> MIPResult:
        """Solve to relative gap <= tol, or return the best incumbent and bound after
        `time_limit` seconds (every phase checks the clock). `branching`: rule of `bnb`;
        `solver_options`: passed to the solver of a `pyomo:` method; `log`: called with the
        search's Progress about once a second by `bnb` and `oa` (the first line once the
        root is solved, or before a few structures' supports are enumerated; not called by
        `pyomo:` methods, whose solvers keep their own logs)."""
        start = time.perf_counter()
        params = SPRParams(lam0, lam2)
        lam0, lam2 = params.lam0, params.lam2
        method = check_method(method)
        check_branching(branching)  # also where `bnb` does not run
        if not (_is_number(tol) and 0 < tol < 1):
            raise ParameterError(f"tol must be a number in (0, 1), got {tol!r}")
        if not (_is_number(time_limit) and np.isfinite(time_limit) and time_limit > 0):
            raise ParameterError(
                f"time_limit must be a finite number > 0 (seconds), got {time_limit!r}"
            )
        if log is not None and not callable(log):
            raise ParameterError(f"log must be callable or None, got {type(log).__name__}")
        deadline = start + time_limit
        # The exact methods factor matrices of at most a few hundred rows, thousands of times:
        # BLAS threads cost more than they give there (and spin against other processes).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._solve(
                method, lam0, lam2, tol, deadline, start, branching, solver_options, log
            )

    def _solve(
        self,
        method: str,
        lam0: float,
        lam2: float,
        tol: float,
        deadline: float,
        start: float,
        branching: Branching,
        solver_options: dict | None,
        log: Callable[[Progress], None] | None,
    ) -> MIPResult:
        if method.startswith("pyomo:"):
            return self._solve_pyomo(method, lam0, lam2, tol, deadline, start, solver_options)
        problem = self.scaled_problem(lam0, lam2)
        self._check_resolution(deadline)
        report = None
        if log is not None:
            report = _ProgressLog(
                log, problem, start, floor=self._gap_floor(tol), margin=self._bound_margin()
            )
        only_oa = method == "oa"
        # small instances: bnb enumerates where its relaxation is slow (branch_and_bound)
        flat = (
            method == "auto"
            and problem.n_groups > ENUMERATE_FREE
            and _flat_relaxation(problem, deadline)
        )
        cuts: tuple[Cut, ...] = ()
        incumbent, lower, nodes, stalled = None, -np.inf, 0, False
        if only_oa or flat:
            # a flat relaxation: `oa` first, on half the time (`auto`), `bnb` on the rest
            now = time.perf_counter()
            oa_deadline = now + 0.5 * (deadline - now) if flat else deadline
            found = outer_approximation(problem, tol=tol, deadline=oa_deadline, progress=report)
            cuts = tuple(
                Cut(cut.constant * problem.f_scale, cut.slopes * problem.f_scale)
                for cut in found.cuts
            )
            incumbent, lower = found.incumbent, found.lower
            nodes, stalled, method = found.nodes, found.stalled, "oa"
        if not only_oa and (not flat or relative_gap(incumbent.value, lower, GAP_FLOOR) > tol):
            if report is not None and incumbent is not None:
                report.hand_over(nodes, incumbent.value, lower)
            searched = BranchAndBound(problem, branching=branching, deadline=deadline).run(
                tol=tol, deadline=deadline, progress=report
            )
            if incumbent is None or searched.incumbent.value < incumbent.value:
                incumbent = searched.incumbent
            lower = max(lower, searched.lower)  # both are proven bounds of the same MIP
            nodes += searched.nodes
            stalled = searched.exhausted
            method = "oa+bnb" if flat else "bnb"
        W_P = problem.restore_weights(incumbent.W_P)
        return self._result(
            W_P,
            incumbent.support,
            problem.restore_objective(lower),
            lam0=lam0,
            lam2=lam2,
            tol=tol,
            start=start,
            nodes=nodes,
            method=method,
            fallback=STALLED if stalled else TIME_LIMIT,
            cuts=cuts,
            from_gram=True,
        )

    def _result(
        self,
        W_P: np.ndarray,
        support: np.ndarray,
        bound: float,
        *,
        lam0: float,
        lam2: float,
        tol: float,
        start: float,
        nodes: int | None,
        method: str,
        fallback: str,
        cuts: tuple[Cut, ...] = (),
        solver_seconds: float | None = None,
        from_gram: bool = False,
    ) -> MIPResult:
        """`from_gram`: the bound was proven on the Gram form (native methods), so it is also
        lowered by how far that form can be from the data (_gram_margin)."""
        W = self.reduced.full_weights(W_P, self.instance.d)
        objective = (
            self.instance.loss(W) + lam2 * float(np.sum(W_P * W_P)) + lam0 * int(support.sum())
        )
        # Every term of the objective is >= 0, so 0 is a valid bound; a gap is relative to the
        # objective, floored (_gap_floor); the bound is lowered by its rounding (_bound_margin).
        bound = bound - self._bound_margin()
        if from_gram:
            bound -= self._gram_margin(objective, lam2)
        bound = min(max(bound, 0.0), objective)
        gap = relative_gap(objective, bound, self._gap_floor(tol))
        return MIPResult(
            status=OPTIMAL if gap <= tol else fallback,
            objective=float(objective),
            bound=float(bound),
            gap=gap,
            kept=self.instance.structure_ids[np.flatnonzero(support)].tolist(),
            W=W,
            seconds=time.perf_counter() - start,
            nodes=nodes,
            method=method,
            cuts=cuts,
            solver_seconds=solver_seconds,
        )

    def _gap_scale(self) -> tuple[float, float]:
        """(objective at W = 0, the problem's scale): the objective at W = 0 with the free
        rows fitted (an offset the free rows absorb is not the problem's scale), at least eps
        of the objective at W = 0 (a zero optimum, Y in the span of the kept columns with
        lam0 = lam2 = 0, or of the free rows alone, is then certified: the rounding left
        there is not the problem's scale)."""
        at_zero = float(np.sum(self.instance.Y**2)) / self.instance.n
        return at_zero, max(self.reduced.const, np.finfo(np.float64).eps * at_zero)

    def _gap_floor(self, tol: float) -> float:
        """The objective under which gaps are taken relative to this instead: GAP_FLOOR of
        the problem's scale, and at least the bounds' rounding (_bound_margin) / tol: no bound
        is known closer than that rounding, so an objective that small is `optimal` once its
        bound is within the rounding (an optimum of zero, Y in the span of the free rows,
        left 6e-25 of rounding in the objective against a margin of 7e-23: it could not be
        certified). Above it the gap is relative to the objective, as everywhere."""
        return max(GAP_FLOOR * self._gap_scale()[1], self._bound_margin() / tol)

    def _bound_margin(self) -> float:
        """What bounds are lowered by: BOUND_ROUNDING times their rounding (the fitted
        constant is exact to about eps sqrt(at_zero x scale); a product of square roots does
        not overflow)."""
        at_zero, scale = self._gap_scale()
        eps = np.finfo(np.float64).eps
        return BOUND_ROUNDING * eps * np.sqrt(max(at_zero, scale)) * np.sqrt(scale)

    def _check_resolution(self, deadline: float) -> None:
        """The Gram form's growth (gram_error.GramGrowth) and whether it loses directions of
        X (gram_error.loses_directions), once per instance, each where predicted to take at
        most a tenth of the time left (_gram_margin)."""
        if self._blind is not None:
            return
        n, d = self.instance.n, self.reduced.gram.shape[0]
        self._growth = GramGrowth.of(self.reduced, deadline)
        equivalent = round((max(n, d) * min(n, d) ** 2) ** (1 / 3))  # the SVD's cost, as a cube
        if affordable(equivalent, deadline, LEAST_SQUARES, share=0.1):
            self._blind = loses_directions(self.instance, self.reduced)

    def _gram_margin(self, objective: float, lam2: float) -> float:
        """What a bound proven on the Gram form is lowered by (sprkit.optim.gram_error):
        within the growth's radius where the Gram matrix is nonsingular (a few eps of the
        objective on ordinary data); else within the box's or ridge's, where it loses
        directions of X or could not be checked in time; else 0."""
        if self._growth is None and self._blind is False:
            return 0.0
        return gram_margin(
            self.reduced,
            self.instance.n,
            self.bounds[self.row_structure],
            lam2,
            objective,
            self._growth,
        )

    def _solve_pyomo(
        self,
        method: str,
        lam0: float,
        lam2: float,
        tol: float,
        deadline: float,
        start: float,
        options: dict | None,
    ) -> MIPResult:
        """The Pyomo model handed to an installed solver, in units where the penalized
        columns of X have mean square 1 and so has Y (X / a, Y / b, W' = W a / b: an exact
        change of units, lam2' = lam2 / a^2, lam0' = lam0 / b^2, M' = M a / b, objective /
        b^2), so that the solver's absolute tolerances do not meet the data's units; its kept
        set refitted exactly in the instance's units."""
        from sprkit.optim.pyomo_model import solve_with_pyomo

        instance = self.instance
        penalized = instance.X[:, instance.groups >= 0]
        a = float(np.sqrt(np.mean(penalized * penalized))) if penalized.size else 1.0
        b = float(np.sqrt(np.mean(instance.Y * instance.Y)))
        a, b = (a if a > 0 else 1.0), (b if b > 0 else 1.0)
        answer = solve_with_pyomo(
            replace(instance, X=instance.X / a, Y=instance.Y / b),
            lam0=lam0 / b**2,
            lam2=lam2 / a**2,
            M=self.bounds * (a / b),
            solver=method.split(":", 1)[1],
            tol=tol,
            time_limit=max(deadline - time.perf_counter(), 1e-3),
            options=options,
        )
        ids = self.instance.structure_ids
        support = np.isin(ids, answer["kept"] or [])
        fit = SupportProblem(
            self.reduced, self.row_structure, self.bounds, lam0=lam0, lam2=lam2
        ).solve(support)
        return self._result(
            fit.W_P,
            support,
            answer["bound"] * b**2,
            lam0=lam0,
            lam2=lam2,
            tol=tol,
            start=start,
            nodes=answer["nodes"],
            method=method,
            # a solver that stopped as "optimal" above our tolerance hit its own numerics
            fallback=STALLED if answer["termination"] == "optimal" else TIME_LIMIT,
            solver_seconds=answer["solve_seconds"],
        )
