"""The Torch-Pruning pruner with the SPR regularizer, in Torch-Pruning's training loop."""

import torch
from zoo import ZOO, randomize

from sprkit.networks.penalties import SPRPenalty
from sprkit.networks.structures import derive_structures
from sprkit.networks.tp_pruner import SPRTorchPruner


def test_regularize_adds_the_spr_gradient_and_step_prunes_in_the_tp_loop():
    fn, shape = ZOO["vgg16_bn"]
    torch.manual_seed(0)
    model = randomize(fn(), seed=11).train()
    example = torch.zeros(2, *shape)
    pruner = SPRTorchPruner(
        model,
        example,
        lam=0.5,
        alpha=0.5,
        pruning_ratio=0.5,
        ignored_layers=[model.classifier[-1]],
    )
    inputs, labels = torch.randn(8, *shape), torch.randint(0, 10, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    # Independent expectation of the gradient: loss + SPR penalty, differentiated together.
    reference = SPRPenalty(model, derive_structures(model, example), lam=0.5, alpha=0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss = torch.nn.functional.cross_entropy(model(inputs), labels) + reference()
    loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.load_state_dict(state)
    optimizer.zero_grad()
    # Torch-Pruning's convention: backward, regularize, step.
    torch.nn.functional.cross_entropy(model(inputs), labels).backward()
    pruner.regularize(model)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter.grad, expected[name], rtol=1e-5, atol=1e-7), name
    optimizer.step()
    macs_before = sum(p.numel() for p in model.parameters())
    pruner.step()
    assert sum(p.numel() for p in model.parameters()) < macs_before
    assert model(torch.randn(3, *shape)).shape == (3, 10)
    assert model.classifier[-1].out_features == 10
    pruner.regularize(model)  # structures re-derived from the smaller model
