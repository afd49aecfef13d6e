"""Exact compression of any model: the compressed network computes the masked one's function
(zoo of models written outside the project, and every built-in), dead layers and branches,
refusal of what cannot be cut exactly, BatchNorm folding only along data flow, round_to."""

import pytest
import torch
from torch import nn
from zoo import ZOO, randomize

from sprkit.errors import ParameterError
from sprkit.networks import (
    CompressionError,
    SPRPruner,
    compress,
    fold_batchnorm,
    load_compressed,
    save_compressed,
)
from sprkit.networks.architectures import ARCHITECTURES, ShortcutBlock, build_model
from sprkit.networks.measure import count_macs, count_parameters

BUILT_INS = {
    arch: (
        (lambda arch=arch: build_model(arch, 10, 1 if arch == "resnet-digits" else 3)),
        (1, 8, 8) if arch == "resnet-digits" else (3, 32, 32),
    )
    for arch in ARCHITECTURES
    if not arch.endswith("-imagenet")  # the CIFAR blocks under torchvision's names, and slow
    # here: ResNet-18 in ImageNet form is cut in tests/test_architectures.py
}
MODELS = {**ZOO, **BUILT_INS}


def assert_same_function(masked, compressed, shape, seed=0):
    inputs = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected, got = masked.eval()(inputs), compressed.eval()(inputs)
    assert float((expected - got).abs().max()) <= 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("grouping", ["graph", "layer"])
@pytest.mark.parametrize("name", list(MODELS))
def test_compressed_equals_masked_after_removing_half_the_structures(name, grouping):
    fn, shape = MODELS[name]
    model = randomize(fn(), seed=1)
    pruner = SPRPruner(model, torch.zeros(2, *shape), grouping=grouping)
    pruner.prune(fraction=0.5)
    compressed = pruner.compress()
    assert_same_function(model, compressed, shape)
    assert count_parameters(compressed) < count_parameters(model)
    assert count_macs(compressed, shape) < count_macs(model, shape)


@pytest.mark.parametrize("name", ["resnet18_tv", "bottleneck_stage", "densenet_pre", "mobilenetv2"])
def test_a_layer_left_with_no_channel_keeps_one_zero_channel(name):
    fn, shape = ZOO[name]
    model = randomize(fn(), seed=2)
    pruner = SPRPruner(model, torch.zeros(2, *shape), grouping="layer")
    dead = {  # every layer writing the channels of one layer's output
        "resnet18_tv": ["layer1.0.conv1"],
        "bottleneck_stage": ["stage.1.conv2"],
        "densenet_pre": ["dense1.0.body.2"],
        "mobilenetv2": ["blocks.0.block.0", "blocks.0.block.3"],  # expansion and depthwise
    }[name]
    first_inner = dead[0]
    keep = torch.tensor([layer not in dead for layer in pruner.structures.layer])
    pruner.set_masks(keep)
    compressed = pruner.compress()
    assert_same_function(model, compressed, shape)
    assert compressed.get_submodule(first_inner).weight.shape[0] == 1
    assert pruner.compression.kept_channels[first_inner] == [0]


def test_a_dead_residual_branch_of_a_built_in_becomes_a_bias():
    model = randomize(build_model("resnet20", 10), seed=3)
    pruner = SPRPruner(model, torch.zeros(2, 3, 32, 32), grouping="layer")
    pruner.set_masks(torch.tensor([layer != "layers.0.conv1" for layer in pruner.structures.layer]))
    compressed = pruner.compress()
    assert "layers.0" in pruner.compression.replaced
    assert isinstance(compressed.layers[0], ShortcutBlock)
    assert_same_function(model, compressed, (3, 32, 32))


def test_an_operation_that_maps_zero_elsewhere_is_refused_not_cut():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Sigmoid(), nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(8, 2)
    )
    with torch.no_grad():  # channel 0 of the first conv removed: sigmoid(0) = 0.5 is read
        model[0].weight[0] = 0.0
        model[0].bias[0] = 0.0
    with pytest.raises(CompressionError, match="maps 0 to a nonzero value"):
        compress(model, torch.zeros(2, 3, 6, 6))
    # SPRPruner finds it at construction: the first conv gets no structures
    pruner = SPRPruner(model, torch.zeros(2, 3, 6, 6))
    assert [layer for layer, _ in pruner.structures.uncut] == ["0"]
    assert set(pruner.structures.layer) == {"2"}


def test_round_to_keeps_multiples_of_channels_and_the_function():
    model = randomize(ZOO["vgg16_bn"][0](), seed=4)
    pruner = SPRPruner(model, torch.zeros(2, 3, 32, 32), round_to=4)
    pruner.prune(fraction=0.4)
    compressed = pruner.compress()
    assert_same_function(model, compressed, (3, 32, 32))
    for kept in pruner.compression.kept_channels.values():
        assert len(kept) % 4 == 0


def test_ignored_layers_are_never_cut():
    model = randomize(ZOO["vgg16_bn"][0](), seed=5)
    with torch.no_grad():
        model.features[0].weight[:2] = 0.0
        model.features[1].weight[:2] = 0.0
        model.features[1].bias[:2] = 0.0
    compressed, _ = compress(model, torch.zeros(2, 3, 32, 32), ignored_layers=["features.0"])
    assert compressed.features[0].weight.shape[0] == model.features[0].weight.shape[0]
    compressed, _ = compress(model, torch.zeros(2, 3, 32, 32))
    assert compressed.features[0].weight.shape[0] == model.features[0].weight.shape[0] - 2


@pytest.mark.parametrize("name, folds", [("densenet_post", True), ("densenet_pre", False)])
def test_fold_batchnorm_folds_only_pairs_adjacent_in_data_flow(name, folds):
    """Pre-activation: a BatchNorm follows a concatenation, never its registered neighbour
    conv; nothing but the stem's pair may be folded there."""
    fn, shape = ZOO[name]
    model = randomize(fn(), seed=6)
    folded = fold_batchnorm(model, torch.zeros(2, *shape))
    assert_same_function(model, folded, shape)
    assert isinstance(folded.stem[1], nn.Identity)
    transition_bn = folded.transition[1] if folds else folded.transition[0]
    assert isinstance(transition_bn, nn.Identity) == folds


@pytest.mark.parametrize("round_to", [2.5, 0, -3, True, "4"])
def test_round_to_other_than_a_positive_integer_is_one_parameter_error(round_to):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ParameterError, match="round_to must be a positive integer"):
        SPRPruner(model, torch.zeros(2, 4), round_to=round_to)
    with pytest.raises(ParameterError, match="round_to must be a positive integer"):
        compress(model, torch.zeros(2, 4), round_to=round_to)


class PreActivationBlock(nn.Module):
    """A user's residual block with sprkit's method names but no ReLU after the addition."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, 1, 1)
        self.shortcut = nn.Identity()

    def branch(self, x):
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x):
        return self.shortcut(x) + self.branch(x)


def test_a_users_block_named_like_sprkits_is_cut_as_any_layer_not_folded():
    layers = [nn.Conv2d(3, 8, 3, 1, 1), PreActivationBlock(8), nn.Flatten(), nn.Linear(128, 4)]
    model = randomize(nn.Sequential(*layers), seed=7)
    pruner = SPRPruner(model, torch.zeros(2, 3, 4, 4), grouping="layer")
    pruner.set_masks(torch.tensor([layer != "1.conv1" for layer in pruner.structures.layer]))
    compressed = pruner.compress()
    assert isinstance(compressed[1], PreActivationBlock)
    assert_same_function(model, compressed, (3, 4, 4))
    cut = 7  # conv1 keeps one zero channel: its rows and bias, bn2's rows, conv2's columns go
    removed = cut * (8 * 9 + 1) + cut * 2 + 8 * cut * 9
    assert count_parameters(compressed) == count_parameters(model) - removed


class ReturnsAFeatureMapUntraced(nn.Module):
    """Returns c1's feature map detached: the traced graph does not see it as an output."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = (
            nn.Conv2d(3, 8, 3, 1, 1),
            nn.Conv2d(8, 8, 3, 1, 1),
            nn.Linear(8, 4),
        )

    def forward(self, x):
        features = torch.relu(self.c1(x))
        return self.fc(torch.relu(self.c2(features)).mean((2, 3))), features.detach()


class ChecksItsWidth(ReturnsAFeatureMapUntraced):
    """Refuses, with its own exception type, an input of another width than it was built for."""

    def forward(self, x):
        features = torch.relu(self.c1(x))
        if features.shape[1] != 8:
            raise ValueError("c2 expects 8 channels")
        return self.fc(torch.relu(self.c2(features)).mean((2, 3)))


@pytest.mark.parametrize("model_class", [ReturnsAFeatureMapUntraced, ChecksItsWidth])
def test_a_cut_model_that_fails_or_changes_output_shapes_is_one_compression_error(model_class):
    model = model_class()
    with torch.no_grad():
        model.c1.weight[:4] = 0.0
        model.c1.bias[:4] = 0.0
    with pytest.raises(CompressionError) as error:
        compress(model, torch.zeros(2, 3, 6, 6))
    assert "\n" not in str(error.value)


class GroupedAfterConcatenation(nn.Module):
    """A groups=4 conv reading torch.cat of two layers: each layer feeds two channel groups."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a, self.b = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.g = nn.Conv2d(32, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.fc(torch.relu(self.g(x)).mean((2, 3)))


def zero_output_channels(layer: nn.Module, channels: list[int]) -> None:
    with torch.no_grad():
        layer.weight[channels] = 0.0
        layer.bias[channels] = 0.0


def test_a_grouped_conv_after_a_concatenation_loses_its_channels_in_every_channel_group(tmp_path):
    """g's input channel c is cut only with c + 8, c + 16, c + 24 (a's c, c + 8, b's c, c + 8):
    channels 0 and 1 of every channel group go; a's zero channel 2 stays (b's 2 is alive)."""
    model = GroupedAfterConcatenation()
    zero_output_channels(model.a, [0, 8, 1, 9, 2])
    zero_output_channels(model.b, [0, 8, 1, 9])
    compressed, compression = compress(model, torch.zeros(2, 3, 8, 8))
    assert_same_function(model, compressed, (3, 8, 8))
    assert compression.kept_channels["a"] == [c for c in range(16) if c not in (0, 1, 8, 9)]
    removed = 2 * 4 * (16 * 9 + 1) + 16 * 2 * 9  # 4 rows of a and b, 2 columns of g's weight
    assert count_parameters(compressed) == count_parameters(model) - removed
    save_compressed(compressed, compression, input_shape=(3, 8, 8), folder=tmp_path)
    loaded, _ = load_compressed(tmp_path, GroupedAfterConcatenation)
    assert_same_function(compressed, loaded, (3, 8, 8))


def grouped_pair() -> nn.Sequential:
    """A conv feeding a groups=2 conv: the first's channels c and c + 8 are cut together."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def zero_conv_bn_channels(conv: nn.Module, bn: nn.Module, channels: list[int]) -> None:
    zero_output_channels(conv, channels)
    zero_output_channels(bn, channels)


@pytest.mark.parametrize(
    "round_to, cut",  # 8 zero channels (4 classes); kept counts reachable: 8, 10, 12, 14, 16
    [(3, [2, 3, 10, 11]), (5, [1, 2, 3, 9, 10, 11]), (7, [3, 11]), (32, [])],
)
def test_round_to_puts_back_whole_classes_of_a_grouped_conv(round_to, cut):
    model = randomize(grouped_pair(), seed=8)
    zero_conv_bn_channels(model[0], model[1], [0, 1, 2, 3, 8, 9, 10, 11])
    compressed, compression = compress(model, torch.zeros(2, 3, 8, 8), round_to=round_to)
    assert_same_function(model, compressed, (3, 8, 8))
    assert compression.kept_channels["0"] == [c for c in range(16) if c not in cut]
    removed = len(cut) * (3 * 9 + 1 + 2) + 16 * len(cut) // 2 * 9  # rows of 0, 1; columns of 3
    assert count_parameters(compressed) == count_parameters(model) - removed


def test_a_dead_grouped_conv_keeps_one_zero_channel_per_channel_group():
    model = randomize(grouped_pair(), seed=9)
    zero_conv_bn_channels(model[3], model[4], list(range(16)))
    compressed, compression = compress(model, torch.zeros(2, 3, 8, 8))
    assert_same_function(model, compressed, (3, 8, 8))
    assert compression.kept_channels["3"] == [0, 8]
    removed = 14 * (8 * 9 + 1 + 2 + 10)  # rows of 3 (with bias) and 4, columns of the Linear
    assert count_parameters(compressed) == count_parameters(model) - removed
