"""Structures from the dependency graph: data flow, not names or registration order."""

import pytest
import torch
from torch import nn
from zoo import ZOO, randomize

from sprkit.errors import ParameterError
from sprkit.networks import derive_structures
from sprkit.networks.architectures import build_model


def owner(structures, parameter: str) -> torch.Tensor:
    """Structure of every row of `parameter` (-1: none)."""
    for piece in structures.slices:
        if piece.parameter == parameter:
            result = torch.full((int(piece.rows.max()) + 1,), -1)
            result[piece.rows] = piece.owner
            return result
    raise KeyError(parameter)


def test_graph_grouping_ties_the_residual_stream_of_each_stage():
    model = build_model("resnet20", num_classes=10)
    structures = derive_structures(model, torch.zeros(2, 3, 32, 32))
    stem = owner(structures, "conv1.weight")
    # Stage 1 (16 channels): the stem and the three blocks' second convs write one stream.
    for block in range(3):
        assert torch.equal(owner(structures, f"layers.{block}.conv2.weight"), stem)
        assert torch.equal(owner(structures, f"layers.{block}.bn2.weight"), stem)
    # Option-A shortcuts copy stream channel j into the next stage's channel j: one structure.
    stage2 = owner(structures, "layers.3.conv2.weight")
    stage3 = owner(structures, "layers.6.conv2.weight")
    assert torch.equal(stage2[:16], stem) and torch.equal(stage3[:32], stage2)
    assert len(set(stage3.tolist())) == 64
    inner = torch.cat([owner(structures, f"layers.{i}.conv1.weight") for i in range(9)])
    assert len(set(inner.tolist())) == len(inner)  # inner convs: one structure per channel
    assert structures.n == 64 + 3 * (16 + 32 + 64)


def test_layer_grouping_pairs_each_normalization_with_the_conv_it_follows():
    """torchvision layout: bn2 follows conv2 in data flow (not the downsample conv, which is
    registered after it and writes the same channels)."""
    model = randomize(ZOO["resnet18_tv"][0]())
    structures = derive_structures(model, torch.zeros(2, 3, 32, 32), grouping="layer")
    for prefix in ("layer2.0", "layer3.0"):
        conv2 = owner(structures, f"{prefix}.conv2.weight")
        assert torch.equal(owner(structures, f"{prefix}.bn2.weight"), conv2)
        downsample = owner(structures, f"{prefix}.downsample.0.weight")
        assert torch.equal(owner(structures, f"{prefix}.downsample.1.bias"), downsample)
        assert not set(conv2.tolist()) & set(downsample.tolist())
    sizes = dict(zip(structures.layer, structures.sizes.tolist(), strict=False))
    assert sizes["layer2.0.conv2"] == 16 * 9 + 2  # weights of one output channel, BN pair


def test_grouped_conv_channels_go_with_their_counterparts_in_every_channel_group():
    model = ZOO["grouped_conv"][0]()
    structures = derive_structures(model, torch.zeros(2, 3, 16, 16))
    reduce = owner(structures, "reduce.0.weight")  # feeds a 4-group conv: 8 channels per group
    for c in range(8):
        assert len({int(reduce[c + 8 * g]) for g in range(4)}) == 1
    assert len(set(reduce.tolist())) == 8


def test_depthwise_conv_rows_belong_to_the_channel_they_filter():
    model = ZOO["mobilenetv2"][0]()
    structures = derive_structures(model, torch.zeros(2, 3, 32, 32))
    expand = owner(structures, "blocks.1.block.0.weight")
    assert torch.equal(owner(structures, "blocks.1.block.3.weight"), expand)  # depthwise
    assert torch.equal(owner(structures, "blocks.1.block.4.weight"), expand)  # its BN


def test_linear_neurons_with_batchnorm1d_are_structures_and_outputs_never_are():
    model = ZOO["mlp_bn1d"][0]()
    structures = derive_structures(model, torch.zeros(2, 20))
    assert structures.n == 32 + 24
    assert torch.equal(owner(structures, "net.1.weight"), owner(structures, "net.0.weight"))
    assert all(not piece.parameter.startswith("net.6") for piece in structures.slices)
    assert set(structures.layer) == {"net.0", "net.3"}


def test_ignored_layers_are_never_structures():
    model = ZOO["vgg16_bn"][0]()
    everything = derive_structures(model, torch.zeros(2, 3, 32, 32))
    protected = derive_structures(
        model, torch.zeros(2, 3, 32, 32), ignored_layers=[model.classifier[0]]
    )
    assert everything.n - protected.n == 32
    assert "classifier.0" not in protected.layer


@pytest.mark.parametrize(
    "name, essential",
    [
        ("vgg16_bn", None),  # a chain: every layer is essential
        ("resnet18_tv", {"conv1", "layer2.0.conv2"}),  # with layer2.0.downsample.0
        ("densenet_pre", {"stem.0", "transition.2"}),
    ],
)
def test_essential_units_are_found_from_data_flow(name, essential):
    fn, shape = ZOO[name]
    structures = derive_structures(randomize(fn()), torch.zeros(2, *shape))
    found = {
        layer
        for unit, is_essential in zip(structures.units, structures.essential, strict=True)
        if is_essential
        for layer in {structures.layer[int(j)] for j in unit}
    }
    if essential is None:
        assert all(structures.essential)
    else:
        assert essential <= found
        assert "layer1.0.conv1" not in found and "dense1.0.body.2" not in found


def test_a_model_without_structures_is_one_clear_error():
    with pytest.raises(ParameterError, match="no prunable structure"):
        derive_structures(nn.Sequential(nn.Linear(3, 2)), torch.zeros(2, 3))
    with pytest.raises(ParameterError, match="could not be traced"):
        derive_structures(nn.Sequential(nn.Linear(3, 2)), torch.zeros(2, 5))


def _reference_reductions(structures, model) -> tuple[torch.Tensor, torch.Tensor]:
    """Per structure, in float64, one row at a time: sum of squares and largest |value|
    (differentiable; no structure here has two rows with the same largest |value|)."""
    named = dict(model.named_parameters())
    squares: list[list[torch.Tensor]] = [[] for _ in range(structures.n)]
    largest: list[list[torch.Tensor]] = [[] for _ in range(structures.n)]
    for piece in structures.slices:
        parameter = named[piece.parameter].double()
        for row, structure in zip(piece.rows.tolist(), piece.owner.tolist(), strict=True):
            squares[structure].append(parameter[row].square().sum())
            largest[structure].append(parameter[row].abs().max())
    sq_norm = torch.stack([torch.stack(values).sum() for values in squares])
    max_abs = torch.stack([torch.stack(values).max() for values in largest])
    return sq_norm, max_abs


@pytest.mark.parametrize(
    ("name", "layout"),
    [(name, torch.contiguous_format) for name in ("resnet18_tv", "mobilenetv2", "mlp_bn1d")]
    + [(name, torch.channels_last) for name in ("resnet18_tv", "mobilenetv2", "grouped_conv")],
)
def test_reductions_and_their_gradients_match_a_row_by_row_computation(name, layout):
    make, shape = ZOO[name]
    torch.manual_seed(0)
    model = randomize(make())
    structures = derive_structures(model, torch.zeros(2, *shape))
    model.to(memory_format=layout)
    weights = torch.randn(2, structures.n, dtype=torch.float64)
    sq_norm, max_abs = structures.reductions(model)
    (sq_norm.double() @ weights[0] + max_abs.double() @ weights[1]).backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    expected_sq, expected_max = _reference_reductions(structures, model)
    (expected_sq @ weights[0] + expected_max @ weights[1]).backward()
    torch.testing.assert_close(sq_norm.double(), expected_sq, rtol=1e-5, atol=0)
    assert torch.equal(max_abs.double(), expected_max)
    assert fast.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for parameter_name, gradient in fast.items():
        expected = dict(model.named_parameters())[parameter_name].grad
        torch.testing.assert_close(gradient.double(), expected.double(), rtol=1e-5, atol=1e-7)


def test_apply_zeroes_the_rows_of_each_new_mask():
    make, shape = ZOO["resnet18_tv"]
    model = randomize(make())
    structures = derive_structures(model, torch.zeros(2, *shape))
    first = torch.rand(structures.n, generator=torch.Generator().manual_seed(1)) < 0.7
    second = first & (torch.rand(structures.n, generator=torch.Generator().manual_seed(2)) < 0.5)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    for keep in (first, first, second):  # the second call reuses the rows found by the first
        structures.apply(model, keep)
        named = dict(model.named_parameters())
        for piece in structures.slices:
            rows = named[piece.parameter].detach()[piece.rows]
            removed = ~keep[piece.owner]
            assert torch.all(rows[removed] == 0)
            assert torch.equal(rows[~removed], original[piece.parameter][piece.rows][~removed])
    assert not torch.equal(first, second)


def test_the_penalty_follows_parameters_replaced_after_it_was_built():
    from sprkit.networks.penalties import SPRPenalty

    make, shape = ZOO["resnet18_tv"]
    model = randomize(make())
    structures = derive_structures(model, torch.zeros(2, *shape))
    penalty = SPRPenalty(model, structures, lam=0.1, alpha=0.5)
    replacement = randomize(make(), seed=3)
    model.load_state_dict(replacement.state_dict(), assign=True)  # new Parameter objects
    expected = SPRPenalty(model, structures, lam=0.1, alpha=0.5)()
    value = penalty()
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(p.grad is not None for p in structures.parameters_of(model))


def test_a_model_of_other_shapes_is_refused_not_read_past_its_rows():
    def make(a: int, b: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(4, a), nn.ReLU(), nn.Linear(a, b), nn.ReLU(), nn.Linear(b, 2)
        )

    structures = derive_structures(make(8, 6), torch.zeros(2, 4))
    structures.reductions(make(8, 6))
    with pytest.raises(ParameterError, match="derived for another model"):
        structures.reductions(make(9, 5))
