"""Threshold rule, channel masks and the bisection for the largest acceptable threshold."""

import pytest
import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks import find_conv_bn_blocks
from sprkit.networks.pruning import channel_masks, largest_threshold, masked_copy


def _net():
    model = nn.Sequential(nn.Conv2d(1, 4, 1, bias=True), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[0].bias.fill_(0.25)
        # Channel c has weight magnitude c + 1 (a 1x1 conv on one input: one weight each).
        model[0].weight.copy_(torch.tensor([1.0, -2.0, 3.0, -4.0]).view(4, 1, 1, 1))
        model[1].weight.fill_(1.0)
        model[1].bias.fill_(0.5)
    return model.eval()


def test_masks_follow_the_fraction_of_surviving_weights():
    blocks = find_conv_bn_blocks(_net())
    assert channel_masks(blocks, 2.5)[0].tolist() == [False, False, True, True]
    conv = nn.Conv2d(1, 2, (1, 4), bias=False)
    with torch.no_grad():
        conv.weight.copy_(
            torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]).view(2, 1, 1, 4)
        )
    blocks = find_conv_bn_blocks(nn.Sequential(conv, nn.BatchNorm2d(2)))
    assert channel_masks(blocks, 0.5, keep_fraction=0.75)[0].tolist() == [False, True]
    with pytest.raises(ParameterError, match="keep_fraction"):
        channel_masks(blocks, 0.5, keep_fraction=0.0)


def test_masked_copy_zeroes_whole_channels_and_leaves_the_original():
    model = _net()
    pruned, masks = masked_copy(model, 2.5)
    out = pruned(torch.ones(1, 1, 2, 2))
    assert torch.all(out[:, :2] == 0) and torch.all(out[:, 2:] != 0)
    assert model[1].bias[0].item() == 0.5  # the original is untouched


def test_bisection_finds_the_largest_acceptable_threshold():
    model = _net()

    def kept_share(candidate):  # a stand-in for validation accuracy: share of live channels
        return float((candidate[0].weight.flatten() != 0).float().mean())

    # Losing one channel of four (accuracy 1.0 -> 0.75) is acceptable, two are not: the
    # answer is the largest t that removes only channel 0, i.e. just below 2.
    found = largest_threshold(model, kept_share, tolerance=0.25)
    assert found == pytest.approx(2.0, abs=1e-6)  # float32 weights: 2.0 itself is kept
    assert largest_threshold(model, kept_share, tolerance=1.0) == pytest.approx(4.0)
    with pytest.raises(ParameterError, match="tolerance"):
        largest_threshold(model, kept_share, tolerance=-0.1)


def test_threshold_keeps_the_residual_stream_alive_even_when_accuracy_never_drops():
    from sprkit.networks.architectures import build_model
    from sprkit.networks.compression import compress
    from sprkit.networks.grouping import graph_grouping

    torch.manual_seed(0)
    model = build_model("resnet-digits", num_classes=10, in_channels=1).eval()
    grouping = graph_grouping(model, (1, 8, 8))
    threshold = largest_threshold(
        model, lambda _: 0.1, tolerance=0.0, keep_fraction=0.5, grouping=grouping
    )
    pruned, masks = masked_copy(model, threshold, 0.5, grouping)
    names = [b.conv_name for b in find_conv_bn_blocks(model)]
    assert masks[names.index("conv1")].sum() >= 1
    _, beyond = masked_copy(model, threshold * 1.001, 0.5, grouping)
    assert not beyond[names.index("conv1")].any()  # the largest such threshold
    compressed, _ = compress(pruned, masks, (1, 8, 8))
    inputs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert (compressed(inputs) - pruned(inputs)).abs().max() <= 1e-5
