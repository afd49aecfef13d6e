"""Built-in networks: CIFAR ResNet-20/32/44/56/110 (option-A shortcuts, He et al. 2016),
ResNet-18/50 in their CIFAR form (3x3 stem, no max-pool, projection shortcuts), ResNet-18/34/50
in their ImageNet form with torchvision's parameter names (resnet18-imagenet, ...: a
torchvision state dict loads into them), a small ResNet for the 8x8 digits images, and VGG-16
with BatchNorm (CIFAR form). The residual blocks expose `branch` and `shortcut`, which lets
compression fold a dead branch into a bias (`folds_to_shortcut`); any other
constructor is reached by `package.module:function`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sprkit.errors import ParameterError, first_line


def _conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(outputs),
    ]


class ZeroPadShortcut(nn.Module):
    """Option A: subsample spatially by `stride`; output channel j is input channel source[j],
    or zero where source[j] = -1. Dense: source = [0, ..., inputs - 1, -1, ..., -1] (zero
    channels appended, no parameters); pruning deletes and renumbers entries of `source`."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        source = torch.cat([torch.arange(inputs), torch.full((outputs - inputs,), -1)])
        self.register_buffer("source", source)
        self.register_buffer("inputs", torch.tensor(inputs))  # kept in the state dict

    def channel_links(self) -> list[tuple[int, int]]:
        """(output, input) channel pairs that carry the same signal (sprkit.networks.graph)."""
        return [(j, source) for j, source in enumerate(self.source.tolist()) if source >= 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # One appended zero channel stands for every -1 entry (index -1 picks the last).
        padded = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        return padded.index_select(1, torch.where(self.source < 0, x.shape[1], self.source))


class ResidualBias(nn.Module):
    """A dead residual branch replaced by its constant output: y = x + bias (per channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias[None, :, None, None]


class ShortcutBlock(nn.Module):
    """A residual block whose branch is constant: relu(shortcut(x) + bias)."""

    def __init__(self, shortcut: nn.Module, channels: int) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.branch_bias = ResidualBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch_bias(self.shortcut(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual connection (the shortcut registered under
    `shortcut_name`)."""

    expansion = 1
    shortcut_name = "shortcut"

    def __init__(self, inputs: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(inputs, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.add_module(self.shortcut_name, _shortcut(inputs, planes, stride, shortcut))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the addition."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "ResNet v1.5"), 1x1 expand (x4),
    each with BatchNorm2d, and a residual connection (the shortcut under `shortcut_name`)."""

    expansion = 4
    shortcut_name = "shortcut"

    def __init__(self, inputs: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(inputs, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, planes * 4, 1)
        self.add_module(self.shortcut_name, _shortcut(inputs, planes * 4, stride, shortcut))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the addition."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


def folds_to_shortcut(module: nn.Module) -> bool:
    """Whether `module` is one of sprkit's residual blocks with their own forward,
    relu(branch(x) + shortcut(x)): a constant branch then folds into a ShortcutBlock exactly.
    A user's module with the same method names (e.g. without the ReLU) is not."""
    forwards = (BasicBlock.forward, Bottleneck.forward)
    return isinstance(module, (BasicBlock, Bottleneck)) and type(module).forward in forwards


def _shortcut(inputs: int, outputs: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and inputs == outputs:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(inputs, outputs, stride)
    return nn.Sequential(*_conv_bn(inputs, outputs, 1, stride))


def _stages(
    block: type[BasicBlock] | type[Bottleneck],
    blocks_per_stage: list[int],
    widths: list[int],
    shortcut: str,
) -> list[list[nn.Module]]:
    """The blocks of each stage: stage s has widths[s] planes, its first block has stride 2
    from the second stage on; the first block's input is widths[0] channels (the stem's)."""
    stages, inputs = [], widths[0]
    for stage, (count, planes) in enumerate(zip(blocks_per_stage, widths, strict=True)):
        blocks = []
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(block(inputs, planes, stride, shortcut))
            inputs = planes * block.expansion
        stages.append(blocks)
    return stages


def _init_convs(model: nn.Module) -> None:
    """He initialization of every conv (fan-out, as torchvision's ResNets)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class ResNet(nn.Module):
    """Stem conv-BN, stages of residual blocks, global average pooling, linear classifier."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_stage: list[int],
        widths: list[int],
        *,
        num_classes: int,
        in_channels: int = 3,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, widths[0], 3)
        stages = _stages(block, blocks_per_stage, widths, shortcut)
        self.layers = nn.Sequential(*(b for stage in stages for b in stage))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _cifar_resnet(depth: int) -> Callable[..., ResNet]:
    def build(num_classes: int = 10, in_channels: int = 3) -> ResNet:
        n = (depth - 2) // 6
        return ResNet(
            BasicBlock,
            [n] * 3,
            [16, 32, 64],
            num_classes=num_classes,
            in_channels=in_channels,
            shortcut="A",
        )

    return build


def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet(
        BasicBlock,
        [2, 2, 2, 2],
        [64, 128, 256, 512],
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut="B",
    )


def resnet50(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    return ResNet(
        Bottleneck,
        [3, 4, 6, 3],
        [64, 128, 256, 512],
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut="B",
    )


class _TorchvisionNames:
    """Mixin for a residual block: the shortcut registered as `downsample`, torchvision's
    name (an Identity where torchvision has None: no parameters, the same state dict);
    `shortcut` reads it, the name compression and serialization use."""

    shortcut_name = "downsample"

    @property
    def shortcut(self) -> nn.Module:
        return self.downsample


class ImageNetBasicBlock(_TorchvisionNames, BasicBlock):
    """BasicBlock under torchvision's names (conv1, bn1, conv2, bn2, downsample.0/.1)."""


class ImageNetBottleneck(_TorchvisionNames, Bottleneck):
    """Bottleneck under torchvision's names (conv1..conv3, bn1..bn3, downsample.0/.1)."""


class ImageNetResNet(nn.Module):
    """ResNet in its ImageNet form (He et al. 2016), with torchvision's layout and parameter
    and buffer names: 7x7 stride-2 conv-BN-ReLU stem (conv1, bn1), 3x3 stride-2 max-pool,
    stages layer1..layer4 of widths 64..512 (stride 2 from layer2 on, projection shortcuts
    where the shape changes), global average pooling, fc. For 224x224 inputs the last stage
    is 7x7; any input of at least 32x32 runs (1x1 at the end)."""

    def __init__(
        self,
        block: type[ImageNetBasicBlock] | type[ImageNetBottleneck],
        blocks_per_stage: list[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = [64, 128, 256, 512]
        self.conv1, self.bn1 = _conv_bn(in_channels, widths[0], 7, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for number, stage in enumerate(_stages(block, blocks_per_stage, widths, "B"), 1):
            self.add_module(f"layer{number}", nn.Sequential(*stage))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        _init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def resnet18_imagenet(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    return ImageNetResNet(
        ImageNetBasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels
    )


def resnet34_imagenet(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    return ImageNetResNet(
        ImageNetBasicBlock, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels
    )


def resnet50_imagenet(num_classes: int = 1000, in_channels: int = 3) -> ImageNetResNet:
    return ImageNetResNet(
        ImageNetBottleneck, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels
    )


def resnet_digits(num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """A small ResNet for 8x8 images: widths 16 and 32, one basic block per stage."""
    return ResNet(
        BasicBlock, [1, 1], [16, 32], num_classes=num_classes, in_channels=in_channels, shortcut="A"
    )


VGG16_PLAN = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
]


class VGG(nn.Module):
    """VGG with BatchNorm in its CIFAR form (Simonyan and Zisserman 2015; 3x3 conv-BN-ReLU
    stages, max-pooling, 32x32 inputs down to 1x1) and a classifier with two hidden Linear
    layers of `hidden` neurons (prunable like channels)."""

    def __init__(
        self,
        plan: list[int | str],
        num_classes: int = 10,
        in_channels: int = 3,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [*_conv_bn(channels, int(item), 3), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)  # 1x1 already for 32x32 inputs
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    return VGG(VGG16_PLAN, num_classes=num_classes, in_channels=in_channels)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{depth}": _cifar_resnet(depth) for depth in (20, 32, 44, 56, 110)},
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet18-imagenet": resnet18_imagenet,
    "resnet34-imagenet": resnet34_imagenet,
    "resnet50-imagenet": resnet50_imagenet,
    "resnet-digits": resnet_digits,
    "vgg16": vgg16,
}


def model_constructor(arch: str) -> Callable[[int, int], nn.Module]:
    """(num_classes, in_channels) -> model for `arch`: a built-in name, or
    `package.module:function` naming any importable constructor, called with the keywords
    num_classes and in_channels that it accepts (ParameterError naming the problem else)."""
    if arch in ARCHITECTURES:
        return lambda num_classes, in_channels: ARCHITECTURES[arch](
            num_classes=num_classes, in_channels=in_channels
        )
    if ":" not in arch:
        raise ParameterError(
            f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}, or "
            "package.module:function for your own constructor"
        )
    module_name, _, function_name = arch.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except ImportError as error:
        raise ParameterError(f"architecture {arch}: cannot import {module_name}: {error}") from None
    except AttributeError:
        raise ParameterError(
            f"architecture {arch}: {module_name} has no {function_name!r}"
        ) from None
    if not callable(function):
        raise ParameterError(f"architecture {arch}: {function_name} is not callable")
    accepted = inspect.signature(function).parameters

    def build(num_classes: int, in_channels: int) -> nn.Module:
        keywords = {
            k: v
            for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
            if k in accepted
        }
        try:
            model = function(**keywords)
        except Exception as error:  # the user's code: one line naming it, not a traceback
            raise ParameterError(
                f"architecture {arch} failed: {type(error).__name__}: {first_line(error)}"
            ) from None
        if not isinstance(model, nn.Module):
            raise ParameterError(
                f"architecture {arch} returned {type(model).__name__}, not a module"
            )
        return model

    return build


def build_model(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """The named architecture (built-in or package.module:function, model_constructor)."""
    return model_constructor(arch)(num_classes, in_channels)
