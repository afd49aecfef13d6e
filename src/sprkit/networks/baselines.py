"""Competitor penalties run through the same pipeline as SPR, for comparisons.

- group lasso: lam * sum_g sqrt(n_g) ||w_g||_2 / sum_g n_g over the same structures as SPR
  (normalized like R so that lam scales alike);
- network slimming (Liu et al. 2017): lam * sum |gamma| over every BatchNorm scale.
Both return a differentiable scalar when called, like SPRRegularizer.
"""

from __future__ import annotations

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.grouping import ChannelGrouping
from sprkit.networks.regularizer import find_conv_bn_blocks

PENALTIES = ("spr", "group_lasso", "bn_l1")


class GroupLassoRegularizer:
    """lam * sum_g sqrt(n_g) ||w_g||_2 / sum_g n_g (structures of `grouping`)."""

    def __init__(self, model: nn.Module, *, lam: float, grouping: ChannelGrouping) -> None:
        if not lam >= 0:
            raise ParameterError(f"lam must be >= 0, got {lam}")
        self.lam = lam
        self.blocks = find_conv_bn_blocks(model)
        self.group_index = grouping.flat().to(self.blocks[0].conv.weight.device)
        self.n_groups = grouping.n_groups
        scalars = torch.cat(
            [torch.full((b.conv.out_channels,), float(b.scalars_per_channel)) for b in self.blocks]
        ).to(self.group_index.device)
        self.scalars = scalars.new_zeros(self.n_groups).index_add(0, self.group_index, scalars)

    def __call__(self) -> torch.Tensor:
        channel_sq = torch.cat([b.channel_reductions()[0] for b in self.blocks])
        group_sq = channel_sq.new_zeros(self.n_groups).index_add(0, self.group_index, channel_sq)
        # sqrt is not differentiable at 0: a tiny floor keeps gradients finite there.
        norms = torch.sqrt(group_sq + 1e-24)
        scalars = self.scalars.to(norms.dtype)
        return self.lam * (scalars.sqrt() * norms).sum() / scalars.sum()


class BatchNormL1Regularizer:
    """lam * sum of |gamma| over the BatchNorm scales of the conv-BN blocks."""

    def __init__(self, model: nn.Module, *, lam: float) -> None:
        if not lam >= 0:
            raise ParameterError(f"lam must be >= 0, got {lam}")
        self.lam = lam
        self.blocks = find_conv_bn_blocks(model)

    def __call__(self) -> torch.Tensor:
        return self.lam * sum(b.bn.weight.abs().sum() for b in self.blocks)


def structure_scores(model: nn.Module, grouping: ChannelGrouping, penalty: str) -> torch.Tensor:
    """Importance of each structure as the method that trained it sees it: the l2 norm of
    the structure's scalars (spr, group_lasso), the mean |gamma| of its channels (bn_l1)."""
    blocks = find_conv_bn_blocks(model)
    index = grouping.flat()
    with torch.no_grad():
        if penalty == "bn_l1":
            gammas = torch.cat([b.bn.weight.detach().abs().cpu() for b in blocks])
            totals = gammas.new_zeros(grouping.n_groups).index_add(0, index, gammas)
            counts = torch.bincount(index, minlength=grouping.n_groups).to(gammas)
            return totals / counts
        channel_sq = torch.cat([b.channel_reductions()[0].cpu() for b in blocks])
        return channel_sq.new_zeros(grouping.n_groups).index_add(0, index, channel_sq).sqrt()
