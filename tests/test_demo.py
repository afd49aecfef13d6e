"""The demo study: values along the path are consistent and the files are written."""

import numpy as np
import pandas as pd
import pytest

from sprkit.app.cli import main
from sprkit.instances import digits_mlp_instance
from sprkit.instances.digits_mlp import pruned_network_accuracy


def test_demo_writes_table_and_plots_with_ordered_bounds(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--points", "3", "--hidden", "12"]) == 0
    table = pd.read_csv(out / "demo_bounds.csv")
    assert len(table) == 3
    assert (out / "demo_bounds.png").stat().st_size > 0
    assert (out / "demo_pruning.png").stat().st_size > 0
    for _, row in table.iterrows():
        assert row["bigm"] <= row["perspective"] * (1 + 1e-7)
        assert row["spr"] == pytest.approx(row["perspective"], rel=1e-6)
        assert row["perspective"] <= row["mip"] * (1 + 1e-7)
        assert row["mip_bound"] <= row["mip"] and row["mip_status"] == "optimal"
        assert 0.0 <= row["gap_closed"] <= 1.0 + 1e-6
    assert table["spr_kept"].iloc[0] == 0 and table["mip_kept"].iloc[0] == 0  # lam_max
    assert table["mip_kept"].iloc[-1] > 0
    assert "perspective" in capsys.readouterr().out
    report = pd.read_csv(out / "prune" / "report.csv").set_index("network")
    assert report.loc["compressed", "top1"] == report.loc["pruned", "top1"]
    assert report.loc["compressed", "macs"] < report.loc["penalized", "macs"]


def test_pruned_network_accuracy_matches_the_torch_network():
    instance = digits_mlp_instance(10, seed=3)
    dense = np.vstack([instance.extras["output_weight"].T, instance.extras["output_bias"]])
    assert pruned_network_accuracy(instance, dense) == pytest.approx(
        instance.meta["test_accuracy"], abs=1e-12
    )
    # Removing every hidden neuron leaves the bias only: one class predicted everywhere.
    only_bias = np.zeros_like(dense)
    only_bias[-1] = dense[-1]
    assert pruned_network_accuracy(instance, only_bias) < 0.2


def test_demo_rejects_bad_alpha_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--alpha", "1.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "alpha" in err[0]
    assert not (tmp_path / "d").exists()
