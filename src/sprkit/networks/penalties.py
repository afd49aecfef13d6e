"""Structured penalties over the structures of a model (sprkit.networks.structures).

- SPR: R(W) = sum_g n_g z(w_g) / sum_g n_g, z the training form of sprkit.formula (y* = 1
  beyond the box) in the paper's (lam, alpha, M) parametrization; lam is inside lam0 and lam2,
  so the value is lam * R. M per structure = M_scale x the largest |value| of the parameter
  tensors it has rows in, read once from the model as it is at construction (the dense
  reference) and then fixed. The closed form is evaluated once for all structures together.
- group lasso (competitor): lam * sum_g sqrt(n_g) ||w_g||_2 / sum_g n_g, normalized like R;
- BatchNorm-L1 / network slimming (Liu et al. 2017, competitor): lam * sum |gamma| over the
  normalization scales the structures own.
- Torch-Pruning's GroupNormPruner (competitor, sprkit.networks.tp_group_norm): its own
  regularizer, which acts on the gradients after backward() (`regularize()`); its loss term
  is 0.
Each is a callable returning a differentiable scalar for the model it was built on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.formula import spr_from_reductions
from sprkit.networks.structures import Structures
from sprkit.networks.tp_group_norm import TPGroupNormPenalty
from sprkit.params import SPRParams, check_lam

PENALTIES = ("spr", "group_lasso", "bn_l1", "tp_group_norm")
# Penalties whose structures the tolerance rule removes in the order of the method's own
# score (as many as the tolerance allows) rather than by a weight-magnitude threshold.
RANKED_BY_SCORE = ("bn_l1", "tp_group_norm")


def box_bounds(model: nn.Module, structures: Structures, M_scale: float) -> torch.Tensor:
    """M per structure (module docstring), on the device of the model's parameters."""
    if not M_scale > 0:
        raise ParameterError(f"M_scale must be > 0, got {M_scale}")
    parameters = structures.parameters_of(model)
    device = parameters[0].device
    M = torch.zeros(structures.n, device=device, dtype=torch.float64)
    with torch.no_grad():
        for piece, parameter in zip(structures.slices, parameters, strict=True):
            largest = parameter.detach().abs().max().double() * M_scale
            M.scatter_reduce_(
                0, piece.owner.to(device), largest.expand(len(piece.owner)), reduce="amax"
            )
    if not bool((M > 0).all()):
        raise ParameterError("a structure lies only in all-zero parameter tensors: M would be 0")
    return M


class SPRPenalty:
    """lam * R(W) over `structures` of `model` (module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        structures: Structures,
        *,
        lam: float,
        alpha: float,
        M_scale: float = 1.0,
    ) -> None:
        params = SPRParams.paper(lam, alpha)
        self.lam0, self.lam2 = params.lam0, params.lam2
        self.model = model
        self.structures = structures
        self.M = box_bounds(model, structures, M_scale)
        self.weights = structures.sizes.to(self.M.device)
        self.owners = structures.owners_of(model)

    def values(self) -> torch.Tensor:
        """z (training form) of every structure."""
        parameters = [getattr(module, name) for module, name in self.owners]
        sq_norm, max_abs = self.structures.reductions_of(parameters)
        return spr_from_reductions(
            sq_norm,
            max_abs,
            lam0=self.lam0,
            lam2=self.lam2,
            M=self.M.to(sq_norm),
            outside="train",
            check_M=False,
        ).value

    def __call__(self) -> torch.Tensor:
        values = self.values()
        weights = self.weights.to(values)
        return (weights * values).sum() / weights.sum()


class GroupLassoPenalty:
    """lam * sum_g sqrt(n_g) ||w_g||_2 / sum_g n_g over `structures`."""

    def __init__(self, model: nn.Module, structures: Structures, *, lam: float) -> None:
        self.model, self.structures, self.lam = model, structures, check_lam(lam)
        self.owners = structures.owners_of(model)

    def __call__(self) -> torch.Tensor:
        parameters = [getattr(module, name) for module, name in self.owners]
        sq_norm, _ = self.structures.reductions_of(parameters)
        # sqrt is not differentiable at 0: a tiny floor keeps gradients finite there.
        norms = torch.sqrt(sq_norm + 1e-24)
        sizes = self.structures.sizes.to(norms)
        return self.lam * (sizes.sqrt() * norms).sum() / sizes.sum()


def _is_normalization_scale(module: nn.Module, name: str) -> bool:
    """Whether parameter `name` of `module` is the per-channel scale (gamma) of a BatchNorm,
    InstanceNorm or GroupNorm."""
    return name == "weight" and isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm))


def normalization_scales(model: nn.Module, structures: Structures) -> list[torch.Tensor]:
    """The scale (weight) tensors of the normalization layers the structures own."""
    modules = dict(model.named_modules())
    scales = []
    for piece in structures.slices:
        module_name, _, name = piece.parameter.rpartition(".")
        module = modules[module_name]
        if _is_normalization_scale(module, name):
            scales.append(module.weight)
    return scales


class BatchNormL1Penalty:
    """lam * sum of |gamma| over the normalization scales the structures own."""

    def __init__(self, model: nn.Module, structures: Structures, *, lam: float) -> None:
        self.lam = check_lam(lam)
        self.scales = normalization_scales(model, structures)
        if not self.scales:
            raise ParameterError(
                "bn_l1 needs BatchNorm (or GroupNorm) layers: the model's structures have none"
            )

    def __call__(self) -> torch.Tensor:
        return self.lam * sum(scale.abs().sum() for scale in self.scales)


def structure_scores(model: nn.Module, structures: Structures, penalty: str) -> torch.Tensor:
    """Importance of each structure as the method that trained it sees it: the l2 norm of its
    scalars (spr, group_lasso), the mean |gamma| of its normalization rows (bn_l1; structures
    without one score by their norm)."""
    norms = structures.norms(model)
    if penalty != "bn_l1":
        return norms
    modules = dict(model.named_modules())
    totals = torch.zeros(structures.n, dtype=torch.float64)
    counts = torch.zeros(structures.n, dtype=torch.float64)
    for piece in structures.slices:
        module_name, _, name = piece.parameter.rpartition(".")
        module = modules[module_name]
        if _is_normalization_scale(module, name):
            gamma = module.weight.detach().abs().double().cpu()[piece.rows]
            totals.index_add_(0, piece.owner, gamma)
            counts.index_add_(0, piece.owner, torch.ones_like(gamma))
    return torch.where(counts > 0, totals / counts.clamp(min=1), norms)


def make_penalty(
    name: str,
    model: nn.Module,
    structures: Structures,
    *,
    lam: float,
    alpha: float = 0.5,
    M_scale: float = 1.0,
    example_inputs: torch.Tensor | None = None,
    ignored_layers: Sequence[nn.Module] = (),
):
    """The named penalty (one of PENALTIES) over `structures` of `model`; tp_group_norm also
    needs `example_inputs` (to trace its dependency graph) and the `ignored_layers`."""
    if name == "spr":
        return SPRPenalty(model, structures, lam=lam, alpha=alpha, M_scale=M_scale)
    if name == "group_lasso":
        return GroupLassoPenalty(model, structures, lam=lam)
    if name == "bn_l1":
        return BatchNormL1Penalty(model, structures, lam=lam)
    if name == "tp_group_norm":
        if example_inputs is None:
            raise ParameterError("the tp_group_norm penalty needs example_inputs")
        return TPGroupNormPenalty(
            model, structures, example_inputs, lam=lam, ignored_layers=ignored_layers
        )
    raise ParameterError(f"unknown penalty {name!r}; known: {', '.join(PENALTIES)}")
