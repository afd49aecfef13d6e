"""Models beyond the zoo: what works, and what is refused with one clear error."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sprkit.errors import ParameterError
from sprkit.networks import SPRPruner, compress, load_compressed


def _same(model, small, x):
    with torch.no_grad():
        want, got = model(x), small(x)
    want = want if isinstance(want, (tuple, list)) else [want]
    got = got if isinstance(got, (tuple, list)) else [got]
    for a, b in zip(want, got, strict=True):
        assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def _owners(pruner):
    """Names of the modules whose parameter rows are structures."""
    return {piece.parameter.rpartition(".")[0] for piece in pruner.structures.slices}


def _half_pruned_compresses_exactly(model, pruner, x):
    """prune(fraction=0.5), then the compressed model computes the masked one's outputs
    with fewer parameters."""
    pruner.prune(fraction=0.5)
    small = pruner.compress()
    _same(model, small, x)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


class LayerScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(8, 1, 1) + 0.5)  # a bare parameter in forward
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc((self.conv(x) * self.gamma).mean((2, 3)))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc, self.box = nn.Linear(8, 2), nn.Linear(8, 4)

    def forward(self, x):
        h = F.relu(self.conv(x)).mean((2, 3))
        return self.fc(h), self.box(h)


@pytest.mark.parametrize("make", [LayerScale, TwoHeads])
def test_bare_parameters_and_tuple_outputs_compress_exactly(make):
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.zeros(2, 3, 8, 8))
    pruner.prune(fraction=0.5)
    _same(model, pruner.compress(), torch.randn(4, 3, 8, 8))
    assert pruner.macs() < SPRPruner(make().eval(), torch.zeros(2, 3, 8, 8)).macs()


class GroupNormNet(nn.Module):
    """conv -> GroupNorm -> conv -> head: c1's channels are normalized in groups of 4."""

    def __init__(self):
        super().__init__()
        self.c1, self.norm = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.c2, self.fc = nn.Conv2d(16, 8, 3, padding=1), nn.Linear(8, 2)

    def forward(self, x):
        x = F.relu(self.c2(F.relu(self.norm(self.c1(x)))))
        return self.fc(x.mean((2, 3)))


def test_a_groupnorms_channels_are_cut_in_whole_groups():
    """Channels of one GroupNorm group share their statistics: a structure holds a whole
    group (4 channels of GroupNorm(4, 16)), and cutting it leaves the other groups' values
    as they were (the GroupNorm loses a group; before, these channels were never pruned)."""
    torch.manual_seed(0)
    model = GroupNormNet().eval()
    pruner = SPRPruner(model, torch.randn(2, 3, 8, 8))
    first = [j for j, layer in enumerate(pruner.structures.layer) if layer == "c1"]
    assert len(first) == 4
    assert all(int(pruner.structures.sizes[j]) == 4 * (27 + 1 + 2) for j in first)
    keep = torch.ones(pruner.structures.n, dtype=torch.bool)
    keep[first[1:3]] = False
    pruner.set_masks(keep)
    small = pruner.compress()
    assert (small.norm.num_groups, small.norm.num_channels, small.c1.out_channels) == (2, 8, 8)
    _same(model, small, torch.randn(4, 3, 8, 8))


class ConcatGroupNorm(nn.Module):
    """GroupNorm(4, 16) after a concatenation of 6 and 10 channels (or 8 and 8): with 6 and
    10, one GroupNorm group holds channels of both convs."""

    def __init__(self, first: int = 6, norm: type = nn.GroupNorm):
        super().__init__()
        self.p, self.q = nn.Conv2d(3, first, 3, padding=1), nn.Conv2d(3, 16 - first, 3, padding=1)
        self.norm = norm(4, 16)
        self.c2, self.fc = nn.Conv2d(16, 8, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        h = self.norm(torch.cat([self.p(x), self.q(x)], 1))
        return self.fc(F.relu(self.c2(F.relu(h))).mean((2, 3)))


class GroupNorm32(nn.GroupNorm):
    """A subclass, as diffusion UNets write it."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


@pytest.mark.parametrize(
    "make, owners",
    [
        (ConcatGroupNorm, {"c2"}),  # a group straddles p and q: neither can be cut
        (lambda: ConcatGroupNorm(8), {"p", "q", "norm", "c2"}),
        (lambda: ConcatGroupNorm(8, GroupNorm32), {"p", "q", "norm", "c2"}),
    ],
)
def test_groupnorm_groups_across_a_concatenation_and_subclasses(make, owners):
    """Whole GroupNorm groups only: a group that straddles two convs after a concatenation is
    not cut (compress() failed on it, after a trial cut that missed it); a GroupNorm subclass
    is cut like a GroupNorm (Torch-Pruning picks its rule by exact class)."""
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.randn(2, 3, 8, 8), ignored_layers=[model.fc])
    assert _owners(pruner) == owners
    assert pruner.structures.uncut == ()
    for j in range(pruner.structures.n):  # every structure alone
        keep = torch.ones(pruner.structures.n, dtype=torch.bool)
        keep[j] = False
        trial = copy.deepcopy(model)
        pruner.structures.apply(trial, keep)
        _same(trial, compress(trial, torch.zeros(2, 3, 8, 8))[0], torch.randn(4, 3, 8, 8))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (a subclass, as vision libraries write it)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    """Stem, channels-first LayerNorm, one ConvNeXt block (depthwise conv, LayerNorm, MLP with
    GELU, layer scale, residual), head: only the MLP's hidden neurons can be cut exactly."""

    def __init__(self):
        super().__init__()
        self.stem, self.stem_norm = nn.Conv2d(3, 16, 2, stride=2), LayerNorm2d(16)
        self.dw, self.norm = nn.Conv2d(16, 16, 7, padding=3, groups=16), nn.LayerNorm(16)
        self.pw1, self.pw2 = nn.Linear(16, 64), nn.Linear(64, 16)
        self.scale = nn.Parameter(torch.full((16,), 0.5))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.stem_norm(self.stem(x))
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        x = x + (self.scale * self.pw2(F.gelu(self.pw1(y)))).permute(0, 3, 1, 2)
        return self.fc(x.mean((2, 3)))


class TransformerLike(nn.Module):
    """Token embedding, attention, LayerNorm and an MLP on the residual stream."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.ff1, self.ff2, self.fc = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x)
        h = self.norm(h + self.attn(h, h, h, need_weights=False)[0])
        return self.fc((h + self.ff2(F.relu(self.ff1(h)))).mean(1))


@pytest.mark.parametrize(
    "make, shape, owners",
    [
        (ConvNeXtLike, (3, 16, 16), {"pw1"}),
        (TransformerLike, (5, 8), {"ff1"}),
    ],
)
def test_channels_mixed_by_normalization_or_attention_are_not_structures(make, shape, owners):
    """A zero channel still counts in a LayerNorm's statistics and in attention, so removing
    it would change the other channels: those channels get no structures at construction
    (not a refusal after training); the rest is cut exactly."""
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.randn(2, *shape))
    assert _owners(pruner) == owners
    _half_pruned_compresses_exactly(model, pruner, torch.randn(4, *shape))


class FunctionalGroupNorm(nn.Module):
    """F.group_norm: no module the graph can see."""

    def __init__(self):
        super().__init__()
        self.conv, self.hidden = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        h = F.relu(F.group_norm(self.conv(x), 4)).mean((2, 3))
        return self.fc(F.relu(self.hidden(h)))


class SigmoidGate(nn.Module):
    """A sigmoid maps a removed (zero) channel to 0.5, which the next layer reads."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(6, 12), nn.Linear(12, 10), nn.Linear(10, 2)

    def forward(self, x):
        return self.fc(F.relu(self.b(torch.sigmoid(self.a(x)))))


class HandWrittenRMSNorm(nn.Module):
    """RMSNorm written out: every channel's output depends on the others' values."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.fc = nn.Linear(6, 12), nn.Linear(12, 10), nn.Linear(10, 2)
        self.weight = nn.Parameter(torch.ones(12))

    def forward(self, x):
        h = self.a(x)
        h = self.weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.fc(F.relu(self.b(h)))


class FixedWidthView(nn.Module):
    """LeNet's x.view(-1, 16 * 4 * 4): the conv's width is written into the forward."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 3), nn.Conv2d(6, 16, 3)
        self.f1, self.fc = nn.Linear(16 * 4 * 4, 20), nn.Linear(20, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c2(F.relu(self.c1(x)))), 2)
        return self.fc(F.relu(self.f1(x.view(-1, 16 * 4 * 4))))


@pytest.mark.parametrize(
    "make, shape, owners, uncut",
    [
        (FunctionalGroupNorm, (3, 8, 8), {"hidden"}, {"conv"}),
        (SigmoidGate, (6,), {"b"}, {"a"}),
        (HandWrittenRMSNorm, (6,), {"b"}, {"a"}),
        (FixedWidthView, (1, 12, 12), {"c1", "f1"}, {"c2"}),
    ],
)
def test_cuts_the_graph_cannot_judge_are_tried_at_construction(make, shape, owners, uncut):
    """Operations out of the graph's sight (functions, a sigmoid, a fixed width) make some
    cuts inexact: a trial cut at construction finds those layers, which get no structures
    and are named in Structures.uncut with compress()'s reason; the rest is cut exactly."""
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.randn(2, *shape))
    assert _owners(pruner) == owners
    assert {layer for layer, _ in pruner.structures.uncut} == uncut
    assert all("cut" in reason for _, reason in pruner.structures.uncut)
    for fraction in (0.5, 1.0):
        pruner.prune(fraction=fraction)
        _same(model, pruner.compress(), torch.randn(4, *shape))


def test_a_model_with_nothing_cut_exactly_is_refused_at_construction_with_the_reason():
    class OnlyFunctional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(F.relu(F.group_norm(self.conv(x), 4)).mean((2, 3)))

    with pytest.raises(ParameterError, match="conv's channels cannot be cut exactly"):
        SPRPruner(OnlyFunctional().eval(), torch.zeros(2, 3, 8, 8))


def test_channel_shuffles_that_break_the_graph_are_refused_at_construction():
    class Shuffled(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.b2, self.head, self.fc = nn.Conv2d(4, 4, 1), nn.Conv2d(8, 8, 1), nn.Linear(8, 2)

        def forward(self, x):
            a, b = F.relu(self.stem(x)).chunk(2, 1)
            x = torch.cat([a, F.relu(self.b1(b))], 1)
            x = x.view(2, 2, 4, 8, 8).transpose(1, 2).reshape(2, 8, 8, 8)
            a, b = x.chunk(2, 1)
            x = torch.cat([a, F.relu(self.b2(b))], 1)
            return self.fc(F.relu(self.head(x)).mean((2, 3)))

    with pytest.raises(ParameterError):
        SPRPruner(Shuffled().eval(), torch.zeros(2, 3, 8, 8)).penalty()


def test_graph_and_counts_work_inside_no_grad_and_count_attention_projections():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.embed = nn.Linear(8, 8), nn.Linear(8, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.embed(torch.relu(self.hidden(x))))
            return self.fc((h + self.attn(h, h, h, need_weights=False)[0]).mean(1))

    with torch.no_grad():
        pruner = SPRPruner(Attention().eval(), torch.zeros(2, 5, 8))
        macs = pruner.macs()
    # the Linear layers alone: hidden, embed, q/k/v projections, output projection, head
    assert macs >= 5 * 8 * 8 + 5 * 8 * 16 + 5 * 16 * 48 + 5 * 16 * 16 + 16 * 3
    assert pruner.structures.n == 8  # the hidden layer's: attention mixes embed's channels


def test_a_float64_model_saves_and_loads_back(tmp_path):
    def make():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        ).double()

    torch.manual_seed(0)
    pruner = SPRPruner(make().eval(), torch.zeros(2, 3, 16, 16, dtype=torch.float64))
    pruner.prune(fraction=0.5)
    small = pruner.save(tmp_path / "net")
    loaded, _ = load_compressed(tmp_path / "net", make)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))


class ReturnsFeatures(nn.Module):
    """Returns a feature map that the next layer consumes too."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        f = F.relu(self.c1(x))
        return self.fc(F.relu(self.c2(f)).mean((2, 3))), f


class InputResidual(nn.Module):
    """y = head(x + b(relu(a(x)))): b's outputs are added to the input itself."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(8, 16), nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(x + self.b(F.relu(self.a(x))))


class FrozenStem(nn.Module):
    """A residual block on a stem whose parameters do not require gradients."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)
        self.stem.requires_grad_(False)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(x + self.a2(F.relu(self.a1(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize(
    "make, shape, owners",
    [
        (ReturnsFeatures, (3, 8, 8), {"c2"}),
        (InputResidual, (8,), {"a"}),
        (FrozenStem, (3, 8, 8), {"stem", "a1", "a2"}),
    ],
)
def test_returned_input_coupled_and_frozen_channels_are_traced_and_compress_exactly(
    make, shape, owners
):
    """A returned feature map and the input's own channels are never structures (they
    cannot be cut); a frozen layer is part of the data flow like any other."""
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.randn(2, *shape))
    # the modules whose output rows are structures
    assert _owners(pruner) == owners
    pruner.prune(fraction=0.5)
    assert pruner.keep.sum() < pruner.structures.n
    _same(model, pruner.compress(), torch.randn(4, *shape))
    frozen = [p.requires_grad for p in getattr(model, "stem", nn.Identity()).parameters()]
    assert not any(frozen)  # tracing leaves the user's frozen layers frozen


class ReadsValues(nn.Module):
    """A forward that reads values: .item() and a branch on the data (not on the meta
    device)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = F.relu(self.a(x / (float(x.abs().max().item()) + 1.0)))
        return self.b(h * 2 if h.mean() > 0.1 else h)


def test_a_forward_that_reads_values_keeps_an_essential_structure():
    torch.manual_seed(0)
    model = ReadsValues().eval()
    pruner = SPRPruner(model, torch.randn(2, 4))
    assert pruner.structures.essential == (True,)
    pruner.prune(fraction=1.0)  # every structure asked for: one stays so the output lives
    assert int(pruner.keep.sum()) == 1


def test_parametrized_weights_are_refused_at_construction():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(
        weight_norm(nn.Conv1d(4, 16, 3, padding=1)),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    with pytest.raises(ParameterError, match="parametrized or masked weight"):
        SPRPruner(model, torch.randn(2, 4, 10))


def test_a_layer_torch_pruning_cannot_follow_is_one_parameter_error():
    class ConvGRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 16, 3, padding=1)
            self.gru = nn.GRU(16, 12, batch_first=True)
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            out, _ = self.gru(F.relu(self.conv(x)).transpose(1, 2))
            return self.fc(out[:, -1])

    with pytest.warns(UserWarning, match="Unwrapped parameters"):  # Torch-Pruning's own
        with pytest.raises(ParameterError, match="could not follow the channels.*gru"):
            SPRPruner(ConvGRU(), torch.randn(2, 4, 10))


class TiedLayers(nn.Module):
    """Two Linear layers holding one weight (weight tying)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.c.weight = self.b.weight
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(F.relu(self.c(F.relu(self.b(F.relu(self.a(x)))))))


@pytest.mark.parametrize("ignored", [(), ("c",), ("b", "c")])
def test_weight_tying_in_cut_layers_is_one_parameter_error(ignored):
    """Torch-Pruning cuts one holder's copy of a tied weight (with b and c ignored, a's cut
    gave the compressed model 539 parameters for the dense model's 483)."""
    model = TiedLayers()
    layers = [getattr(model, name) for name in ignored]
    with pytest.raises(ParameterError, match="b.weight and c.weight are one parameter"):
        SPRPruner(model, torch.randn(2, 8), ignored_layers=layers)


def test_one_module_under_two_names_is_not_weight_tying():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.fc = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 3)
            self.again = self.b

        def forward(self, x):
            return self.fc(F.relu(self.again(F.relu(self.b(F.relu(self.a(x)))))))

    torch.manual_seed(0)
    model = Twice().eval()
    pruner = SPRPruner(model, torch.randn(2, 8))
    _half_pruned_compresses_exactly(model, pruner, torch.randn(4, 8))


class ReturnsNone(nn.Module):
    """Returns (logits, None, {"aux": [...], "steps": 3}): not only tensors."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 2)

    def forward(self, x):
        logits = self.fc(F.relu(self.conv(x)).mean((2, 3)))
        return logits, None, {"aux": [x.mean()], "steps": 3}


@pytest.mark.parametrize("penalty", ["spr", "tp_group_norm"])
def test_outputs_holding_none_and_numbers_are_traced(penalty):
    torch.manual_seed(0)
    model = ReturnsNone().eval()
    pruner = SPRPruner(model, torch.zeros(2, 3, 8, 8), penalty=penalty)
    assert pruner.structures.n == 8
    pruner.prune(fraction=0.5)
    small, x = pruner.compress(), torch.randn(4, 3, 8, 8)
    _same(lambda x: model(x)[0], lambda x: small(x)[0], x)
    assert small(x)[1:] == (None, {"aux": [x.mean()], "steps": 3})
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_parameter_aliased_on_the_model_is_named_plainly():
    model = TiedLayers()
    model.alias = model.b.weight  # an attribute of the model itself: a second holder
    del model.c.weight
    model.c.weight = nn.Parameter(torch.randn(16, 16))
    with pytest.raises(ParameterError, match=r"^alias and b.weight are one parameter"):
        SPRPruner(model, torch.randn(2, 8))


class TransposedSkip(nn.Module):
    """Encoder, a transposed conv upsampling (grouped or not) added to a skip, decoder."""

    def __init__(self, groups: int = 1):
        super().__init__()
        self.e1, self.e2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, 2, 1)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2, groups=groups)
        self.d1, self.out = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        u = F.relu(self.up(F.relu(self.e2(a))) + a)
        return self.out(F.relu(self.d1(u)))


class LinearToFeatureMap(nn.Module):
    """A DCGAN-style generator: Linear outputs viewed as 32 channels of 4 x 4."""

    def __init__(self):
        super().__init__()
        self.pre, self.fc = nn.Linear(8, 8), nn.Linear(8, 32 * 4 * 4)
        self.t1, self.bn = nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.BatchNorm2d(16)
        self.t2 = nn.ConvTranspose2d(16, 3, 4, 2, 1)

    def forward(self, z):
        h = F.relu(self.fc(F.relu(self.pre(z)))).view(-1, 32, 4, 4)
        return torch.tanh(self.t2(F.relu(self.bn(self.t1(h)))))


@pytest.mark.parametrize(
    "make, shape, owners, uncut",
    [
        (TransposedSkip, (3, 16, 16), {"e1", "up", "e2", "d1"}, set()),
        (lambda: TransposedSkip(groups=2), (3, 16, 16), {"d1"}, set()),
        (LinearToFeatureMap, (8,), {"pre", "t1", "bn"}, {"fc"}),
    ],
)
def test_transposed_convs_and_reshapes_the_graph_misreads(make, shape, owners, uncut):
    """A transposed conv's output channels are structures (dimension 1 of its weight; before,
    a model where they joined a residual was refused at construction); a grouped transposed
    conv's channels are not cut (Torch-Pruning 1.6 cuts its weight as a grouped conv's; the
    cut model did not run). A Linear whose outputs are viewed as channels is mapped onto them
    wrongly by the graph: it is left uncut, named in Structures.uncut."""
    torch.manual_seed(0)
    model = make().eval()
    pruner = SPRPruner(model, torch.randn(2, *shape))
    assert _owners(pruner) == owners
    assert {layer for layer, _ in pruner.structures.uncut} == uncut
    _half_pruned_compresses_exactly(model, pruner, torch.randn(4, *shape))


class SqueezeExcite(nn.Module):
    """A MobileNetV3 block: expand, depthwise, squeeze-excitation gate, project."""

    def __init__(self):
        super().__init__()
        self.expand, self.dw = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.se_reduce, self.se_expand = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.project, self.fc = nn.Conv2d(16, 8, 1), nn.Linear(8, 2)

    def forward(self, x):
        h = F.hardswish(self.dw(F.hardswish(self.expand(x))))
        gate = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(h.mean((2, 3), True)))))
        return self.fc(F.relu(self.project(h * gate)).mean((2, 3)))


def test_a_structure_is_named_after_its_first_layer_in_model_order():
    """The structure holding rows of expand, dw and se_expand (one coupled position) is
    reported as expand's, the first of them (it was se_expand's, the graph's order)."""
    pruner = SPRPruner(SqueezeExcite().eval(), torch.randn(2, 3, 8, 8))
    layers = _owners(pruner)
    assert {"expand", "dw", "se_expand"} <= layers
    assert set(pruner.structures.layer) == {"expand", "se_reduce", "project"}


def test_a_transposed_convs_removed_outputs_are_zeroed_penalized_and_cut():
    """Its weight's dimension 1 is what a structure owns: zeroed by the mask, counted in the
    structure's norm, cut by compression."""
    torch.manual_seed(0)
    model = LinearToFeatureMap().eval()
    pruner = SPRPruner(model, torch.randn(2, 8))
    t1 = [j for j, layer in enumerate(pruner.structures.layer) if layer == "t1"]
    assert len(t1) == 16
    norms = pruner.structures.norms(model)
    with torch.no_grad():  # structure of output channel k: t1.weight[:, k], t1.bias[k], bn's k
        own = [
            float(model.t1.weight[:, k].square().sum() + model.t1.bias[k] ** 2)
            + float(model.bn.weight[k] ** 2 + model.bn.bias[k] ** 2)
            for k in range(16)
        ]
    assert sorted(float(norms[j]) ** 2 for j in t1) == pytest.approx(sorted(own), rel=1e-6)
    keep = torch.ones(pruner.structures.n, dtype=torch.bool)
    keep[t1[:5]] = False
    pruner.set_masks(keep)
    assert int((model.t1.weight.abs().sum(dim=(0, 2, 3)) == 0).sum()) == 5
    small = pruner.compress()
    assert small.t1.out_channels == 11 and small.t2.in_channels == 11
    _same(model, small, torch.randn(4, 8))
