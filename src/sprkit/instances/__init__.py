"""Structured-pruning instances: the .npz format and its generators."""

from sprkit.instances.format import Instance, load_instance, make_instance, save_instance
from sprkit.instances.regimes import MIPCase, hard_case
from sprkit.instances.synthetic import synthetic_instance

__all__ = [
    "Instance",
    "MIPCase",
    "digits_mlp_instance",
    "hard_case",
    "load_instance",
    "make_instance",
    "save_instance",
    "synthetic_instance",
]


def __getattr__(name: str):
    # The digits generator trains a network (torch, scikit-learn): imported on first use only,
    # so that reading an instance does not pay for those imports.
    if name == "digits_mlp_instance":
        from sprkit.instances.digits_mlp import digits_mlp_instance

        return digits_mlp_instance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
