"""What a pruning run reports: accuracy, size, cost and measured speed of each network.

Conventions: accuracies are shares in [0, 1] on the test split (top-5 only with more than 5
classes); parameters are counted scalars; MACs are multiply-accumulates of one forward pass on
one input, counted with torch.utils.flop_counter (sprkit.networks.measure); latency is the
median wall time in milliseconds of one forward pass on a batch, in eval mode, on the device
and with the torch threads of the run (`sprkit prune` measures BatchNorm-folded copies).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from sprkit.atomic import write_atomically  # noqa: E402


def top_k_accuracies(
    model: nn.Module, data: TensorDataset, device: torch.device | str = "cpu"
) -> dict[str, float | None]:
    """{"top1": ..., "top5": ... or None when there are 5 classes or fewer}."""
    model.eval()
    correct1 = correct5 = 0
    top5 = None
    with torch.no_grad():
        for images, labels in DataLoader(data, batch_size=512):
            logits = model(images.to(device))
            labels = labels.to(device)
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((ranked[:, 0] == labels).sum())
            correct5 += int((ranked == labels[:, None]).any(dim=1).sum())
            top5 = logits.shape[1] > 5
    count = len(data)
    return {"top1": correct1 / count, "top5": correct5 / count if top5 else None}


def max_logit_difference(
    first: nn.Module, second: nn.Module, data: TensorDataset, device: torch.device | str = "cpu"
) -> float:
    """Largest |difference| between the two models' logits over `data` (eval mode)."""
    first.eval()
    second.eval()
    largest = 0.0
    with torch.no_grad():
        for images, _ in DataLoader(data, batch_size=512):
            images = images.to(device)
            largest = max(largest, float((first(images) - second(images)).abs().max()))
    return largest


def latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 64,
    repeats: int = 30,
    device: torch.device | str = "cpu",
) -> float:
    """Median milliseconds of one forward pass on a random batch (after 3 warm-up passes)."""
    device = torch.device(device)
    model.eval().to(device)
    batch = torch.randn((batch_size, *input_shape), device=device)
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 3):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat >= 3:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def plot_kept_channels(layers: pd.DataFrame, path: Path) -> None:
    """Bar chart per conv layer: channels of the dense network and channels kept."""
    figure, axis = plt.subplots(figsize=(max(6.0, 0.25 * len(layers)), 4.0))
    positions = range(len(layers))
    axis.bar(positions, layers["dense"], color="#cccccc", label="dense")
    axis.bar(positions, layers["compressed"], color="#1f77b4", label="kept (compressed)")
    axis.set_xticks(list(positions), layers["layer"], rotation=90, fontsize=7)
    axis.set_ylabel("output channels")
    axis.set_title("Channels kept per conv layer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)


def write_report(folder: Path, summary: dict, networks: pd.DataFrame, layers: pd.DataFrame) -> None:
    """report.json (summary + both tables), report.csv (one row per network), layers.csv and
    kept_channels.png; each file replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        **summary,
        "networks": networks.to_dict(orient="records"),
        "layers": layers.to_dict(orient="records"),
    }
    for name, write in (
        ("report.json", lambda path: path.write_text(json.dumps(document, indent=1))),
        ("report.csv", lambda path: networks.to_csv(path, index=False)),
        ("layers.csv", lambda path: layers.to_csv(path, index=False)),
        ("kept_channels.png", lambda path: plot_kept_channels(layers, path)),
    ):
        write_atomically(folder / name, write)
