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


# torchvision's published parameter counts for 1000 classes (its model documentation).
TORCHVISION_COUNTS = {
    "resnet18-imagenet": 11_689_512,
    "resnet34-imagenet": 21_797_672,
    "resnet50-imagenet": 25_557_032,
}
STAGES = {"resnet18-imagenet": [2, 2, 2, 2], "resnet34-imagenet": [3, 4, 6, 3]}
STAGES["resnet50-imagenet"] = STAGES["resnet34-imagenet"]


def torchvision_keys(blocks_per_stage: list[int], bottleneck: bool) -> list[str]:
    """The state-dict keys of torchvision's ResNets, written from its naming scheme: stem
    conv1/bn1; layer1..layer4 of blocks with conv1/bn1, conv2/bn2 (conv3/bn3 in a
    bottleneck) and, where the first block of a stage changes the shape, downsample.0 (conv)
    and downsample.1 (BatchNorm); fc."""
    norm = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight", *(f"bn1.{n}" for n in norm)]
    channels, expansion = 64, 4 if bottleneck else 1
    widths = [64, 128, 256, 512]
    for stage, (count, width) in enumerate(zip(blocks_per_stage, widths, strict=True), 1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            for conv in range(1, 4 if bottleneck else 3):
                keys += [f"{prefix}.conv{conv}.weight", *(f"{prefix}.bn{conv}.{n}" for n in norm)]
            if index == 0 and (stage > 1 or channels != width * expansion):
                keys += [f"{prefix}.downsample.0.weight"]
                keys += [f"{prefix}.downsample.1.{n}" for n in norm]
            channels = width * expansion
    return [*keys, "fc.weight", "fc.bias"]


@pytest.mark.parametrize("arch", TORCHVISION_COUNTS)
def test_imagenet_resnets_have_torchvisions_counts_and_names(arch):
    model = build_model(arch, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_COUNTS[arch]
    state = model.state_dict()
    assert list(state) == torchvision_keys(STAGES[arch], bottleneck=arch == "resnet50-imagenet")
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    expansion = 4 if arch == "resnet50-imagenet" else 1
    assert state["layer2.0.downsample.0.weight"].shape == (128 * expansion, 64 * expansion, 1, 1)
    assert state["fc.weight"].shape == (1000, 512 * expansion)


def test_imagenet_resnet18_maps_224_pixels_to_a_7x7_last_stage():
    model = build_model("resnet18-imagenet", num_classes=1000).eval()
    seen = {}
    model.layer4.register_forward_hook(lambda _m, _i, output: seen.setdefault("out", output))
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert seen["out"].shape == (1, 512, 7, 7)


def test_imagenet_resnet18_prunes_compresses_and_loads_back(tmp_path):
    from zoo import randomize

    from sprkit.networks import SPRPruner
    from sprkit.networks.architectures import ShortcutBlock
    from sprkit.networks.serialization import load_compressed

    model = randomize(build_model("resnet18-imagenet", num_classes=10), seed=7)
    pruner = SPRPruner(model, torch.zeros(2, 3, 32, 32))
    layers = pruner.structures.layer
    keep = torch.rand(len(layers), generator=torch.Generator().manual_seed(0)) < 0.5
    dead = ("layer1.0.conv1", "layer3.0.conv1")  # an identity and a projection shortcut
    keep &= torch.tensor([layer not in dead for layer in layers])
    pruner.set_masks(keep)
    compressed = pruner.save(tmp_path / "net")
    assert set(pruner.compression.replaced) == {"layer1.0", "layer3.0"}
    assert isinstance(compressed.layer3[0], ShortcutBlock)
    assert sum(p.numel() for p in compressed.parameters()) < 0.7 * sum(
        p.numel() for p in model.parameters()
    )
    loaded, _ = load_compressed(tmp_path / "net", lambda: build_model("resnet18-imagenet", 10))
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.eval()(inputs)
        for network in (compressed, loaded):
            got = network.eval()(inputs)
            assert float((expected - got).abs().max()) <= 1e-5 * float(expected.abs().max())
