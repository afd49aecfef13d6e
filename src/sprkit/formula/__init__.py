"""The Structured Perspective Regularization in closed form: value, indicator, case, prox.

This package is the only place where the formula of DESIGN.md section 2 is written down;
the optimization models, the SPR route and the torch regularizer all import it.
"""

from sprkit.formula.penalty import (
    Case,
    SPRClosedForm,
    group_reductions,
    spr_closed_form,
    spr_closed_form_ragged,
    spr_conjugate_ragged,
    spr_from_reductions,
    spr_indicator,
    spr_penalty,
    spr_penalty_ragged,
)
from sprkit.formula.prox import RaggedProx, spr_prox_ragged

__all__ = [
    "Case",
    "RaggedProx",
    "SPRClosedForm",
    "group_reductions",
    "spr_closed_form",
    "spr_closed_form_ragged",
    "spr_conjugate_ragged",
    "spr_from_reductions",
    "spr_indicator",
    "spr_penalty",
    "spr_penalty_ragged",
    "spr_prox_ragged",
]
