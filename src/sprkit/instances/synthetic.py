"""Synthetic instances with a planted support of structures."""

from __future__ import annotations

import numpy as np

from sprkit.errors import InstanceError
from sprkit.instances.format import Instance, make_instance


def synthetic_instance(
    n_structures: int,
    *,
    rows_per_group: int = 1,
    n: int = 500,
    c: int = 10,
    support: int | None = None,
    noise: float = 0.1,
    correlation: float = 0.3,
    bias: bool = True,
    seed: int = 0,
) -> Instance:
    """Y = X W_true + noise with W_true nonzero on `support` random structures only.

    X has standard normal columns with pairwise correlation `correlation` (one shared factor),
    each structure owns `rows_per_group` consecutive rows of W; with `bias` a constant column
    (group -1) is appended. `noise` is the standard deviation of the Gaussian noise on Y.
    The planted support is stored in ``meta["planted"]``.
    """
    if n_structures < 1 or rows_per_group < 1 or n < 1 or c < 1:
        raise InstanceError("n_structures, rows_per_group, n and c must all be >= 1")
    if not 0.0 <= correlation < 1.0:
        raise InstanceError(f"correlation must lie in [0, 1), got {correlation}")
    if noise < 0:
        raise InstanceError(f"noise must be >= 0, got {noise}")
    support = max(1, n_structures // 5) if support is None else support
    if not 1 <= support <= n_structures:
        raise InstanceError(f"support must lie in 1..{n_structures}, got {support}")
    rng = np.random.default_rng(seed)
    d_pruned = n_structures * rows_per_group
    shared = rng.standard_normal((n, 1))
    X = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * rng.standard_normal(
        (n, d_pruned)
    )
    groups = np.repeat(np.arange(n_structures), rows_per_group)
    planted = np.sort(rng.choice(n_structures, size=support, replace=False))
    W_true = np.zeros((d_pruned, c))
    rows = np.isin(groups, planted)
    W_true[rows] = rng.standard_normal((int(rows.sum()), c))
    if bias:
        X = np.hstack([X, np.ones((n, 1))])
        groups = np.append(groups, -1)
        W_true = np.vstack([W_true, rng.standard_normal((1, c))])
    Y = X @ W_true + noise * rng.standard_normal((n, c))
    meta = {
        "generator": "synthetic",
        "seed": seed,
        "noise": noise,
        "correlation": correlation,
        "rows_per_group": rows_per_group,
        "planted": planted.tolist(),
    }
    return make_instance(X, Y, groups, meta=meta, extras={"W_true": W_true})
