"""sprkit: structured pruning as a MIP, its relaxations and the closed-form SPR penalty.

The entry points a user types, from the formula up to the networks:

- the closed form: spr_penalty, spr_indicator, spr_closed_form, Case, spr_penalty_ragged
  (groups of different sizes as one flat vector);
- the parameters: SPRParams (lam0, lam2, M; or the paper's lam, alpha), validated once;
- instances: Instance, make_instance, load_instance, save_instance;
- relaxations and solvers: bigm_relaxation, perspective_relaxation (cvxpy), SPRRoute (the
  closed-form route with a dual certificate), ExactSolver (the MIP, certified);
- networks (torch): SPRPruner (any model), compress, load_compressed.
"""

import importlib

from sprkit.formula import (
    Case,
    spr_closed_form,
    spr_indicator,
    spr_penalty,
    spr_penalty_ragged,
)
from sprkit.params import SPRParams

__version__ = "0.1.0"

# Imported on first use: the instances and solvers need scipy, the relaxations cvxpy, the
# network side torch; `import sprkit` stays light for the closed form.
_LAZY = {
    "Instance": "sprkit.instances",
    "make_instance": "sprkit.instances",
    "load_instance": "sprkit.instances",
    "save_instance": "sprkit.instances",
    "bigm_relaxation": "sprkit.optim.relaxations",
    "perspective_relaxation": "sprkit.optim.relaxations",
    "SPRRoute": "sprkit.optim.spr_route",
    "ExactSolver": "sprkit.optim.mip",
    "SPRPruner": "sprkit.networks.pruner",
    "compress": "sprkit.networks.compression",
    "load_compressed": "sprkit.networks.serialization",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sprkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Case",
    "ExactSolver",
    "Instance",
    "SPRParams",
    "SPRPruner",
    "SPRRoute",
    "bigm_relaxation",
    "compress",
    "load_compressed",
    "load_instance",
    "make_instance",
    "perspective_relaxation",
    "save_instance",
    "spr_closed_form",
    "spr_indicator",
    "spr_penalty",
    "spr_penalty_ragged",
]
