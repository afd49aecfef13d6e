"""Structured-pruning instances: the .npz format and its generators."""

from sprkit.instances.digits_mlp import digits_mlp_instance
from sprkit.instances.format import Instance, load_instance, make_instance, save_instance
from sprkit.instances.synthetic import synthetic_instance

__all__ = [
    "Instance",
    "digits_mlp_instance",
    "load_instance",
    "make_instance",
    "save_instance",
    "synthetic_instance",
]
