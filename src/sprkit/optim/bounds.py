"""One call computing the bounds of an instance: big-M, perspective, SPR route (and the MIP),
all within one deadline."""

from __future__ import annotations

import multiprocessing
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sprkit.errors import first_line
from sprkit.instances.format import Instance
from sprkit.optim.mip import ExactSolver
from sprkit.optim.spr_route import SPRResult, SPRRoute


def _relaxation_value(
    kind: str,
    instance: Instance,
    M,
    lam0: float,
    lam2: float,
    seconds: float,
    estimate: float | None,
) -> tuple[float | None, str]:
    """(optimal value, "optimal") of a cvxpy relaxation, or (None, the solver's status) when
    Clarabel did not reach optimality ("time_limit" when no time was left; an
    "optimal_inaccurate" value is no bound: one came out above the MIP optimum). `estimate`:
    of the optimum (objective units), the conic solver's unit of objective."""
    from sprkit.optim.relaxations import (
        OutOfScale,
        RelaxationFailed,
        bigm_relaxation,
        perspective_relaxation,
    )

    if seconds <= 0:
        return None, "time_limit"
    start = time.perf_counter()
    build = bigm_relaxation if kind == "bigm" else perspective_relaxation
    try:
        model = build(instance, M, estimate=estimate)
        left = seconds - (time.perf_counter() - start)
        if left <= 0:
            return None, "time_limit"
        result = model.solve(lam0, lam2, time_limit=left)
    except RelaxationFailed as failure:  # no certified value
        return None, failure.status
    except OutOfScale:  # the conic solver cannot take it; the SPR route and the MIP can
        return None, "out_of_scale"
    return (result.value, "optimal") if result.status == "optimal" else (None, result.status)


_CHILD_GRACE = 0.25  # seconds for the child's start and answer beyond its own limit


def _answer_into(send, *args) -> None:
    """_relaxation_value in a child process: ("value", its answer), or ("error", what it
    raised, as text: an exception object may not survive pickling) into `send`."""
    try:
        send.send(("value", _relaxation_value(*args)))
    except BaseException as error:  # noqa: BLE001 - raised again, as one line, in the parent
        send.send(("error", f"{type(error).__name__}: {first_line(error)}"))


def _relaxation_within(
    kind: str,
    instance: Instance,
    M,
    lam0: float,
    lam2: float,
    seconds: float,
    estimate: float | None,
) -> tuple[float | None, str]:
    """_relaxation_value stopped after `seconds` whatever it is doing: in a forked child
    process (Linux; elsewhere in this process, with Clarabel's own limit only), ended at the
    limit ("time_limit"). cvxpy's compilation and Clarabel's first factorization check no
    clock (measured: 25 s for a 1 s limit at d = 801, c = 20)."""
    if seconds <= 0:
        return None, "time_limit"
    if not sys.platform.startswith("linux"):  # fork is Linux's (unsafe on macOS); no child
        return _relaxation_value(kind, instance, M, lam0, lam2, seconds, estimate)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    args = (send, kind, instance, M, lam0, lam2, seconds, estimate)
    process = context.Process(target=_answer_into, args=args, daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(seconds + _CHILD_GRACE):
            return None, "time_limit"
        answer = receive.recv()
    except EOFError:  # the child died without an answer (killed, out of memory)
        return None, "solver_error"
    finally:
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():  # SIGTERM handled or deferred inside C code
            process.kill()
        process.join()
        receive.close()
    what, payload = answer
    if what == "error":
        raise RuntimeError(f"{kind} relaxation failed: {payload}")
    return payload


# A conic value beyond the certified interval by more than this (relative) is no bound.
CERTIFIED_RTOL = 1e-6


def _certified(
    kind: str, value: float | None, status: str, spr: SPRResult
) -> tuple[float | None, str]:
    """(value, status), or (None, "optimal_inaccurate") for a value that contradicts the SPR
    route's certificate: the perspective optimum lies in [spr lower bound, spr value], the
    big-M optimum below the perspective's (objective units, CERTIFIED_RTOL relative)."""
    if value is None:
        return value, status
    lower = max(spr.lower_bound, 0.0) if kind == "perspective" else -np.inf
    if lower * (1 - CERTIFIED_RTOL) <= value <= spr.value * (1 + CERTIFIED_RTOL):
        return value, status
    return None, "optimal_inaccurate"


def _share(deadline: float, parts: int) -> float:
    """The deadline (time.perf_counter() seconds) of one of `parts` equal shares of the time
    left."""
    now = time.perf_counter()
    return now + (deadline - now) / parts


def _mip(instance: Instance, M, lam0: float, lam2: float, deadline: float) -> dict:
    """The MIP's incumbent, status, bound and gap, its setup counted against `deadline`
    (600 s when none)."""
    deadline = _share(deadline, 2) if np.isfinite(deadline) else time.perf_counter() + 600.0
    solver = ExactSolver(instance, M)
    left = deadline - time.perf_counter()
    exact = solver.solve(lam0, lam2, time_limit=max(left, 1e-3))
    return {
        "mip": exact.objective,
        "mip_status": exact.status,
        "mip_bound": exact.bound,
        "mip_gap": exact.gap,
    }


def compute_bounds(
    instance: Instance,
    *,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    tol: float = 1e-9,
    with_mip: bool = False,
    deadline: float = np.inf,
) -> dict:
    """Bounds and wall-clock seconds (model build included) for each method.

    Keys: bigm, perspective (None where the conic solver did not converge before `deadline`,
    time.perf_counter() seconds, or where its value contradicts the SPR route's
    certificate), relaxation_status (per relaxation: "optimal", or the solver's status:
    "time_limit", "user_limit", "solver_error", "optimal_inaccurate", "out_of_scale": a
    parameter beyond what the conic solver takes in its units, ...), spr (the SPR-route
    objective), spr_lower_bound (its dual certificate, valid even when not converged),
    spr_converged, spr_kept (structures with w_j != 0), seconds (per method); with
    `with_mip` also mip (the incumbent's objective), mip_status, mip_bound, mip_gap. The SPR
    route runs first with a third of the time (it has a certificate at any time; the
    objective is >= 0, so its certificate is floored at 0), the MIP gets half of what is left
    and the conic relaxations share the rest; each share counts its setup. BLAS runs on one
    thread, as in ExactSolver.solve.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _compute_bounds(instance, lam0, lam2, M, tol, with_mip, deadline)


def _compute_bounds(
    instance: Instance,
    lam0: float,
    lam2: float,
    M: float | np.ndarray,
    tol: float,
    with_mip: bool,
    deadline: float,
) -> dict:
    """compute_bounds, on the BLAS threads it was given."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    spr_deadline = _share(deadline, 3)  # inf without a deadline
    spr = SPRRoute(instance, M, spr_deadline).solve(lam0, lam2, tol=tol, deadline=spr_deadline)
    seconds["spr"] = time.perf_counter() - start
    mip = {}
    if with_mip:
        start = time.perf_counter()
        mip = _mip(instance, M, lam0, lam2, deadline)
        seconds["mip"] = time.perf_counter() - start
    values: dict[str, float | None] = {}
    statuses: dict[str, str] = {}
    for position, kind in enumerate(("bigm", "perspective")):
        start = time.perf_counter()
        share = (deadline - start) / (2 - position) if np.isfinite(deadline) else 3600.0
        solve = _relaxation_within if np.isfinite(deadline) else _relaxation_value
        answer = solve(kind, instance, M, lam0, lam2, share, spr.value)
        values[kind], statuses[kind] = _certified(kind, *answer, spr)
        seconds[kind] = time.perf_counter() - start
    return {
        **mip,
        "bigm": values["bigm"],
        "perspective": values["perspective"],
        "relaxation_status": statuses,
        "spr": spr.value,
        "spr_lower_bound": max(spr.lower_bound, 0.0),
        "spr_kept": int(spr.kept.sum()),
        "spr_converged": spr.converged,
        "seconds": seconds,
    }
