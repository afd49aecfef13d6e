"""Physical compression: cut the removed structures out of a masked ResNet.

Input: a masked model (removed channels have zero conv weights, bias, BatchNorm scale and
shift, so they output exactly 0; sprkit.networks.pruning) and its channel masks. Steps:
1. Dead residual branches: a block whose branch contains a conv with every channel removed
   computes a branch output that no longer depends on its input (a constant per channel: the
   BatchNorm shift of the layers after the dead one, through their activations). The block
   becomes ShortcutBlock, relu(shortcut(x) + bias), with that constant folded into `bias`.
2. Channels: Torch-Pruning's dependency graph of the (dead-branch-free) model gives the
   coupled groups; position k of a group is cut, in every layer of the group, when it carries
   exactly zero in the masked model: every conv-BN member channel removed, every folded bias
   zero there, and every option-A shortcut output there either a zero channel or the copy of
   an input channel that is itself cut. Channels tied to a kept one stay (as zeros).
The compressed network computes the same function as the masked one (up to float rounding).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sprkit.errors import ParameterError
from sprkit.networks.architectures import (
    BasicBlock,
    Bottleneck,
    ResidualBias,
    ShortcutBlock,
    ZeroPadShortcut,
)
from sprkit.networks.grouping import dependency_graph
from sprkit.networks.regularizer import find_conv_bn_blocks


@dataclass(frozen=True)
class Compression:
    """What was cut: kept output channels (original indices) of every conv, dead blocks."""

    kept_channels: dict[str, list[int]]
    dead_blocks: list[int]


def _block_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """The input of every residual block on one zero example (to size the dead branches)."""
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda _module, args, index=index: captured.__setitem__(index, args[0])
        )
        for index, block in enumerate(model.layers)
    ]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=parameter.dtype, device=parameter.device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _remove_dead_branches(
    model: nn.Module, kept: dict[str, torch.Tensor], input_shape: tuple[int, ...]
) -> list[int]:
    """Replace every block whose branch has a fully removed conv by a ShortcutBlock."""
    inputs = _block_inputs(model, input_shape)
    dead = []
    for index, block in enumerate(model.layers):
        if not isinstance(block, (BasicBlock, Bottleneck)):
            continue
        convs = [f"layers.{index}.{name}" for name in ("conv1", "conv2", "conv3")]
        if not any(name in kept and not bool(kept[name].any()) for name in convs):
            continue
        with torch.no_grad():
            constant = block.branch(inputs[index])[0]
        bias = constant.mean(dim=(1, 2))
        # Constant up to the rounding of the 1x1 convs that follow the dead layer.
        scale = float(bias.abs().max()) + 1.0
        if float((constant - bias[:, None, None]).abs().max()) > 1e-5 * scale:
            raise ParameterError(f"dead branch of block {index} is not spatially constant")
        replacement = ShortcutBlock(block.shortcut, len(bias)).to(bias)
        with torch.no_grad():
            replacement.branch_bias.bias.copy_(bias)
        model.layers[index] = replacement
        dead.append(index)
    return dead


def _carries_zero(
    dependency: tp.Dependency,
    index: int,
    kept: dict[str, torch.Tensor],
    names: dict[int, str],
    cut_inputs: dict[int, set[int]],
) -> bool:
    """Whether what the dependency prunes at `index` is exactly zero in the masked model
    (input-side members carry nothing of their own)."""
    module = dependency.target.module
    if dependency.handler.__name__ != "prune_out_channels":
        return True
    if isinstance(module, nn.Conv2d):
        return not bool(kept[names[id(module)]][index])
    if isinstance(module, ResidualBias):
        return float(module.bias.detach()[index]) == 0.0
    if isinstance(module, ZeroPadShortcut):
        source = int(module.source[index])
        return source < 0 or source in cut_inputs.get(id(module), set())
    return True  # BatchNorm (zero with its conv), activations, additions


def compress(
    masked: nn.Module, masks: list[torch.Tensor], input_shape: tuple[int, ...]
) -> tuple[nn.Module, Compression]:
    """A smaller copy of `masked` (eval mode) computing the same function, and what was cut.
    `masks` are the channel masks in find_conv_bn_blocks order (True = kept)."""
    blocks = find_conv_bn_blocks(masked)
    if len(masks) != len(blocks):
        raise ParameterError(f"{len(masks)} masks for {len(blocks)} conv-BN blocks")
    kept = {b.conv_name: m.cpu().bool() for b, m in zip(blocks, masks, strict=True)}
    model = copy.deepcopy(masked).eval()
    dead = _remove_dead_branches(model, kept, input_shape)
    names = {id(module): name for name, module in model.named_modules()}
    graph = dependency_graph(model, input_shape)
    groups = list(graph.get_all_groups(root_module_types=[nn.Conv2d]))
    cut: list[set[int]] = [set() for _ in groups]
    cut_inputs: dict[int, set[int]] = {}
    changed = True
    while changed:  # option-A shortcuts make a stage's cut depend on the previous stage's
        changed = False
        for number, group in enumerate(groups):
            positions = {
                k
                for k in range(len(group[0].idxs))
                if all(
                    _carries_zero(dependency, int(idxs[k]), kept, names, cut_inputs)
                    for dependency, idxs in group
                )
            }
            if positions != cut[number]:
                cut[number], changed = positions, True
            for dependency, idxs in group:
                module = dependency.target.module
                if isinstance(module, ZeroPadShortcut) and (
                    dependency.handler.__name__ == "prune_in_channels"
                ):
                    cut_inputs[id(module)] = {int(idxs[k]) for k in positions}
    # Every channel of a surviving conv stays unless its group position is cut below (a masked
    # channel tied to a kept one stays, as zeros).
    kept_channels = {
        name: list(range(len(mask))) for name, mask in kept.items() if name in names.values()
    }
    for group, positions in zip(groups, cut, strict=True):
        if not positions:
            continue
        root = group[0].dep.target.module
        for dependency, idxs in group:
            if dependency.handler == tp.prune_conv_out_channels:
                name = names[id(dependency.target.module)]
                if len(positions) == len(idxs):
                    raise ParameterError(f"every channel of {name} would be cut")
                removed = {int(idxs[k]) for k in positions}
                original = [i for i in range(len(kept[name])) if i not in removed]
                kept_channels[name] = original
        root_idxs = sorted(int(group[0].idxs[k]) for k in positions)
        graph.get_pruning_group(root, tp.prune_conv_out_channels, root_idxs).prune()
    return model, Compression(kept_channels, dead)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of `model` (eval mode) with every BatchNorm2d of a conv-BN block
    folded into its conv's weights and bias (torch.nn.utils.fusion) and replaced by Identity:
    the same function with fewer passes over memory, as deployed networks run."""
    folded = copy.deepcopy(model).eval()
    for block in find_conv_bn_blocks(folded):
        for name, replacement in (
            (block.conv_name, fuse_conv_bn_eval(block.conv, block.bn)),
            (block.bn_name, nn.Identity()),
        ):
            parent, _, child = name.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, child, replacement)
    return folded
