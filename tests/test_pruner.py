"""SPRPruner end to end on models written outside the project: penalty, prune, compress,
save, load (weights_only), with the compression identity; its rules and its errors."""

import pytest
import torch
from torch import nn
from zoo import ZOO, randomize

import sprkit
from sprkit.errors import ParameterError
from sprkit.networks import SPRPruner, load_compressed
from sprkit.networks.measure import count_macs, count_parameters


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_goes_through_the_pruner_end_to_end(name, tmp_path):
    fn, shape = ZOO[name]
    torch.manual_seed(0)
    model = randomize(fn(), seed=7)
    pruner = SPRPruner(model, torch.zeros(2, *shape), lam=0.5, alpha=0.5, M_scale=1.0)
    model.train()
    loss = model(torch.randn(4, *shape)).square().mean() + pruner.penalty()
    loss.backward()  # the penalty is differentiable through every structure
    assert pruner.penalty().item() > 0
    assert all(
        p.grad is not None and bool(p.grad.abs().sum() > 0)
        for p in pruner.structures.parameters_of(model)
    )
    model.eval()
    dense_macs, dense_parameters = pruner.macs(), pruner.parameter_count()
    keep = pruner.prune(fraction=0.5)
    assert int((~keep).sum()) >= pruner.structures.n // 2 - len(pruner.structures.units)
    small = pruner.save(tmp_path / "net")
    loaded, description = load_compressed(tmp_path / "net", fn)
    inputs = torch.randn(8, *shape)
    with torch.no_grad():
        expected, got, reloaded = model(inputs), small(inputs), loaded(inputs)
    scale = float(expected.abs().max())
    assert float((expected - got).abs().max()) <= 1e-5 * scale
    assert torch.equal(got, reloaded)
    assert count_macs(small, shape) == pruner.macs() < dense_macs
    assert count_parameters(loaded) == pruner.parameter_count() < dense_parameters
    assert description["input_shape"] == list(shape)


def test_threshold_rule_and_mac_budget_through_the_pruner():
    fn, shape = ZOO["vgg16_bn"]
    model = randomize(fn(), seed=8)
    pruner = SPRPruner(model, torch.zeros(2, *shape), ignored_layers=[model.classifier[-1]])
    full = pruner.macs()
    pruner.prune(target_macs=full // 2)
    assert pruner.macs() <= full // 2
    inputs = torch.randn(16, *shape)

    def agreement(candidate):  # share of inputs classified as the reference classifies them
        with torch.no_grad():
            return float((candidate.eval()(inputs).argmax(1) == reference).double().mean())

    model2 = randomize(fn(), seed=9)
    with torch.no_grad():
        reference = model2.eval()(inputs).argmax(1)
    pruner2 = SPRPruner(model2, torch.zeros(2, *shape))
    keep = pruner2.prune(tolerance=0.25, evaluate=agreement)
    assert agreement(model2) >= 0.75 - 1e-9
    assert not bool(keep.all())


def test_masks_are_re_applied_after_an_optimizer_step():
    fn, shape = ZOO["mlp_bn1d"]
    model = randomize(fn())
    pruner = SPRPruner(model, torch.zeros(2, *shape))
    pruner.prune(fraction=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():  # a step that moves every parameter
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    assert not bool((pruner.structures.norms(model)[~pruner.keep] == 0).all())
    pruner.apply_masks()
    assert bool((pruner.structures.norms(model)[~pruner.keep] == 0).all())


def test_top_level_import_and_clear_errors():
    assert sprkit.SPRPruner is SPRPruner
    model = ZOO["mlp_bn1d"][0]()
    pruner = SPRPruner(model, torch.zeros(2, 20))
    with pytest.raises(ParameterError, match="exactly one"):
        pruner.prune()
    with pytest.raises(ParameterError, match="exactly one"):
        pruner.prune(0.5, target_macs=10)
    with pytest.raises(ParameterError, match="evaluate"):
        pruner.prune(tolerance=0.1)
    with pytest.raises(ParameterError, match="fraction"):
        pruner.prune(fraction=1.5)
    with pytest.raises(ParameterError, match="not part of the model"):
        SPRPruner(model, torch.zeros(2, 20), ignored_layers=[nn.Linear(2, 2)])
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    for not_a_list in (first, ["fc"]):
        with pytest.raises(ParameterError, match="list of modules"):
            SPRPruner(model, torch.zeros(2, 20), ignored_layers=not_a_list)
    listed = SPRPruner(model, torch.zeros(2, 20), ignored_layers=[first]).structures.n
    for same in (nn.ModuleList([first]), (layer for layer in [first])):  # read once
        assert SPRPruner(model, torch.zeros(2, 20), ignored_layers=same).structures.n == listed
    assert listed < SPRPruner(model, torch.zeros(2, 20)).structures.n
    with pytest.raises(ParameterError, match="example_inputs"):
        SPRPruner(model, [1.0, 2.0])
    with pytest.raises(ParameterError, match="grouping"):
        SPRPruner(model, torch.zeros(2, 20), grouping="rows")
