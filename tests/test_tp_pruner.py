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


def test_a_transposed_convs_output_channels_are_ranked_by_their_own_weights():
    """A transposed conv's output channel k is weight[:, k]: the step removes the channel
    whose weights are zero, not the one whose input row weight[k] is (it kept output 2 and
    removed output 7 when the importance read dimension 0)."""

    class Upsampler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.up, self.bn = torch.nn.ConvTranspose2d(16, 8, 2, 2), torch.nn.BatchNorm2d(8)
            self.head = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x):
            relu = torch.nn.functional.relu
            return self.head(relu(self.bn(self.up(relu(self.conv(x))))))

    torch.manual_seed(0)
    model = Upsampler().eval()
    with torch.no_grad():
        model.up.bias.zero_()
        model.up.weight[:, 2] = 0.0  # output channel 2: only its BatchNorm rows are left
        model.up.weight[2, :] = 1.0  # input row 2: large
        model.bn.running_var.copy_(torch.arange(8.0) + 1)  # tags the output channels
    pruner = SPRTorchPruner(
        model, torch.randn(2, 3, 8, 8), ignored_layers=[model.head], pruning_ratio=0.125
    )
    pruner.step()
    assert model.up.out_channels == 7
    assert (model.bn.running_var - 1).int().tolist() == [0, 1, 3, 4, 5, 6, 7]
