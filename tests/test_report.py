"""Report pieces: top-k accuracies against a hand count, files written atomically."""

import copy
import json

import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sprkit.app.pipeline import _layer_table
from sprkit.app.reports import write_report
from sprkit.networks import SPRPruner
from sprkit.networks.measure import max_logit_difference, top_k_accuracies


class FixedLogits(nn.Module):
    """Returns the logits stored for each input index (inputs are the indices)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.long().flatten()]


def test_top1_and_top5_count_the_ranks_of_the_true_label():
    torch.manual_seed(0)
    logits = torch.randn(50, 10)
    labels = torch.randint(0, 10, (50,))
    ranks = (logits > logits.gather(1, labels[:, None])).sum(dim=1)  # 0 = best
    data = TensorDataset(torch.arange(50.0)[:, None], labels)
    accuracy = top_k_accuracies(FixedLogits(logits), data)
    assert accuracy["top1"] == int((ranks == 0).sum()) / 50
    assert accuracy["top5"] == int((ranks < 5).sum()) / 50
    few_classes = TensorDataset(torch.arange(50.0)[:, None], labels % 4)
    assert top_k_accuracies(FixedLogits(logits[:, :4]), few_classes)["top5"] is None


def test_logit_difference():
    data = TensorDataset(torch.arange(6.0)[:, None], torch.zeros(6, dtype=torch.long))
    logits = torch.zeros(6, 3)
    shifted = logits.clone()
    shifted[4, 1] = -0.25
    assert max_logit_difference(FixedLogits(logits), FixedLogits(shifted), data) == 0.25


def test_report_files(tmp_path):
    networks = pd.DataFrame(
        [{"network": "dense", "top1": 0.9}, {"network": "compressed", "top1": 0.9}]
    )
    layers = pd.DataFrame([{"layer": "conv1", "dense": 16, "masked": 9, "compressed": 9}])
    write_report(tmp_path, {"arch": "resnet-digits"}, networks, layers)
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["arch"] == "resnet-digits" and document["layers"][0]["compressed"] == 9
    assert pd.read_csv(tmp_path / "report.csv")["network"].tolist() == ["dense", "compressed"]
    assert (tmp_path / "kept_channels.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_layer_table_counts_a_transposed_convs_output_channels():
    """dense, masked and compressed are output channels: dimension 1 of a transposed conv's
    weight (it reported the 32 input channels as dense and masked)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 24, 2, 2),
        nn.BatchNorm2d(24),
        nn.ReLU(),
        nn.Conv2d(24, 2, 1),
    ).eval()
    dense = copy.deepcopy(model)
    pruner = SPRPruner(model, torch.randn(2, 3, 8, 8))
    up = [j for j, layer in enumerate(pruner.structures.layer) if layer == "2"]
    keep = torch.ones(pruner.structures.n, dtype=torch.bool)
    keep[up[:10]] = False
    pruner.set_masks(keep)
    pruner.compress()
    table = _layer_table(dense, model, ["0", "2"], pruner.compression).set_index("layer")
    assert table.loc["2"].tolist() == [24, 14, 14]
    assert table.loc["0"].tolist() == [32, 32, 32]
