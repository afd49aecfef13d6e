"""Torch-Pruning's GroupNormPruner as the tp_group_norm penalty: its gradient term and group
importance against an independent computation, its wiring into the training recipe."""

import math

import pytest
import torch
from torch import nn
from zoo import ZOO, randomize

from sprkit.data.digits import digits_image_datasets
from sprkit.errors import ParameterError
from sprkit.networks.architectures import resnet_digits
from sprkit.networks.pruner import SPRPruner
from sprkit.networks.tp_group_norm import TPGroupNormPenalty
from sprkit.networks.training import TrainConfig, train_spr


class Chain(nn.Module):
    """conv1 (with bias) - bn1 - relu - conv2 - bn2 - relu - pool - fc: two groups."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _chain_importance(model: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch-Pruning's GroupMagnitudeImportance(p=2) of the two groups, written out: per
    channel the mean over the group's three layers of its sum of squares (output rows,
    BatchNorm scale, the next layer's input columns), divided by the group's mean."""
    w1, w2, wfc = model.conv1.weight, model.conv2.weight, model.fc.weight
    first = (
        w1.flatten(1).square().sum(1)
        + model.bn1.weight.square()
        + w2.transpose(0, 1).flatten(1).square().sum(1)
    ) / 3
    second = (w2.flatten(1).square().sum(1) + model.bn2.weight.square() + wfc.square().sum(0)) / 3
    return first / first.mean(), second / second.mean()


def _factor(importance: torch.Tensor) -> torch.Tensor:
    """gamma of GroupNormPruner.regularize: 16 ** ((max s - s) / (max s - min s)), s = sqrt."""
    s = importance.sqrt()
    return 16.0 ** ((s.max() - s) / (s.max() - s.min()))


def _chain() -> Chain:
    torch.manual_seed(3)
    model = Chain()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.2, 2.0)
            bn.bias.uniform_(-0.5, 0.5)
    return model


def test_regularize_adds_torch_prunings_group_norm_term_to_the_gradients():
    model, reg = _chain(), 0.03
    pruner = SPRPruner(model, torch.zeros(2, 3, 6, 6), penalty="tp_group_norm", lam=reg)
    assert pruner.regularizes_gradients and float(pruner.penalty()) == 0.0
    model(torch.randn(4, 3, 6, 6)).sum().backward()
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    pruner.regularize()
    with torch.no_grad():
        g1, g2 = (_factor(imp) for imp in _chain_importance(model))
        w1, w2, wfc = model.conv1.weight, model.conv2.weight, model.fc.weight
        expected = {
            "conv1.weight": reg * g1[:, None, None, None] * w1,
            "bn1.weight": reg * g1 * model.bn1.weight,
            # conv2: its input columns (first group) and its output rows (second group)
            "conv2.weight": reg * (g1[None, :, None, None] + g2[:, None, None, None]) * w2,
            "bn2.weight": reg * g2 * model.bn2.weight,
            "fc.weight": reg * g2[None, :] * wfc,
        }
    for name, parameter in model.named_parameters():
        change = parameter.grad - before[name]
        wanted = expected.get(name, torch.zeros_like(change))  # biases: untouched
        assert torch.allclose(change, wanted, rtol=1e-4, atol=1e-6), name  # float32 sums


def test_scores_are_torch_prunings_importance_of_each_structure():
    model = _chain()
    pruner = SPRPruner(model, torch.zeros(2, 3, 6, 6), penalty="tp_group_norm", lam=0.01)
    first, second = _chain_importance(model)
    scores = pruner.scores()
    assert scores.shape == (pruner.structures.n,) == (11,)
    for piece in pruner.structures.slices:
        if piece.parameter in ("conv1.weight", "conv2.weight"):
            wanted = first if piece.parameter == "conv1.weight" else second
            got = scores[piece.owner]
            assert torch.allclose(got, wanted[piece.rows].double().detach(), rtol=1e-6)


def test_structures_joined_across_groups_score_by_the_mean_of_their_positions():
    # resnet-digits: the option-A shortcut links the stem's channels to the last stage's
    # first 16, so those structures join a position of each group.
    model = resnet_digits()
    torch.manual_seed(0)
    pruner = SPRPruner(model, torch.zeros(2, 1, 8, 8), penalty="tp_group_norm", lam=0.01)
    penalty = pruner.regularizer
    importance = {
        id(group): penalty.pruner.estimate_importance(group).double() for group in penalty.groups
    }
    sums = torch.zeros(pruner.structures.n, dtype=torch.float64)
    counts = torch.zeros(pruner.structures.n, dtype=torch.float64)
    names = {id(m): n for n, m in model.named_modules()}
    owner = {
        (piece.parameter, int(row)): int(structure)
        for piece in pruner.structures.slices
        for row, structure in zip(piece.rows, piece.owner, strict=True)
    }
    for group in penalty.groups:  # the root layer's rows: one structure per position
        root = names[id(group[0].dep.target.module)]
        for position, value in enumerate(importance[id(group)]):
            sums[owner[(f"{root}.weight", position)]] += value
            counts[owner[(f"{root}.weight", position)]] += 1
    assert int((counts == 2).sum()) == 16  # the linked channels
    assert torch.allclose(pruner.scores(), sums / counts)


@pytest.mark.parametrize(
    "name, grouping",
    [("mobilenetv2", "graph"), ("densenet_pre", "graph"), ("bottleneck_stage", "layer")],
)
def test_builds_scores_and_regularizes_other_models(name, grouping):
    fn, shape = ZOO[name]
    model = randomize(fn(), seed=2)
    pruner = SPRPruner(
        model, torch.zeros(2, *shape), penalty="tp_group_norm", lam=0.01, grouping=grouping
    )
    scores = pruner.scores()
    assert scores.shape == (pruner.structures.n,) and bool(torch.isfinite(scores).all())
    model(torch.randn(2, *shape)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    pruner.regularize()
    assert any(not torch.equal(p.grad, b) for p, b in zip(model.parameters(), before, strict=True))


def test_grouped_convolutions_and_loss_penalties_are_refused():
    fn, shape = ZOO["grouped_conv"]
    with pytest.raises(ParameterError, match="grouped convolutions"):
        SPRPruner(fn(), torch.zeros(2, *shape), penalty="tp_group_norm", lam=0.01)
    spr = SPRPruner(_chain(), torch.zeros(2, 3, 6, 6), lam=0.01)
    assert not spr.regularizes_gradients
    with pytest.raises(ParameterError, match="through the loss"):
        spr.regularize()


def test_training_calls_the_regularizer_after_every_penalized_step_only(tmp_path, monkeypatch):
    train, val, _ = digits_image_datasets(0)
    calls = []
    original = TPGroupNormPenalty.regularize

    def counted(self):
        calls.append(bool(self.model.training))
        original(self)

    monkeypatch.setattr(TPGroupNormPenalty, "regularize", counted)
    config = TrainConfig(
        penalized_epochs=2,
        finetune_epochs=1,
        milestones=[2],
        batch_size=128,
        lam=0.05,
        penalty="tp_group_norm",
    )
    torch.manual_seed(0)
    pruner = train_spr(resnet_digits(), train, val, config, tmp_path)
    assert len(calls) == 2 * math.ceil(len(train) / 128) and all(calls)
    assert not bool(pruner.keep.all())  # pruned by Torch-Pruning's importance ranking
