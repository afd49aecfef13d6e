"""Predicted seconds of dense linear algebra, so that a step that cannot be interrupted (one
LAPACK call on a large matrix) is not started where it would overrun a solve's deadline.

The exact methods factor matrices of the penalized rows' size (d): a few hundred rows cost
milliseconds, but 8,000 rows cost minutes for one eigendecomposition, and the time limit is
only checked between such calls. The rate is measured once per process, by timing the
eigendecomposition of a symmetric matrix of _CALIBRATION_SIZE rows, and extrapolated to
other sizes as size^3. The prediction is rough, within a factor of about 2 either way (on
this project's 2-core machine, one thread, other processes running: 2.4e-10 s per row^3 from
the calibration, 1.0 s predicted at 1,600 rows where 1.4 s was measured under heavier load),
so the callers only start a factorization predicted to take a quarter or half of the time
left. Matrices of at most _CALIBRATION_SIZE rows are always affordable (milliseconds) and
never trigger the timing.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from threadpoolctl import threadpool_limits

_CALIBRATION_SIZE = 320

# Cost of a factorization relative to a full symmetric eigendecomposition of the same size
# (measured at 400-1,600 rows, one thread): the largest eigenvalue alone, a Cholesky
# factorization, a least-squares solve (SVD) or pseudo-inverse.
EIGH = 1.0
TOP_EIGENVALUE = 0.5
CHOLESKY = 0.1
LEAST_SQUARES = 1.0


@functools.cache
def _seconds_per_cube() -> float:
    """Seconds of a full eigendecomposition per row^3 on this machine (best of three)."""
    rng = np.random.default_rng(0)
    factor = rng.standard_normal((_CALIBRATION_SIZE, _CALIBRATION_SIZE))
    matrix = factor @ factor.T
    best = np.inf
    # one BLAS thread, as the solvers run (more threads only make predictions high)
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(3):
            start = time.perf_counter()
            np.linalg.eigh(matrix)
            best = min(best, time.perf_counter() - start)
    return best / _CALIBRATION_SIZE**3


def dense_seconds(size: int, work: float = EIGH) -> float:
    """Predicted seconds of one factorization of kind `work` (EIGH, TOP_EIGENVALUE, ...) of
    a size x size matrix; 0 for sizes up to _CALIBRATION_SIZE."""
    if size <= _CALIBRATION_SIZE:
        return 0.0
    return work * _seconds_per_cube() * float(size) ** 3


def affordable(size: int, deadline: float, work: float = EIGH, share: float = 1.0) -> bool:
    """Whether a factorization of kind `work` of a size x size matrix is predicted to take
    at most `share` of the time left before `deadline` (time.perf_counter() seconds)."""
    if size <= _CALIBRATION_SIZE or not np.isfinite(deadline):
        return True
    return dense_seconds(size, work) <= share * (deadline - time.perf_counter())
