"""Regression: every certified optimum in models/ is reproduced."""

from pathlib import Path

import pytest

from sprkit.errors import InstanceError
from sprkit.instances import load_instance
from sprkit.instances.solutions import read_solution
from sprkit.optim.mip import OPTIMAL, ExactSolver

SOLUTIONS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.sol"))


def test_library_is_not_empty():
    assert len(SOLUTIONS) >= 5


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_certified_optimum_is_reproduced(path):
    record = read_solution(path)
    instance = load_instance(record.instance_path(path))
    result = ExactSolver(instance, record.M).solve(record.lam0, record.lam2)
    assert result.status == OPTIMAL
    assert result.kept == record.kept
    assert result.objective == pytest.approx(record.objective, rel=1e-6)
    assert record.bound <= record.objective
    scip_objective = float(record.checked.split()[1])
    assert scip_objective == pytest.approx(record.objective, rel=1e-6)


def test_malformed_solution_file_is_named(tmp_path):
    broken = tmp_path / "broken.sol"
    broken.write_text("instance x.npz\nlam0 abc\nlam2 1\nM 1\nobjective 1\nbound 1\nkept\n")
    with pytest.raises(InstanceError, match="malformed"):
        read_solution(broken)
    (tmp_path / "short.sol").write_text("instance x.npz\n")
    with pytest.raises(InstanceError, match="lacks"):
        read_solution(tmp_path / "short.sol")
