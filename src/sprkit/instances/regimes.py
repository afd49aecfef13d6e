"""The hard regime of the MIP: AR(1) designs, low signal-to-noise, weak ridge (benchmarks, tests).

Instances of the family a user builds when the MIP is hard to certify: correlated Toeplitz
designs, noisy targets, a ridge much smaller than the count penalty, and lam0 calibrated so the
optimum keeps a chosen share of the structures. Optionally the data are rescaled (X times
`x_scale`, Y times `y_scale`) with lam0, lam2 and M transformed so that the problem is the same
one in other units: the optimum keeps the same structures and its objective is y_scale^2 times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprkit.instances.format import Instance, make_instance
from sprkit.instances.synthetic import synthetic_instance


@dataclass(frozen=True)
class MIPCase:
    """An instance with the penalty parameters of one MIP."""

    instance: Instance
    lam0: float
    lam2: float
    M: float


def calibrated_lam0(instance: Instance, lam2: float, keep_fraction: float) -> float:
    """A lam0 at which about `keep_fraction` of the structures are worth keeping: the
    geometric mean of the k-th and (k+1)-th largest loss increase caused by removing one
    structure from the full ridge fit (k = keep_fraction x structures). Approximate: the
    optimum's true share is reported by whoever solves it."""
    penalized = instance.groups >= 0
    X_P = instance.X[:, penalized]
    free = instance.X[:, ~penalized]
    Y = instance.Y
    if free.shape[1]:  # project the free columns out, as the solvers do
        X_P = X_P - free @ np.linalg.lstsq(free, X_P, rcond=None)[0]
        Y = Y - free @ np.linalg.lstsq(free, Y, rcond=None)[0]
    n = instance.n
    hessian = X_P.T @ X_P / n + lam2 * np.eye(X_P.shape[1])
    inverse = np.linalg.pinv(hessian, hermitian=True)
    W = inverse @ (X_P.T @ Y / n)
    rows_of = instance.groups[penalized]
    increase = []
    for j in instance.structure_ids:
        rows = np.flatnonzero(rows_of == j)
        block = np.linalg.pinv(inverse[np.ix_(rows, rows)], hermitian=True)
        increase.append(float(np.sum(W[rows] * (block @ W[rows]))))
    ordered = np.sort(increase)[::-1]
    k = int(np.clip(round(keep_fraction * ordered.size), 1, ordered.size - 1))
    return float(np.sqrt(max(ordered[k - 1], 1e-300) * max(ordered[k], 1e-300)))


def hard_case(
    structures: int,
    *,
    correlation: float,
    snr: float,
    lam2: float,
    keep_fraction: float,
    c: int = 1,
    rows_per_group: int = 1,
    n: int | None = None,
    M: float = 4.0,
    x_scale: float = 1.0,
    y_scale: float = 1.0,
    seed: int = 0,
) -> MIPCase:
    """One instance of the hard regime (module docstring); n defaults to 3 rows per weight row
    of W (at least 50), the planted support to half the structures."""
    d = structures * rows_per_group
    instance = synthetic_instance(
        structures,
        rows_per_group=rows_per_group,
        n=n if n is not None else max(50, 3 * d),
        c=c,
        support=max(1, structures // 2),
        snr=snr,
        correlation=correlation,
        design="ar1",
        seed=seed,
    )
    lam0 = calibrated_lam0(instance, lam2, keep_fraction)
    if x_scale != 1.0 or y_scale != 1.0:
        meta = {**instance.meta, "x_scale": x_scale, "y_scale": y_scale}
        scaled = make_instance(
            instance.X * x_scale, instance.Y * y_scale, instance.groups, meta=meta
        )
        ratio = y_scale / x_scale  # W in the new units
        return MIPCase(scaled, lam0 * y_scale**2, lam2 / ratio**2 * y_scale**2, M * ratio)
    return MIPCase(instance, lam0, lam2, M)
