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

__all__ = [
    "Case",
    "resolve_lambdas",
    "spr_closed_form",
    "spr_closed_form_ragged",
    "spr_indicator",
    "spr_penalty",
    "spr_penalty_ragged",
]
