"""Identity 1 (z equals the minimum over y) and identity 4 (torch agrees with numpy, gradcheck)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import z_by_minimizing_over_y

from sprkit import Case, spr_closed_form, spr_indicator, spr_penalty, spr_penalty_ragged
from sprkit.errors import ParameterError
from sprkit.formula import spr_closed_form_ragged


@st.composite
def group_and_params(draw):
    size = draw(st.integers(1, 6))
    w = np.array(draw(st.lists(st.floats(-3, 3), min_size=size, max_size=size)))
    lam0 = draw(st.floats(1e-3, 10))
    lam2 = draw(st.floats(1e-3, 10))
    # M at or above ||w||_inf so the exact form is finite (box feasible).
    M = max(float(np.max(np.abs(w))), 1e-3) * draw(st.floats(1.0, 20.0))
    return w, lam0, lam2, M


@settings(max_examples=300, deadline=None)
@given(group_and_params())
def test_closed_form_equals_numerical_minimum_over_y(case):
    w, lam0, lam2, M = case
    closed = spr_closed_form(w[None], lam0=lam0, lam2=lam2, M=M, outside="exact")
    expected = z_by_minimizing_over_y(w, lam0, lam2, M)
    assert closed.value[0] == pytest.approx(expected, rel=1e-8, abs=1e-12)
    # y* attains the value: lam2 ||w||^2 / y* + lam0 y* == z.
    y = closed.indicator[0]
    if y > 0:
        assert lam2 * np.sum(w * w) / y + lam0 * y == pytest.approx(expected, rel=1e-8)


def test_each_case_matches_its_branch_formula_and_the_numerical_minimum():
    w = np.array([0.3, -0.2, 0.1])
    norm2, norm_inf, sq = np.linalg.norm(w), np.max(np.abs(w)), np.sum(w * w)
    settings_by_case = {
        Case.INTERIOR: dict(lam0=1.0, lam2=1.0, M=10.0),
        Case.LOWER: dict(lam0=1.0, lam2=0.01, M=0.31),
        Case.UPPER: dict(lam0=0.01, lam2=1.0, M=10.0),
    }
    branch = {
        Case.INTERIOR: lambda lam0, lam2, M: 2 * np.sqrt(lam0 * lam2) * norm2,
        Case.LOWER: lambda lam0, lam2, M: lam2 * M * sq / norm_inf + lam0 * norm_inf / M,
        Case.UPPER: lambda lam0, lam2, M: lam2 * sq + lam0,
    }
    for case, params in settings_by_case.items():
        result = spr_closed_form(w[None], **params)
        assert result.case[0] == case
        assert result.value[0] == pytest.approx(branch[case](**params), rel=1e-12)
        assert result.value[0] == pytest.approx(z_by_minimizing_over_y(w, **params), rel=1e-9)


def _boundary_groups():
    """Groups exactly on the case boundaries: y0 == 1 and y0 == ||w||_inf / M."""
    lam0, lam2 = 2.0, 0.5
    direction = np.array([0.6, -0.8, 0.0, 0.3])
    slope = np.sqrt(lam2 / lam0)
    on_upper = direction / (slope * np.linalg.norm(direction))  # y0 = 1
    M_lower = np.max(np.abs(direction)) / (slope * np.linalg.norm(direction))  # y0 == low
    return lam0, lam2, on_upper, direction * 0.5, M_lower


def test_values_on_case_boundaries_agree_with_both_branches():
    lam0, lam2, on_upper, on_lower, M_lower = _boundary_groups()
    upper = spr_penalty(on_upper[None], lam0=lam0, lam2=lam2, M=100.0)[0]
    assert upper == pytest.approx(lam2 * np.sum(on_upper**2) + lam0, rel=1e-12)
    assert upper == pytest.approx(2 * np.sqrt(lam0 * lam2) * np.linalg.norm(on_upper), rel=1e-12)
    lower = spr_penalty(on_lower[None], lam0=lam0, lam2=lam2, M=M_lower)[0]
    interior_branch = 2 * np.sqrt(lam0 * lam2) * np.linalg.norm(on_lower)
    inf_norm = np.max(np.abs(on_lower))
    lower_branch = lam2 * M_lower * np.sum(on_lower**2) / inf_norm + lam0 * inf_norm / M_lower
    assert lower == pytest.approx(interior_branch, rel=1e-12)
    assert lower == pytest.approx(lower_branch, rel=1e-12)
    assert lower == pytest.approx(z_by_minimizing_over_y(on_lower, lam0, lam2, M_lower), rel=1e-9)


def test_zero_group_has_zero_value_indicator_and_finite_zero_gradient():
    result = spr_closed_form(np.zeros((2, 3)), lam0=1.0, lam2=1.0, M=1.0)
    assert np.all(result.value == 0) and np.all(result.indicator == 0)
    assert np.all(result.case == Case.ZERO)
    W = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    spr_penalty(W, lam0=1.0, lam2=1.0, M=1.0).sum().backward()
    assert torch.equal(W.grad, torch.zeros_like(W))


def test_torch_gradient_is_finite_on_case_boundaries_and_matches_branch_gradients():
    lam0, lam2, on_upper, on_lower, M_lower = _boundary_groups()
    for w, M in ((on_upper, 100.0), (on_lower, M_lower)):
        tensor = torch.tensor(w[None], requires_grad=True)
        spr_penalty(tensor, lam0=lam0, lam2=lam2, M=M).sum().backward()
        assert torch.isfinite(tensor.grad).all()
        # z is C^1 across these boundaries: the interior branch's gradient applies.
        expected = 2 * np.sqrt(lam0 * lam2) * w / np.linalg.norm(w)
        np.testing.assert_allclose(tensor.grad.numpy()[0], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        dict(lam0=1.0, lam2=1.0, M=10.0),
        dict(lam0=1.0, lam2=0.01, M=0.31),
        dict(lam0=0.01, lam2=1.0, M=10.0),
        dict(lam0=1.0, lam2=1.0, M=0.2),
    ],
    ids=["interior", "lower", "upper", "outside-train"],
)
def test_gradcheck_float64_in_every_case(params):
    W = torch.tensor(
        [[0.3, -0.2, 0.1], [0.25, 0.05, -0.15]], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda t: spr_penalty(t, **params), (W,))


def test_torch_agrees_with_numpy_with_per_row_M_and_keeps_dtype():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(50, 7)) * rng.uniform(0.01, 2, size=(50, 1))
    M = rng.uniform(0.5, 4.0, size=50)
    for outside in ("train", "exact"):
        expected = spr_closed_form(W, lam0=0.7, lam2=0.3, M=M, outside=outside)
        got = spr_closed_form(
            torch.tensor(W), lam0=0.7, lam2=0.3, M=torch.tensor(M), outside=outside
        )
        np.testing.assert_allclose(got.value.numpy(), expected.value, rtol=1e-12)
        np.testing.assert_allclose(got.indicator.numpy(), expected.indicator, rtol=1e-12)
        np.testing.assert_array_equal(got.case.numpy(), expected.case)
    single = spr_penalty(torch.tensor(W, dtype=torch.float32), lam0=0.7, lam2=0.3, M=2.0)
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), spr_penalty(W, lam0=0.7, lam2=0.3, M=2.0), rtol=1e-5)


def test_outside_box_exact_is_infinite_and_train_uses_the_y_equal_one_branch():
    w = np.array([[2.0, 0.5]])
    assert spr_penalty(w, lam0=1.0, lam2=0.5, M=1.0, outside="exact")[0] == np.inf
    assert spr_penalty(w, lam0=1.0, lam2=0.5, M=1.0)[0] == pytest.approx(0.5 * 4.25 + 1.0)
    assert spr_indicator(w, lam0=1.0, lam2=0.5, M=1.0)[0] == 1.0
    assert spr_closed_form(w, lam0=1.0, lam2=0.5, M=1.0).case[0] == Case.OUTSIDE


def test_ragged_groups_match_one_group_at_a_time_in_numpy_and_torch():
    rng = np.random.default_rng(5)
    sizes = [1, 4, 2, 7, 3]
    blocks = [rng.normal(size=s) for s in sizes]
    values = np.concatenate(blocks)
    index = np.repeat(np.arange(len(sizes)), sizes)
    M = np.array([3.0, 1.0, 2.0, 1.5, 0.8])
    ragged = spr_penalty_ragged(values, index, len(sizes), lam0=0.4, lam2=0.9, M=M)
    one_by_one = [
        spr_penalty(b[None], lam0=0.4, lam2=0.9, M=m)[0] for b, m in zip(blocks, M, strict=True)
    ]
    np.testing.assert_allclose(ragged, one_by_one, rtol=1e-13)
    tensor = torch.tensor(values, requires_grad=True)
    torch_ragged = spr_closed_form_ragged(
        tensor, index, len(sizes), lam0=0.4, lam2=0.9, M=torch.tensor(M)
    ).value
    torch_ragged.sum().backward()
    np.testing.assert_allclose(torch_ragged.detach().numpy(), one_by_one, rtol=1e-12)
    for position, block in enumerate(blocks):
        single = torch.tensor(block[None], requires_grad=True)
        spr_penalty(single, lam0=0.4, lam2=0.9, M=M[position]).sum().backward()
        np.testing.assert_allclose(
            tensor.grad[index == position].numpy(), single.grad.numpy()[0], rtol=1e-12
        )


def test_paper_parametrization_is_lam2_lam_alpha_and_lam0_lam_one_minus_alpha():
    W = np.random.default_rng(1).normal(size=(10, 4))
    paper = spr_penalty(W, lam=2.0, alpha=0.25, M=3.0)
    direct = spr_penalty(W, lam0=1.5, lam2=0.5, M=3.0)
    np.testing.assert_allclose(paper, direct, rtol=1e-14)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lam0=-1.0, lam2=1.0, M=1.0), "lam0"),
        (dict(lam0=1.0, lam2=float("nan"), M=1.0), "lam2"),
        (dict(lam=1.0, alpha=1.0, M=1.0), "alpha"),
        (dict(lam=1.0, alpha=0.0, M=1.0), "alpha"),
        (dict(lam=-1.0, alpha=0.5, M=1.0), "lam"),
        (dict(lam0=1.0, lam2=1.0, M=0.0), "M"),
        (dict(lam0=1.0, lam2=1.0, lam=1.0, alpha=0.5, M=1.0), "either"),
    ],
)
def test_bad_parameters_raise_a_named_error(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        spr_penalty(np.ones((2, 2)), **kwargs)


def test_array_likes_are_accepted_and_bad_ones_named():
    rows = [[1.0, 2.0], [0.0, -0.5]]
    expected = spr_penalty(np.array(rows), lam0=1.0, lam2=0.5, M=3.0)
    np.testing.assert_array_equal(spr_penalty(rows, lam0=1.0, lam2=0.5, M=3.0), expected)
    with pytest.raises(ParameterError, match="2-D array of numbers"):
        spr_penalty([["a", "b"]], lam0=1.0, lam2=0.5, M=3.0)
    with pytest.raises(ParameterError, match="2-D"):
        spr_penalty([1.0, 2.0], lam0=1.0, lam2=0.5, M=3.0)


def test_parameters_compare_and_hash_by_value_with_an_array_M():
    from sprkit import SPRParams

    first = SPRParams(0.5, 0.5, M=[1.0, 2.0])
    assert first == SPRParams.paper(1.0, 0.5, M=np.array([1.0, 2.0]))
    assert first != SPRParams(0.5, 0.5, M=[1.0, 3.0]) and first != SPRParams(0.5, 0.5)
    assert len({first, SPRParams(0.5, 0.5, M=(1.0, 2.0))}) == 1
    assert (first.lam, first.alpha) == (1.0, 0.5)
    assert not first.M.flags.writeable
