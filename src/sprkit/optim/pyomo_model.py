"""The structured-pruning MIQP as a Pyomo model: the one statement of the formulation, to
inspect, extend or hand to any installed Pyomo MIQP solver (`--method pyomo:gurobi`, ...).

    min  sum_{i,k} residual_ik^2 + const + lam2 sum_{r penalized, k} W_rk^2 + lam0 sum_j y_j
    s.t. residual = A W - B                       (compact loss: thin QR of X, at most d rows)
         -M_j y_j <= W_rk <= M_j y_j  for rows r of structure j,   y_j binary,

with free rows (group -1) unbounded and unpenalized: a convex quadratic objective over linear
constraints (an MIQP). Optional y-space cuts from sprkit.optim.support (valid inequalities:
objective >= constant - slopes . y) go into the ConstraintList `cuts`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import numpy as np
import pyomo.environ as pyo

from sprkit.errors import ParameterError, SolverError
from sprkit.instances.format import Instance
from sprkit.optim.quadratic import compressed_least_squares
from sprkit.optim.silence import c_level_silence
from sprkit.optim.support import Cut
from sprkit.params import SPRParams, structure_bounds


class BuildOutOfTime(Exception):
    """The model's construction went past its deadline (build_pyomo_model)."""


def build_pyomo_model(
    instance: Instance,
    *,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    cuts: Iterable[Cut] = (),
    deadline: float = np.inf,
) -> pyo.ConcreteModel:
    """The MIQP of DESIGN.md section 1 for `instance` (structures in structure_ids order).
    Building the residual rows takes about d^2 c Pyomo terms (seconds at d ~ 500): past
    `deadline` (time.perf_counter() seconds) it stops with BuildOutOfTime."""
    params = SPRParams(lam0, lam2)
    lam0, lam2 = params.lam0, params.lam2
    bounds = structure_bounds(M, instance.n_structures)
    A, B, const = compressed_least_squares(instance)
    ids = [int(j) for j in instance.structure_ids]
    bound_of = dict(zip(ids, bounds, strict=True))

    model = pyo.ConcreteModel(name="sprkit structured-pruning MIQP")
    model.rows = pyo.RangeSet(0, instance.d - 1)
    model.outputs = pyo.RangeSet(0, instance.c - 1)
    model.factor_rows = pyo.RangeSet(0, A.shape[0] - 1)
    model.structures = pyo.Set(initialize=ids, ordered=True)
    model.W = pyo.Var(model.rows, model.outputs)
    model.y = pyo.Var(model.structures, within=pyo.Binary)
    model.residual = pyo.Var(model.factor_rows, model.outputs)

    @model.Constraint(model.factor_rows, model.outputs)
    def residual_definition(m, i, k):
        if time.perf_counter() > deadline:
            raise BuildOutOfTime
        terms = sum(float(A[i, r]) * m.W[r, k] for r in range(instance.d) if A[i, r] != 0)
        return m.residual[i, k] == terms - float(B[i, k])

    penalized = [
        (r, k) for r in range(instance.d) if instance.groups[r] >= 0 for k in range(instance.c)
    ]
    model.penalized = pyo.Set(initialize=penalized, dimen=2)

    @model.Constraint(model.penalized)
    def upper_bound(m, r, k):
        j = int(instance.groups[r])
        return m.W[r, k] <= bound_of[j] * m.y[j]

    @model.Constraint(model.penalized)
    def lower_bound(m, r, k):
        j = int(instance.groups[r])
        return -m.W[r, k] <= bound_of[j] * m.y[j]

    model.objective_value = pyo.Expression(
        expr=pyo.quicksum(v**2 for v in model.residual.values())
        + const
        + lam2 * pyo.quicksum(model.W[r, k] ** 2 for r, k in penalized)
        + lam0 * pyo.quicksum(model.y.values())
    )
    model.objective = pyo.Objective(expr=model.objective_value, sense=pyo.minimize)
    model.cuts = pyo.ConstraintList()
    for cut in cuts:
        add_cut(model, cut)
    return model


def add_cut(model: pyo.ConcreteModel, cut: Cut) -> None:
    """Add objective >= constant - slopes . y (slopes in structure_ids order)."""
    y = [model.y[j] for j in model.structures]
    model.cuts.add(
        model.objective_value
        >= cut.constant - sum(float(s) * v for s, v in zip(cut.slopes, y, strict=True))
    )


# Seconds Pyomo takes to hand a model to the solver, per second of building it (measured
# 1.2 with SCIP on 200 structures x 3 rows, 5 outputs, n = 300: 4.2 s to build, 5.1 s to
# hand over), reserved from the time limit.
_HANDOVER_PER_BUILD = 1.5
# Option names of the solvers whose time limit, gap and log sprkit knows how to set. SCIP's
# log must be switched off: Pyomo's SCIP interface captures it through a pipe, and a long run
# blocks writing to it.
_OPTIONS = {
    "gurobi": {"time": "TimeLimit", "gap": "MIPGap", "abs_gap": "MIPGapAbs"},
    "scip": {
        "time": "limits/time",
        "gap": "limits/gap",
        "abs_gap": "limits/absgap",
        "quiet": ("display/verblevel", 0),
    },
    "cplex": {"time": "timelimit", "gap": "mip_tolerances_mipgap"},
    "xpress": {"time": "maxtime", "gap": "miprelstop"},
}


# Pyomo terminations of a solver stopped by a limit: no solution yet is not a failure then.
_STOPPED_EARLY = (
    "maxTimeLimit",
    "maxIterations",
    "maxEvaluations",
    "userInterrupt",
    "resourceInterrupt",
)


@contextlib.contextmanager
def _pyomo_logging(level: int):
    """Pyomo's loggers (`pyomo.*`) at `level` for the block, restored after it."""
    logger = logging.getLogger("pyomo")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def pyomo_solver(name: str):
    """The Pyomo solver for `name`: its in-process interface (`<name>_direct`) when installed,
    else the executable one; ParameterError naming the problem if neither is available.
    Probing a missing solver makes Pyomo log warnings with tracebacks: they are silenced, the
    one-line error says it all."""
    with _pyomo_logging(logging.CRITICAL + 1):
        for candidate in (f"{name}_direct", name):
            try:
                solver = pyo.SolverFactory(candidate)
                if solver is not None and solver.available(exception_flag=False):
                    return solver
            except Exception:  # noqa: BLE001 - Pyomo plugins raise assorted errors when absent
                continue
    raise ParameterError(f"Pyomo solver {name!r} is not installed or not available")


def _out_of_time(build_seconds: float) -> dict:
    """solve_with_pyomo's answer when the limit ran out before the solver could start."""
    return {
        "kept": None,
        "bound": -np.inf,
        "nodes": None,
        "termination": "maxTimeLimit",
        "solve_seconds": 0.0,
        "build_seconds": build_seconds,
    }


def solve_with_pyomo(
    instance: Instance,
    *,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    solver: str,
    tol: float,
    time_limit: float,
    options: dict | None = None,
) -> dict:
    """Hand the model to a Pyomo solver (`options`: extra solver options, e.g. threads).
    Returns the solver's kept set, its proven lower bound (in the instance's units), node
    count (None where the interface does not say), the seconds of the solve call and of the
    model build. SolverError if the solver refuses the model."""
    start = time.perf_counter()
    opt = pyomo_solver(solver)
    try:  # Pyomo logs a rule's exception before passing it on: not an error here
        with _pyomo_logging(logging.CRITICAL + 1):
            model = build_pyomo_model(
                instance, lam0=lam0, lam2=lam2, M=M, deadline=start + time_limit
            )
    except BuildOutOfTime:
        return _out_of_time(time.perf_counter() - start)
    built = time.perf_counter()
    # The build spent part of the limit, and handing the model over (Pyomo writes it into the
    # solver, outside the solver's own limit) takes about as long again.
    left = time_limit - (built - start) * (1.0 + _HANDOVER_PER_BUILD)
    if left <= 0.0:
        return _out_of_time(built - start)
    names = _OPTIONS.get(solver, {})
    for key, value in (("time", left), ("gap", tol), ("abs_gap", 0.0)):
        if names.get(key):
            opt.options[names[key]] = value
    if "quiet" in names:
        opt.options[names["quiet"][0]] = names["quiet"][1]
    for key, value in (options or {}).items():
        opt.options[key] = value
    try:
        with c_level_silence():  # SCIP prints some errors from C, before Pyomo raises
            results = opt.solve(model, load_solutions=False, tee=False)
    except Exception as error:  # noqa: BLE001 - each solver raises its own error types
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SolverError(f"{solver} could not solve the model: {message}") from None
    solved = time.perf_counter()
    kept = None
    if len(results.solution) > 0 or getattr(results.solver, "status", None) is not None:
        # Pyomo warns (through logging) when it loads the incumbent of a stopped solve.
        with _pyomo_logging(logging.ERROR):
            try:
                model.solutions.load_from(results)
                kept = [
                    j
                    for j in model.structures
                    if (pyo.value(model.y[j], exception=False) or 0) > 0.5
                ]
            except Exception:  # noqa: BLE001 - no solution to load (time limit before any)
                kept = None
    termination = str(results.solver.termination_condition)
    if kept is None and termination not in _STOPPED_EARLY:
        hint = ""
        if termination in ("unknown", "other"):
            hint = "; it needs a solver of mixed-integer quadratic programs, e.g. gurobi or scip"
        raise SolverError(f"{solver} did not solve the model (it ended with {termination!r}){hint}")
    bound = results.problem.lower_bound
    solver_model = getattr(opt, "_solver_model", None)
    nodes = None
    for attribute in ("NodeCount", "getNNodes"):
        value = getattr(solver_model, attribute, None)
        if value is not None:
            nodes = int(value() if callable(value) else value)
            break
    return {
        "kept": kept,
        "bound": float(bound) if bound is not None else -np.inf,
        "nodes": nodes,
        "termination": termination,
        "solve_seconds": solved - built,
        "build_seconds": built - start,
    }
