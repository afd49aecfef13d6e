"""The demo study: values along the path are consistent and the files are written."""

import pandas as pd
import pytest

from sprkit.cli import main


def test_demo_writes_table_and_plot_with_ordered_bounds(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--points", "3", "--hidden", "12"]) == 0
    table = pd.read_csv(out / "demo_bounds.csv")
    assert len(table) == 3 and (out / "demo_bounds.png").stat().st_size > 0
    assert (table["bigm"] <= table["perspective"] * (1 + 1e-7)).all()
    for _, row in table.iterrows():
        assert row["spr"] == pytest.approx(row["perspective"], rel=1e-6)
        assert row["spr_lower_bound"] <= row["spr"]
    assert table["kept"].iloc[0] == 0  # the path starts at lam_max: everything pruned
    assert table["kept"].iloc[-1] > 0
    assert "perspective" in capsys.readouterr().out


def test_demo_rejects_bad_alpha_in_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--alpha", "1.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "alpha" in err[0]
    assert not (tmp_path / "d").exists()
