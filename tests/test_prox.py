"""The exact prox of z and the conjugate z*, against cvxpy and Fenchel-Young."""

import cvxpy as cp
import numpy as np
import pytest

from sprkit.errors import ParameterError
from sprkit.formula import (
    RaggedProx,
    spr_conjugate_ragged,
    spr_from_reductions,
    spr_penalty,
    spr_prox_ragged,
)


def _prox_by_cvxpy(v, step, lam0, lam2, M):
    """argmin ||w - v||^2/(2 step) + lam2 ||w||^2 / y + lam0 y, |w| <= M y, y in [0, 1]."""
    w, y = cp.Variable(v.size), cp.Variable()
    objective = cp.sum_squares(w - v) / (2 * step) + lam2 * cp.quad_over_lin(w, y) + lam0 * y
    problem = cp.Problem(cp.Minimize(objective), [cp.abs(w) <= M * y, y >= 0, y <= 1])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-9, tol_gap_rel=1e-9)
    return w.value, problem.value


def _prox_objective(w, v, step, lam0, lam2, M):
    return (
        np.sum((w - v) ** 2) / (2 * step)
        + spr_penalty(w[None], lam0=lam0, lam2=lam2, M=M, outside="exact")[0]
    )


def test_prox_matches_cvxpy_in_every_regime():
    rng = np.random.default_rng(0)
    regimes = {"zero": 0, "interior": 0, "one": 0}
    for _ in range(60):
        v = rng.normal(size=5) * rng.uniform(0.05, 4)
        step, lam0, lam2, M = (
            rng.uniform(0.1, 2),
            rng.uniform(0, 2),
            rng.uniform(0, 2),
            rng.uniform(0.2, 3),
        )
        w, y = spr_prox_ragged(v, np.zeros(5, int), 1, step=step, lam0=lam0, lam2=lam2, M=M)
        w_ref, value_ref = _prox_by_cvxpy(v, step, lam0, lam2, M)
        value = _prox_objective(w, v, step, lam0, lam2, M)
        assert value <= value_ref + 1e-8 * max(1.0, abs(value_ref))
        assert value == pytest.approx(value_ref, rel=1e-7, abs=1e-9)
        np.testing.assert_allclose(w, w_ref, atol=1e-4)
        assert np.all(np.abs(w) <= M * y[0] + 1e-15)
        regimes["zero" if y[0] == 0 else "one" if y[0] == 1 else "interior"] += 1
    assert all(count > 0 for count in regimes.values()), regimes


def test_prox_in_a_weighted_norm_matches_cvxpy():
    """RaggedProx(metric=p): argmin sum_k p_k (w_k - v_k)^2 / 2 + step z(w), groups whose
    weights differ (Newton) and agree (closed-form root) in one call, weights over 1e6."""
    rng = np.random.default_rng(7)
    sizes = [4, 3, 1, 5]
    index = np.repeat(np.arange(len(sizes)), sizes)
    for trial in range(12):
        v = rng.normal(size=index.size) * rng.uniform(0.05, 4)
        metric = 10.0 ** rng.uniform(-3, 3, size=index.size)
        metric[index == 1] = metric[index == 1][0]  # one group with equal weights
        step, lam0, lam2 = rng.uniform(0.1, 2), rng.uniform(0.01, 2), rng.uniform(0.01, 2)
        M = rng.uniform(0.2, 3, size=len(sizes))
        prox = RaggedProx(index, len(sizes), step=step, lam0=lam0, lam2=lam2, M=M, metric=metric)
        w, y = prox(v)
        for group in range(len(sizes)):
            entries = index == group
            w_ref, y_ref = cp.Variable(sizes[group]), cp.Variable()
            objective = cp.sum(
                cp.multiply(metric[entries], cp.square(w_ref - v[entries]))
            ) / 2 + step * (lam2 * cp.quad_over_lin(w_ref, y_ref) + lam0 * y_ref)
            constraints = [cp.abs(w_ref) <= M[group] * y_ref, y_ref >= 0, y_ref <= 1]
            problem = cp.Problem(cp.Minimize(objective), constraints)
            problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10)
            ours = (
                np.sum(metric[entries] * (w[entries] - v[entries]) ** 2) / 2
                + step
                * (
                    spr_penalty(
                        w[entries][None], lam0=lam0, lam2=lam2, M=M[group], outside="exact"
                    )[0]
                )
            )
            assert ours <= problem.value + 1e-7 * max(1.0, abs(problem.value)), trial
            assert ours == pytest.approx(problem.value, rel=1e-6, abs=1e-8)
            assert np.all(np.abs(w[entries]) <= M[group] * y[group] * (1 + 1e-12))


def test_zero_prox_exactly_when_huber_sum_is_below_step_times_lam0():
    step, lam2, M = 0.5, 0.8, 1.0
    a = 2 * step * lam2
    v = np.array([0.3, -1.7, 0.6])
    u = np.abs(v)
    huber = np.sum(np.where(u <= a * M, u**2 / (2 * a), M * u - a * M**2 / 2))
    for lam0, expect_zero in ((huber / step * 1.001, True), (huber / step * 0.999, False)):
        w, _ = spr_prox_ragged(v, np.zeros(3, int), 1, step=step, lam0=lam0, lam2=lam2, M=M)
        assert np.all(w == 0) == expect_zero


def test_many_ragged_groups_in_one_call_equal_separate_calls():
    rng = np.random.default_rng(1)
    sizes = [3, 1, 6, 2, 4]
    blocks = [rng.normal(size=s) * rng.uniform(0.1, 3) for s in sizes]
    M = rng.uniform(0.3, 2, size=len(sizes))
    index = np.repeat(np.arange(len(sizes)), sizes)
    w, y = spr_prox_ragged(
        np.concatenate(blocks), index, len(sizes), step=0.7, lam0=0.3, lam2=0.4, M=M
    )
    for position, block in enumerate(blocks):
        w_one, y_one = spr_prox_ragged(
            block, np.zeros(block.size, int), 1, step=0.7, lam0=0.3, lam2=0.4, M=M[position]
        )
        np.testing.assert_allclose(w[index == position], w_one, rtol=1e-13, atol=1e-15)
        assert y[position] == pytest.approx(y_one[0], rel=1e-13, abs=1e-15)


def test_conjugate_satisfies_fenchel_young_with_equality_at_prox_pairs():
    rng = np.random.default_rng(2)
    lam0, lam2, step = 0.6, 0.9, 0.4
    for _ in range(40):
        size = int(rng.integers(1, 6))
        M = rng.uniform(0.3, 2)
        index = np.zeros(size, int)
        u = rng.normal(size=size) * rng.uniform(0.1, 4)
        w, _ = spr_prox_ragged(u, index, 1, step=step, lam0=lam0, lam2=lam2, M=M)
        subgradient = (u - w) / step  # lies in the subdifferential of z at w
        z = spr_penalty(w[None], lam0=lam0, lam2=lam2, M=M, outside="exact")[0]
        conj = spr_conjugate_ragged(subgradient, index, 1, lam0=lam0, lam2=lam2, M=M)[0]
        assert z + conj == pytest.approx(float(subgradient @ w), rel=1e-9, abs=1e-9)
        # Inequality at an unrelated pair, w inside the box.
        other = rng.uniform(-M, M, size=size)
        z_other = spr_penalty(other[None], lam0=lam0, lam2=lam2, M=M, outside="exact")[0]
        assert z_other + conj >= float(subgradient @ other) - 1e-12


def _best_on_a_y_grid(v, step, lam0, lam2, M):
    """min over a dense grid of y (log- and linearly spaced, and y = 0) of the joint prox
    objective, with w at its exact minimizer for that y (coordinate-wise: the shrunk value,
    clipped to the box M y); an upper bound on the prox's optimal value."""
    ys = np.unique(np.concatenate((np.geomspace(1e-14, 1, 4000), np.linspace(0, 1, 4001))))
    best = np.sum(v**2) / (2 * step)  # y = 0, w = 0
    for y in ys[ys > 0]:
        w = np.sign(v) * np.minimum(np.abs(v) * y / (y + 2 * step * lam2), M * y)
        value = np.sum((w - v) ** 2) / (2 * step) + lam2 * np.sum(w * w) / y + lam0 * y
        best = min(best, value)
    return best


@pytest.mark.parametrize("lam2", [0.0, 1e-12, 1e-6, 0.3, 50.0])
def test_prox_is_at_least_as_good_as_every_y_on_a_grid_for_extreme_ridges(lam2):
    """Tiny and huge ridges put the root of g next to 0 or 1 (a Newton step criterion alone
    stopped there early, at a point far from the minimum)."""
    rng = np.random.default_rng(3)
    for _ in range(25):
        size = int(rng.integers(1, 4))
        v = rng.normal(size=size) * rng.uniform(0.01, 3)
        step, lam0 = rng.uniform(0.1, 2), rng.uniform(1e-4, 2)
        M = rng.uniform(0.05, 3) if rng.random() < 0.5 else 1e12  # the box binding or not
        w, y = spr_prox_ragged(v, np.zeros(size, int), 1, step=step, lam0=lam0, lam2=lam2, M=M)
        value = _prox_objective(w, v, step, lam0, lam2, M)
        assert value <= _best_on_a_y_grid(v, step, lam0, lam2, M) + 1e-12
        assert np.all(np.abs(w) <= M * y[0] + 1e-15)


def test_prox_finds_the_root_at_a_clipping_breakpoint_with_a_huge_box_and_no_ridge():
    """With M ~ 1e12 and lam2 ~ 0 the root of g lies within an ulp of the breakpoint
    |v| = M y, where the curvature on its right vanishes and Newton alone cycles (it returned
    w = 0 for v = 1, t = 1, lam0 = 1e-6). Mixed with easy groups in one batch, each group must
    still match its best value on a dense grid of y."""
    rng = np.random.default_rng(4)
    w, y = spr_prox_ragged(np.array([1.0]), np.zeros(1, int), 1, step=1, lam0=1e-6, lam2=0, M=1e12)
    assert w[0] == pytest.approx(1.0, rel=1e-9)
    sizes = [1, 2, 3, 1, 2]
    for _ in range(10):
        index = np.repeat(np.arange(len(sizes)), sizes)
        v = rng.normal(size=index.size) * rng.uniform(0.1, 3)
        M = np.where(rng.random(len(sizes)) < 0.6, 1e12, rng.uniform(0.05, 3, len(sizes)))
        lam0, lam2 = rng.uniform(1e-7, 1e-4), float(rng.choice([0.0, 1e-14]))
        w, y = spr_prox_ragged(v, index, len(sizes), step=1.0, lam0=lam0, lam2=lam2, M=M)
        for j in range(len(sizes)):
            block = index == j
            value = _prox_objective(w[block], v[block], 1.0, lam0, lam2, M[j])
            assert value <= _best_on_a_y_grid(v[block], 1.0, lam0, lam2, M[j]) + 1e-12
            assert np.all(np.abs(w[block]) <= M[j] * y[j] * (1 + 1e-15) + 1e-15)


def test_a_ridge_per_group_matches_one_call_per_group():
    """lam2 given per group (the strengthened node relaxations' shifts) in the prox, the
    conjugate and the closed form gives what each group gets with its own scalar."""
    rng = np.random.default_rng(5)
    sizes = [2, 1, 3, 2]
    index = np.repeat(np.arange(len(sizes)), sizes)
    v = rng.normal(size=index.size) * 2
    lam2 = np.array([0.0, 1e-3, 0.4, 3.0])
    M = rng.uniform(0.3, 2, size=len(sizes))
    w, y = spr_prox_ragged(v, index, len(sizes), step=0.6, lam0=0.2, lam2=lam2, M=M)
    conj = spr_conjugate_ragged(v, index, len(sizes), lam0=0.2, lam2=lam2, M=M)
    for j, size in enumerate(sizes):
        block = index == j
        one = np.zeros(size, int)
        w_one, y_one = spr_prox_ragged(v[block], one, 1, step=0.6, lam0=0.2, lam2=lam2[j], M=M[j])
        np.testing.assert_allclose(w[block], w_one, rtol=1e-13, atol=1e-15)
        assert y[j] == pytest.approx(y_one[0], rel=1e-13, abs=1e-15)
        conj_one = spr_conjugate_ragged(v[block], one, 1, lam0=0.2, lam2=lam2[j], M=M[j])
        assert conj[j] == pytest.approx(conj_one[0], rel=1e-13)
    sq_norm = np.bincount(index, weights=w * w)
    max_abs = np.zeros(len(sizes))
    np.maximum.at(max_abs, index, np.abs(w))
    closed = spr_from_reductions(sq_norm, max_abs, lam0=0.2, lam2=lam2, M=M, outside="exact")
    for j in range(len(sizes)):
        single = spr_from_reductions(
            sq_norm[j : j + 1], max_abs[j : j + 1], lam0=0.2, lam2=lam2[j], M=M[j], outside="exact"
        )
        assert closed.value[j] == pytest.approx(single.value[0], rel=1e-13)


def test_a_prepared_prox_reused_with_warm_starts_equals_separate_calls():
    """One RaggedProx called at a sequence of nearby points (warm-started from the previous
    y, as in the node relaxations) gives, at every point, what one call per group gives."""
    rng = np.random.default_rng(5)
    sizes = [2, 3, 1, 6, 2]
    index = np.repeat(np.arange(len(sizes)), sizes)
    M = rng.uniform(0.3, 2.0, size=len(sizes))
    lam2 = rng.uniform(0.01, 1.0, size=len(sizes))
    prox = RaggedProx(index, len(sizes), step=0.7, lam0=0.3, lam2=lam2, M=M)
    point = rng.normal(size=index.size)
    y = None
    for _ in range(20):
        point = point + 0.2 * rng.normal(size=index.size)
        w, y = prox(point, y)
        for j in range(len(sizes)):
            w_one, y_one = spr_prox_ragged(
                point[index == j],
                np.zeros(sizes[j], int),
                1,
                step=0.7,
                lam0=0.3,
                lam2=lam2[j],
                M=M[j],
            )
            np.testing.assert_allclose(w[index == j], w_one, rtol=1e-12, atol=1e-15)
            assert y[j] == pytest.approx(y_one[0], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("metric", [[1.0, 0.0, 1.0], [1.0, -2.0, 1.0], [1.0, np.nan, 1.0], [1.0]])
def test_a_bad_metric_is_one_clear_error(metric):
    with pytest.raises(ParameterError, match="metric"):
        RaggedProx(np.zeros(3, int), 1, step=1.0, lam0=0.1, lam2=0.1, M=1.0, metric=metric)


def test_prox_with_a_ridge_and_box_per_entry_matches_cvxpy():
    """RaggedProx(per_entry=True): argmin ||w - v||^2/(2 step) + sum_j z_j(w_j), z_j the
    perspective of sum_k lam2_k w_k^2 with |w_k| <= M_k y_j (cvxpy's quad_over_lin per
    entry); groups with unequal ridges (Newton) and one with equal ridges (closed form)."""
    rng = np.random.default_rng(11)
    sizes = [3, 2, 1, 4]
    index = np.repeat(np.arange(len(sizes)), sizes)
    cases = {"zero": 0, "interior": 0, "one": 0}
    for trial in range(15):
        v = rng.normal(size=index.size) * rng.uniform(0.05, 4)
        lam2 = 10.0 ** rng.uniform(-3, 1, size=index.size)
        lam2[index == 1] = lam2[index == 1][0]
        M = rng.uniform(0.2, 3, size=index.size)
        step, lam0 = rng.uniform(0.1, 2), rng.uniform(0.01, 2)
        prox = RaggedProx(index, len(sizes), step=step, lam0=lam0, lam2=lam2, M=M, per_entry=True)
        w, y = prox(v)
        for group in range(len(sizes)):
            entries = index == group
            w_ref, y_ref = cp.Variable(sizes[group]), cp.Variable()
            penalty = sum(
                lam2[entries][k] * cp.quad_over_lin(w_ref[k], y_ref) for k in range(sizes[group])
            )
            objective = cp.sum_squares(w_ref - v[entries]) / (2 * step) + penalty + lam0 * y_ref
            constraints = [cp.abs(w_ref) <= M[entries] * y_ref, y_ref >= 0, y_ref <= 1]
            problem = cp.Problem(cp.Minimize(objective), constraints)
            problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10)
            mine = w[entries]
            assert np.all(np.abs(mine) <= M[entries] * y[group] * (1 + 1e-12))
            quadratic = np.sum(lam2[entries] * mine**2)
            ours = np.sum((mine - v[entries]) ** 2) / (2 * step) + lam0 * y[group]
            ours += quadratic / y[group] if y[group] > 0 else 0.0
            assert ours <= problem.value + 1e-7 * max(1.0, abs(problem.value)), trial
            assert ours == pytest.approx(problem.value, rel=1e-6, abs=1e-8)
            cases["zero" if y[group] == 0 else "one" if y[group] == 1 else "interior"] += 1
    assert all(count > 0 for count in cases.values()), cases


def test_conjugate_with_a_ridge_and_box_per_entry_is_the_boxed_sup():
    """z*(v) = max(0, sup_{|w_k| <= M_k} v'w - sum_k lam2_k w_k^2 - lam0): the sup is
    attained at w_k = clip(v_k / (2 lam2_k), -M_k, M_k) (y = 0 or 1, the perspective being
    homogeneous)."""
    rng = np.random.default_rng(12)
    sizes = [3, 1, 4]
    index = np.repeat(np.arange(len(sizes)), sizes)
    for _ in range(20):
        v = rng.normal(size=index.size) * rng.uniform(0.1, 5)
        lam2 = 10.0 ** rng.uniform(-3, 1, size=index.size)
        M = rng.uniform(0.1, 3, size=index.size)
        lam0 = rng.uniform(0, 1)
        conj = spr_conjugate_ragged(v, index, len(sizes), lam0=lam0, lam2=lam2, M=M, per_entry=True)
        best = np.clip(v / (2 * lam2), -M, M)
        inner = np.bincount(index, weights=v * best - lam2 * best**2, minlength=len(sizes))
        np.testing.assert_allclose(conj, np.maximum(0.0, inner - lam0), rtol=1e-12, atol=1e-14)


def test_one_entry_per_group_matches_the_segment_sums():
    """With one entry per group (RaggedProx skips its segment sums) the prox is the one
    computed with the sums (the same groups declared among one more, empty, group), and
    each group's value is at most its best on a dense grid of y; every case is met (w = 0,
    y interior with and without the box active, y = 1)."""
    rng = np.random.default_rng(11)
    groups = 60
    index = np.arange(groups)
    v = rng.normal(size=groups) * rng.uniform(0.01, 2, groups)
    lam2 = rng.uniform(1e-4, 0.5, groups)
    M = np.where(rng.random(groups) < 0.3, rng.uniform(0.01, 0.2, groups), 4.0)
    options = dict(step=0.3, lam0=0.01, lam2=lam2, M=M, per_entry=True)
    w, y = RaggedProx(index, groups, **options)(v)
    w_sums, y_sums = RaggedProx(index, groups + 1, **options)(v)
    np.testing.assert_array_equal(w, w_sums)
    np.testing.assert_array_equal(y, y_sums[:groups])
    interior = (y > 0) & (y < 1)
    assert np.any(y == 0) and np.any(y == 1) and np.any(interior)
    boxed = np.isclose(np.abs(w), M * y)
    assert np.any(interior & boxed) and np.any(interior & ~boxed)
    for j in range(groups):
        value = _prox_objective(w[j : j + 1], v[j : j + 1], 0.3, 0.01, lam2[j], M[j])
        assert value <= _best_on_a_y_grid(v[j : j + 1], 0.3, 0.01, lam2[j], M[j]) + 1e-12
