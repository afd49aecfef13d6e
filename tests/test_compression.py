"""Physical compression: the compressed network computes the masked one's function, for every
architecture and both groupings; what was cut is exactly masked weights; dead branches fold."""

import pytest
import torch
from masked_models import input_shape, masked_model

from sprkit.networks import find_conv_bn_blocks
from sprkit.networks.architectures import ARCHITECTURES, ShortcutBlock
from sprkit.networks.compression import compress, fold_batchnorm
from sprkit.networks.measure import count_macs, count_parameters


@pytest.mark.parametrize("kind", ["graph", "layer"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_compressed_network_equals_the_masked_one(arch, kind):
    masked, masks = masked_model(arch, kind)
    compressed, compression = compress(masked, masks, input_shape(arch))
    inputs = torch.randn(3, *input_shape(arch))
    with torch.no_grad():
        difference = (compressed(inputs) - masked(inputs)).abs().max().item()
    assert difference <= 1e-5
    assert 0 in compression.dead_blocks
    assert isinstance(compressed.layers[0], ShortcutBlock)
    assert count_parameters(compressed) < count_parameters(masked)
    assert count_macs(compressed, input_shape(arch)) < count_macs(masked, input_shape(arch))


def _is_ordered_input_subset(cut: torch.Tensor, original: torch.Tensor) -> bool:
    """Whether cut[:, i] = original[:, j_i] for increasing j_i (input channels dropped only)."""
    j = 0
    for i in range(cut.shape[1]):
        while j < original.shape[1] and not torch.equal(cut[:, i], original[:, j]):
            j += 1
        if j == original.shape[1]:
            return False
        j += 1
    return True


@pytest.mark.parametrize("kind", ["graph", "layer"])
@pytest.mark.parametrize("arch", ["resnet20", "resnet50"])
def test_only_masked_channels_are_cut_and_kept_weights_are_copied(arch, kind):
    masked, masks = masked_model(arch, kind, seed=1)
    compressed, compression = compress(masked, masks, input_shape(arch))
    mask_of = {b.conv_name: m for b, m in zip(find_conv_bn_blocks(masked), masks, strict=True)}
    modules = dict(compressed.named_modules())
    for name, kept in compression.kept_channels.items():
        cut = torch.ones(len(mask_of[name]), dtype=torch.bool)
        cut[kept] = False
        assert not bool(mask_of[name][cut].any()), f"{name}: a kept channel was cut"
        if kind == "graph":  # structures are whole: every masked channel is cut
            assert not bool((~mask_of[name])[kept].any()), f"{name}: a masked channel stayed"
        assert modules[name].out_channels == len(kept), f"{name}: kept list incomplete"
        original = masked.get_submodule(name).weight.detach()[kept]
        assert _is_ordered_input_subset(modules[name].weight.detach(), original), name


@pytest.mark.parametrize("arch", ["resnet-digits", "resnet20", "resnet50"])
def test_batchnorm_folding_keeps_the_function_and_removes_every_batchnorm(arch):
    masked, masks = masked_model(arch, "graph")
    compressed, _ = compress(masked, masks, input_shape(arch))
    folded = fold_batchnorm(compressed)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in compressed.modules())  # untouched
    inputs = torch.randn(3, *input_shape(arch))
    with torch.no_grad():
        assert (folded(inputs) - masked(inputs)).abs().max() <= 1e-5


def test_dead_bottleneck_branch_folds_in_float64():
    masked, masks = masked_model("resnet50", "graph")
    masked = masked.double()
    compressed, compression = compress(masked, masks, input_shape("resnet50"))
    assert 0 in compression.dead_blocks
    inputs = torch.randn(2, *input_shape("resnet50"), dtype=torch.float64)
    with torch.no_grad():
        assert (compressed(inputs) - masked(inputs)).abs().max() <= 1e-10
