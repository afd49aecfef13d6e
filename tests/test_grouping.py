"""Groupings: the dependency graph ties residual-stream channels; SPR over coupled groups."""

import torch

from sprkit import spr_penalty
from sprkit.networks import SPRRegularizer, find_conv_bn_blocks
from sprkit.networks.architectures import ZeroPadShortcut, build_model
from sprkit.networks.grouping import CUSTOM_PRUNERS, graph_grouping, layer_grouping
from sprkit.networks.pruning import channel_masks


def test_graph_grouping_ties_the_residual_stream_of_each_stage():
    model = build_model("resnet20", num_classes=10)
    grouping = graph_grouping(model, (3, 32, 32))
    group_of = {
        b.conv_name: g for b, g in zip(find_conv_bn_blocks(model), grouping.group_of, strict=True)
    }
    # Stage 1 (16 channels): the stem and the three blocks' second convs write one stream.
    for block in range(3):
        assert torch.equal(group_of[f"layers.{block}.conv2"], group_of["conv1"])
    # Option-A shortcuts copy stream channel j into the next stage's channel j: those channels
    # form one structure; the channels a stage adds are structures of that stage alone.
    stage2, stage3 = group_of["layers.3.conv2"], group_of["layers.6.conv2"]
    assert torch.equal(stage2[:16], group_of["conv1"])
    assert torch.equal(stage3[:32], stage2)
    assert torch.equal(group_of["layers.5.conv2"], stage2)
    assert len(set(stage3.tolist())) == 64
    # Inner convs are structures of their own, one per channel.
    inner = torch.cat([group_of[f"layers.{i}.conv1"] for i in range(9)])
    assert len(set(inner.tolist())) == len(inner)
    assert grouping.n_groups == 64 + 3 * (16 + 32 + 64)
    channels = sum(b.conv.out_channels for b in find_conv_bn_blocks(model))
    assert layer_grouping(model).n_groups == channels


def test_regularizer_over_coupled_groups_equals_a_per_structure_sum():
    torch.manual_seed(0)
    model = build_model("resnet-digits", num_classes=10, in_channels=1).double()
    grouping = graph_grouping(model, (1, 8, 8))
    regularizer = SPRRegularizer(model, lam=0.3, alpha=0.4, M_scale=2.0, grouping=grouping)
    blocks = find_conv_bn_blocks(model)
    block_M = [2.0 * max(float(t.detach().abs().max()) for t in b.tensors()) for b in blocks]
    total, scalars = 0.0, 0
    for group in range(grouping.n_groups):
        members = [
            (index, channel)
            for index, ids in enumerate(grouping.group_of)
            for channel in torch.nonzero(ids == group).flatten().tolist()
        ]
        values = torch.cat([torch.cat([t[c] for t in blocks[i].tensors()]) for i, c in members])
        M = max(block_M[i] for i, _ in members)
        total = total + len(values) * spr_penalty(values[None], lam=0.3, alpha=0.4, M=M)[0]
        scalars += len(values)
    assert torch.allclose(regularizer(), total / scalars, rtol=1e-12)


def test_masks_follow_the_surviving_share_of_each_structure():
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10)
    grouping = graph_grouping(model, (3, 32, 32))
    blocks = find_conv_bn_blocks(model)
    threshold = float(torch.cat([b.conv.weight.detach().flatten().abs() for b in blocks]).median())
    masks = channel_masks(blocks, threshold, 0.5, grouping)
    surviving: dict[int, int] = {}
    total: dict[int, int] = {}
    for block, ids in zip(blocks, grouping.group_of, strict=True):
        weights = block.conv.weight.detach().flatten(1).abs()
        for channel, group in enumerate(ids.tolist()):
            surviving[group] = surviving.get(group, 0) + int((weights[channel] >= threshold).sum())
            total[group] = total.get(group, 0) + weights.shape[1]
    kept = {group: surviving[group] / total[group] >= 0.5 for group in total}
    assert 0 < sum(kept.values()) < len(kept)  # the test removes some structures, keeps some
    for ids, mask in zip(grouping.group_of, masks, strict=True):
        assert mask.tolist() == [kept[group] for group in ids.tolist()]


def test_option_a_shortcut_pruner_renumbers_its_source_channels():
    shortcut = ZeroPadShortcut(4, 8, stride=2)
    pruner = CUSTOM_PRUNERS[ZeroPadShortcut]
    pruner.prune_in_channels(shortcut, [1, 2])
    assert shortcut.source.tolist() == [0, -1, -1, 1, -1, -1, -1, -1]
    assert pruner.get_in_channels(shortcut) == 2
    pruner.prune_out_channels(shortcut, [1, 4, 5])
    assert shortcut.source.tolist() == [0, -1, 1, -1, -1]
    x = torch.randn(2, 2, 4, 4)
    out = shortcut(x)
    assert torch.equal(out[:, 0], x[:, 0, ::2, ::2]) and torch.equal(out[:, 2], x[:, 1, ::2, ::2])
    assert not out[:, [1, 3, 4]].any()
