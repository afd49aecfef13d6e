"""MACs and parameters against a count from layer shapes (forward hooks)."""

import pytest
import torch
from torch import nn

from sprkit.networks.architectures import build_model
from sprkit.networks.measure import count_macs, count_parameters


def _macs_from_shapes(model, input_shape):
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * kernel

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    hooks = [
        m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]
    hooks += [
        m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for hook in hooks:
        hook.remove()
    return total


@pytest.mark.parametrize(
    "arch, shape",
    [("resnet-digits", (1, 8, 8)), ("resnet20", (3, 32, 32)), ("resnet18", (3, 32, 32))],
)
def test_macs_equal_the_count_from_layer_shapes(arch, shape):
    model = build_model(arch, num_classes=10, in_channels=shape[0])
    assert count_macs(model, shape) == _macs_from_shapes(model, shape)


def test_resnet20_matches_the_usual_figure_and_training_mode_is_restored():
    model = build_model("resnet20", num_classes=10)
    model.train()
    macs = count_macs(model, (3, 32, 32))
    assert macs == pytest.approx(40.55e6, rel=0.005)  # 40.55M MACs (41M FLOPs in papers)
    assert model.training
    assert count_parameters(model) == 269_722
