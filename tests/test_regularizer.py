"""The SPR regularizer on conv/BN channels against a per-channel loop."""

import numpy as np
import pytest
import torch
from torch import nn

from sprkit import spr_penalty
from sprkit.errors import ParameterError
from sprkit.networks import SPRRegularizer, find_conv_bn_blocks


def _net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, bias=True),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(5),
    ).double()
    model(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    with torch.no_grad():  # non-trivial BN parameters
        for module in model:
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model


def _loop_penalty(model, lam, alpha, M_scale):
    """Straightforward: one channel at a time, M from the block's largest |value|."""
    total, count = 0.0, 0
    for block in find_conv_bn_blocks(model):
        channels = [
            torch.cat([t[c] for t in block.tensors()]) for c in range(block.conv.out_channels)
        ]
        M = M_scale * max(float(ch.detach().abs().max()) for ch in channels)
        for channel in channels:
            z = spr_penalty(channel[None], lam=lam, alpha=alpha, M=M)[0]
            total = total + channel.numel() * z
            count += channel.numel()
    return total / count


def test_blocks_pair_each_conv_with_its_batchnorm():
    blocks = find_conv_bn_blocks(_net())
    assert [(b.conv_name, b.bn_name) for b in blocks] == [("0", "1"), ("3", "4")]
    assert [b.scalars_per_channel for b in blocks] == [3 * 9 + 2, 6 * 9 + 1 + 2]


@pytest.mark.parametrize("M_scale", [1.0, 0.3])  # 0.3: many channels beyond the box
def test_penalty_and_gradient_match_the_per_channel_loop(M_scale):
    model = _net()
    regularizer = SPRRegularizer(model, lam=0.7, alpha=0.4, M_scale=M_scale)
    value = regularizer()
    value.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    expected = _loop_penalty(model, 0.7, 0.4, M_scale)
    expected.backward()
    expected_grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-14)


def test_M_is_fixed_from_the_reference_model():
    model = _net()
    regularizer = SPRRegularizer(model, lam=1.0, alpha=0.5)
    before = regularizer.M.clone()
    with torch.no_grad():
        model[0].weight.mul_(10.0)
    assert torch.equal(regularizer.M, before)
    assert regularizer().item() > 0


def test_bad_settings_raise_named_errors():
    with pytest.raises(ParameterError, match="alpha"):
        SPRRegularizer(_net(), lam=1.0, alpha=1.0)
    with pytest.raises(ParameterError, match="M_scale"):
        SPRRegularizer(_net(), lam=1.0, alpha=0.5, M_scale=0.0)
    zeroed = _net()
    with torch.no_grad():
        for parameter in zeroed[3:5].parameters():
            parameter.zero_()
    with pytest.raises(ParameterError, match="all-zero"):
        SPRRegularizer(zeroed, lam=1.0, alpha=0.5)
    with pytest.raises(ParameterError, match="no Conv2d"):
        SPRRegularizer(nn.Sequential(nn.Linear(3, 2)), lam=1.0, alpha=0.5)
