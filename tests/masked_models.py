"""Masked test networks: random structures removed, one residual branch dead."""

import torch

from sprkit.networks import find_conv_bn_blocks
from sprkit.networks.architectures import build_model
from sprkit.networks.grouping import make_grouping
from sprkit.networks.pruning import apply_channel_masks


def input_shape(arch: str) -> tuple[int, int, int]:
    return (1, 8, 8) if arch == "resnet-digits" else (3, 32, 32)


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial statistics, scales and shifts, so dead branches have non-zero constants."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(1.0, 2.0)
            module.weight.data.uniform_(0.3, 1.0)
            module.bias.data.uniform_(-0.5, 0.5)


def masked_model(arch: str, kind: str, seed: int = 0):
    """A model with ~half its structures removed and the first block's conv1 removed whole."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes=10, in_channels=input_shape(arch)[0])
    randomize_batchnorm(model)
    grouping = make_grouping(model, kind, input_shape(arch))
    keep = torch.rand(grouping.n_groups) > 0.5
    masks = [keep[group] for group in grouping.group_of]
    blocks = find_conv_bn_blocks(model)
    first_inner = [b.conv_name for b in blocks].index("layers.0.conv1")
    masks[first_inner][:] = False
    apply_channel_masks(blocks, masks)
    return model.eval(), masks
