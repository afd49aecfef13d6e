"""From trained weights to pruned structures: channel masks and the rules that choose them.

The paper's rule (with the drop measured on a validation split, never the test set): for a
magnitude threshold t, a structure is kept whole if at least `keep_fraction` of its conv
weights have |w| >= t, and removed whole otherwise (conv weights and bias, BatchNorm scale and
shift zeroed, so its channels output exactly zero). The threshold used is the largest t whose
validation accuracy drop stays within a tolerance, found by bisection on t (which assumes the
drop grows with t, as it does when larger thresholds remove supersets of structures).
Score rules (fewest_removed): remove the structures of lowest importance score, as many as an
accuracy tolerance allows or as few as a MAC budget needs. Every rule keeps a channel in the
stem and projection shortcuts (stream_block_indices).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.architectures import is_branch_conv
from sprkit.networks.compression import compress
from sprkit.networks.grouping import ChannelGrouping
from sprkit.networks.measure import count_macs
from sprkit.networks.regularizer import ChannelBlock, find_conv_bn_blocks


def stream_block_indices(blocks: list[ChannelBlock]) -> list[int]:
    """Blocks outside residual branches (stem, projection shortcuts): each must keep a
    channel, or a whole residual stream, hence the network's output, is gone."""
    return [i for i, b in enumerate(blocks) if not is_branch_conv(b.conv_name)]


def channel_masks(
    blocks: list[ChannelBlock],
    threshold: float,
    keep_fraction: float = 0.5,
    grouping: ChannelGrouping | None = None,
) -> list[torch.Tensor]:
    """Per block, a bool vector over output channels: True = kept at this threshold. With a
    grouping, the surviving share is taken over all conv weights of the structure, so the
    channels of one structure are kept or removed together."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ParameterError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
    surviving = torch.cat(
        [(b.conv.weight.detach().flatten(1).abs() >= threshold).sum(dim=1) for b in blocks]
    ).double()
    totals = torch.cat(
        [torch.full((b.conv.out_channels,), b.conv.weight[0].numel()) for b in blocks]
    ).to(surviving)
    if grouping is not None:
        index = grouping.flat().to(surviving.device)
        group_surviving = surviving.new_zeros(grouping.n_groups).index_add(0, index, surviving)
        group_totals = totals.new_zeros(grouping.n_groups).index_add(0, index, totals)
        surviving, totals = group_surviving[index], group_totals[index]
    kept = surviving / totals >= keep_fraction
    return list(kept.split([b.conv.out_channels for b in blocks]))


@torch.no_grad()
def apply_channel_masks(blocks: list[ChannelBlock], masks: list[torch.Tensor]) -> None:
    """Zero every parameter of the removed channels, in place."""
    for block, mask in zip(blocks, masks, strict=True):
        removed = ~mask.to(block.conv.weight.device)
        block.conv.weight[removed] = 0.0
        if block.conv.bias is not None:
            block.conv.bias[removed] = 0.0
        if block.bn.affine:
            block.bn.weight[removed] = 0.0
            block.bn.bias[removed] = 0.0


def masked_with(model: nn.Module, masks: list[torch.Tensor]) -> nn.Module:
    """A deep copy of `model` with the channels the masks remove zeroed."""
    pruned = copy.deepcopy(model)
    apply_channel_masks(find_conv_bn_blocks(pruned), masks)
    return pruned


def masked_copy(
    model: nn.Module,
    threshold: float,
    keep_fraction: float = 0.5,
    grouping: ChannelGrouping | None = None,
):
    """A deep copy of `model` with the channels below `threshold` removed; and the masks."""
    masks = channel_masks(find_conv_bn_blocks(model), threshold, keep_fraction, grouping)
    return masked_with(model, masks), masks


def largest_threshold(
    model: nn.Module,
    validation_accuracy: Callable[[nn.Module], float],
    *,
    tolerance: float,
    keep_fraction: float = 0.5,
    grouping: ChannelGrouping | None = None,
    iterations: int = 30,
) -> float:
    """The largest t (up to the bisection's resolution) whose masked model loses at most
    `tolerance` validation accuracy (absolute, e.g. 0.01 = one point) against `model` and
    keeps a channel in every block outside residual branches (the stem and projection
    shortcuts: without them a whole residual stream, hence the network's output, is gone;
    a residual branch may die whole, compression then folds it into a bias)."""
    if tolerance < 0:
        raise ParameterError(f"tolerance must be >= 0, got {tolerance}")
    reference = validation_accuracy(model)
    blocks = find_conv_bn_blocks(model)
    high = max(float(b.conv.weight.detach().abs().max()) for b in blocks)
    low = 0.0  # t = 0 keeps every channel: no drop

    stream_blocks = stream_block_indices(blocks)

    def acceptable(threshold: float) -> bool:
        pruned, masks = masked_copy(model, threshold, keep_fraction, grouping)
        if not all(bool(masks[i].any()) for i in stream_blocks):
            return False
        return reference - validation_accuracy(pruned) <= tolerance

    if acceptable(high):
        return high
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if acceptable(middle) else (low, middle)
    return low


def masks_without_lowest(
    grouping: ChannelGrouping, scores: torch.Tensor, count: int
) -> list[torch.Tensor]:
    """Channel masks removing the `count` structures of lowest score."""
    keep = torch.ones(grouping.n_groups, dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[:count]] = False
    return [keep[group] for group in grouping.group_of]


def fewest_removed(
    model: nn.Module,
    grouping: ChannelGrouping,
    scores: torch.Tensor,
    acceptable: Callable[[nn.Module, list[torch.Tensor]], bool],
    *,
    want: str,
) -> list[torch.Tensor]:
    """Masks removing the lowest-score structures, by bisection on their number: the fewest
    removed that is `acceptable` (want="fewest", for an acceptability that grows with the
    number, e.g. a MAC budget) or the most removed that is (want="most", for one that
    shrinks, e.g. an accuracy tolerance; 0 when none is). Stream blocks always keep a channel
    (stream_block_indices); with want="fewest", ParameterError when no number qualifies."""
    if want not in ("fewest", "most"):
        raise ParameterError(f"want must be 'fewest' or 'most', got {want!r}")
    stream_blocks = stream_block_indices(find_conv_bn_blocks(model))

    def streams_alive(count: int) -> bool:
        masks = masks_without_lowest(grouping, scores, count)
        return all(bool(masks[i].any()) for i in stream_blocks)

    def check(count: int) -> bool:
        masks = masks_without_lowest(grouping, scores, count)
        return acceptable(masked_with(model, masks), masks)

    low, high = 0, grouping.n_groups  # the most structures removable with streams alive
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if streams_alive(middle) else (low, middle - 1)
    low, high = 0, low
    if want == "fewest":
        if not check(high):
            raise ParameterError("no number of removed structures meets the target")
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if check(middle) else (middle + 1, high)
        return masks_without_lowest(grouping, scores, low)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if check(middle) else (low, middle - 1)
    return masks_without_lowest(grouping, scores, low)


def compressed_macs(
    masked: nn.Module, masks: list[torch.Tensor], input_shape: tuple[int, ...]
) -> int:
    """MACs of the network `compress` makes of a masked model."""
    compressed, _ = compress(masked.eval(), masks, input_shape)
    return count_macs(compressed, input_shape)
