"""SPR inside Torch-Pruning: a BasePruner whose regularizer is the SPR penalty.

A Torch-Pruning user switches to SPR by changing the line that builds the pruner:

    pruner = SPRTorchPruner(model, example_inputs, lam=0.5, alpha=0.5,
                            pruning_ratio=0.5, ignored_layers=[model.fc])
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        pruner.regularize(model)   # adds the gradient of lam * R(W), between backward and step
        optimizer.step(); optimizer.zero_grad()
    pruner.step()                  # Torch-Pruning removes the structures of least SPR norm

`regularize` adds d(lam * R)/dW to the gradients of the structures' parameters (the same
penalty as sprkit.networks.penalties.SPRPenalty, structures from sprkit.networks.structures,
M fixed at construction). `step` is Torch-Pruning's own, ranking each group's positions by
the l2 norm of the rows SPR penalizes (SPRImportance); after it the structures are derived
again from the smaller model, so regularization and iterative steps go on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import nn

from sprkit.networks.graph import CUSTOM_PRUNERS, output_channel_dim
from sprkit.networks.penalties import SPRPenalty
from sprkit.networks.structures import derive_structures


class SPRImportance(tp.importance.Importance):
    """Per position of a Torch-Pruning group: the l2 norm of the output rows (weights, bias,
    normalization scale and shift) of every member layer, i.e. the SPR structure's norm."""

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor:
        squares = None
        for dependency, idxs in group:
            if not group._DG.is_out_channel_pruning_fn(dependency.handler):
                continue
            module = dependency.target.module
            channels = torch.as_tensor([int(i) for i in idxs])
            for name, parameter in module.named_parameters(recurse=False):
                dim = output_channel_dim(module, name)  # 1 for a transposed conv's weight
                if parameter.ndim <= dim or parameter.shape[dim] <= int(channels.max()):
                    continue
                values = parameter.detach().transpose(0, dim)[channels.to(parameter.device)]
                total = values.reshape(len(channels), -1).double().square().sum(dim=1).cpu()
                squares = total if squares is None else squares + total
        if squares is None:
            return torch.zeros(len(group[0][1]))
        return squares.sqrt()


class SPRTorchPruner(tp.pruner.BasePruner):
    """Torch-Pruning's BasePruner with the SPR penalty as regularizer (module docstring).
    Keyword arguments beyond SPR's go to BasePruner (pruning_ratio, global_pruning,
    iterative_steps, round_to, ...)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor,
        *,
        lam: float = 1.0,
        alpha: float = 0.5,
        M_scale: float = 1.0,
        ignored_layers: Sequence[nn.Module] | None = None,
        **kwargs,
    ) -> None:
        customized = {**CUSTOM_PRUNERS, **(kwargs.pop("customized_pruners", None) or {})}
        super().__init__(
            model,
            example_inputs,
            importance=SPRImportance(),
            ignored_layers=list(ignored_layers or []),
            customized_pruners=customized,
            **kwargs,
        )
        self.spr_settings = dict(lam=lam, alpha=alpha, M_scale=M_scale)
        self._spr_inputs = example_inputs
        self._spr_ignored = list(ignored_layers or [])
        self.penalty = self._build_penalty()

    def _build_penalty(self) -> SPRPenalty:
        structures = derive_structures(
            self.model, self._spr_inputs, ignored_layers=self._spr_ignored
        )
        return SPRPenalty(self.model, structures, **self.spr_settings)

    def regularize(self, model: nn.Module, loss: torch.Tensor | None = None) -> None:
        """Add the gradient of lam * R(W) to the parameters' gradients (call after
        loss.backward(), before optimizer.step())."""
        parameters = self.penalty.structures.parameters_of(model)
        gradients = torch.autograd.grad(self.penalty(), parameters)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                if parameter.grad is None:
                    parameter.grad = gradient.clone()
                else:
                    parameter.grad.add_(gradient)

    def step(self, interactive: bool = False):
        """Torch-Pruning's pruning step; the SPR structures are then derived again from the
        smaller model (M re-read from it)."""
        result = super().step(interactive)
        if not interactive:
            self.penalty = self._build_penalty()
        return result
