"""Optimization models over an instance: relaxations (cvxpy) and the SPR route."""

from sprkit.optim.quadratic import ReducedLeastSquares, compressed_least_squares
from sprkit.optim.relaxations import (
    RelaxationModel,
    RelaxationResult,
    bigm_relaxation,
    perspective_relaxation,
)
from sprkit.optim.spr_route import SPRResult, SPRRoute, lambda_max

__all__ = [
    "ReducedLeastSquares",
    "RelaxationModel",
    "RelaxationResult",
    "SPRResult",
    "SPRRoute",
    "bigm_relaxation",
    "compressed_least_squares",
    "lambda_max",
    "perspective_relaxation",
]
