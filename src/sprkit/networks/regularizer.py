"""The SPR regularizer for convolutional networks.

Channels: one output channel of a Conv2d together with the scale and shift of the BatchNorm2d
that normalizes it (and the conv bias, if any). A structure is a set of channels kept or
removed together: one channel (the paper's per-layer grouping, the default here) or a coupled
group of sprkit.networks.grouping; n_g is its number of scalars. The penalty is

    R(W) = sum_g n_g z(w_g) / sum_g n_g,

z the training form of sprkit.formula (y* = 1 beyond the box) in the paper's (lam, alpha, M)
parametrization. M per conv-BN block = M_scale x the largest |value| in the block, read once
from a reference (dense) model and then fixed; a structure spanning blocks takes the largest
of their M. The loss adds lam * R(W). Per-channel reductions take one matrix per block, and
the closed form is evaluated once for all structures together (no loop over channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.formula import resolve_lambdas, spr_from_reductions

if TYPE_CHECKING:
    from sprkit.networks.grouping import ChannelGrouping


@dataclass(frozen=True)
class ChannelBlock:
    """A Conv2d and the BatchNorm2d right after it (module names in the model)."""

    conv_name: str
    bn_name: str
    conv: nn.Conv2d
    bn: nn.BatchNorm2d

    def tensors(self) -> list[torch.Tensor]:
        """The per-channel parameter tensors, each with the channel as first dimension."""
        parts = [self.conv.weight.flatten(1)]
        if self.conv.bias is not None:
            parts.append(self.conv.bias[:, None])
        if self.bn.affine:
            parts += [self.bn.weight[:, None], self.bn.bias[:, None]]
        return parts

    def channel_reductions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per output channel: sum of squares and largest |value| over the channel's scalars
        (one matrix per block: two reductions instead of two per parameter tensor)."""
        rows = torch.cat(self.tensors(), dim=1)
        return (rows * rows).sum(dim=1), rows.abs().amax(dim=1)

    @property
    def scalars_per_channel(self) -> int:
        return sum(part.shape[1] for part in self.tensors())


def find_conv_bn_blocks(model: nn.Module) -> list[ChannelBlock]:
    """Conv2d layers directly followed (in registration order) by a BatchNorm2d over the
    same channels: the paper's one-group-per-channel structures."""
    blocks = []
    previous: tuple[str, nn.Module] | None = None
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.BatchNorm2d)
            and previous is not None
            and isinstance(previous[1], nn.Conv2d)
            and previous[1].out_channels == module.num_features
        ):
            blocks.append(ChannelBlock(previous[0], name, previous[1], module))
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            previous = (name, module)
    return blocks


class SPRRegularizer:
    """lam * R(W) for the conv/BN channels of `model`, with M fixed from the model as it is
    now (call it on the dense reference model). `grouping` (sprkit.networks.grouping) says
    which channels form one structure; by default each channel is one (the paper's). A
    structure spanning several blocks gets the largest of their M."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lam: float,
        alpha: float,
        M_scale: float = 1.0,
        grouping: ChannelGrouping | None = None,
    ) -> None:
        self.lam0, self.lam2 = resolve_lambdas(lam=lam, alpha=alpha)
        if not M_scale > 0:
            raise ParameterError(f"M_scale must be > 0, got {M_scale}")
        self.blocks = find_conv_bn_blocks(model)
        if not self.blocks:
            raise ParameterError("no Conv2d + BatchNorm2d block found: nothing to regularize")
        device = self.blocks[0].conv.weight.device
        counts = [block.conv.out_channels for block in self.blocks]
        if grouping is None:
            self.group_index = torch.arange(sum(counts), device=device)
            self.n_groups = sum(counts)
        else:
            self.group_index = grouping.flat().to(device)
            self.n_groups = grouping.n_groups
        with torch.no_grad():
            block_M = [M_scale * block.channel_reductions()[1].max() for block in self.blocks]
        channel_M = torch.cat([m.expand(n) for m, n in zip(block_M, counts, strict=True)])
        self.M = self._group_max(channel_M.to(device))
        if not bool((self.M > 0).all()):
            raise ParameterError("a Conv2d+BatchNorm2d block has all-zero parameters: M would be 0")
        channel_scalars = torch.cat(
            [
                torch.full((n,), float(b.scalars_per_channel), device=device)
                for b, n in zip(self.blocks, counts, strict=True)
            ]
        )
        self.scalars = channel_scalars.new_zeros(self.n_groups).index_add(
            0, self.group_index, channel_scalars
        )

    def _group_max(self, channel_values: torch.Tensor) -> torch.Tensor:
        return channel_values.new_zeros(self.n_groups).scatter_reduce(
            0, self.group_index, channel_values, reduce="amax", include_self=True
        )

    def group_values(self) -> torch.Tensor:
        """z (training form) of every structure, by group id."""
        reductions = [block.channel_reductions() for block in self.blocks]
        channel_sq_norm = torch.cat([r[0] for r in reductions])
        sq_norm = channel_sq_norm.new_zeros(self.n_groups).index_add(
            0, self.group_index, channel_sq_norm
        )
        max_abs = self._group_max(torch.cat([r[1] for r in reductions]))
        M = self.M.to(dtype=sq_norm.dtype)
        return spr_from_reductions(
            sq_norm, max_abs, lam0=self.lam0, lam2=self.lam2, M=M, outside="train", check_M=False
        ).value

    def __call__(self) -> torch.Tensor:
        """lam * R(W), differentiable. lam is already inside lam0 = lam (1 - alpha) and
        lam2 = lam alpha, so this is the n_g-weighted mean of the structures' z."""
        values = self.group_values()
        weights = self.scalars.to(dtype=values.dtype)
        return (weights * values).sum() / weights.sum()
