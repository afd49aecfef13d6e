"""Size and cost of a network: parameters and multiply-accumulates (MACs).

Convention: MACs, counted with torch.utils.flop_counter (which reports FLOPs = 2 x MACs for
convolutions and matrix products), over one forward pass on one input of the given shape;
BatchNorm, activations, pooling and additions are not counted, as is usual for ResNet tables.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in the model's parameters (buffers such as BN statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass on a single input of `input_shape` (without batch dimension)."""
    parameter = next(model.parameters())
    example = torch.zeros((1, *input_shape), dtype=parameter.dtype, device=parameter.device)
    was_training = model.training
    model.eval()
    try:
        # Autograd on: under no_grad, eval-mode attention takes a fused kernel that the
        # counter does not see.
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
