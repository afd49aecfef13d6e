"""Exact proximal operator of t * z for the exact (boxed) SPR form, in float64 numpy.

prox(v) = argmin_w  ||w - v||^2 / (2t) + z(w), and since z is a partial minimum over y, this is
the joint minimization over (w, y) of ||w - v||^2/(2t) + lam2 ||w||^2/y + lam0 y subject to
|w_k| <= M y, y in [0, 1] (docs/derivation.md, section "prox"). For fixed y the problem separates:

    w_k(y) = sign(v_k) * min(|v_k| y / (y + a), M y),      a = 2 t lam2,

and the reduced function phi(y) is convex with (t times) derivative

    g(y) = t lam0 + sum_k d_k(y),
    d_k = -|v_k|^2 a / (2 (y + a)^2)           if |v_k| <= M (y + a)   (coordinate not clipped)
    d_k = -M (|v_k| - M y) + a M^2 / 2         otherwise                (clipped at M y)

g is increasing and concave on [0, 1]. Hence y* = 0 (w = 0) iff g(0) >= 0, which reads
sum_k Huber_{aM}(|v_k|) <= t lam0; y* = 1 iff g(1) <= 0; otherwise Newton's method (from the
warm start) is safe without line search: left of the root it climbs monotonically (tangents of
a concave increasing function cross zero left of its root), from the right one step lands left
of it; it converges quadratically. The
iteration is vectorized over all groups (segment sums with bincount), not a loop over groups.
"""

from __future__ import annotations

import numpy as np

_NEWTON_MAX_ITER = 100
_NEWTON_STEP_TOL = 1e-13


def _slope(
    y: np.ndarray,
    magnitude: np.ndarray,
    index: np.ndarray,
    n_groups: int,
    *,
    t_lam0: float,
    a: float,
    M_entry: np.ndarray,
    want_curvature: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """g(y) per group (and g'(y) if asked) for the per-group indicators `y`."""
    y_entry = y[index]
    shifted = y_entry + a
    safe = np.where(shifted > 0, shifted, 1.0)
    clipped = magnitude > M_entry * shifted
    slope_entry = np.where(
        clipped,
        -M_entry * (magnitude - M_entry * y_entry) + 0.5 * a * M_entry**2,
        -(magnitude**2) * a / (2.0 * safe**2),
    )
    slope = t_lam0 + np.bincount(index, weights=slope_entry, minlength=n_groups)
    if not want_curvature:
        return slope, None
    curvature_entry = np.where(clipped, M_entry**2, magnitude**2 * a / safe**3)
    return slope, np.bincount(index, weights=curvature_entry, minlength=n_groups)


def spr_prox_ragged(
    values: np.ndarray,
    group_index: np.ndarray,
    n_groups: int,
    *,
    step: float,
    lam0: float,
    lam2: float,
    M: np.ndarray | float,
    y_start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """prox_{step * z} of every group at once; returns (w, y) with w shaped like `values`.

    `values` is flat, `values[k]` in group `group_index[k]` (0..n_groups-1); `M` is a scalar or
    one value per group. `y_start` (optional, e.g. the previous call's y) warm-starts Newton.
    The result satisfies |w_k| <= M y exactly, so z(w) is finite.
    """
    values = np.asarray(values, dtype=np.float64)
    index = np.asarray(group_index, dtype=np.int64)
    M_group = np.broadcast_to(np.asarray(M, dtype=np.float64), (n_groups,))
    M_entry = M_group[index]
    magnitude = np.abs(values)
    a = 2.0 * step * lam2
    t_lam0 = step * lam0
    kw = dict(t_lam0=t_lam0, a=a, M_entry=M_entry)

    # g at y = 0 and y = 1 in one pass (groups stacked twice).
    both, _ = _slope(
        np.repeat(np.array([0.0, 1.0]), n_groups),
        np.concatenate((magnitude, magnitude)),
        np.concatenate((index, index + n_groups)),
        2 * n_groups,
        want_curvature=False,
        t_lam0=t_lam0,
        a=a,
        M_entry=np.concatenate((M_entry, M_entry)),
    )
    slope_at_zero, slope_at_one = both[:n_groups], both[n_groups:]
    y = np.where(slope_at_one <= 0, 1.0, 0.0)
    active = (slope_at_zero < 0) & (slope_at_one > 0)
    if np.any(active):
        # Newton from the warm start (or 0). Left of the root it climbs monotonically; right of
        # it, the tangent of the concave g crosses zero left of the root, so one step (clipped
        # at 0) brings it to the left side, from where it climbs.
        current = np.zeros(n_groups) if y_start is None else np.clip(y_start, 0.0, 1.0)
        for _ in range(_NEWTON_MAX_ITER):
            slope, curvature = _slope(
                current, magnitude, index, n_groups, want_curvature=True, **kw
            )
            newton = np.where(active, -slope / np.maximum(curvature, 1e-300), 0.0)
            updated = np.minimum(np.maximum(current + newton, 0.0), 1.0)
            moved = np.max(np.abs(updated - current))
            current = updated
            if moved <= _NEWTON_STEP_TOL:
                break
        y = np.where(active, current, y)

    y_entry = y[index]
    shifted = y_entry + a
    shrunk = magnitude * y_entry / np.where(shifted > 0, shifted, 1.0)
    w = np.sign(values) * np.minimum(shrunk, M_entry * y_entry)
    return w, y
