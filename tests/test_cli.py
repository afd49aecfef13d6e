"""CLI: bounds --json against an independent cvxpy formulation; bad input exits 2 in one line."""

import json

import numpy as np
import pytest
from cli_run import run_cli
from reference import perspective_by_loop

from sprkit.instances import load_instance, save_instance, synthetic_instance


@pytest.fixture
def instance_file(tmp_path):
    return save_instance(
        tmp_path / "inst.npz",
        synthetic_instance(8, rows_per_group=2, n=50, c=3, support=3, seed=11),
    )


@pytest.mark.parametrize("seed", range(4))
def test_bounds_json_agrees_with_independent_cvxpy(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    inst = synthetic_instance(
        int(rng.integers(5, 12)),
        rows_per_group=int(rng.integers(1, 4)),
        n=int(rng.integers(20, 80)),
        c=2,
        seed=seed,
    )
    path = save_instance(tmp_path / f"r{seed}.npz", inst)
    lam0, lam2, M = rng.uniform(0.05, 1.0), rng.uniform(0.01, 1.0), rng.uniform(0.5, 3.0)
    code, out, _ = run_cli(
        capsys, ["bounds", path, "--lam0", lam0, "--lam2", lam2, "--M", M, "--json"]
    )
    assert code == 0
    result = json.loads(out)
    assert set(result["seconds"]) == {"bigm", "perspective", "spr"}
    perspective = perspective_by_loop(inst.X, inst.Y, inst.groups, lam0, lam2, M)
    bigm = perspective_by_loop(inst.X, inst.Y, inst.groups, lam0, lam2, M, "bigm")
    assert result["perspective"] == pytest.approx(perspective, rel=1e-6)
    assert result["spr"] == pytest.approx(perspective, rel=1e-6)
    assert result["bigm"] == pytest.approx(bigm, rel=1e-6)


def test_bounds_accepts_the_paper_parametrization(instance_file, capsys):
    _, paper, _ = run_cli(
        capsys, ["bounds", instance_file, "--lam", 1.0, "--alpha", 0.25, "--M", 2, "--json"]
    )
    _, direct, _ = run_cli(
        capsys, ["bounds", instance_file, "--lam0", 0.75, "--lam2", 0.25, "--M", 2, "--json"]
    )
    assert json.loads(paper)["spr"] == pytest.approx(json.loads(direct)["spr"], rel=1e-9)


def test_bounds_text_output_names_the_three_bounds(instance_file, capsys):
    code, out, _ = run_cli(
        capsys, ["bounds", instance_file, "--lam0", 0.3, "--lam2", 0.1, "--M", 2]
    )
    assert code == 0
    assert all(key in out for key in ("bigm", "perspective", "spr"))


def _bad_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("hello")
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, X=np.ones((4, 3)), Y=np.ones((5, 1)), groups=np.zeros(3, int))
    nan = tmp_path / "nan.npz"
    np.savez(nan, X=np.full((4, 3), np.nan), Y=np.ones((4, 1)), groups=np.zeros(3, int))
    free = tmp_path / "free.npz"
    np.savez(free, X=np.ones((4, 3)), Y=np.ones((4, 1)), groups=-np.ones(3, int))
    return {
        "missing": tmp_path / "nope.npz",
        "garbage": garbage,
        "shapes": shapes,
        "nan": nan,
        "free": free,
    }


@pytest.mark.parametrize(
    "which, extra, message",
    [
        ("missing", [], "not found"),
        ("garbage", [], "not an .npz archive"),
        ("shapes", [], "Y has 5 rows"),
        ("nan", [], "NaN or Inf"),
        ("free", [], "no prunable group"),
        ("good", ["--lam0", -1, "--lam2", 1], "lam0 must be"),
        ("good", ["--lam", 1, "--alpha", 1.5], "alpha must lie"),
        ("good", ["--lam0", 1, "--lam2", 1, "--M", 0], "M must be"),
        ("good", ["--lam0", 1], "give both"),
        ("good", ["--lam0", "abc", "--lam2", 1], "invalid float value"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, instance_file, which, extra, message):
    path = instance_file if which == "good" else _bad_files(tmp_path)[which]
    argv = ["bounds", path] + (extra or ["--lam0", 1, "--lam2", 1])
    if "--M" not in argv:
        argv += ["--M", 1]
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_instance_command_writes_and_bad_input_leaves_existing_file_intact(tmp_path, capsys):
    target = tmp_path / "inst.npz"
    code, out, _ = run_cli(
        capsys,
        [
            "instance",
            "synthetic",
            "--structures",
            6,
            "--rows-per-group",
            2,
            "--n",
            30,
            "--c",
            2,
            "--seed",
            3,
            "-o",
            target,
        ],
    )
    assert code == 0 and load_instance(target).n_structures == 6
    before = target.read_bytes()
    code, _, err = run_cli(
        capsys, ["instance", "synthetic", "--structures", 6, "--support", 9, "-o", target]
    )
    assert code == 2 and "support" in err and len(err.strip().splitlines()) == 1
    assert target.read_bytes() == before
