"""Synthetic instances with a planted support of structures."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sprkit.errors import InstanceError
from sprkit.instances.format import MAX_ENTRIES, Instance, make_instance

Design = Literal["factor", "ar1"]


def _design(rng: np.random.Generator, n: int, d: int, design: Design, correlation: float):
    """n x d standard normal columns; `factor`: pairwise correlation `correlation` through one
    shared factor; `ar1`: corr(column a, column b) = correlation ** |a - b| (Toeplitz)."""
    if design == "factor":
        shared = rng.standard_normal((n, 1))
        noise = rng.standard_normal((n, d))
        return np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * noise
    X = np.empty((n, d))
    X[:, 0] = rng.standard_normal(n)
    innovation = np.sqrt(1 - correlation**2)
    for column in range(1, d):
        X[:, column] = correlation * X[:, column - 1] + innovation * rng.standard_normal(n)
    return X


def synthetic_instance(
    n_structures: int,
    *,
    rows_per_group: int = 1,
    n: int = 500,
    c: int = 10,
    support: int | None = None,
    noise: float = 0.1,
    snr: float | None = None,
    correlation: float = 0.3,
    design: Design = "factor",
    scale: float = 1.0,
    bias: bool = True,
    seed: int = 0,
) -> Instance:
    """Y = X W_true + noise with W_true nonzero (standard normal) on `support` random structures.

    X has standard normal columns correlated as `design` says (see :func:`_design`); each
    structure owns `rows_per_group` consecutive rows of W; with `bias` a constant column
    (group -1) is appended. `noise` is the standard deviation of the Gaussian noise on Y, or,
    with `snr`, it is set so that ||X W_true||^2 / (n c noise^2) = snr (signal-to-noise ratio).
    `scale` multiplies X afterwards (units: the optimum's W is divided by it).
    The planted support is stored in ``meta["planted"]``.
    """
    if n_structures < 1 or rows_per_group < 1 or n < 1 or c < 1:
        raise InstanceError("n_structures, rows_per_group, n and c must all be >= 1")
    if design not in ("factor", "ar1"):
        raise InstanceError(f"design must be 'factor' or 'ar1', got {design!r}")
    if not 0.0 <= correlation < 1.0:
        raise InstanceError(f"correlation must lie in [0, 1), got {correlation}")
    if noise < 0:
        raise InstanceError(f"noise must be >= 0, got {noise}")
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise InstanceError(f"snr must be finite and > 0, got {snr}")
    if not (np.isfinite(scale) and scale > 0):
        raise InstanceError(f"scale must be finite and > 0, got {scale}")
    if seed < 0:
        raise InstanceError(f"seed must be >= 0, got {seed}")
    d_pruned = n_structures * rows_per_group
    if n * (d_pruned + 1) > MAX_ENTRIES or n * c > MAX_ENTRIES:
        raise InstanceError(
            f"instance too large: X would have {n} x {d_pruned + 1} entries (limit {MAX_ENTRIES})"
        )
    support = max(1, n_structures // 5) if support is None else support
    if not 1 <= support <= n_structures:
        raise InstanceError(f"support must lie in 1..{n_structures}, got {support}")
    rng = np.random.default_rng(seed)
    X = _design(rng, n, d_pruned, design, correlation)
    groups = np.repeat(np.arange(n_structures), rows_per_group)
    planted = np.sort(rng.choice(n_structures, size=support, replace=False))
    W_true = np.zeros((d_pruned, c))
    rows = np.isin(groups, planted)
    W_true[rows] = rng.standard_normal((int(rows.sum()), c))
    if bias:
        X = np.hstack([X, np.ones((n, 1))])
        groups = np.append(groups, -1)
        W_true = np.vstack([W_true, rng.standard_normal((1, c))])
    signal = X @ W_true
    if snr is not None:
        noise = float(np.sqrt(np.sum(signal * signal) / (n * c * snr)))
    Y = signal + noise * rng.standard_normal((n, c))
    meta = {
        "generator": "synthetic",
        "seed": seed,
        "noise": noise,
        "snr": snr,
        "design": design,
        "correlation": correlation,
        "scale": scale,
        "rows_per_group": rows_per_group,
        "planted": planted.tolist(),
    }
    return make_instance(X * scale, Y, groups, meta=meta, extras={"W_true": W_true / scale})
