"""`sprkit sweep`: the table, plot and Pareto fronts of a tiny digits sweep, resuming run by
run (after an interrupt too), refused folders, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import run_cli

import sprkit.app.pipeline
import sprkit.app.sweep
from sprkit.app.cli import main
from sprkit.app.sweep import front_at_budgets, pareto_front
from sprkit.data.images import load_image_data
from sprkit.networks.architectures import build_model
from sprkit.networks.measure import top_k_accuracies
from sprkit.networks.serialization import load_compressed

# Four penalized epochs and one fine-tuning epoch: a real sweep in seconds whose points differ.
TINY = """
latency_batch = 8
[train]
penalized_epochs = 4
finetune_epochs = 1
milestones = [4]
batch_size = 64
tolerance = 0.05
"""
GRID = [
    "--methods",
    "spr,tp_group_norm",
    "--lams",
    "spr=0.5,4",
    "--lams",
    "tp_group_norm=0.003,0.1",
]
DENSE_MACS = 525_632  # resnet-digits
VALIDATION = load_image_data("digits", None, 0).val


def _argv(config: Path, out: Path, *extra) -> list:
    return ["sweep", "--dataset", "digits", "--config", config, "--out", out, *extra]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("training:")]
    assert len(lines) == 1 and lines[0].startswith("sprkit") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def swept(config, tmp_path_factory) -> Path:
    """A finished tiny sweep (2 methods x 2 lams, one seed); copy it before changing it."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    assert main([str(a) for a in _argv(config, out, *GRID)]) == 0
    return out


def _front(rows: pd.DataFrame, cost: str) -> list[bool]:
    """Independent Pareto flags: a point is on the front when every point of at most its cost
    has at most its top-1, and every strictly cheaper one strictly less."""
    flags = []
    for _, row in rows.iterrows():
        cheaper_or_equal = rows[rows[cost] <= row[cost]]["top1"].max()
        cheaper = rows[rows[cost] < row[cost]]["top1"]
        flags.append(
            cheaper_or_equal <= row["top1"] and (cheaper.empty or cheaper.max() < row["top1"])
        )
    return flags


def test_a_sweep_writes_its_table_plot_and_fronts(swept):
    table = pd.read_csv(swept / "sweep.csv")
    runs = pd.read_csv(swept / "runs.csv")
    assert list(table["method"]) == ["baseline", "spr", "spr", "tp_group_norm", "tp_group_norm"]
    assert list(table["lam"]) == [0.0, 0.5, 4.0, 0.003, 0.1]
    assert len(runs) == 5 and set(runs["seed"]) == {0}
    baseline = table.iloc[0]
    assert baseline["macs"] == DENSE_MACS and baseline["run"] == "baseline"
    for _, row in table.iloc[1:].iterrows():  # every figure is the point's compressed network
        folder = swept / row["run"] / "seed=0"
        report = json.loads((folder / "report.json").read_text())
        compressed = pd.read_csv(folder / "report.csv").set_index("network").loc["compressed"]
        assert report["train"]["penalty"] == row["method"] and report["train"]["lam"] == row["lam"]
        assert report["baseline"] is False and not (folder / "baseline").exists()
        for key in ("top1", "top5", "macs", "parameters"):
            assert row[key] == pytest.approx(compressed[key])
        assert row["macs_removed"] == pytest.approx(1 - row["macs"] / DENSE_MACS)
        # val_top1: the saved compressed network's accuracy on the validation split
        network, _ = load_compressed(
            folder / "network", lambda: build_model("resnet-digits", 10, 1)
        )
        val = top_k_accuracies(network, VALIDATION)["top1"]
        assert row["val_top1"] == pytest.approx(val, abs=1.01 / len(VALIDATION))  # argmax ties
    for method, rows in table[table["method"] != "baseline"].groupby("method"):
        for cost in ("macs", "parameters"):
            assert list(rows[f"pareto_{cost}"]) == _front(rows, cost), (method, cost)
    assert not table.iloc[0][["pareto_macs", "pareto_parameters"]].any()
    assert (swept / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (swept / "sweep.md").read_text()
    assert markdown.count("\n| ") == 6 + 6  # header + 5 rows; header + 5 MAC budgets
    assert "4 penalized + 1 fine-tuning epochs" in markdown


def test_fronts_at_budgets_are_the_best_point_within_each_budget():
    table = pd.DataFrame(
        {
            "method": ["baseline", "a", "a", "a", "b"],
            "lam": [0.0, 1.0, 2.0, 4.0, 1.0],
            "macs": [100.0, 60.0, 25.0, 8.0, 50.0],
            "top1": [0.9, 0.95, 0.97, 0.5, 0.8],
        }
    )
    budgets = front_at_budgets(table, shares=(0.5, 0.3, 0.1, 0.05))
    got = {(r.share, r.method): (r.top1, r.lam) for r in budgets.itertuples()}
    assert got[(0.5, "a")] == (0.97, 2.0) and got[(0.5, "b")] == (0.8, 1.0)
    assert got[(0.3, "a")] == (0.97, 2.0) and np.isnan(got[(0.3, "b")][0])
    assert got[(0.1, "a")] == (0.5, 4.0) and np.isnan(got[(0.05, "a")][1])
    assert set(budgets["macs"]) == {50.0, 30.0, 10.0, 5.0}


def test_pareto_front_keeps_equal_points_and_drops_dominated_ones():
    costs = np.array([10, 20, 20, 30, 40, 40])
    top1 = np.array([0.5, 0.7, 0.7, 0.6, 0.9, 0.8])
    assert pareto_front(costs, top1).tolist() == [True, True, True, False, True, False]


def test_resume_reads_finished_points_back_and_continues_an_interrupted_one(
    swept, config, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "sweep"
    shutil.copytree(swept, out)
    before = pd.read_csv(out / "sweep.csv")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(sprkit.app.pipeline, "train_spr", no_training)
    code, _, err = run_cli(capsys, _argv(config, out, *GRID, "--resume"))
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv"), before)
    # A grown grid, interrupted (Ctrl-C) once the new point's training has ended but before
    # its report is written: only that point trains, and resuming continues it.
    monkeypatch.undo()
    real = sprkit.app.pipeline.train_spr
    calls = []

    def interrupted(model, train, val, recipe, run_dir, **options):
        calls.append((Path(run_dir).relative_to(out), options["resume"]))
        pruner = real(model, train, val, recipe, run_dir, **options)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return pruner

    monkeypatch.setattr(sprkit.app.pipeline, "train_spr", interrupted)
    grown = _argv(config, out, *GRID[:3], "spr=0.5,4,2", *GRID[4:], "--resume")
    code, _, err = run_cli(capsys, grown)
    assert code == 130 and "--resume" in _one_line(err)
    new = out / "runs/spr/lam=2.0/seed=0"
    assert (new / "training/checkpoint.pt").exists() and not (new / "report.json").exists()
    assert len(pd.read_csv(out / "runs.csv")) == 3  # the baseline and the points before it
    log = (new / "training/log.csv").read_bytes()
    code, _, err = run_cli(capsys, grown)
    assert code == 0, err
    assert calls == [(Path("runs/spr/lam=2.0/seed=0/training"), True)] * 2
    assert (new / "training/log.csv").read_bytes() == log  # no epoch ran again
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["lam"]) == [0.0, 0.5, 4.0, 2.0, 0.003, 0.1]
    # Other settings on resume: refused, naming the folder and what changed.
    changed = config.parent / "changed.toml"
    changed.write_text(TINY.replace("tolerance = 0.05", "tolerance = 0.1"))
    code, _, err = run_cli(capsys, _argv(changed, out, *GRID, "--resume"))
    assert code == 2 and "tolerance" in _one_line(err)


def test_an_existing_foreign_or_damaged_sweep_is_refused_and_left_as_it_was(
    swept, config, tmp_path, capsys
):
    before = (swept / "sweep.csv").read_bytes()
    code, _, err = run_cli(capsys, _argv(config, swept, *GRID))
    assert code == 2 and "already holds a sweep: --resume" in _one_line(err)
    assert (swept / "sweep.csv").read_bytes() == before
    damaged = tmp_path / "damaged"
    shutil.copytree(swept, damaged)
    (damaged / "runs/spr/lam=4.0/seed=0/report.json").write_text("{not json")
    code, _, err = run_cli(capsys, _argv(config, damaged, *GRID, "--resume"))
    assert code == 2 and "report.json is damaged" in _one_line(err)
    foreign = tmp_path / "mine"
    (foreign / "runs").mkdir(parents=True)
    code, _, err = run_cli(capsys, _argv(config, foreign, *GRID))
    assert code == 2 and "no sprkit sweep" in _one_line(err)
    assert sorted(p.name for p in foreign.iterdir()) == [".sprkit.lock", "runs"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "spr,foo"], "unknown method 'foo'"),
        (["--methods", "spr,spr"], "twice"),
        (["--lams", "spr"], "expected METHOD=v1,v2"),
        (["--lams", "spr=1,x"], "'x' is not a number"),
        (["--lams", "spr=0"], "finite and > 0"),
        (["--lams", "spr=-1"], "finite and > 0"),
        (["--lams", "spr=nan"], "finite and > 0"),
        (["--lams", "spr=1,1"], "appears twice"),
        (["--lams", "foo=1"], "unknown method 'foo'"),
        (["--methods", "spr", "--lams", "bn_l1=1"], "not in --methods"),
        (["--lams", "spr=1", "--lams", "spr=2"], "gives spr twice"),
        (["--seeds", "0"], "--seeds must lie in"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(config, tmp_path, capsys, extra, message):
    out = tmp_path / "sweep"
    code, _, err = run_cli(capsys, _argv(config, out, *extra))
    assert code == 2 and message in _one_line(err)
    assert not out.exists()
