"""Architectures: published parameter counts, output shapes, SPR structures found."""

import pytest
import torch

from sprkit.errors import ParameterError
from sprkit.networks import derive_structures
from sprkit.networks.architectures import build_model

# Parameter counts for 10 classes: He et al. 2016 Table 6 (0.27M, 0.46M, 0.66M, 0.85M, 1.7M),
# exact figures of the common reference implementations. Each extra block per stage adds the
# same count, so ResNet-110 (n = 18) follows from ResNet-20 and -32:
# 269,722 + 15 x (464,154 - 269,722) / 2 = 1,727,962 (1.7M as published).
PUBLISHED = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet18": 11_173_962,
    "resnet50": 23_520_842,
    # VGG-16-BN, CIFAR form: 14,728,266 with conv biases and one Linear(512, 10) head; ours
    # has no conv bias (BatchNorm follows: 4,224 fewer) and two hidden Linear(512, 512) layers
    "vgg16": 14_728_266 - 4_224 + 2 * (512 * 512 + 512),
}


@pytest.mark.parametrize("arch, count", PUBLISHED.items())
def test_parameter_counts_match_the_published_figures(arch, count):
    model = build_model(arch, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("arch", ["resnet20", "resnet18"])
def test_cifar_output_shape_and_one_structure_per_conv_channel(arch):
    model = build_model(arch, num_classes=100)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    structures = derive_structures(model, torch.zeros(2, 3, 32, 32), grouping="layer")
    assert structures.n == sum(conv.out_channels for conv in convs)


def test_digits_resnet_takes_8x8_single_channel_images():
    model = build_model("resnet-digits", num_classes=10, in_channels=1)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_unknown_architecture_is_named():
    with pytest.raises(ParameterError, match="unknown architecture 'vgg'"):
        build_model("vgg", num_classes=10)
