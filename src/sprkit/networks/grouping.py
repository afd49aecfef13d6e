"""Which output channels form one SPR structure, and which must be pruned together.

Two groupings over the Conv2d + BatchNorm2d channels of sprkit.networks.regularizer:
- "layer": the paper's, one structure per channel of each conv-BN block;
- "graph": the coupled groups of Torch-Pruning's dependency graph, so that channels tied by
  residual additions (every block writing into the same residual-stream channel, the stem,
  projection shortcuts) form one structure and are kept or removed together.

A grouping is stored as one long tensor per block (in find_conv_bn_blocks order) mapping the
block's channels to group ids 0..n_groups-1, so it applies to any copy of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.architectures import ResidualBias, ZeroPadShortcut
from sprkit.networks.regularizer import find_conv_bn_blocks

GROUPINGS = ("graph", "layer")


class _ZeroPadShortcutPruner(tp.pruner.function.BasePruningFunc):
    """Option-A shortcut: inputs and outputs are pruned separately (they are not coupled,
    as they would be for an element-wise op); pruning renumbers the `source` buffer."""

    TARGET_MODULES = ZeroPadShortcut

    def prune_out_channels(self, layer: ZeroPadShortcut, idxs: Sequence[int]) -> ZeroPadShortcut:
        keep = torch.ones(len(layer.source), dtype=torch.bool, device=layer.source.device)
        keep[list(idxs)] = False
        layer.source = layer.source[keep]
        return layer

    def prune_in_channels(self, layer: ZeroPadShortcut, idxs: Sequence[int]) -> ZeroPadShortcut:
        source = layer.source
        removed = torch.as_tensor(sorted(idxs), dtype=torch.long, device=source.device)
        shift = torch.searchsorted(removed, source.clamp(min=0))  # removed inputs below
        dropped = torch.isin(source, removed)
        layer.source = torch.where((source < 0) | dropped, -1, source - shift)
        layer.inputs = layer.inputs - len(removed)
        return layer

    def get_out_channels(self, layer: ZeroPadShortcut) -> int:
        return len(layer.source)

    def get_in_channels(self, layer: ZeroPadShortcut) -> int:
        return int(layer.inputs)


class _ResidualBiasPruner(tp.pruner.function.BasePruningFunc):
    """Per-channel bias: input and output channels are the same channels."""

    TARGET_MODULES = ResidualBias

    def prune_out_channels(self, layer: ResidualBias, idxs: Sequence[int]) -> ResidualBias:
        keep = torch.ones(len(layer.bias), dtype=torch.bool, device=layer.bias.device)
        keep[list(idxs)] = False
        layer.bias = nn.Parameter(layer.bias.data[keep].clone())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: ResidualBias) -> int:
        return len(layer.bias)

    get_in_channels = get_out_channels


CUSTOM_PRUNERS = {ZeroPadShortcut: _ZeroPadShortcutPruner(), ResidualBias: _ResidualBiasPruner()}


def dependency_graph(model: nn.Module, input_shape: tuple[int, ...]) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of `model` traced on one zero input of `input_shape`
    (channels, height, width), with sprkit's shortcut modules registered."""
    parameter = next(model.parameters())
    example = torch.zeros((1, *input_shape), dtype=parameter.dtype, device=parameter.device)
    was_training = model.training
    try:
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=example, customized_pruners=CUSTOM_PRUNERS
        )
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class ChannelGrouping:
    """group_of[b][c] = the structure of channel c of conv-BN block b; ids 0..n_groups-1."""

    kind: str
    group_of: tuple[torch.Tensor, ...]
    n_groups: int

    def flat(self) -> torch.Tensor:
        """Group id of every channel of every block, concatenated in block order."""
        return torch.cat(self.group_of)


def layer_grouping(model: nn.Module) -> ChannelGrouping:
    """The paper's grouping: each conv-BN channel is its own structure."""
    blocks = find_conv_bn_blocks(model)
    group_of, start = [], 0
    for block in blocks:
        count = block.conv.out_channels
        group_of.append(torch.arange(start, start + count))
        start += count
    return ChannelGrouping("layer", tuple(group_of), start)


def _merge_across_option_a(
    group_of: list[torch.Tensor], links: list[tuple[int, int]], n_groups: int
) -> tuple[list[torch.Tensor], int]:
    """Union the linked group ids and renumber the merged groups 0..n-1 (in the order of
    their representative ids)."""
    parent = list(range(n_groups))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for first, second in links:
        parent[root(first)] = root(second)
    roots = torch.tensor([root(node) for node in range(n_groups)])
    _, renumbered = torch.unique(roots, return_inverse=True)
    return [renumbered[g] for g in group_of], int(renumbered.max()) + 1


def graph_grouping(model: nn.Module, input_shape: tuple[int, ...]) -> ChannelGrouping:
    """Coupled groups of the dependency graph: position k of a Torch-Pruning group (one channel
    index per member layer) is one structure over every conv-BN block it prunes outputs of.
    An option-A shortcut copies input channel source[j] into output channel j, so the two
    streams' channels can only vanish together: their structures are merged into one."""
    blocks = find_conv_bn_blocks(model)
    block_of_conv = {id(block.conv): index for index, block in enumerate(blocks)}
    group_of = [torch.full((b.conv.out_channels,), -1) for b in blocks]
    graph = dependency_graph(model, input_shape)
    shortcut_side: dict[tuple[int, str, int], int] = {}  # (shortcut, in/out, channel) -> id
    shortcuts: dict[int, ZeroPadShortcut] = {}
    n_groups = 0
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d]):
        width = len(group[0].idxs)
        for dependency, idxs in group:
            module = dependency.target.module
            if isinstance(module, ZeroPadShortcut):
                side = dependency.handler.__name__.removeprefix("prune_")
                shortcuts[id(module)] = module
                for k, channel in enumerate(idxs):
                    shortcut_side[(id(module), side, int(channel))] = n_groups + k
            index = block_of_conv.get(id(module))
            if index is None or dependency.handler != tp.prune_conv_out_channels:
                continue
            if len(idxs) != width:
                raise ParameterError("dependency group with unaligned channel indices")
            group_of[index][torch.as_tensor([int(i) for i in idxs])] = torch.arange(
                n_groups, n_groups + width
            )
        n_groups += width
    if any(bool((g < 0).any()) for g in group_of):
        raise ParameterError("a conv-BN channel is in no dependency group")
    links = [
        (shortcut_side[(key, "out_channels", j)], shortcut_side[(key, "in_channels", source)])
        for key, module in shortcuts.items()
        for j, source in enumerate(module.source.tolist())
        if source >= 0
    ]
    group_of, n_groups = _merge_across_option_a(group_of, links, n_groups)
    return ChannelGrouping("graph", tuple(group_of), n_groups)


def make_grouping(model: nn.Module, kind: str, input_shape: tuple[int, ...]) -> ChannelGrouping:
    """The named grouping ("graph" or "layer") of `model`."""
    if kind == "layer":
        return layer_grouping(model)
    if kind == "graph":
        return graph_grouping(model, input_shape)
    raise ParameterError(f"unknown grouping {kind!r}; known: {', '.join(GROUPINGS)}")
