"""Exact solution of the structured-pruning MIP by outer approximation in y-space, with HiGHS.

The master problem is the MILP  min eta  s.t.  eta >= cut_i(y) for every cut collected so far,
y in {0, 1}^G  (cuts from sprkit.optim.support: affine minorants of the value function v(y),
tight at the supports where they were generated; the method of Bertsimas and Van Parys for
sparse ridge regression, here with the box |w| <= M y handled through the Huber conjugate).
HiGHS solves the master (MILP only: no MIQP is needed); each round adds the cuts of the
integral points HiGHS found, until the best true objective (the incumbent, recomputed from the
data) and HiGHS's dual bound on the master (a valid lower bound, since eta underestimates v)
are within the tolerance. The root cut comes from the SPR route, so the first lower bound is
the perspective relaxation's; the first incumbent is the SPR support refitted exactly.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np

from sprkit.formula import resolve_lambdas
from sprkit.instances.format import Instance
from sprkit.optim.quadratic import ReducedLeastSquares
from sprkit.optim.relaxations import structure_bounds
from sprkit.optim.spr_route import SPRRoute
from sprkit.optim.support import Cut, SupportProblem, SupportSolution

OPTIMAL = "optimal"  # relative gap <= tol
TIME_LIMIT = "time_limit"  # stopped at the time limit with the best incumbent and bound
STALLED = "stalled"  # the master only proposed supports already cut, gap still above tol


@dataclass(frozen=True)
class MIPResult:
    """A certified result: objective of the incumbent (W, kept) recomputed from the data,
    bound a proven lower bound, gap = (objective - bound) / |objective|."""

    status: str
    objective: float
    bound: float
    gap: float
    kept: list[int]
    W: np.ndarray
    seconds: float
    rounds: int
    cuts: tuple[Cut, ...]

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "kept": self.kept,
            "seconds": self.seconds,
        }


def _new_highs() -> highspy.Highs:
    """A silent Highs object. HiGHS prints a banner on stdout (C level) when the first object
    is built, before any option can be set; it would corrupt `--json` output, so stdout's file
    descriptor points to /dev/null for the duration of the constructor."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highs = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    highs.setOptionValue("output_flag", False)
    return highs


class _Master:
    """The master MILP in highspy: columns y_0..y_{G-1} (binary) and eta (last)."""

    def __init__(self, n_groups: int, mip_gap: float) -> None:
        self.n_groups = n_groups
        self.highs = _new_highs()
        self.highs.setOptionValue("mip_rel_gap", mip_gap)
        self.highs.setOptionValue("mip_abs_gap", 0.0)
        # Cuts are compared with eta in absolute terms: HiGHS's default 1e-6 row tolerance
        # would leave the bound 1e-6 below the objective, too loose for a 1e-6 relative gap.
        self.highs.setOptionValue("mip_feasibility_tolerance", 1e-9)
        self.highs.setOptionValue("primal_feasibility_tolerance", 1e-9)
        self.highs.setOptionValue("threads", 1)
        infinity = highspy.kHighsInf
        lower = np.zeros(n_groups + 1)
        upper = np.r_[np.ones(n_groups), infinity]
        self.highs.addVars(n_groups + 1, lower, upper)
        self.highs.changeColsIntegrality(
            n_groups,
            np.arange(n_groups, dtype=np.int32),
            np.array([highspy.HighsVarType.kInteger] * n_groups),
        )
        self.highs.changeColCost(n_groups, 1.0)
        self.found: list[np.ndarray] = []
        self.highs.cbMipImprovingSolution.subscribe(self._collect)

    def _collect(self, event) -> None:
        solution = np.asarray(event.data_out.mip_solution)[: self.n_groups]
        self.found.append(np.round(solution).astype(bool))

    def add_cut(self, cut: Cut) -> None:
        index = np.arange(self.n_groups + 1, dtype=np.int32)
        self.highs.addRow(
            cut.constant, highspy.kHighsInf, self.n_groups + 1, index, np.r_[cut.slopes, 1.0]
        )

    def hint(self, support: np.ndarray, eta: float) -> None:
        solution = highspy.HighsSolution()
        solution.col_value = list(np.r_[support.astype(float), eta])
        solution.value_valid = True
        self.highs.setSolution(solution)

    def solve(self, seconds_left: float) -> tuple[float, list[np.ndarray]]:
        """Run HiGHS; returns (its dual bound, integral supports it found)."""
        self.found = []
        self.highs.setOptionValue("time_limit", max(seconds_left, 1e-3))
        self.highs.run()
        info = self.highs.getInfo()
        found = list(self.found)
        if info.primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible):
            values = np.asarray(self.highs.getSolution().col_value)
            found.append(np.round(values[: self.n_groups]).astype(bool))
        return float(info.mip_dual_bound), found


class ExactSolver:
    """Certified solution of the MIP for one instance and M, for any (lam0, lam2)."""

    def __init__(self, instance: Instance, M: float | np.ndarray) -> None:
        self.instance = instance
        self.bounds = structure_bounds(instance, M)
        self.route = SPRRoute(instance, self.bounds)
        self.reduced: ReducedLeastSquares = self.route.reduced
        self.row_structure = instance.row_structure[self.reduced.penalized_rows]

    def solve(
        self,
        lam0: float | None = None,
        lam2: float | None = None,
        *,
        lam: float | None = None,
        alpha: float | None = None,
        tol: float = 1e-6,
        time_limit: float = 600.0,
    ) -> MIPResult:
        """Outer approximation to relative gap <= tol, or the best so far at `time_limit` s."""
        lam0, lam2 = resolve_lambdas(lam0, lam2, lam=lam, alpha=alpha)
        start = time.perf_counter()
        deadline = start + time_limit
        problem = SupportProblem(
            self.reduced, self.row_structure, self.bounds, lam0=lam0, lam2=lam2
        )
        master = _Master(self.bounds.size, mip_gap=tol / 10.0)

        relaxed = self.route.solve(lam0, lam2, tol=min(1e-9, tol / 100.0))
        cuts = [problem.cut_at(relaxed.W[self.reduced.penalized_rows])]
        master.add_cut(cuts[0])
        bound = relaxed.lower_bound
        incumbent: SupportSolution | None = None
        rounds = 0
        candidates = [relaxed.kept, relaxed.y >= 0.5]
        while True:
            new = 0
            for support in candidates:
                if problem.known(support):
                    continue
                new += 1
                solution = problem.solve(support)
                if incumbent is None or solution.value < incumbent.value:
                    incumbent = solution
                master.add_cut(solution.cut)
                cuts.append(solution.cut)
            if self._gap(incumbent.value, bound) <= tol or time.perf_counter() >= deadline:
                break
            if rounds and not new:  # HiGHS proposes only points already cut: bound is final
                break
            master.hint(incumbent.support, incumbent.value)
            master_bound, candidates = master.solve(deadline - time.perf_counter())
            bound = max(bound, master_bound)
            rounds += 1
        timed_out = time.perf_counter() >= deadline
        return self._result(incumbent, bound, lam0, lam2, tol, start, rounds, cuts, timed_out)

    @staticmethod
    def _gap(objective: float, bound: float) -> float:
        return max(objective - bound, 0.0) / max(abs(objective), 1e-300)

    def _result(
        self,
        incumbent: SupportSolution,
        bound: float,
        lam0: float,
        lam2: float,
        tol: float,
        start: float,
        rounds: int,
        cuts: list[Cut],
        timed_out: bool,
    ) -> MIPResult:
        W = self.reduced.full_weights(incumbent.W_P, self.instance.d)
        objective = (
            self.instance.loss(W)
            + lam2 * float(np.sum(incumbent.W_P**2))
            + lam0 * int(incumbent.support.sum())
        )
        gap = self._gap(objective, bound)
        return MIPResult(
            status=OPTIMAL if gap <= tol else TIME_LIMIT if timed_out else STALLED,
            objective=objective,
            bound=min(bound, objective),
            gap=gap,
            kept=self.instance.structure_ids[np.flatnonzero(incumbent.support)].tolist(),
            W=W,
            seconds=time.perf_counter() - start,
            rounds=rounds,
            cuts=tuple(cuts),
        )
