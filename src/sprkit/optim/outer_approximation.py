"""Exact solution of the MIP by outer approximation in y-space with HiGHS (method `oa`).

The master problem is the MILP  min eta  s.t.  eta >= cut_i(y) for every cut collected so far,
y in {0, 1}^G  (cuts from sprkit.optim.support: affine minorants of the value function v(y),
tight at the supports where they were generated; the method of Bertsimas and Van Parys for
sparse ridge regression, here with the box |w| <= M y handled through the Huber conjugate).
HiGHS solves the master (MILP only: no MIQP is needed); each round adds the cuts of the
integral points HiGHS found, until the best true objective and HiGHS's dual bound on the master
(a valid lower bound, since eta underestimates v) are within the tolerance. The root cut comes
from the perspective relaxation's certificate, so the first lower bound is the perspective
bound; the first incumbent is the relaxation's support refitted exactly. HiGHS (up to 1.16) has
no working lazy-constraint callback, so the master is re-solved round by round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from sprkit.optim.node_relaxation import FREE, NodeRelaxation
from sprkit.optim.problem import ScaledProblem
from sprkit.optim.result import GAP_FLOOR, SearchProgress, relative_gap
from sprkit.optim.silence import c_level_silence
from sprkit.optim.support import Cut, SupportProblem, SupportSolution


def new_highs() -> highspy.Highs:
    """A silent Highs object. HiGHS prints a banner on stdout (C level) when the first object
    is built, before any option can be set; it would corrupt `--json` output, so stdout's file
    descriptor points to /dev/null for the duration of the constructor."""
    with c_level_silence((1,)):
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    return highs


class _Master:
    """The master MILP in highspy: columns y_0..y_{G-1} (binary) and eta (last), eta in
    units of `scale` (the first incumbent's value): HiGHS compares cuts with eta in absolute
    terms, so an optimum far below the solver units' objective at W = 0 would otherwise drown
    in its feasibility tolerance."""

    def __init__(self, n_groups: int, mip_gap: float, scale: float) -> None:
        self.n_groups = n_groups
        self.scale = scale
        self.mip_gap = mip_gap
        self.highs = new_highs()
        self.highs.setOptionValue("mip_rel_gap", mip_gap)
        self.highs.setOptionValue("mip_abs_gap", 0.0)
        # Cuts are compared with eta in absolute terms (objective near 1 in `scale` units):
        # the default 1e-6 row tolerance would leave the bound too loose for a 1e-6 gap.
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
        self.nodes = 0
        self.highs.cbMipImprovingSolution.subscribe(self._collect)

    def _collect(self, event) -> None:
        solution = np.asarray(event.data_out.mip_solution)[: self.n_groups]
        self.found.append(np.round(solution).astype(bool))

    def add_cut(self, cut: Cut) -> None:
        index = np.arange(self.n_groups + 1, dtype=np.int32)
        self.highs.addRow(
            cut.constant / self.scale,
            highspy.kHighsInf,
            self.n_groups + 1,
            index,
            np.r_[cut.slopes / self.scale, 1.0],
        )

    def hint(self, support: np.ndarray, eta: float) -> None:
        solution = highspy.HighsSolution()
        solution.col_value = list(np.r_[support.astype(float), eta / self.scale])
        solution.value_valid = True
        self.highs.setSolution(solution)

    def solve(self, seconds_left: float) -> tuple[float, list[np.ndarray]]:
        """Run HiGHS; returns (its dual bound lowered by its relative gap tolerance, integral
        supports it found). HiGHS's dual bound holds only up to its tolerances: two supports
        lam0 apart, lam0 = 2.4e-8 of the objective, came back with the bound of the worse
        one, above the optimum, with mip_rel_gap 1e-7."""
        self.found = []
        self.highs.setOptionValue("time_limit", max(seconds_left, 1e-3))
        self.highs.run()
        info = self.highs.getInfo()
        self.nodes += int(info.mip_node_count)
        found = list(self.found)
        if info.primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible):
            values = np.asarray(self.highs.getSolution().col_value)
            found.append(np.round(values[: self.n_groups]).astype(bool))
        dual = float(info.mip_dual_bound)
        return (dual - self.mip_gap * max(abs(dual), 1.0)) * self.scale, found


@dataclass(frozen=True)
class OAOutcome:
    """incumbent (solver units), lower bound, master nodes, the cuts, and whether the master
    proposed only supports already cut (the bound cannot move further)."""

    incumbent: SupportSolution
    lower: float
    nodes: int
    cuts: tuple[Cut, ...]
    stalled: bool


_ROOT_ITERATIONS = 20_000
_SMALLEST_SCALE = 1e-9  # of eta, in solver units (loss at W = 0 is 1)
_ROOT_TIME_SHARE = 0.1


def outer_approximation(
    problem: ScaledProblem,
    *,
    tol: float,
    deadline: float,
    progress: SearchProgress | None = None,
) -> OAOutcome:
    """Outer approximation to relative gap <= tol, or the best so far at `deadline`;
    `progress` is called after every round (open nodes: None, HiGHS keeps its own)."""
    supports = SupportProblem(
        problem.reduced,
        problem.row_structure,
        problem.M,
        lam0=problem.lam0,
        lam2=problem.lam2,
        deadline=deadline,
    )
    state = np.full(problem.n_groups, FREE, dtype=np.int8)
    # The root relaxation only seeds the first cut (valid at any W, so stopping it early is
    # safe): with a zero ridge it converges slowly, so it gets a tenth of the time left.
    start = time.perf_counter()
    relaxed = NodeRelaxation(problem, deadline=deadline).solve(
        state,
        problem.M,
        np.zeros_like(problem.reduced.cross),
        tol=min(1e-9, tol / 100.0),
        max_iter=_ROOT_ITERATIONS,
        deadline=min(deadline, start + _ROOT_TIME_SHARE * max(deadline - start, 0.0)),
    )
    cuts = [supports.cut_at(relaxed.W_dual)]
    master: _Master | None = None  # built once the first incumbent gives eta its scale
    bound = relaxed.lower
    incumbent: SupportSolution | None = None
    candidates = [relaxed.nonzero, relaxed.y >= 0.5]
    rounds, stalled = 0, False
    while True:
        new = 0
        for support in candidates:
            if supports.known(support):
                continue
            new += 1
            solution = supports.solve(support)
            if incumbent is None or solution.value < incumbent.value:
                incumbent = solution
            if master is not None:
                master.add_cut(solution.cut)
            cuts.append(solution.cut)
        gap = relative_gap(incumbent.value, bound, GAP_FLOOR)
        if progress is not None:
            master_nodes = 0 if master is None else master.nodes
            progress(master_nodes, None, min(bound, incumbent.value), incumbent.value)
        if gap <= tol or time.perf_counter() >= deadline:
            break
        if rounds and not new:  # HiGHS proposes only points already cut: bound is final
            stalled = True
            break
        if master is None:
            # floored so that cut coefficients stay far below HiGHS's largest matrix value
            scale = max(abs(incumbent.value), _SMALLEST_SCALE)
            master = _Master(problem.n_groups, mip_gap=tol / 10.0, scale=scale)
            for cut in cuts:
                master.add_cut(cut)
        master.hint(incumbent.support, incumbent.value)
        master_bound, candidates = master.solve(deadline - time.perf_counter())
        bound = max(bound, master_bound)
        rounds += 1
    nodes = 0 if master is None else master.nodes
    return OAOutcome(incumbent, min(bound, incumbent.value), nodes, tuple(cuts), stalled)
