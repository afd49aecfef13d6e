"""`compute_bounds` / `sprkit bounds`: conic values accurate relative to a tiny optimum and
checked against the SPR route's certificate; BLAS on one thread, setup inside each share."""

import itertools
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from sprkit.instances import hard_case, make_instance, save_instance
from sprkit.optim import bounds, relaxations
from sprkit.optim.bounds import compute_bounds


def _tiny_optimum_case(seed: int) -> tuple:
    """n = 4 < d = 7 rows, lam0 = 0, a ridge 1e-6 of the loss at W = 0 per unit column: the
    optimum is 3e-9 to 2e-7 of that loss (the shape of the tester's bounds_above.npz)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4, 7)) * 10.0 ** rng.uniform(-1, 1, 7)
    Y = rng.normal(size=(4, 1))
    groups = np.arange(7)
    lam2 = 1e-6 * float(np.sum(Y**2)) / float(np.mean(np.sum(X**2, axis=0)))
    return X, Y, groups, lam2, 1e3 * float(np.max(np.abs(np.linalg.pinv(X) @ Y)))


def _brute_force(X, Y, groups, lam2: float, M: float) -> float:
    """The MIP optimum with lam0 = 0 by enumeration of the kept sets: each one's ridge least
    squares without the box (lstsq on the augmented system) is a lower bound of its value,
    exact where the fit lies inside the box, as the best one's is checked to."""
    n = X.shape[0]
    best, inside = float(np.sum(Y**2)) / n, True
    for size in range(1, groups.max() + 2):
        for kept in itertools.combinations(range(groups.max() + 1), size):
            rows = np.flatnonzero(np.isin(groups, kept))
            A = np.vstack([X[:, rows] / np.sqrt(n), np.sqrt(lam2) * np.eye(rows.size)])
            b = np.vstack([Y / np.sqrt(n), np.zeros((rows.size, Y.shape[1]))])
            W = np.linalg.lstsq(A, b, rcond=None)[0]
            value = float(np.sum((A @ W - b) ** 2))
            if value < best:
                best, inside = value, bool(np.max(np.abs(W)) <= M)
    assert inside  # the best fit is feasible: its value is the optimum
    return best


@pytest.mark.parametrize("seed", range(4))
def test_relaxations_are_accurate_when_the_optimum_is_tiny(seed):
    """With lam0 = 0 both relaxations equal the MIP optimum. With the loss at W = 0 as the
    solver's unit, values came out 2e-4 to 7e-4 above it, reported optimal."""
    X, Y, groups, lam2, M = _tiny_optimum_case(seed)
    optimum = _brute_force(X, Y, groups, lam2, M)
    result = compute_bounds(make_instance(X, Y, groups), lam0=0.0, lam2=lam2, M=M)
    for kind in ("bigm", "perspective"):
        assert result["relaxation_status"][kind] == "optimal"
        assert result[kind] == pytest.approx(optimum, rel=1e-8)
    assert result["spr_lower_bound"] <= optimum * (1 + 1e-9) <= result["spr"] * (1 + 2e-9)


def test_a_value_beyond_the_certificate_is_not_reported_optimal(monkeypatch):
    """The conic solver forced back to the loss at W = 0 as its unit: its values above the
    SPR route's value are reported optimal_inaccurate, with no value."""
    X, Y, groups, lam2, M = _tiny_optimum_case(0)
    optimum = _brute_force(X, Y, groups, lam2, M)
    unit = lambda at_zero, estimate: at_zero  # noqa: E731
    monkeypatch.setattr(relaxations, "_objective_unit", unit, raising=False)
    result = compute_bounds(make_instance(X, Y, groups), lam0=0.0, lam2=lam2, M=M)
    assert result["spr"] == pytest.approx(optimum, rel=1e-8)
    for kind in ("bigm", "perspective"):
        if result["relaxation_status"][kind] == "optimal":
            assert result[kind] <= optimum * (1 + 1e-6)
        else:
            assert result[kind] is None
    assert result["relaxation_status"]["perspective"] == "optimal_inaccurate"


def _blas_threads() -> int:
    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


def test_bounds_run_blas_on_one_thread_and_count_the_setup(monkeypatch):
    """BLAS threads spinning against a loaded machine made the SPR route's setup (a dense
    eigh) take 3.4-9 s for a 1 s limit; the MIP's setup ran outside its share."""
    threads: list[int] = []
    limits: list[float] = []
    build = bounds.SPRRoute.__init__

    def counted_build(self, *args):
        threads.append(_blas_threads())
        build(self, *args)

    class SlowSetup(bounds.ExactSolver):
        def __init__(self, *args) -> None:
            time.sleep(1.0)
            super().__init__(*args)

        def solve(self, *args, time_limit: float, **options):
            limits.append(time_limit)
            return super().solve(*args, time_limit=time_limit, **options)

    monkeypatch.setattr(bounds.SPRRoute, "__init__", counted_build)
    monkeypatch.setattr(bounds, "ExactSolver", SlowSetup)
    case = hard_case(10, correlation=0.5, snr=2.0, lam2=0.01, keep_fraction=0.5, seed=4)
    start = time.perf_counter()
    compute_bounds(
        case.instance,
        lam0=case.lam0,
        lam2=case.lam2,
        M=case.M,
        with_mip=True,
        deadline=start + 6.0,
    )
    assert threads == [1]
    assert limits[0] <= 3.0 - 1.0 + 0.05  # half of the 6 s left after SPR, less the 1 s build


def test_bounds_time_limit_on_200_structures(tmp_path):
    """The tester's instance (d = 601): 4-10 s for --time-limit 1 on a loaded machine."""
    case = hard_case(
        200,
        correlation=0.8,
        snr=5.0,
        lam2=0.05,
        keep_fraction=0.7,
        c=1,
        rows_per_group=3,
        seed=3,
    )
    path = save_instance(tmp_path / "h200.npz", case.instance)
    args = ["bounds", str(path), "--lam0", repr(case.lam0), "--lam2", repr(case.lam2)]
    for extra in ([], ["--with-mip"]):
        start = time.perf_counter()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "sprkit",
                *args,
                "--M",
                repr(case.M),
                "--time-limit",
                "1",
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        assert time.perf_counter() - start < 1 + 4  # the limit plus imports, generously
        result = json.loads(completed.stdout)
        assert result["spr_lower_bound"] <= result["spr"]
