"""Small models written the way users write them (not sprkit's own classes), for the
any-model tests: every one has BatchNorm layers with random statistics set by `randomize`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn(inputs: int, outputs: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inputs, outputs, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    ]


class VGG16BN(nn.Module):
    """VGG-16 with BatchNorm in its CIFAR form, with two hidden Linear layers (narrowed)."""

    def __init__(self, num_classes: int = 10, width: int = 4) -> None:
        super().__init__()
        plan = [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"]
        layers: list[nn.Module] = []
        channels = 3
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv_bn(channels, item * width)
                channels = item * width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inputs * expand
        self.use_residual = stride == 1 and inputs == outputs
        self.block = nn.Sequential(
            nn.Conv2d(inputs, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Like(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 8, stride=2))
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 1, 2),
            InvertedResidual(8, 12, 2, 3),
            InvertedResidual(12, 12, 1, 3),
        )
        self.head = nn.Sequential(nn.Conv2d(12, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        self.classifier = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MLPBatchNorm(nn.Module):
    """Linear + BatchNorm1d hidden layers on flat inputs."""

    def __init__(self, inputs: int = 20, num_classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Linear(32, 24),
            nn.BatchNorm1d(24),
            nn.ReLU(),
            nn.Linear(24, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DenseLayer(nn.Module):
    """Post-activation (conv-BN-ReLU) or pre-activation (BN-ReLU-conv) DenseNet layer."""

    def __init__(self, inputs: int, growth: int, pre_activation: bool) -> None:
        super().__init__()
        if pre_activation:
            self.body = nn.Sequential(
                nn.BatchNorm2d(inputs), nn.ReLU(), nn.Conv2d(inputs, growth, 3, 1, 1, bias=False)
            )
        else:
            self.body = nn.Sequential(*_conv_bn(inputs, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class DenseNetLike(nn.Module):
    def __init__(self, pre_activation: bool, num_classes: int = 10, growth: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        channels, layers = 8, []
        for _ in range(3):
            layers.append(DenseLayer(channels, growth, pre_activation))
            channels += growth
        self.dense1 = nn.Sequential(*layers)
        # transition: in the pre-activation form BN-ReLU-conv, else conv-BN-ReLU
        if pre_activation:
            self.transition = nn.Sequential(
                nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 12, 1, bias=False)
            )
        else:
            self.transition = nn.Sequential(*_conv_bn(channels, 12))
        self.pool = nn.AvgPool2d(2)
        layers, channels = [], 12
        for _ in range(2):
            layers.append(DenseLayer(channels, growth, pre_activation))
            channels += growth
        self.dense2 = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.transition(self.dense1(self.stem(x))))
        x = F.relu(self.norm(self.dense2(x)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class TVBasicBlock(nn.Module):
    """torchvision's BasicBlock layout: conv1/bn1/conv2/bn2 and a `downsample` Sequential."""

    def __init__(self, inputs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inputs != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inputs: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inputs, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inputs != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TVResNet(nn.Module):
    """torchvision-style ResNet (conv1/bn1/maxpool, layer1..layer4, avgpool, fc), narrowed."""

    def __init__(self, block, layers: list[int], width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inputs = width
        stages = []
        for index, count in enumerate(layers):
            planes = width * 2**index
            blocks = []
            for k in range(count):
                stride = 2 if index > 0 and k == 0 else 1
                blocks.append(block(inputs, planes, stride))
                inputs = planes * getattr(block, "expansion", 1)
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class BottleneckStage(nn.Module):
    """One ResNet-50 stage (three Bottlenecks, the first with a projection) and a head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16))
        self.stage = nn.Sequential(
            TVBottleneck(16, 8, stride=2), TVBottleneck(32, 8), TVBottleneck(32, 8)
        )
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class GroupedConvNet(nn.Module):
    """ResNeXt-like: grouped 3x3 convs (groups = 4) between 1x1 convs, with a residual."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16))
        self.reduce = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.grouped = nn.Sequential(*_conv_bn(32, 32, groups=4))
        self.grouped2 = nn.Sequential(*_conv_bn(32, 32, stride=2, groups=4))
        self.expand = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.shortcut = nn.Sequential(nn.Conv2d(16, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.expand(self.grouped2(self.grouped(self.reduce(x))))
        out = F.relu(out + self.shortcut(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def torchvision_resnet18(num_classes: int = 10) -> TVResNet:
    return TVResNet(TVBasicBlock, [2, 2, 2, 2], num_classes=num_classes)


# name -> (constructor, input shape without batch)
ZOO = {
    "vgg16_bn": (VGG16BN, (3, 32, 32)),
    "mobilenetv2": (MobileNetV2Like, (3, 32, 32)),
    "mlp_bn1d": (MLPBatchNorm, (20,)),
    "densenet_post": (lambda: DenseNetLike(pre_activation=False), (3, 16, 16)),
    "densenet_pre": (lambda: DenseNetLike(pre_activation=True), (3, 16, 16)),
    "resnet18_tv": (torchvision_resnet18, (3, 32, 32)),
    "bottleneck_stage": (BottleneckStage, (3, 16, 16)),
    "grouped_conv": (GroupedConvNet, (3, 16, 16)),
}


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (as after training), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()
