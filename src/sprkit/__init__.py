"""sprkit: structured pruning as a MIP, its relaxations and the closed-form SPR penalty."""

from sprkit.formula import (
    Case,
    resolve_lambdas,
    spr_closed_form,
    spr_closed_form_ragged,
    spr_indicator,
    spr_penalty,
    spr_penalty_ragged,
)

__version__ = "0.1.0"

# The network side needs torch: imported on first use, so that `import sprkit` stays light for
# the solver and the command line.
_LAZY = {
    "SPRPruner": "sprkit.networks.pruner",
    "compress": "sprkit.networks.compression",
    "load_compressed": "sprkit.networks.serialization",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sprkit' has no attribute {name!r}")


__all__ = [
    "Case",
    "SPRPruner",
    "compress",
    "load_compressed",
    "resolve_lambdas",
    "spr_closed_form",
    "spr_closed_form_ragged",
    "spr_indicator",
    "spr_penalty",
    "spr_penalty_ragged",
]
