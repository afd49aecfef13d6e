"""The result of an exact solve, the same fields whichever method produced it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sprkit.optim.support import Cut

OPTIMAL = "optimal"  # relative gap <= tol
TIME_LIMIT = "time_limit"  # stopped at the time limit with the best incumbent and bound
STALLED = "stalled"  # the method cannot close the gap further (numerical tolerance reached)
# Gaps are relative to the objective, floored at this share of the problem's scale (the
# objective at W = 0 with the free rows fitted; 1 in solver units), so that a zero optimum can
# be certified. Bounds and fits are computed in float64 from the Gram matrix, to about eps
# times that scale: the floor keeps tol x floor (1e-14 at tol = 1e-6) well above it; at 1e-12
# an optimum of 4e-13 was claimed optimal with a bound 1e-16 above it.
GAP_FLOOR = 1e-8
# Reported bounds are lowered by this many times their rounding (ExactSolver._result), so that
# a bound is never above the optimum by rounding.
BOUND_ROUNDING = 8.0
# What a native method reports as it goes, in solver units: (nodes solved, open nodes or None
# where the method keeps none, proven lower bound, incumbent value).
SearchProgress = Callable[[int, "int | None", float, float], None]


def relative_gap(objective: float, bound: float, floor: float = 0.0) -> float:
    """(objective - bound) / max(|objective|, floor), 0 when the bound reaches the objective
    (`floor`: a scale under which the objective counts as zero, so that a zero optimum can be
    certified)."""
    return float(max(objective - bound, 0.0) / max(abs(objective), floor, 1e-300))


@dataclass(frozen=True)
class Progress:
    """One line of a native solve's log (ExactSolver.solve(log=...)), in the instance's
    units: `seconds` since the solve started, `nodes` solved so far (HiGHS's master nodes for
    `oa`), `open_nodes` still to search (None for `oa`), `objective` of the incumbent,
    `bound` proven at that moment (it can fall by up to tol/2 when the incumbent improves:
    nodes pruned earlier were only proven at the old pruning level), and their `gap`."""

    seconds: float
    nodes: int
    open_nodes: int | None
    objective: float
    bound: float
    gap: float


@dataclass(frozen=True)
class MIPResult:
    """A certified result: `objective` of the incumbent (W, kept) recomputed from the data,
    `bound` a proven lower bound (never above the objective), gap = (objective - bound) /
    |objective|, `status` optimal only if gap <= tol. `nodes`: branch-and-bound nodes (for
    `oa`, HiGHS's master nodes summed), None if the solver does not report them; `cuts`: the
    y-space cuts of `oa` (valid inequalities for the Pyomo model), empty otherwise;
    `solver_seconds`: time inside the external solver (`pyomo:` methods; `seconds` adds the
    model build), None otherwise."""

    status: str
    objective: float
    bound: float
    gap: float
    kept: list[int]
    W: np.ndarray
    seconds: float
    nodes: int | None
    method: str
    cuts: tuple[Cut, ...] = ()
    solver_seconds: float | None = None

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "kept": self.kept,
            "seconds": self.seconds,
            "nodes": self.nodes,
            "method": self.method,
        }
