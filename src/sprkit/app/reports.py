"""The report files of a pruning run: report.json, report.csv, layers.csv, kept_channels.png.

The figures in them are measured by sprkit.networks.measure (conventions there); `sprkit prune`
measures BatchNorm-folded copies of every network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sprkit.app.plots import plot_kept_channels
from sprkit.atomic import write_atomically

REPORT_FILES = ("report.json", "report.csv", "layers.csv", "kept_channels.png")


def write_report(folder: Path, summary: dict, networks: pd.DataFrame, layers: pd.DataFrame) -> None:
    """report.json (summary + both tables), report.csv (one row per network), layers.csv and
    kept_channels.png; each file replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        **summary,
        "networks": networks.to_dict(orient="records"),
        "layers": layers.to_dict(orient="records"),
    }
    writers = (
        lambda path: path.write_text(json.dumps(document, indent=1)),
        lambda path: networks.to_csv(path, index=False),
        lambda path: layers.to_csv(path, index=False),
        lambda path: plot_kept_channels(layers, path),
    )
    for name, write in zip(REPORT_FILES, writers, strict=True):
        write_atomically(folder / name, write)
