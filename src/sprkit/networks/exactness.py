"""Which structures can be cut exactly, found at construction by trial cuts.

The dependency graph sees modules, not what a forward does between them: a normalization
written as a function (F.layer_norm, a hand-written RMSNorm), an operation that maps 0 to a
nonzero value (sigmoid, BatchNorm without affine), a fixed width (x.view(-1, 400),
PixelShuffle, slicing) or a per-channel buffer make a cut inexact, and compress() refuses it
only when it compares the cut model with the masked one. So that this is known before
training, not after, a copy of the model gets one or two structures of every unit removed
and is cut and compared with its masked self (compress()'s comparison, in float64); the units
whose removal fails are found by bisection and their layers are never pruned.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from sprkit.errors import ParameterError, first_line
from sprkit.networks.compression import ForwardError, check_cut

if TYPE_CHECKING:
    from sprkit.networks.structures import Structures


def uncuttable_layers(
    model: nn.Module,
    example_inputs: torch.Tensor,
    structures: Structures,
    ignored_names: Sequence[str],
) -> dict[str, str]:
    """Conv and Linear layers (name -> compress()'s reason) of the units of `structures`
    (graph grouping) whose removal compress() refuses. A unit is tried with some of its
    structures removed (_trial_cut), so that its layers keep outputs; a unit of one
    structure is tried only when it is not essential (removing it would leave the output
    constant, which any cut reproduces). ForwardError (ParameterError) if the model's forward
    fails on random inputs of the example's shape."""
    candidates = [
        unit
        for unit, essential in zip(structures.units, structures.essential, strict=True)
        if len(unit) > 1 or not essential
    ]
    failing: dict[str, str] = {}
    for unit, reason in _failing_units(
        model, example_inputs, structures, candidates, ignored_names
    ):
        for layer in _weight_layers(structures, unit):
            failing.setdefault(layer, reason)
    return failing


def _failing_units(
    model: nn.Module,
    example_inputs: torch.Tensor,
    structures: Structures,
    units: list[torch.Tensor],
    ignored_names: Sequence[str],
) -> list[tuple[torch.Tensor, str]]:
    """Bisection: one trial cut for all `units` when they pass, about 2 log2(len(units))
    per failing unit otherwise. Units that fail only together are all reported."""
    if not units:
        return []
    reason = _trial_cut(model, example_inputs, structures, units, ignored_names)
    if reason is None:
        return []
    if len(units) == 1:
        return [(units[0], reason)]
    half = len(units) // 2
    found = _failing_units(model, example_inputs, structures, units[:half], ignored_names)
    found += _failing_units(model, example_inputs, structures, units[half:], ignored_names)
    return found or [(unit, reason) for unit in units]


def _trial_cut(
    model: nn.Module,
    example_inputs: torch.Tensor,
    structures: Structures,
    units: list[torch.Tensor],
    ignored_names: Sequence[str],
) -> str | None:
    """compress()'s reason for refusing a copy of `model` with structures of each of `units`
    removed (the first and the last of a unit of three or more), or None when it cuts them
    exactly. The copy runs in float64 and is held to 1e-9 of the output scale, so that a
    change that deep layers shrink below float32's tolerance is still seen (float16 models
    are judged without their rounding); a model whose forward fails in float64 is tried in
    its own dtype, at compress()'s tolerance."""
    keep = torch.ones(structures.n, dtype=torch.bool)
    for unit in units:
        keep[unit[0]] = False
        if len(unit) > 2:
            keep[unit[-1]] = False
    trial = copy.deepcopy(model)
    _fill_zeros(trial)
    structures.apply(trial, keep)
    try:  # cuts the copy in place
        try:
            check_cut(trial, example_inputs, ignored_names, torch.float64, 1e-9)
        except ForwardError:  # in float64, before the cut: dtypes fixed in the forward, ...
            check_cut(trial, example_inputs, ignored_names)
    except ForwardError:
        raise  # the model's own forward: nothing to try
    except ParameterError as error:  # CompressionError, or the graph failing on the cut copy
        return first_line(error)
    return None


@torch.no_grad()
def _fill_zeros(trial: nn.Module) -> None:
    """Give the exact zeros of every floating-point parameter and buffer small random
    values: the trial then cuts only the structures it removes (not a channel that happens
    to be zero already), and no zero that training will change (a zero-initialized bias,
    shift or output layer, BatchNorm's running mean) hides what the cut does."""
    generator = torch.Generator().manual_seed(0)
    for tensor in [*trial.parameters(), *trial.buffers()]:
        if tensor.is_floating_point():
            noise = 1e-3 * torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
            tensor.copy_(torch.where(tensor == 0, noise.to(tensor), tensor))


def _weight_layers(structures: Structures, unit: torch.Tensor) -> list[str]:
    """Names of the conv and Linear layers with weight rows in `unit`'s structures."""
    in_unit = torch.zeros(structures.n, dtype=torch.bool)
    in_unit[unit] = True
    return [
        piece.parameter.rpartition(".")[0]
        for piece in structures.slices
        if piece.is_weight and bool(in_unit[piece.owner].any())
    ]
