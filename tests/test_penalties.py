"""Penalties over structures against straightforward per-channel loops."""

import numpy as np
import pytest
import torch
from torch import nn

from sprkit import spr_penalty
from sprkit.errors import ParameterError
from sprkit.networks import derive_structures
from sprkit.networks.penalties import (
    BatchNormL1Penalty,
    GroupLassoPenalty,
    SPRPenalty,
    structure_scores,
)


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
        nn.Linear(64, 5),
    ).double()
    with torch.no_grad():  # non-trivial BN parameters
        for module in model:
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model


def _channels(model):
    """(values of one output channel: conv weights, bias, BN scale and shift; block M) for
    every conv channel, written out by hand for this network."""
    result = []
    for conv, bn in ((model[0], model[1]), (model[3], model[4])):
        tensors = [conv.weight.flatten(1)]
        if conv.bias is not None:
            tensors.append(conv.bias[:, None])
        tensors += [bn.weight[:, None], bn.bias[:, None]]
        M = max(float(t.detach().abs().max()) for t in tensors)
        rows = torch.cat(tensors, dim=1)
        result += [(rows[c], M) for c in range(conv.out_channels)]
    return result


def _structures(model):
    return derive_structures(model, torch.zeros(2, 3, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("M_scale", [1.0, 0.3])  # 0.3: many channels beyond the box
def test_spr_penalty_and_gradient_match_the_per_channel_loop(M_scale):
    model = _net()
    penalty = SPRPenalty(model, _structures(model), lam=0.7, alpha=0.4, M_scale=M_scale)
    value = penalty()
    value.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    total, count = 0.0, 0
    for values, M in _channels(model):
        z = spr_penalty(values[None], lam=0.7, alpha=0.4, M=M_scale * M)[0]
        total, count = total + values.numel() * z, count + values.numel()
    expected = total / count
    expected.backward()
    expected_grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-14)


def test_competitor_penalties_and_scores_match_the_loop():
    model = _net()
    structures = _structures(model)
    channels = _channels(model)
    sizes = torch.tensor([float(v.numel()) for v, _ in channels], dtype=torch.float64)
    norms = torch.stack([v.detach().norm() for v, _ in channels])
    expected = 0.7 * (sizes.sqrt() * norms).sum() / sizes.sum()
    assert GroupLassoPenalty(model, structures, lam=0.7)().item() == pytest.approx(
        expected.item(), rel=1e-12
    )
    gammas = torch.cat([model[1].weight, model[4].weight]).detach().abs()
    assert BatchNormL1Penalty(model, structures, lam=0.2)().item() == pytest.approx(
        0.2 * float(gammas.sum()), rel=1e-12
    )
    # structures come in graph order: compare the multisets
    assert torch.allclose(structure_scores(model, structures, "spr").sort()[0], norms.sort()[0])
    scores = structure_scores(model, structures, "bn_l1").sort()[0]
    assert torch.allclose(scores, gammas.sort()[0])


def test_M_is_fixed_from_the_reference_model():
    model = _net()
    penalty = SPRPenalty(model, _structures(model), lam=1.0, alpha=0.5)
    before = penalty.M.clone()
    with torch.no_grad():
        model[0].weight.mul_(10.0)
    assert torch.equal(penalty.M, before)
    assert penalty().item() > 0


def test_bad_settings_raise_named_errors():
    model = _net()
    structures = _structures(model)
    with pytest.raises(ParameterError, match="alpha"):
        SPRPenalty(model, structures, lam=1.0, alpha=1.0)
    with pytest.raises(ParameterError, match="M_scale"):
        SPRPenalty(model, structures, lam=1.0, alpha=0.5, M_scale=0.0)
    with pytest.raises(ParameterError, match="lam"):
        GroupLassoPenalty(model, structures, lam=-1.0)
    zeroed = _net()
    with torch.no_grad():
        for parameter in zeroed[3:5].parameters():
            parameter.zero_()
    with pytest.raises(ParameterError, match="all-zero"):
        SPRPenalty(zeroed, _structures(zeroed), lam=1.0, alpha=0.5)


def test_bn_l1_reads_groupnorm_scales_too():
    """Network slimming's |gamma| over a GroupNorm's scales (it refused a GroupNorm model);
    a structure holding a whole GroupNorm group scores the mean |gamma| of its channels."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.GroupNorm(2, 8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 2),
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-2.0, 2.0, 8))
    structures = derive_structures(model, torch.zeros(2, 3, 8, 8))
    gammas = model[1].weight.detach().abs().double()
    assert BatchNormL1Penalty(model, structures, lam=0.5)().item() == pytest.approx(
        0.5 * float(gammas.sum()),
        rel=1e-6,  # summed in float32
    )
    scores = structure_scores(model, structures, "bn_l1")
    first = [j for j, layer in enumerate(structures.layer) if layer == "0"]
    expected = sorted([float(gammas[:4].mean()), float(gammas[4:].mean())])
    assert sorted(float(scores[j]) for j in first) == pytest.approx(expected, rel=1e-12)
