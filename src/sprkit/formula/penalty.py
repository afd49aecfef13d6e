"""Closed-form SPR penalty z(w), its minimizing indicator y*(w), active case and conjugate.

Conventions (DESIGN.md section 2). For a group of weights w with ||w||_2 and ||w||_inf,

    z(w) = min_{y in [||w||_inf / M, 1]}  lam2 * ||w||_2^2 / y + lam0 * y,     z(0) = 0,

whose minimizer is y* = clip(sqrt(lam2 / lam0) * ||w||_2, ||w||_inf / M, 1). Outside the box
(||w||_inf > M) the exact projection of the perspective relaxation is +inf (``outside="exact"``);
the training form (``outside="train"``, the default) uses the y* = 1 branch there,
z = lam2 * ||w||^2 + lam0. lam0 multiplies the indicator (a count), lam2 the squared l2 norm;
the paper's parametrization is lam2 = lam * alpha, lam0 = lam * (1 - alpha).

Every function works on many groups at once. Numpy input gives float64 numpy output; torch input
gives torch output on the same device and dtype, differentiable, with finite values and
gradients at w = 0 and on the boundaries between cases.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import numpy as np

from sprkit.errors import ParameterError
from sprkit.params import SPRParams, checked_M

Array = Any  # numpy.ndarray or torch.Tensor


def _is_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor. torch is never imported here: if the caller has not
    imported it, nothing it passes can be a tensor (keeps the optimization side torch-free)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


Outside = Literal["train", "exact"]


class Case(IntEnum):
    """Which branch of the closed form is active for a group."""

    ZERO = 0  # w = 0: y* = 0, z = 0
    INTERIOR = 1  # y* = sqrt(lam2/lam0) ||w||_2 in [||w||_inf/M, 1): z = 2 sqrt(lam0 lam2) ||w||_2
    LOWER = 2  # y* = ||w||_inf / M (box active): z = lam2 M ||w||^2/||w||_inf + lam0 ||w||_inf/M
    UPPER = 3  # y* = 1: z = lam2 ||w||^2 + lam0
    OUTSIDE = 4  # ||w||_inf > M: +inf (exact) or the UPPER branch (train)


@dataclass(frozen=True)
class SPRClosedForm:
    """Per-group value z, indicator y* and active :class:`Case` (as integers)."""

    value: Array
    indicator: Array
    case: Array


def _check_M(M: Array) -> None:
    checked_M(M.detach().cpu().numpy() if _is_tensor(M) else M)


def _like(reference: Array, value: Array) -> Array:
    """`value` as an array of the same backend, dtype and device as `reference`. A Python
    number is filled on the device: copying it from the host would wait for the GPU's queue."""
    if _is_tensor(reference):
        torch = sys.modules["torch"]
        if isinstance(value, int | float):
            return torch.full((), value, dtype=reference.dtype, device=reference.device)
        return torch.as_tensor(value, dtype=reference.dtype, device=reference.device)
    return np.asarray(value, dtype=np.float64)


def spr_from_reductions(
    sq_norm: Array,
    max_abs: Array,
    *,
    lam0: float,
    lam2: float | np.ndarray,
    M: Array,
    outside: Outside = "train",
    check_M: bool = True,
) -> SPRClosedForm:
    """The closed form from per-group ||w||_2^2 and ||w||_inf (the one place it is written).

    `M` is a scalar or one value per group; so is `lam2` (per group: numpy arrays only).
    Branch-free (``where``) so that torch gradients are finite everywhere: the square root
    and the division are guarded at w = 0.
    `check_M=False` skips the M > 0 check (it copies M to the host, a device sync on GPU) for
    callers that validated M once already, such as the training regularizer.
    """
    if outside not in ("train", "exact"):
        raise ParameterError(f"outside must be 'train' or 'exact', got {outside!r}")
    if check_M:
        _check_M(M)
    xp = sys.modules["torch"] if _is_tensor(sq_norm) else np
    M = _like(sq_norm, M)
    nonzero = sq_norm > 0
    one = _like(sq_norm, 1.0)
    zero = _like(sq_norm, 0.0)
    norm2 = xp.where(nonzero, xp.sqrt(xp.where(nonzero, sq_norm, one)), zero)
    lower = max_abs / M
    # lam0 = 0 makes the unconstrained minimizer +inf: y* = 1 for every w != 0.
    unconstrained = norm2 * np.sqrt(lam2 / lam0) if lam0 > 0 else xp.where(nonzero, one, zero)
    y = xp.minimum(xp.maximum(unconstrained, lower), one)
    safe_y = xp.where(y > 0, y, one)
    value = xp.where(nonzero, lam2 * sq_norm / safe_y + lam0 * y, zero)
    is_outside = lower > 1
    if outside == "exact":
        value = xp.where(is_outside, _like(sq_norm, np.inf), value)
    case = xp.where(
        ~nonzero,
        int(Case.ZERO),
        xp.where(
            is_outside,
            int(Case.OUTSIDE),
            xp.where(
                y >= 1,
                int(Case.UPPER),
                xp.where(unconstrained >= lower, int(Case.INTERIOR), int(Case.LOWER)),
            ),
        ),
    )
    return SPRClosedForm(value=value, indicator=y, case=case)


def _rows(W: Array) -> tuple[Array, Array]:
    """Per row: ||w||_2^2 and ||w||_inf (a torch tensor stays one; any other array-like, such
    as nested lists, becomes a float64 numpy array)."""
    if not _is_tensor(W):
        try:
            W = np.asarray(W, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError("W must be a 2-D array of numbers, one group per row") from None
    if W.ndim != 2:
        raise ParameterError(f"W must be 2-D with one group per row, got shape {tuple(W.shape)}")
    if _is_tensor(W):
        return (W * W).sum(dim=1), W.abs().amax(dim=1)
    return np.einsum("ij,ij->i", W, W), np.abs(W).max(axis=1, initial=0.0)


def group_reductions(values: Array, group_index: Array, n_groups: int) -> tuple[Array, Array]:
    """Per-group ||w||_2^2 and ||w||_inf of ragged groups given as a flat vector.

    `values[k]` belongs to group `group_index[k]` in 0..n_groups-1 (segment reductions, no loop
    over groups). Groups with no entries get zeros.
    """
    if _is_tensor(values):
        torch = sys.modules["torch"]
        index = torch.as_tensor(group_index, device=values.device, dtype=torch.long)
        sq_norm = values.new_zeros(n_groups).index_add(0, index, values * values)
        max_abs = values.new_zeros(n_groups).scatter_reduce(
            0, index, values.abs(), reduce="amax", include_self=True
        )
        return sq_norm, max_abs
    values = np.asarray(values, dtype=np.float64)
    index = np.asarray(group_index, dtype=np.int64)
    sq_norm = np.bincount(index, weights=values * values, minlength=n_groups)
    max_abs = np.zeros(n_groups)
    np.maximum.at(max_abs, index, np.abs(values))
    return sq_norm, max_abs


def spr_closed_form(
    W: Array,
    *,
    M: Array,
    lam0: float | None = None,
    lam2: float | None = None,
    lam: float | None = None,
    alpha: float | None = None,
    outside: Outside = "train",
) -> SPRClosedForm:
    """Value, indicator and case for every row of `W` (one group per row)."""
    params = SPRParams.resolve(lam0, lam2, lam=lam, alpha=alpha)
    sq_norm, max_abs = _rows(W)
    return spr_from_reductions(
        sq_norm, max_abs, lam0=params.lam0, lam2=params.lam2, M=M, outside=outside
    )


def spr_penalty(
    W: Array,
    *,
    M: Array,
    lam0: float | None = None,
    lam2: float | None = None,
    lam: float | None = None,
    alpha: float | None = None,
    outside: Outside = "train",
) -> Array:
    """z(w) for every row of `W` (numpy in, numpy out; torch in, differentiable torch out)."""
    return spr_closed_form(
        W, M=M, lam0=lam0, lam2=lam2, lam=lam, alpha=alpha, outside=outside
    ).value


def spr_indicator(
    W: Array,
    *,
    M: Array,
    lam0: float | None = None,
    lam2: float | None = None,
    lam: float | None = None,
    alpha: float | None = None,
) -> Array:
    """y*(w) for every row of `W`; 1 outside the box (where the exact form is infeasible)."""
    return spr_closed_form(W, M=M, lam0=lam0, lam2=lam2, lam=lam, alpha=alpha).indicator


def spr_closed_form_ragged(
    values: Array,
    group_index: Array,
    n_groups: int,
    *,
    M: Array,
    lam0: float | None = None,
    lam2: float | None = None,
    lam: float | None = None,
    alpha: float | None = None,
    outside: Outside = "train",
) -> SPRClosedForm:
    """The closed form for groups of different sizes given as a flat vector (see
    :func:`group_reductions`)."""
    params = SPRParams.resolve(lam0, lam2, lam=lam, alpha=alpha)
    sq_norm, max_abs = group_reductions(values, group_index, n_groups)
    return spr_from_reductions(
        sq_norm, max_abs, lam0=params.lam0, lam2=params.lam2, M=M, outside=outside
    )


def spr_penalty_ragged(
    values: Array,
    group_index: Array,
    n_groups: int,
    *,
    M: Array,
    lam0: float | None = None,
    lam2: float | None = None,
    lam: float | None = None,
    alpha: float | None = None,
    outside: Outside = "train",
) -> Array:
    """z per group for ragged groups (flat `values`, `group_index` in 0..n_groups-1)."""
    return spr_closed_form_ragged(
        values,
        group_index,
        n_groups,
        M=M,
        lam0=lam0,
        lam2=lam2,
        lam=lam,
        alpha=alpha,
        outside=outside,
    ).value


def entry_values(
    value: np.ndarray | float, index: np.ndarray, n_groups: int, per_entry: bool
) -> np.ndarray:
    """`value` (a scalar, one per group, or with `per_entry` one per entry) per entry."""
    value = np.asarray(value, dtype=np.float64)
    if per_entry:
        return np.broadcast_to(value, index.shape)
    return np.broadcast_to(value, (n_groups,))[index]


def spr_conjugate_ragged(
    duals: np.ndarray,
    group_index: np.ndarray,
    n_groups: int,
    *,
    lam0: float,
    lam2: np.ndarray | float,
    M: np.ndarray | float,
    per_entry: bool = False,
) -> np.ndarray:
    """Fenchel conjugate z*(v) of the exact form, per group, in float64 (`lam2` and `M`: a
    scalar or one value per group; with `per_entry=True` one value per entry, the conjugate
    of the perspective of sum_k lam2_k w_k^2 with box |w_k| <= M_k y).

    z*(v) = max(0, sum_k h(v_k) - lam0) with h(s) = s^2 / (4 lam2) for |s| <= 2 lam2 M and
    M |s| - lam2 M^2 beyond (a Huber function): substitute w = y u in the sup over (w, y).
    Used for the dual (lower) bound of the SPR route.
    """
    duals = np.asarray(duals, dtype=np.float64)
    index = np.asarray(group_index, dtype=np.int64)
    M_entry = entry_values(M, index, n_groups, per_entry)
    lam2_entry = entry_values(lam2, index, n_groups, per_entry)
    magnitude = np.abs(duals)
    quadratic = magnitude <= 2.0 * lam2_entry * M_entry
    safe_lam2 = np.where(lam2_entry > 0, lam2_entry, 1.0)
    # a subnormal lam2 overflows the quadratic branch where it is not taken (|v| > 2 lam2 M)
    with np.errstate(over="ignore"):
        huber = np.where(
            quadratic, duals**2 / (4.0 * safe_lam2), M_entry * magnitude - lam2_entry * M_entry**2
        )
    return np.maximum(0.0, np.bincount(index, weights=huber, minlength=n_groups) - lam0)
