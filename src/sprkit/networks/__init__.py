"""SPR on real networks in PyTorch: structures and the regularizer (training form of z)."""

from sprkit.networks.regularizer import ChannelBlock, SPRRegularizer, find_conv_bn_blocks

__all__ = ["ChannelBlock", "SPRRegularizer", "find_conv_bn_blocks"]
