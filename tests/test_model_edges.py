"""Models beyond the zoo: what works, and what is refused with one clear error."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sprkit.errors import ParameterError
from sprkit.networks import CompressionError, SPRPruner, load_compressed


def _same(model, small, x):
    with torch.no_grad():
        want, got = model(x), small(x)
    want = want if isinstance(want, (tuple, list)) else [want]
    got = got if isinstance(got, (tuple, list)) else [got]
    for a, b in zip(want, got, strict=True):
        assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


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


def test_groupnorm_losing_channels_is_a_compression_error():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.GroupNorm(4, 16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    ).eval()
    pruner = SPRPruner(model, torch.zeros(2, 3, 8, 8))
    keep = torch.ones(pruner.structures.n, dtype=torch.bool)
    keep[:2] = False
    pruner.set_masks(keep)
    with pytest.raises(CompressionError):
        pruner.compress()


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
            self.embed = nn.Linear(8, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.embed(x))
            return self.fc((h + self.attn(h, h, h, need_weights=False)[0]).mean(1))

    with torch.no_grad():
        pruner = SPRPruner(Attention().eval(), torch.zeros(2, 5, 8))
        macs = pruner.macs()
    # the Linear layers alone: embed, q/k/v projections, output projection, head
    assert macs >= 5 * 8 * 16 + 5 * 16 * 48 + 5 * 16 * 16 + 16 * 3


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
