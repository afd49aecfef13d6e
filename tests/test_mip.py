"""The exact MIP: agreement with SCIP, certified bounds, cut validity, time limit, CLI."""

import itertools
import json
import time

import numpy as np
import pytest
from reference import scip_miqp

from sprkit.app.cli import main
from sprkit.instances import save_instance, synthetic_instance
from sprkit.optim import SPRRoute, bigm_relaxation, perspective_relaxation
from sprkit.optim.mip import OPTIMAL, TIME_LIMIT, ExactSolver
from sprkit.optim.quadratic import ReducedLeastSquares
from sprkit.optim.support import SupportProblem


def _random_case(seed):
    rng = np.random.default_rng(seed)
    instance = synthetic_instance(
        int(rng.integers(4, 9)),
        rows_per_group=int(rng.integers(1, 3)),
        n=int(rng.integers(15, 40)),
        c=2,
        support=2,
        noise=0.5,
        bias=bool(seed % 3),
        seed=seed,
    )
    return instance, rng.uniform(0.05, 0.5), rng.uniform(0.0, 0.3), rng.uniform(1.0, 3.0)


@pytest.mark.parametrize("seed", range(20))
def test_optimum_agrees_with_scip_and_bounds_are_ordered(seed):
    instance, lam0, lam2, M = _random_case(seed)
    result = ExactSolver(instance, M).solve(lam0, lam2)
    scip_objective, scip_kept = scip_miqp(instance, lam0, lam2, M)
    assert result.status == OPTIMAL and result.gap <= 1e-6
    assert result.kept == scip_kept
    assert result.objective == pytest.approx(scip_objective, rel=1e-6)
    assert result.bound <= result.objective
    # The incumbent's objective is recomputed from the data, W inside the box.
    W_P = result.W[instance.groups >= 0]
    kept_rows = np.isin(instance.groups[instance.groups >= 0], result.kept)
    assert np.all(W_P[~kept_rows] == 0) and np.all(np.abs(W_P) <= M + 1e-12)
    recomputed = instance.loss(result.W) + lam2 * np.sum(W_P**2) + lam0 * len(result.kept)
    assert result.objective == pytest.approx(recomputed, rel=1e-12)
    bigm = bigm_relaxation(instance, M).solve(lam0, lam2).value
    perspective = perspective_relaxation(instance, M).solve(lam0, lam2).value
    assert bigm <= perspective * (1 + 1e-7) + 1e-9
    assert perspective <= result.objective * (1 + 1e-7)


def test_cuts_are_tight_at_their_support_and_below_v_elsewhere():
    instance, lam0, lam2, M = _random_case(101)
    reduced = ReducedLeastSquares.from_instance(instance)
    G = instance.n_structures
    problem = SupportProblem(
        reduced, instance.row_structure[reduced.penalized_rows], np.full(G, M), lam0=lam0, lam2=lam2
    )
    supports = [np.array(bits, dtype=bool) for bits in itertools.product([0, 1], repeat=G)]
    solutions = [problem.solve(s) for s in supports]
    for solution in solutions:
        assert solution.cut.value(solution.support.astype(float)) == pytest.approx(
            solution.value, rel=1e-9, abs=1e-12
        )
        for other in solutions[:: max(1, len(solutions) // 16)]:
            assert solution.cut.value(other.support.astype(float)) <= other.value + 1e-9
    # Brute force over every support gives the MIP optimum.
    best = min(solutions, key=lambda s: s.value)
    result = ExactSolver(instance, M).solve(lam0, lam2)
    assert result.objective == pytest.approx(best.value, rel=1e-9)
    # The root cut (SPR solution) minimized over [0, 1]^G is the perspective bound.
    spr = SPRRoute(instance, M).solve(lam0, lam2)
    root = problem.cut_at(spr.W[reduced.penalized_rows])
    assert root.constant - np.sum(np.maximum(root.slopes, 0)) == pytest.approx(
        spr.lower_bound, rel=1e-9
    )


def test_time_limit_returns_promptly_with_bound_and_incumbent():
    instance = synthetic_instance(120, n=240, c=5, support=30, noise=2.0, correlation=0.9, seed=0)
    start = time.perf_counter()
    result = ExactSolver(instance, 5.0).solve(0.3, 0.01, time_limit=1.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert result.status == TIME_LIMIT and result.gap > 1e-6
    assert np.isfinite(result.bound) and result.bound < result.objective
    assert len(result.kept) > 0 and np.all(np.isfinite(result.W))


def test_solve_json_keys_and_bad_input(tmp_path, capsys):
    instance, lam0, lam2, M = _random_case(7)
    path = save_instance(tmp_path / "i.npz", instance)
    code = main(
        ["solve", str(path), "--lam0", str(lam0), "--lam2", str(lam2), "--M", str(M), "--json"]
    )
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)  # stdout holds exactly one JSON object (no solver banner)
    assert set(result) == {
        "status",
        "objective",
        "bound",
        "gap",
        "kept",
        "seconds",
        "nodes",
        "method",
    }
    assert result["kept"] == sorted(result["kept"])
    scip_objective, scip_kept = scip_miqp(instance, lam0, lam2, M)
    assert result["kept"] == scip_kept
    assert result["objective"] == pytest.approx(scip_objective, rel=1e-6)
    code = main(
        ["solve", str(path), "--lam0", "1", "--lam2", "1", "--M", "1", "--time-limit", "-1"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "time-limit" in err[0]


def test_bounds_with_mip_adds_the_exact_optimum(tmp_path, capsys):
    instance, lam0, lam2, M = _random_case(8)
    path = save_instance(tmp_path / "i.npz", instance)
    main(
        [
            "bounds",
            str(path),
            "--lam0",
            str(lam0),
            "--lam2",
            str(lam2),
            "--M",
            str(M),
            "--json",
            "--with-mip",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["bigm"] <= result["perspective"] * (1 + 1e-7) <= result["mip"] * (1 + 2e-7)
    assert result["mip_status"] == OPTIMAL and "mip" in result["seconds"]
