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
of it; it converges quadratically. Where no coordinate is clipped at the root, g(y) = t lam0 -
a ||v||^2 / (2 (y + a)^2) has the closed-form root y = ||v|| sqrt(a / (2 t lam0)) - a: groups
whose largest |v_k| is unclipped there are solved by it, and Newton runs only on the others
(in the node relaxations of the branch and bound most groups are of the first kind); the few
groups where Newton cycles (a root within an ulp of a clipping breakpoint, M ~ 1e12 and
lam2 ~ 0) are finished by bisection. The iteration is vectorized over the groups left
(segment sums with bincount), not a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprkit.errors import ParameterError
from sprkit.formula.penalty import entry_values

_NEWTON_MAX_ITER = 100
_NEWTON_STEP_TOL = 1e-13  # relative


@dataclass(frozen=True)
class _SlopeTerms:
    """The parts of g's entry terms fixed by y, a and M (not by |v|): an entry is clipped
    where |v_k| > threshold; its term is then M (offset - |v_k|), else -|v_k|^2 a / denominator;
    safe = y + a (1 where that is 0)."""

    threshold: np.ndarray
    offset: np.ndarray
    denominator: np.ndarray
    safe: np.ndarray

    @classmethod
    def at(cls, y: np.ndarray | float, a: np.ndarray | float, M_entry: np.ndarray) -> _SlopeTerms:
        shifted = y + a
        safe = np.where(shifted > 0, shifted, 1.0)
        # a ridge beyond 1e154 in solver units (tiny columns of X) squares to inf: the term
        # -|v|^2 a / (2 (y + a)^2) is then 0, its limit
        with np.errstate(over="ignore"):
            denominator = 2.0 * safe**2
        return cls(M_entry * shifted, M_entry * (y + 0.5 * a), denominator, safe)

    def entries(
        self, magnitude: np.ndarray, a: np.ndarray | float, M_entry: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clipped, term) per entry."""
        clipped = magnitude > self.threshold
        # the denominator 2 (y + a)^2 underflows to 0 for y + a below about 1e-154: the term is
        # then -inf, the sign (g < 0) that its exact value has
        with np.errstate(divide="ignore", invalid="ignore"):
            quadratic = -(magnitude**2) * a / self.denominator
        return clipped, np.where(clipped, M_entry * (self.offset - magnitude), quadratic)


def _group_slopes(
    y: np.ndarray | float,
    magnitude: np.ndarray,
    index: np.ndarray,
    n_groups: int,
    *,
    t_lam0: float,
    a: np.ndarray | float,
    M_entry: np.ndarray,
    want_curvature: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """g(y) per group (and g'(y) if asked); `y` per entry (or one value for all)."""
    terms = _SlopeTerms.at(y, a, M_entry)
    clipped, slope_entry = terms.entries(magnitude, a, M_entry)
    slope = t_lam0 + np.bincount(index, weights=slope_entry, minlength=n_groups)
    if not want_curvature:
        return slope, None
    # safe^3 underflows to 0 when y + a is below about 1e-103 (a weak ridge at y near 0): the
    # curvature is then +inf, which the Newton step reads as "no step" (bisection takes over)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        curvature_entry = np.where(clipped, M_entry**2, magnitude**2 * a / terms.safe**3)
    return slope, np.bincount(index, weights=curvature_entry, minlength=n_groups)


class RaggedProx:
    """prox_{step * z} for fixed groups and parameters, prepared once for many calls.

    `group_index[k]` is the group (0..n_groups-1) of entry k; `lam2` and `M` are scalars or
    one value per group, or with `per_entry=True` one value per entry (the perspective of
    sum_k lam2_k w_k^2 with box |w_k| <= M_k y, as the branch and bound's node relaxations
    write it in a rotated frame). `metric` (optional, one positive weight p_k per entry)
    gives the prox in the norm sum_k p_k w_k^2, argmin_w sum_k p_k (w_k - v_k)^2 / 2 +
    step z(w): in u_k = sqrt(p_k) w_k it is the plain prox with entry-wise
    a_k = 2 step lam2 / p_k and box sqrt(p_k) M, which is what a diagonally preconditioned
    proximal gradient step needs. What does not depend on the point (entry-wise a and M,
    the terms of g at y = 0 and y = 1) is computed once; the node relaxations call it at
    every step.
    """

    def __init__(
        self,
        group_index: np.ndarray,
        n_groups: int,
        *,
        step: float,
        lam0: float,
        lam2: np.ndarray | float,
        M: np.ndarray | float,
        metric: np.ndarray | None = None,
        per_entry: bool = False,
    ) -> None:
        index = np.asarray(group_index, dtype=np.int64)
        self._index, self._n_groups = index, n_groups
        self._root_metric = None if metric is None else np.sqrt(_checked_metric(metric, index))
        self._M_entry = self._box = entry_values(M, index, n_groups, per_entry)
        self._a = 2.0 * step * entry_values(lam2, index, n_groups, per_entry)
        if self._root_metric is not None:
            self._M_entry = self._M_entry * self._root_metric
            self._a = self._a / self._root_metric**2
        if self._root_metric is None and not per_entry:
            self._a_group = np.broadcast_to(2.0 * step * np.asarray(lam2, float), (n_groups,))
        else:
            # the closed-form root needs one a per group: groups with unequal a use Newton
            low = np.full(n_groups, np.inf)
            high = np.zeros(n_groups)
            np.minimum.at(low, index, self._a)
            np.maximum.at(high, index, self._a)
            self._a_group = np.where(low == high, high, np.nan)
        self._t_lam0 = step * lam0
        # one entry per group, in order (one row, one output per structure): segment sums are
        # the entries themselves, and the bincounts are skipped (a call is a few dozen numpy
        # operations on short arrays: their overhead, not arithmetic, is its cost)
        self._singletons = index.size == n_groups and bool(
            np.array_equal(index, np.arange(n_groups))
        )
        # g at both ends in one pass: entries stacked [y = 0; y = 1], groups [0, G) and [G, 2G)
        self._ends_index = np.concatenate([index, index + n_groups])
        self._ends_a = np.tile(self._a, 2)
        self._ends_M = np.tile(self._M_entry, 2)
        self._ends = _SlopeTerms.at(np.repeat([0.0, 1.0], index.size), self._ends_a, self._ends_M)

    def __call__(
        self, values: np.ndarray, y_start: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(w, y) with w shaped like the flat `values`; `y_start` (optional, e.g. the previous
        call's y) warm-starts Newton. |w_k| <= M y exactly, so z(w) is finite."""
        values = np.asarray(values, dtype=np.float64)
        if self._root_metric is not None:
            values = values * self._root_metric
        index, n_groups, a, M_entry = self._index, self._n_groups, self._a, self._M_entry
        magnitude = np.abs(values)
        both = np.concatenate([magnitude, magnitude])
        _, terms = self._ends.entries(both, self._ends_a, self._ends_M)
        if not self._singletons:
            terms = np.bincount(self._ends_index, weights=terms, minlength=2 * n_groups)
        ends = self._t_lam0 + terms
        slope_at_zero, slope_at_one = ends[:n_groups], ends[n_groups:]
        y = np.where(slope_at_one <= 0, 1.0, 0.0)
        active = (slope_at_zero < 0) & (slope_at_one > 0)
        if active.any():
            _interior_roots(
                y,
                active,
                magnitude,
                index,
                M_entry,
                y_start,
                self._t_lam0,
                self._a_group,
                a,
                self._singletons,
            )
        y_entry = y[index]
        shifted = y_entry + a
        shrunk = magnitude * y_entry / np.where(shifted > 0, shifted, 1.0)
        w = np.sign(values) * np.minimum(shrunk, M_entry * y_entry)
        if self._root_metric is not None:  # the division may round past the box M y
            w = np.clip(w / self._root_metric, -self._box * y_entry, self._box * y_entry)
        return w, y


def _checked_metric(metric: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`metric` as float64, one positive finite weight per entry; ParameterError otherwise."""
    weights = np.asarray(metric, dtype=np.float64)
    if weights.shape != index.shape:
        raise ParameterError(
            f"metric has shape {weights.shape}; one weight per entry needs {index.shape}"
        )
    if not np.all(np.isfinite(weights) & (weights > 0)):
        raise ParameterError("metric weights must be positive and finite")
    return weights


def spr_prox_ragged(
    values: np.ndarray,
    group_index: np.ndarray,
    n_groups: int,
    *,
    step: float,
    lam0: float,
    lam2: np.ndarray | float,
    M: np.ndarray | float,
    y_start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """prox_{step * z} of every group at once; returns (w, y) with w shaped like `values`.

    `values` is flat, `values[k]` in group `group_index[k]` (0..n_groups-1); `lam2` and `M`
    are scalars or one value per group. `y_start` (optional, e.g. the previous call's y)
    warm-starts Newton. The result satisfies |w_k| <= M y exactly, so z(w) is finite. For
    many calls with the same groups and parameters, prepare a RaggedProx once.
    """
    prox = RaggedProx(group_index, n_groups, step=step, lam0=lam0, lam2=lam2, M=M)
    return prox(values, y_start)


def _interior_roots(
    y: np.ndarray,
    active: np.ndarray,
    magnitude: np.ndarray,
    index: np.ndarray,
    M_entry: np.ndarray,
    y_start: np.ndarray | None,
    t_lam0: float,
    a_group: np.ndarray,
    a_entry: np.ndarray,
    singletons: bool,
) -> None:
    """Fill in, in place, y of the `active` groups with the root of g in (0, 1) (module
    docstring: closed form where nothing is clipped at the root and the group has one a,
    Newton on the rest; `a_group` is NaN for groups whose entries have unequal a;
    `singletons`: `index` is 0, 1, ..., one entry per group)."""
    n_groups = y.size
    squares = magnitude * magnitude
    sq_norm = squares if singletons else np.bincount(index, weights=squares, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(a_group * sq_norm / (2.0 * t_lam0)) - a_group
        shifted_root = root + a_group
        if not singletons:
            shifted_root = shifted_root[index]
        clipped_at_root = magnitude > M_entry * shifted_root
    closed = active & (root > 0.0) & (root < 1.0)
    if singletons:
        closed &= ~clipped_at_root
    else:
        closed &= np.bincount(index, weights=clipped_at_root, minlength=n_groups) == 0
    y[closed] = root[closed]
    hard = active & ~closed
    if not hard.any():
        return
    # Newton on the hard groups only, renumbered 0..k-1. Left of the root it climbs
    # monotonically; right of it, the tangent of the concave g crosses zero left of the root,
    # so one step (clipped at 0) brings it to the left side, from where it climbs.
    groups = np.flatnonzero(hard)
    renumber = np.zeros(n_groups, dtype=np.int64)
    renumber[groups] = np.arange(groups.size)
    entries = np.flatnonzero(hard[index])
    sub_index = renumber[index[entries]]
    sub_magnitude, sub_M = magnitude[entries], M_entry[entries]
    sub_a = a_entry[entries]
    kw = dict(t_lam0=t_lam0, a=sub_a, M_entry=sub_M)
    current = np.zeros(groups.size) if y_start is None else np.clip(y_start[groups], 0.0, 1.0)
    settled = np.zeros(groups.size, dtype=bool)
    for _ in range(_NEWTON_MAX_ITER):
        slope, curvature = _group_slopes(
            current[sub_index], sub_magnitude, sub_index, groups.size, want_curvature=True, **kw
        )
        updated = np.clip(current - slope / np.maximum(curvature, 1e-300), 0.0, 1.0)
        # relative steps: a root near 0 (huge M, tiny lam2) needs all its digits, as w = M y
        # (an infinite curvature is no step: bisection decides those groups)
        settled = (np.abs(updated - current) <= _NEWTON_STEP_TOL * updated) & np.isfinite(curvature)
        current = updated
        if np.all(settled):
            break
    if not np.all(settled):
        # Newton can cycle when the root sits within an ulp of a clipping breakpoint with a
        # ~zero curvature on its right (M ~ 1e12, lam2 ~ 0): bisection on the bracket [0, 1]
        # (g(0) < 0 < g(1) for active groups) finishes the few groups it left
        left = ~settled[sub_index]
        _, left_index = np.unique(sub_index[left], return_inverse=True)
        current[~settled] = _bisect(
            sub_magnitude[left], left_index, t_lam0, sub_a[left], sub_M[left]
        )
    y[groups] = current


def _bisect(
    magnitude: np.ndarray, index: np.ndarray, t_lam0: float, a: np.ndarray, M_entry: np.ndarray
) -> np.ndarray:
    """Root of g in (0, 1) per group by bisection, to a width of 1e-13 relative to the root
    (or adjacent floats); every group must have g(0) < 0 < g(1)."""
    n_groups = int(index.max()) + 1
    low, high = np.zeros(n_groups), np.ones(n_groups)
    kw = dict(t_lam0=t_lam0, a=a, M_entry=M_entry, want_curvature=False)
    while True:
        middle = 0.5 * (low + high)
        open_ = (high - low > _NEWTON_STEP_TOL * high) & (middle > low) & (middle < high)
        if not np.any(open_):
            return middle
        slope, _ = _group_slopes(middle[index], magnitude, index, n_groups, **kw)
        below = open_ & (slope < 0)
        above = open_ & ~below
        low[below] = middle[below]
        high[above] = middle[above]
