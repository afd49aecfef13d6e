"""SPRPruner: SPR pruning of any PyTorch model through one object.

    pruner = SPRPruner(model, example_inputs, lam=0.5, alpha=0.5, M_scale=1.0,
                       ignored_layers=[model.classifier[-1]])
    loss = criterion(model(x), y) + pruner.penalty()   # lam * sum_g n_g z(w_g) / sum_g n_g
    pruner.prune(fraction=0.5)                 # zero the half of the structures of least norm
    pruner.prune(tolerance=0.01, evaluate=fn)  # the paper's threshold rule (fn: model -> score)
    pruner.prune(target_macs=...)              # the fewest removed to meet a MAC budget
    pruner.apply_masks()                       # after each fine-tuning step: re-zero
    small = pruner.compress()                  # a new, smaller module, same function
    pruner.save(folder)                        # load_compressed(folder, model_fn) loads it

The structures are derived once, in the constructor, from the dependency graph
(sprkit.networks.structures) and handed to the penalty, the rules and compression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from sprkit.errors import ParameterError
from sprkit.networks.compression import Compression, check_round_to, compress
from sprkit.networks.measure import count_macs, count_parameters
from sprkit.networks.penalties import make_penalty, structure_scores
from sprkit.networks.rules import (
    fewest_removed,
    largest_threshold,
    masked_copy,
    smallest_fraction,
    threshold_keep,
)
from sprkit.networks.serialization import save_compressed
from sprkit.networks.structures import Structures, derive_structures
from sprkit.networks.tp_group_norm import TPGroupNormPenalty


class SPRPruner:
    """SPR structures, penalty, pruning rules and compression of one model (module doc).

    `grouping`: "graph" (coupled channels, default) or "layer" (the paper's per-channel);
    `penalty`: "spr" (default) or a competitor ("group_lasso", "bn_l1", "tp_group_norm")
    run the same way (tp_group_norm: call `regularize()` after each backward());
    `ignored_layers`: modules never pruned (the model's outputs never are);
    `round_to`: compression keeps a multiple of this many channels per layer group."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor,
        *,
        lam: float = 1.0,
        alpha: float = 0.5,
        M_scale: float = 1.0,
        grouping: str = "graph",
        ignored_layers: Sequence[nn.Module] = (),
        penalty: str = "spr",
        round_to: int | None = None,
    ) -> None:
        if not isinstance(example_inputs, torch.Tensor):
            raise ParameterError("example_inputs must be a tensor (a batch of inputs)")
        self.model = model
        self.example_inputs = example_inputs
        self.round_to = check_round_to(round_to)
        self.penalty_name = penalty
        if isinstance(ignored_layers, nn.Module) and not isinstance(ignored_layers, nn.ModuleList):
            raise ParameterError("ignored_layers must be a list of modules, e.g. [model.fc]")
        ignored_layers = list(ignored_layers)  # a generator is read once
        if not all(isinstance(layer, nn.Module) for layer in ignored_layers):
            raise ParameterError("ignored_layers must be a list of modules, e.g. [model.fc]")
        names = {id(module): name for name, module in model.named_modules()}
        unknown = [layer for layer in ignored_layers if id(layer) not in names]
        if unknown:
            raise ParameterError("ignored_layers holds a module that is not part of the model")
        self.ignored_names = [names[id(layer)] for layer in ignored_layers]
        self.structures: Structures = derive_structures(
            model, example_inputs, grouping=grouping, ignored_layers=ignored_layers
        )
        # Layers a trial cut found inexact are never cut (not even a channel that training
        # happens to zero) nor regularized by a competitor's penalty.
        uncut = [layer for layer, _ in self.structures.uncut]
        self.ignored_names += uncut
        ignored_layers += [model.get_submodule(layer) for layer in uncut]
        self.regularizer = make_penalty(
            penalty,
            model,
            self.structures,
            lam=lam,
            alpha=alpha,
            M_scale=M_scale,
            example_inputs=example_inputs,
            ignored_layers=ignored_layers,
        )
        self.keep = torch.ones(self.structures.n, dtype=torch.bool)
        self.compression: Compression | None = None

    # -- training ------------------------------------------------------------------------

    def penalty(self) -> torch.Tensor:
        """The penalty's value on the model now (differentiable): add it to the loss."""
        return self.regularizer()

    @property
    def regularizes_gradients(self) -> bool:
        """Whether the penalty acts on the gradients (tp_group_norm) rather than the loss."""
        return isinstance(self.regularizer, TPGroupNormPenalty)

    def regularize(self) -> None:
        """Add a gradient-side penalty's term to the gradients (call after backward(),
        before the optimizer step, when `regularizes_gradients`)."""
        if not self.regularizes_gradients:
            raise ParameterError(f"the {self.penalty_name} penalty acts through the loss")
        self.regularizer.regularize()

    def scores(self) -> torch.Tensor:
        """Importance of every structure (norm; mean |gamma| for the bn_l1 penalty;
        Torch-Pruning's group importance for tp_group_norm)."""
        if isinstance(self.regularizer, TPGroupNormPenalty):
            return self.regularizer.scores()
        return structure_scores(self.model, self.structures, self.penalty_name)

    # -- pruning -------------------------------------------------------------------------

    def prune(
        self,
        fraction: float | None = None,
        *,
        tolerance: float | None = None,
        evaluate: Callable[[nn.Module], float] | None = None,
        target_macs: int | None = None,
        keep_fraction: float = 0.5,
    ) -> torch.Tensor:
        """Zero the structures one rule removes, in place, and return the keep mask. Rules
        (exactly one): `fraction` of the structures with the lowest score; `tolerance` with
        `evaluate` (model -> score, e.g. validation accuracy): the paper's threshold rule,
        the largest magnitude threshold whose score drop is <= tolerance (a structure
        survives a threshold when `keep_fraction` of its weights do); `target_macs`: the
        fewest lowest-score structures whose compressed model has at most that many MACs.
        Structures removed earlier stay removed."""
        chosen = [fraction is not None, tolerance is not None, target_macs is not None]
        if sum(chosen) != 1:
            raise ParameterError("give exactly one of fraction, tolerance, target_macs")
        structures, model = self.structures, self.model
        if fraction is not None:
            keep = smallest_fraction(structures, self.scores(), fraction)
        elif tolerance is not None:
            if evaluate is None:
                raise ParameterError("prune(tolerance=...) needs evaluate=fn (model -> score)")
            threshold = largest_threshold(
                model, structures, evaluate, tolerance=tolerance, keep_fraction=keep_fraction
            )
            keep = threshold_keep(structures, model, threshold, keep_fraction)
        else:
            if not target_macs > 0:
                raise ParameterError(f"target_macs must be > 0, got {target_macs}")
            keep = fewest_removed(
                structures,
                self.scores(),
                lambda mask: self.macs(masked_copy(model, structures, mask)) <= target_macs,
                want="fewest",
            )
        self.set_masks(keep)
        return self.keep.clone()

    def set_masks(self, keep: torch.Tensor) -> None:
        """Remove the structures with keep = False (a mask chosen by any rule), in place."""
        keep = torch.as_tensor(keep, dtype=torch.bool).cpu()
        if keep.shape != (self.structures.n,):
            raise ParameterError(f"keep must have one entry per structure ({self.structures.n})")
        self.keep = self.keep & keep
        self.apply_masks()

    def apply_masks(self) -> None:
        """Re-zero the removed structures (call after each optimizer step when fine-tuning)."""
        self.structures.apply(self.model, self.keep)

    # -- the smaller network -------------------------------------------------------------

    def _cut(self, model: nn.Module | None) -> tuple[nn.Module, Compression]:
        """compress() of `model` (default: the pruner's model) with the pruner's settings."""
        return compress(
            self.model if model is None else model,
            self.example_inputs,
            ignored_layers=self.ignored_names,
            round_to=self.round_to,
        )

    def compress(self, model: nn.Module | None = None) -> nn.Module:
        """A new, smaller module computing what the masked model computes (eval mode);
        `self.compression` records what was cut."""
        small, self.compression = self._cut(model)
        return small

    def macs(self, model: nn.Module | None = None) -> int:
        """MACs of one input through `model`'s compressed form (default: the pruner's
        model as masked now)."""
        return count_macs(self._cut(model)[0], tuple(self.example_inputs.shape[1:]))

    def parameter_count(self, model: nn.Module | None = None) -> int:
        """Parameter count of `model`'s compressed form (default: the pruner's model)."""
        return count_parameters(self._cut(model)[0])

    def save(self, folder: Path, meta: dict | None = None) -> nn.Module:
        """Compress and write the result to `folder` (sprkit.networks.serialization); returns
        the compressed module. Load it with load_compressed(folder, model_fn)."""
        small = self.compress()
        save_compressed(
            small,
            self.compression,
            input_shape=tuple(self.example_inputs.shape[1:]),
            folder=Path(folder),
            meta=meta,
        )
        return small
