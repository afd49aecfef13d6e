"""Optimization models over an instance: relaxations (cvxpy), the SPR route, exact solvers."""

from sprkit.optim.bounds import compute_bounds
from sprkit.optim.mip import METHODS, ExactSolver
from sprkit.optim.problem import ScaledProblem, scale_problem
from sprkit.optim.quadratic import ReducedLeastSquares, compressed_least_squares
from sprkit.optim.result import MIPResult, Progress
from sprkit.optim.spr_route import SPRResult, SPRRoute, lambda_max

_RELAXATIONS = (
    "RelaxationFailed",
    "RelaxationModel",
    "RelaxationResult",
    "bigm_relaxation",
    "perspective_relaxation",
)

__all__ = [
    "METHODS",
    "ExactSolver",
    "MIPResult",
    "Progress",
    "ReducedLeastSquares",
    "ScaledProblem",
    "SPRResult",
    "SPRRoute",
    "compressed_least_squares",
    "compute_bounds",
    "lambda_max",
    "scale_problem",
    *_RELAXATIONS,
]


def __getattr__(name: str):
    # cvxpy is imported on first use of a relaxation model only (it is slow to import and the
    # exact solvers do not need it).
    if name in _RELAXATIONS:
        from sprkit.optim import relaxations

        return getattr(relaxations, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
