"""Pruning rules: which structures to remove, as a keep mask (True = kept) per structure.

- `smallest_fraction`: remove the given share of the structures with the lowest score;
- the paper's threshold rule: for a magnitude threshold t, a structure is kept whole if at
  least `keep_fraction` of its conv/Linear weights have |w| >= t; `largest_threshold` finds
  the largest t whose accuracy drop (measured by the caller's `evaluate`, on a validation
  split, never the test set) stays within a tolerance, by bisection on t (the drop is assumed
  to grow with t, as larger thresholds remove supersets of structures);
- `fewest_removed`: remove the lowest-score structures, as many as an acceptability test
  allows or as few as a target needs (bisection on their number).
Every rule keeps one structure of each essential unit (Structures.kept_with_essentials), so
the output always depends on the input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.structures import Structures


def smallest_fraction(
    structures: Structures, scores: torch.Tensor, fraction: float
) -> torch.Tensor:
    """Remove round(fraction x n) structures of lowest score (ties: lowest id first)."""
    if not 0.0 <= fraction <= 1.0:
        raise ParameterError(f"fraction must lie in [0, 1], got {fraction}")
    return without_lowest(structures, scores, round(fraction * structures.n))


def without_lowest(structures: Structures, scores: torch.Tensor, count: int) -> torch.Tensor:
    """Keep mask removing the `count` structures of lowest score (essentials put back)."""
    keep = torch.ones(structures.n, dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[:count]] = False
    return structures.kept_with_essentials(keep, scores)


def threshold_keep(
    structures: Structures, model: nn.Module, threshold: float, keep_fraction: float = 0.5
) -> torch.Tensor:
    """The paper's rule at one threshold (module docstring), essentials put back."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ParameterError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
    surviving = structures.surviving_weights(model, threshold)
    keep = surviving >= keep_fraction * structures.weight_sizes
    return structures.kept_with_essentials(keep, structures.norms(model))


def masked_copy(model: nn.Module, structures: Structures, keep: torch.Tensor) -> nn.Module:
    """A deep copy of `model` with the removed structures zeroed."""
    pruned = copy.deepcopy(model)
    structures.apply(pruned, keep)
    return pruned


def largest_threshold(
    model: nn.Module,
    structures: Structures,
    evaluate: Callable[[nn.Module], float],
    *,
    tolerance: float,
    keep_fraction: float = 0.5,
    iterations: int = 30,
) -> float:
    """The largest t (up to the bisection's resolution) whose masked model scores at most
    `tolerance` below `model` by `evaluate` (e.g. accuracy: 0.01 = one point)."""
    if not 0 <= tolerance < float("inf"):  # NaN too
        raise ParameterError(f"tolerance must be finite and >= 0, got {tolerance}")
    reference = evaluate(model)
    high = max(float(p.detach().abs().max()) for p in structures.parameters_of(model))
    low = 0.0  # t = 0 keeps every structure: no drop

    def acceptable(threshold: float) -> bool:
        keep = threshold_keep(structures, model, threshold, keep_fraction)
        return reference - evaluate(masked_copy(model, structures, keep)) <= tolerance

    if acceptable(high):
        return high
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if acceptable(middle) else (low, middle)
    return low


def fewest_removed(
    structures: Structures,
    scores: torch.Tensor,
    acceptable: Callable[[torch.Tensor], bool],
    *,
    want: str,
) -> torch.Tensor:
    """Keep mask removing the lowest-score structures, by bisection on their number: the
    fewest removed that is `acceptable` (want="fewest", for a test that passes from some
    number on, e.g. a MAC budget) or the most removed that is (want="most", for one that
    fails from some number on, e.g. an accuracy tolerance; none removed if none is).
    `acceptable` receives the keep mask. ParameterError if want="fewest" and no number is."""
    if want not in ("fewest", "most"):
        raise ParameterError(f"want must be 'fewest' or 'most', got {want!r}")

    def check(count: int) -> bool:
        return acceptable(without_lowest(structures, scores, count))

    low, high = 0, structures.n
    if want == "fewest":
        if not check(high):
            raise ParameterError("no number of removed structures meets the target")
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if check(middle) else (middle + 1, high)
        return without_lowest(structures, scores, low)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if check(middle) else (low, middle - 1)
    return without_lowest(structures, scores, low)
