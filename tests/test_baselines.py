"""Competitor penalties and score-based pruning, against loops written out independently."""

import math

import pytest
import torch

from sprkit.errors import ParameterError
from sprkit.networks import find_conv_bn_blocks
from sprkit.networks.architectures import build_model
from sprkit.networks.baselines import (
    BatchNormL1Regularizer,
    GroupLassoRegularizer,
    structure_scores,
)
from sprkit.networks.compression import compress
from sprkit.networks.grouping import graph_grouping
from sprkit.networks.measure import count_macs
from sprkit.networks.pruning import apply_channel_masks, fewest_removed, masks_without_lowest


def _model_and_grouping():
    torch.manual_seed(0)
    model = build_model("resnet-digits", num_classes=10, in_channels=1).double()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(-1.0, 1.0)
            module.bias.data.uniform_(-1.0, 1.0)
    return model, graph_grouping(model, (1, 8, 8))


def _members(grouping, group):
    return [
        (block, channel)
        for block, ids in enumerate(grouping.group_of)
        for channel in torch.nonzero(ids == group).flatten().tolist()
    ]


def _channel_values(block, channel):
    parts = [block.conv.weight[channel].flatten(), block.bn.weight[channel : channel + 1]]
    return torch.cat([*parts, block.bn.bias[channel : channel + 1]]).detach()


def test_group_lasso_and_scores_equal_a_loop_over_structures():
    model, grouping = _model_and_grouping()
    blocks = find_conv_bn_blocks(model)
    total, scalars, norms = 0.0, 0, []
    for group in range(grouping.n_groups):
        values = torch.cat([_channel_values(blocks[b], c) for b, c in _members(grouping, group)])
        norms.append(float(values.norm()))
        total += math.sqrt(len(values)) * float(values.norm())
        scalars += len(values)
    penalty = GroupLassoRegularizer(model, lam=0.7, grouping=grouping)
    assert penalty().item() == pytest.approx(0.7 * total / scalars, rel=1e-12)
    scores = structure_scores(model, grouping, "group_lasso")
    assert torch.allclose(scores, torch.tensor(norms, dtype=scores.dtype), rtol=1e-12)


def test_batchnorm_l1_and_its_scores_equal_a_loop():
    model, grouping = _model_and_grouping()
    blocks = find_conv_bn_blocks(model)
    expected = sum(b.bn.weight.abs().sum().item() for b in blocks)
    assert BatchNormL1Regularizer(model, lam=0.3)().item() == pytest.approx(0.3 * expected)
    scores = structure_scores(model, grouping, "bn_l1")
    for group in range(grouping.n_groups):
        gammas = [abs(blocks[b].bn.weight[c].item()) for b, c in _members(grouping, group)]
        assert float(scores[group]) == pytest.approx(sum(gammas) / len(gammas), rel=1e-12)


def test_negative_lam_is_refused():
    model, grouping = _model_and_grouping()
    with pytest.raises(ParameterError, match="lam must be >= 0"):
        GroupLassoRegularizer(model, lam=-1.0, grouping=grouping)
    with pytest.raises(ParameterError, match="lam must be >= 0"):
        BatchNormL1Regularizer(model, lam=-1.0)


def _compressed_macs_of(model, grouping, scores, count):
    masks = masks_without_lowest(grouping, scores, count)
    masked = build_model("resnet-digits", num_classes=10, in_channels=1).double()
    masked.load_state_dict(model.state_dict())
    apply_channel_masks(find_conv_bn_blocks(masked), masks)
    return count_macs(compress(masked.eval(), masks, (1, 8, 8))[0], (1, 8, 8))


def test_mac_budget_removes_the_fewest_lowest_score_structures_that_fit():
    model, grouping = _model_and_grouping()
    scores = structure_scores(model, grouping, "spr")
    dense = count_macs(model, (1, 8, 8))
    budget = dense // 3
    masks = fewest_removed(
        model,
        grouping,
        scores,
        lambda pruned, m: count_macs(compress(pruned.eval(), m, (1, 8, 8))[0], (1, 8, 8)) <= budget,
        want="fewest",
    )
    removed_groups = {int(g) for g in grouping.flat()[~torch.cat(masks)]}
    count = len(removed_groups)
    assert _compressed_macs_of(model, grouping, scores, count) <= budget
    assert _compressed_macs_of(model, grouping, scores, count - 1) > budget
    # The removed structures are exactly the `count` lowest-scoring ones.
    assert removed_groups == set(torch.argsort(scores, stable=True)[:count].tolist())


def test_unreachable_budget_and_bad_want_are_refused():
    model, grouping = _model_and_grouping()
    scores = structure_scores(model, grouping, "spr")
    with pytest.raises(ParameterError, match="no number"):
        fewest_removed(model, grouping, scores, lambda *_: False, want="fewest")
    with pytest.raises(ParameterError, match="want must be"):
        fewest_removed(model, grouping, scores, lambda *_: True, want="all")
