"""The exact MIP: agreement with SCIP, certified bounds, cut validity, time limit, CLI."""

import itertools
import json
import time

import numpy as np
import pytest
from reference import scip_miqp

from sprkit.app.cli import main
from sprkit.errors import ParameterError
from sprkit.instances import hard_case, save_instance, synthetic_instance
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


def test_log_reports_the_search_about_once_a_second_with_valid_bounds():
    """solve(log=...) with bnb: the first line at once, then about one a second; nodes count
    up; every line's bound is at most the final objective and its objective at least the
    final bound (both enclose the optimum); gap = (objective - bound) / objective."""
    case = hard_case(
        100, correlation=0.8, snr=2.0, lam2=0.05, keep_fraction=0.1, c=1, seed=18
    )  # mip_hard's instance 18: not certified in 60 s
    lines = []
    result = ExactSolver(case.instance, case.M).solve(
        case.lam0, case.lam2, method="bnb", time_limit=2.5, log=lines.append
    )
    assert result.status == TIME_LIMIT and len(lines) >= 2
    seconds = np.array([line.seconds for line in lines])
    assert seconds[0] < 1.0 and np.all(np.diff(seconds) >= 1.0) and seconds[-1] <= 2.5
    assert np.all(np.diff([line.nodes for line in lines]) >= 0) and lines[-1].nodes > 1
    slack = 1e-12 * result.objective
    for line in lines:
        assert all(type(v) is float for v in (line.seconds, line.objective, line.bound, line.gap))
        assert line.open_nodes >= 1
        assert line.bound <= line.objective and line.bound <= result.objective + slack
        assert line.objective >= result.bound - slack
        assert line.gap == pytest.approx((line.objective - line.bound) / line.objective)
    assert lines[-1].objective >= result.objective - slack


def test_log_of_oa_and_of_the_command(tmp_path, capsys):
    """oa logs its rounds (no open nodes); `sprkit solve --log --json` keeps stdout one JSON
    object and writes a header and the lines to stderr; a log that is not callable is a
    ParameterError."""
    instance, lam0, lam2, M = _random_case(7)
    lines = []
    result = ExactSolver(instance, M).solve(lam0, lam2, method="oa", log=lines.append)
    assert result.status == OPTIMAL and len(lines) >= 1
    assert all(line.open_nodes is None and line.bound <= line.objective for line in lines)
    assert lines[0].objective >= result.objective - 1e-12 * result.objective
    with pytest.raises(ParameterError, match="log must be callable"):
        ExactSolver(instance, M).solve(lam0, lam2, log="progress.txt")
    path = save_instance(tmp_path / "i.npz", instance)
    arguments = ["solve", str(path), "--lam0", str(lam0), "--lam2", str(lam2), "--M", str(M)]
    assert main([*arguments, "--json", "--log"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == OPTIMAL
    header, *rows = captured.err.strip().splitlines()
    assert header.split() == ["seconds", "nodes", "open", "objective", "bound", "gap"]
    assert len(rows) >= 1
    for row in rows:
        seconds, nodes, open_nodes, objective, bound, gap = row.split()
        assert float(seconds) >= 0 and int(nodes) >= 0 and int(open_nodes) >= 1
        assert float(bound) <= float(objective) and float(gap) >= 0


def test_log_of_oa_then_bnb_carries_the_incumbent_and_bound_over():
    """A flat relaxation under `auto`: oa on half the time, then bnb. The lines after the
    hand-over keep oa's incumbent and proven bound (both methods bound the same MIP): the
    objective never rises and the bound never falls by more than tol/2 of the objective."""
    case = hard_case(
        20, correlation=0.8, snr=2.0, lam2=0.0, keep_fraction=0.3, rows_per_group=2, n=15, seed=4
    )
    lines = []
    result = ExactSolver(case.instance, case.M).solve(
        case.lam0, 0.0, method="auto", time_limit=4.0, log=lines.append
    )
    assert result.method == "oa+bnb" and len(lines) >= 3
    assert any(line.open_nodes is None for line in lines)  # oa's rounds
    assert any(line.open_nodes is not None for line in lines)  # bnb's nodes
    for before, after in itertools.pairwise(lines):
        assert after.objective <= before.objective
        assert after.bound >= before.bound - 0.5e-6 * before.objective
    assert lines[-1].bound <= result.objective and lines[-1].objective >= result.bound
