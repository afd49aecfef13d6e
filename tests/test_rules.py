"""Pruning rules: the paper's threshold rule, its bisection, MAC budgets, essentials."""

import pytest
import torch
from torch import nn
from zoo import ZOO, randomize

from sprkit.errors import ParameterError
from sprkit.networks import compress, derive_structures
from sprkit.networks.architectures import build_model
from sprkit.networks.measure import count_macs
from sprkit.networks.penalties import structure_scores
from sprkit.networks.rules import (
    fewest_removed,
    largest_threshold,
    masked_copy,
    smallest_fraction,
    threshold_keep,
    without_lowest,
)


def _net() -> nn.Module:
    """conv channel c has every weight equal to c + 1 (so |w| >= t survives for c + 1 >= t)."""
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, 5.0).view(4, 1, 1, 1))
    return nn.Sequential(conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


EXAMPLE = torch.zeros(2, 1, 4, 4)


def test_threshold_rule_follows_the_share_of_surviving_weights():
    model = _net()
    structures = derive_structures(model, EXAMPLE)
    (first,) = [p for p in structures.slices if p.parameter == "0.weight"]
    owner_of = dict(zip(first.rows.tolist(), first.owner.tolist(), strict=True))
    keep = threshold_keep(structures, model, 2.5)
    assert [bool(keep[owner_of[c]]) for c in range(4)] == [False, False, True, True]
    with pytest.raises(ParameterError, match="keep_fraction"):
        threshold_keep(structures, model, 0.5, keep_fraction=0.0)


def test_bisection_finds_the_largest_threshold_within_the_tolerance():
    model = _net()
    structures = derive_structures(model, EXAMPLE)

    def kept_share(candidate):  # score: share of first-layer channels still nonzero
        return float((candidate[0].weight.detach().flatten(1) != 0).any(dim=1).double().mean())

    found = largest_threshold(model, structures, kept_share, tolerance=0.25)
    assert 1.0 < found <= 2.0 + 1e-6  # removes channel 0 only
    assert largest_threshold(model, structures, kept_share, tolerance=1.0) == pytest.approx(4.0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ParameterError, match="tolerance"):
            largest_threshold(model, structures, kept_share, tolerance=bad)


def test_every_rule_keeps_one_structure_of_each_essential_unit():
    model = randomize(ZOO["vgg16_bn"][0]())
    structures = derive_structures(model, torch.zeros(2, 3, 32, 32))
    keep = smallest_fraction(structures, structures.norms(model), 1.0)
    for unit in structures.units:  # VGG is a chain: every layer keeps one channel
        assert int(keep[unit].sum()) == 1
    small, _ = compress(masked_copy(model, structures, keep), torch.zeros(2, 3, 32, 32))
    assert count_macs(small, (3, 32, 32)) > 0


def test_fewest_removed_meets_a_mac_budget_with_the_fewest_structures():
    model = build_model("resnet-digits", num_classes=10, in_channels=1)
    example = torch.zeros(2, 1, 8, 8)
    structures = derive_structures(model, example)
    scores = structure_scores(model, structures, "spr")

    def macs(keep):
        return count_macs(compress(masked_copy(model, structures, keep), example)[0], (1, 8, 8))

    budget = int(0.6 * count_macs(model, (1, 8, 8)))
    keep = fewest_removed(structures, scores, lambda k: macs(k) <= budget, want="fewest")
    count = int((~keep).sum())
    assert macs(keep) <= budget
    assert macs(without_lowest(structures, scores, count - 1)) > budget
    with pytest.raises(ParameterError, match="no number"):
        fewest_removed(structures, scores, lambda _: False, want="fewest")
    with pytest.raises(ParameterError, match="want"):
        fewest_removed(structures, scores, lambda _: True, want="all")
