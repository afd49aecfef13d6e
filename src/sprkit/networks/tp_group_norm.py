"""Torch-Pruning's GroupNormPruner (DepGraph, Fang et al., CVPR 2023) as a competitor penalty.

Torch-Pruning's own parts, used unchanged: its dependency groups, its sparsity regularizer
(`GroupNormPruner.regularize`, called after backward(): for position i of a group it adds
reg * gamma_i * w to the gradient of every weight the position owns, the output rows of its
convs and Linear layers, the input columns of the layers that consume it and its BatchNorm
scales; gamma_i = 16 ** ((max s - s_i) / (max s - min s)) with s the square root of the
importance, so the least important positions are pushed hardest) with reg = the run's lam,
and its group importance (`GroupMagnitudeImportance(p=2)`: per position the mean over the
group's layers of the sum of squares of its rows or columns, divided by the group's mean; the
ranking TP's global pruning uses).
sprkit's parts: the structures the importance is mapped onto (sprkit.networks.structures, from
the same dependency graph and the same excluded layers: the user's ignored layers and the
groups that reach the model's outputs), the pruning rule, fine-tuning and compression.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.graph import (
    CUSTOM_PRUNERS,
    ROOT_TYPES,
    TRANSPOSED_TYPES,
    build_graph,
    is_grouped_conv,
    never_pruned,
    output_tensors,
)
from sprkit.networks.structures import Structures
from sprkit.params import check_lam


def output_layers(model: nn.Module, example_inputs: torch.Tensor) -> list[nn.Module]:
    """The root layers of the dependency groups that are the model's outputs or carry its
    input (never pruned by sprkit, so kept out of Torch-Pruning's groups too)."""
    graph = build_graph(model, example_inputs)
    return [
        group[0].dep.target.module
        for group in graph.get_all_groups(root_module_types=ROOT_TYPES)
        if never_pruned(graph, group)
    ]


class TPGroupNormPenalty:
    """Torch-Pruning's GroupNormPruner regularizer with reg = `lam` on `model` (module
    docstring). It adds nothing to the loss (calling it gives 0): `regularize()` acts on the
    gradients, between backward() and the optimizer step."""

    def __init__(
        self,
        model: nn.Module,
        structures: Structures,
        example_inputs: torch.Tensor,
        *,
        lam: float,
        ignored_layers: Sequence[nn.Module] = (),
    ) -> None:
        grouped = [name for name, module in model.named_modules() if is_grouped_conv(module)]
        if grouped:  # its gamma indexing fails there (IndexError inside regularize)
            raise ParameterError(
                "the tp_group_norm penalty cannot run on grouped convolutions (Torch-Pruning "
                f"1.6's GroupNormPruner.regularize fails on them): {grouped[0]}"
            )
        transposed = [
            name for name, module in model.named_modules() if isinstance(module, TRANSPOSED_TYPES)
        ]
        if transposed:  # it regularizes dimension 0 of their weights: their input channels
            raise ParameterError(
                "the tp_group_norm penalty cannot run on transposed convolutions (Torch-"
                "Pruning 1.6's GroupNormPruner.regularize scales their input channels as "
                f"if they were outputs): {transposed[0]}"
            )
        self.model, self.structures = model, structures
        self.pruner = tp.pruner.GroupNormPruner(
            model,
            example_inputs,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            reg=check_lam(lam),
            ignored_layers=[*ignored_layers, *output_layers(model, example_inputs)],
            customized_pruners=CUSTOM_PRUNERS,
            output_transform=output_tensors,
        )
        # The groups GroupNormPruner regularizes, and the structure of each of their positions.
        self.groups = list(
            self.pruner.DG.get_all_groups(
                ignored_layers=self.pruner.ignored_layers,
                root_module_types=self.pruner.root_module_types,
            )
        )
        self._pairs = self._structure_pairs()

    def _structure_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per Torch-Pruning group: (position, structure) pairs, a position's structures being
        those owning the output rows its layers have at that position."""
        owner = {
            (piece.parameter, int(row)): int(structure)
            for piece in self.structures.slices
            for row, structure in zip(piece.rows, piece.owner, strict=True)
        }
        names = {id(module): name for name, module in self.model.named_modules()}
        graph, pairs = self.pruner.DG, []
        covered = torch.zeros(self.structures.n, dtype=torch.bool)
        for group in self.groups:
            found: set[tuple[int, int]] = set()
            for item in group:
                if not graph.is_out_channel_pruning_fn(item.dep.handler):
                    continue
                name = names.get(id(item.dep.target.module))
                for row, position in zip(item.idxs, item.root_idxs, strict=True):
                    structure = owner.get((f"{name}.weight", int(row)))
                    if structure is not None:
                        found.add((int(position), structure))
            positions = {position for position, _ in found}
            if len(positions) != len(group[0].idxs):
                raise ParameterError(
                    "Torch-Pruning's groups and sprkit's structures differ on this model "
                    f"(the group of {names.get(id(group[0].dep.target.module))})"
                )
            pair = torch.tensor(sorted(found), dtype=torch.long).T
            covered[pair[1]] = True
            pairs.append((pair[0], pair[1]))
        if not bool(covered.all()):
            raise ParameterError("Torch-Pruning's groups leave some of sprkit's structures out")
        return pairs

    def __call__(self) -> torch.Tensor:
        """The loss term: none (0), the regularizer acts on gradients."""
        return torch.zeros((), device=next(self.model.parameters()).device)

    def regularize(self) -> None:
        """Torch-Pruning's `regularize(model)`: add its gradient term (after backward())."""
        self.pruner.regularize(self.model)

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """Torch-Pruning's importance of every structure (float64, CPU): that of its position,
        or the mean over the positions a structure joins (grouped convs, channel links; with
        grouping="layer" a position's importance goes to each of its layers' structures)."""
        totals = torch.zeros(self.structures.n, dtype=torch.float64)
        counts = torch.zeros(self.structures.n, dtype=torch.float64)
        for group, (positions, structures) in zip(self.groups, self._pairs, strict=True):
            importance = self.pruner.estimate_importance(group).detach().double().cpu()
            totals.index_add_(0, structures, importance[positions])
            counts.index_add_(0, structures, torch.ones(len(structures), dtype=torch.float64))
        return totals / counts
