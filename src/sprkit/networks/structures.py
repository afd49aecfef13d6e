"""SPR structures of any model: sets of parameter rows kept or removed together.

A structure owns rows (output channels, output neurons: dim 0, or dim 1 of a transposed
conv's weight) of parameter tensors: the weights and bias of conv, transposed conv and Linear
layers and the scale and shift of normalization layers (BatchNorm1d/2d, ...), as the
dependency graph couples them (sprkit.networks.graph).
Removing a structure zeroes its rows; the layers it owns then output exactly zero on those
channels, which is what compression cuts.

Groupings:
- "graph" (default): one structure per coupled position of a pruning group (every layer
  tied to the channel through residual additions, concatenations, depthwise convs), merged
  with the positions a grouped conv or a channel link forces to go together;
- "layer" (the paper's): one structure per output channel of each conv or Linear layer,
  with the normalization rows that follow it in data flow (rows of a normalization that
  follows an addition or concatenation go to the first layer of the position).

Never structures: the layers the user ignores; every group that reaches the model's outputs
or carries its input; every group whose channels a normalization over channels (LayerNorm,
RMSNorm, local response norm) or an attention layer mixes (a zero channel still
counts there, so cutting it would change the other channels); the channels of a grouped
transposed conv; a group the graph maps inconsistently onto a consumer; and the
layers a trial cut at construction finds inexact (sprkit.networks.exactness). The last two
are listed in Structures.uncut with the reason.

A "unit" is a set of structures whose removal leaves some layers outputting only zeros (a
pruning group; with "layer", a layer); a unit is *essential* when the model's output would
then no longer depend on its input (found from the graph's data flow), and the pruning rules
keep at least one structure of every essential unit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.nn.utils import parametrize

from sprkit.errors import ParameterError, first_line
from sprkit.networks.exactness import uncuttable_layers
from sprkit.networks.graph import (
    ROOT_TYPES,
    CoupledGroup,
    TracedGraph,
    UnionFind,
    build_graph,
    channel_group_keys,
    coupled_groups,
    is_out_channel,
    link_keys,
    output_channel_dim,
    output_tensors,
    position_classes,
)

GROUPINGS = ("graph", "layer")


@dataclass(frozen=True)
class RowSlice:
    """Rows `rows` of parameter `parameter` (full name in the model) belong to structures
    `owner` (same length). `is_weight`: the weight of a conv or Linear layer (what the
    paper's threshold rule counts). `dim`: the dimension that indexes output channels, 0,
    or 1 for a transposed conv's weight (in_channels, out_channels, ...)."""

    parameter: str
    rows: torch.Tensor
    owner: torch.Tensor
    is_weight: bool
    dim: int = 0
    _placed: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def channel_rows(self, parameter: torch.Tensor) -> torch.Tensor:
        """`parameter` with the output channels first (a view: writes go to `parameter`)."""
        return parameter if self.dim == 0 else parameter.transpose(0, self.dim)

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, owner) on `device`, copied there once: the penalty reads them at every
        step, and a host-to-GPU copy per step would stall the GPU's queue each time."""
        if device not in self._placed:
            self._placed[device] = (self.rows.to(device), self.owner.to(device))
        return self._placed[device]


@dataclass(frozen=True)
class _ReductionPlan:
    """How Structures.reductions stacks the slices' parameters: `by_length` groups slice
    positions whose parameters have equal row lengths (scalars per dim-0 row); `rows` are the
    slices' rows in the stacked order (groups in order, parameters in slice order within a
    group), `owner` their structures."""

    by_length: tuple[list[int], ...]
    rows: torch.Tensor
    owner: torch.Tensor


def _row_matrix(parameter: torch.Tensor) -> torch.Tensor:
    """`parameter` as (rows, scalars per row), a view where the memory allows: the order of
    the scalars within a row is their memory order, so that channels-last conv weights are
    not copied (row sums and maxima do not depend on it)."""
    if (
        parameter.dim() == 4
        and not parameter.is_contiguous()
        and parameter.is_contiguous(memory_format=torch.channels_last)
    ):
        parameter = parameter.permute(0, 2, 3, 1)
    return parameter.reshape(len(parameter), -1)


@dataclass(frozen=True)
class Structures:
    """The structures of one model (any copy of it: parameters are found by name).

    slices: the rows each structure owns; n: number of structures; sizes: scalars per
    structure; weight_sizes: scalars of conv/Linear weights per structure; layer: name of the
    first conv/Linear layer of each structure; units: structure ids of every unit;
    essential: per unit, whether one of its structures must stay; grouping: its name;
    uncut: (layer, reason) of the layers a trial cut found inexact, never pruned."""

    slices: tuple[RowSlice, ...]
    n: int
    sizes: torch.Tensor
    weight_sizes: torch.Tensor
    layer: tuple[str, ...]
    units: tuple[torch.Tensor, ...]
    essential: tuple[bool, ...]
    grouping: str
    uncut: tuple[tuple[str, str], ...] = ()
    # Caches derived from the fields above: the reduction plan per device and parameter
    # shapes, and the rows removed by the last mask given to apply() per parameter placement.
    _plans: dict[tuple, _ReductionPlan] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _removed_rows: dict[tuple, tuple[torch.Tensor, list[torch.Tensor]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def weight_layers(self) -> set[str]:
        """Names of the conv/Linear layers that have rows in some structure."""
        return {piece.parameter.rpartition(".")[0] for piece in self.slices if piece.is_weight}

    def parameters_of(self, model: nn.Module) -> list[torch.Tensor]:
        """The parameter tensors of the slices, in slice order, from `model`."""
        named = dict(model.named_parameters())
        return [named[s.parameter] for s in self.slices]

    def owners_of(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        """(module, attribute) of each slice's parameter, in slice order: reading them at each
        step sees parameters that were replaced (load_state_dict(assign=True), conversions
        that overwrite parameters) at a fraction of parameters_of's cost."""
        modules = dict(model.named_modules())
        owners = []
        for piece in self.slices:
            module_name, _, attribute = piece.parameter.rpartition(".")
            owners.append((modules[module_name], attribute))
        return owners

    def reductions(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Per structure: sum of squares and largest |value| of its rows (differentiable).

        A fixed number of tensor operations per distinct row length, not per slice: the
        parameters' rows are stacked by length, reduced row-wise at once and gathered to the
        structures (on a GPU, one small kernel per slice made the penalty cost more than the
        network's own training step)."""
        return self.reductions_of(self.parameters_of(model))

    def reductions_of(self, parameters: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """reductions() from the slices' parameter tensors (parameters_of(model), which a
        caller that evaluates at every step reads through owners_of: the lookup by name costs
        about as much as the reductions' own launches)."""
        parameters = [
            piece.channel_rows(parameter)
            for piece, parameter in zip(self.slices, parameters, strict=True)
        ]
        plan = self._plan(parameters)
        row_sq, row_max = [], []
        for members in plan.by_length:
            block = torch.cat([_row_matrix(parameters[k]) for k in members])
            row_sq.append((block * block).sum(dim=1))
            row_max.append(block.abs().amax(dim=1))
        sq_rows = torch.cat(row_sq).index_select(0, plan.rows)
        max_rows = torch.cat(row_max).index_select(0, plan.rows)
        sq_norm = sq_rows.new_zeros(self.n).index_add(0, plan.owner, sq_rows)
        max_abs = max_rows.new_zeros(self.n).scatter_reduce(
            0, plan.owner, max_rows, reduce="amax", include_self=True
        )
        return sq_norm, max_abs

    def _plan(self, parameters: list[torch.Tensor]) -> _ReductionPlan:
        """The stacking of `parameters` (slice order, output channels first) by row length,
        built once per device and parameter shapes (a model of other shapes gets its own
        plan, or a clear error)."""
        device = parameters[0].device
        key = (device, tuple(parameter.shape for parameter in parameters))
        if key not in self._plans:
            for piece, parameter in zip(self.slices, parameters, strict=True):
                if int(piece.rows.max()) >= len(parameter):
                    raise ParameterError(
                        f"{piece.parameter} has {len(parameter)} rows; the structures need "
                        f"{int(piece.rows.max()) + 1}: they were derived for another model"
                    )
            lengths = [parameter[0].numel() for parameter in parameters]
            by_length: dict[int, list[int]] = {}
            for k, length in enumerate(lengths):
                by_length.setdefault(length, []).append(k)
            first_row, offset = {}, 0  # slice -> its parameter's first row in the stacked rows
            for members in by_length.values():
                for k in members:
                    first_row[k] = offset
                    offset += len(parameters[k])
            rows = torch.cat([piece.rows + first_row[k] for k, piece in enumerate(self.slices)])
            owner = torch.cat([piece.owner for piece in self.slices])
            self._plans[key] = _ReductionPlan(
                tuple(by_length.values()), rows.to(device), owner.to(device)
            )
        return self._plans[key]

    def norms(self, model: nn.Module) -> torch.Tensor:
        """l2 norm of every structure (detached, on the CPU, float64)."""
        with torch.no_grad():
            return self.reductions(model)[0].detach().double().cpu().sqrt()

    def surviving_weights(self, model: nn.Module, threshold: float) -> torch.Tensor:
        """Per structure: how many of its conv/Linear weights have |w| >= threshold."""
        counts = torch.zeros(self.n, dtype=torch.float64)
        with torch.no_grad():
            for piece, parameter in zip(self.slices, self.parameters_of(model), strict=True):
                if not piece.is_weight:
                    continue
                channels = piece.channel_rows(parameter.detach())
                rows = channels.index_select(0, piece.on(parameter.device)[0])
                alive = (rows.reshape(len(rows), -1).abs() >= threshold).sum(dim=1).double().cpu()
                counts.index_add_(0, piece.owner, alive)
        return counts

    @torch.no_grad()
    def apply(self, model: nn.Module, keep: torch.Tensor) -> None:
        """Zero, in place, the rows of every structure with keep = False. Fine-tuning calls
        this after every step with the same (host) mask: the removed rows are found on the
        host once per mask and placement of the parameters, so that a GPU's queue is not
        stopped to read them."""
        keep = torch.as_tensor(keep, dtype=torch.bool).cpu()
        parameters = self.parameters_of(model)
        devices = tuple(parameter.device for parameter in parameters)
        cached = self._removed_rows.get(devices)
        if cached is None or not torch.equal(cached[0], keep):
            removed = [
                piece.rows[~keep[piece.owner]].to(device)
                for piece, device in zip(self.slices, devices, strict=True)
            ]
            cached = self._removed_rows[devices] = (keep.clone(), removed)
        for piece, rows, parameter in zip(self.slices, cached[1], parameters, strict=True):
            parameter.index_fill_(piece.dim, rows, 0.0)

    def kept_with_essentials(self, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """`keep` with the highest-score structure of every essential unit that has none
        kept put back (so that the output still depends on the input)."""
        keep = keep.clone().bool()
        for unit, essential in zip(self.units, self.essential, strict=True):
            if essential and not bool(keep[unit].any()):
                keep[unit[torch.argmax(scores[unit])]] = True
        return keep

    def table(self) -> list[dict]:
        """One row per structure: id, first layer, scalars (for reports)."""
        return [
            {"structure": j, "layer": self.layer[j], "scalars": int(self.sizes[j])}
            for j in range(self.n)
        ]


def _owned_parameters(module: nn.Module, channels: int) -> list[tuple[str, int]]:
    """(name, dimension of the output channels) of the module's own parameters with its
    `channels` output channels: dimension 0, or 1 for a transposed conv's weight (not
    depthwise: those have (channels, 1, ...), like a conv's; grouped ones are never cut)."""
    old_style = hasattr(module, "weight_g") or hasattr(module, "weight_orig")  # hook-based
    if parametrize.is_parametrized(module) or old_style:
        raise ParameterError(
            f"{type(module).__name__} with a parametrized or masked weight (weight_norm, "
            "spectral_norm, torch.nn.utils.prune) is not supported as an SPR structure; remove "
            "it first (parametrize.remove_parametrizations, or prune.remove)"
        )
    owned = []
    for name, p in module.named_parameters(recurse=False):
        dim = output_channel_dim(module, name)
        if p.ndim > dim and p.shape[dim] == channels:
            owned.append((name, dim))
    return owned


def derive_structures(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    grouping: str = "graph",
    ignored_layers: Sequence[nn.Module] = (),
) -> Structures:
    """The structures of `model` (module docstring), traced on `example_inputs`, without
    the layers whose cut a trial finds inexact (sprkit.networks.exactness): they are
    treated as ignored, and `Structures.uncut` names them with the reason."""
    if grouping not in GROUPINGS:
        raise ParameterError(f"unknown grouping {grouping!r}; known: {', '.join(GROUPINGS)}")
    ignored_layers = list(ignored_layers)
    modules = dict(model.named_modules())
    names = {id(module): name for name, module in modules.items()}
    trial = _derive(model, example_inputs, "graph", ignored_layers)
    ignored_names = [names[id(layer)] for layer in ignored_layers]
    ignored_names += [layer for layer, _ in trial.uncut]
    inexact = uncuttable_layers(model, example_inputs, trial, ignored_names)
    if not inexact and grouping == "graph":
        return trial
    uncut = {**dict(trial.uncut), **inexact}
    ignored_layers += [modules[name] for name in uncut]
    return _derive(model, example_inputs, grouping, ignored_layers, uncut)


def _derive(
    model: nn.Module,
    example_inputs: torch.Tensor,
    grouping: str,
    ignored_layers: Sequence[nn.Module],
    uncut: dict[str, str] | None = None,
) -> Structures:
    """derive_structures without the trial cuts (`uncut`: the layers they excluded); a group
    the graph maps inconsistently onto a consumer is left out, its root added to `uncut`."""
    uncut = dict(uncut or {})
    graph = build_graph(model, example_inputs)
    names = {id(module): name for name, module in model.named_modules()}
    groups = []
    for group in coupled_groups(graph, ignored_layers):
        mismatch = _consumer_mismatch(graph, group, names)
        if mismatch is None:
            groups.append(group)
        else:
            uncut[names[id(group.root)]] = mismatch
    offsets, total = [], 0
    for group in groups:
        offsets.append(total)
        total += group.width
    # Positions forced together: grouped convs' channel groups, channel links.
    position_class = position_classes(
        groups, [partial(channel_group_keys, graph), partial(link_keys, graph)]
    )

    # Rows of every parameter, per position: (parameter name, row, producer, is_weight).
    owners: dict[tuple, int] = {}  # structure key -> id
    rows_of: dict[str, tuple[list[int], list[int], bool, int]] = {}
    layer_of: list[str] = []
    order = {name: k for k, name in enumerate(names.values())}  # model order of layers
    unit_key_of: list[tuple] = []
    for group, offset in zip(groups, offsets, strict=True):
        out_members = [(d, c) for d, c in group.members if is_out_channel(graph, d)]
        producers = [
            d.target.module for d, _ in out_members if isinstance(d.target.module, ROOT_TYPES)
        ]
        for k in range(group.width):
            cls = position_class[offset + k]
            for dependency, channels in out_members:
                module = dependency.target.module
                if not isinstance(module, nn.Module):
                    continue  # a bare parameter used in forward (e.g. a layer scale)
                if not any(True for _ in module.parameters(recurse=False)):
                    continue  # operations (additions, concatenations, activations)
                owned = _owned_parameters(module, graph.get_out_channels(module))
                if not owned:
                    continue
                producer = module if isinstance(module, ROOT_TYPES) else None
                if producer is None:  # a normalization: the producer it follows, or the first
                    inputs = dependency.target.inputs
                    direct = [p for p in producers if len(inputs) == 1 and inputs[0].module is p]
                    producer = direct[0] if direct else producers[0]
                if grouping == "graph":
                    key, unit_key = ("position", cls), ("group", cls)
                else:
                    key, unit_key = ("layer", id(producer), cls), ("layer", id(producer))
                if key not in owners:
                    owners[key] = len(owners)
                    layer_of.append(names[id(producer)])
                    unit_key_of.append(unit_key)
                structure = owners[key]
                if order[names[id(producer)]] < order[layer_of[structure]]:
                    layer_of[structure] = names[id(producer)]  # the first, in model order
                for name, dim in owned:
                    full = f"{names[id(module)]}.{name}"
                    rows, owner, _, _ = rows_of.setdefault(
                        full, ([], [], isinstance(module, ROOT_TYPES) and name == "weight", dim)
                    )
                    rows.append(channels[k])
                    owner.append(structure)
    if not owners:
        found = ""
        if uncut:
            layer, reason = next(iter(uncut.items()))
            found = f"; {layer}'s channels cannot be cut exactly: {reason}"
        raise ParameterError(
            "no prunable structure found: no conv or Linear layer has output channels that "
            "can be cut exactly (they are ignored, feed the model's output, are mixed by a "
            "normalization or attention layer, or pass a grouped transposed conv)" + found
        )
    if grouping == "graph":  # units: connected pruning groups (merged positions span them)
        unit_key_of = _group_units(groups, offsets, position_class, owners)
    parameters = dict(model.named_parameters())
    slices = []
    sizes = torch.zeros(len(owners), dtype=torch.float64)
    weight_sizes = torch.zeros(len(owners), dtype=torch.float64)
    for full, (rows, owner, is_weight, dim) in rows_of.items():
        rows_t, owner_t = torch.tensor(rows), torch.tensor(owner)
        if len(set(rows)) != len(rows) or max(rows) >= parameters[full].shape[dim]:
            raise ParameterError(
                f"the dependency graph maps channels of {full} inconsistently: channels "
                "permuted or split (channel shuffles, chunks) or mixed along another axis "
                "(a Linear over tokens after a transpose) are not supported; pass that "
                "layer in ignored_layers"
            )
        slices.append(RowSlice(full, rows_t, owner_t, is_weight, dim))
        per_row = parameters[full].numel() // parameters[full].shape[dim]
        sizes.index_add_(0, owner_t, torch.full((len(rows),), float(per_row), dtype=torch.float64))
        if is_weight:
            weight_sizes.index_add_(
                0, owner_t, torch.full((len(rows),), float(per_row), dtype=torch.float64)
            )
    units = _units(unit_key_of)
    essential = _essential_units(model, example_inputs, slices, len(owners), units)
    return Structures(
        slices=tuple(slices),
        n=len(owners),
        sizes=sizes,
        weight_sizes=weight_sizes,
        layer=tuple(layer_of),
        units=units,
        essential=essential,
        grouping=grouping,
        uncut=tuple(uncut.items()),
    )


def _consumer_mismatch(
    graph: TracedGraph, group: CoupledGroup, names: dict[int, str]
) -> str | None:
    """Why a group cannot be cut when the graph maps its channels onto a consuming layer's
    input channels inconsistently (a channel twice, or past its width; e.g. a Linear's
    outputs viewed as the channels of a conv, or split by chunk: reshapes Torch-Pruning does
    not follow), else None."""
    for dependency, channels in group.members:
        module = dependency.target.module
        if not isinstance(module, nn.Module) or is_out_channel(graph, dependency):
            continue
        width = graph.get_in_channels(module)
        unique = len(set(channels)) == len(channels)
        if width is None or not channels or (unique and max(channels) < width):
            continue
        return (
            f"the dependency graph maps these channels onto the input channels of "
            f"{names[id(module)]} inconsistently (a reshape or split between them that it "
            "does not follow)"
        )
    return None


def _group_units(groups, offsets, position_class, owners) -> list[tuple]:
    """With the graph grouping, structure -> unit key: the pruning groups joined by merged
    positions form one unit."""
    union = UnionFind(len(groups))
    group_of_class: dict[int, int] = {}
    for index, (group, offset) in enumerate(zip(groups, offsets, strict=True)):
        for k in range(group.width):
            cls = position_class[offset + k]
            union.union(index, group_of_class.setdefault(cls, index))
    labels = union.labels()
    keys = [None] * len(owners)
    for (_, cls), structure in owners.items():
        keys[structure] = ("unit", labels[group_of_class[cls]])
    return keys


def _units(unit_key_of: list[tuple]) -> tuple[torch.Tensor, ...]:
    members: dict[tuple, list[int]] = {}
    for structure, key in enumerate(unit_key_of):
        members.setdefault(key, []).append(structure)
    return tuple(torch.tensor(ids) for ids in members.values())


def _dead_modules(
    parameters: dict[str, torch.Tensor], slices: Sequence[RowSlice], in_unit: torch.Tensor
) -> set[str]:
    """Names of the modules whose every owned row belongs to the unit (`in_unit`: bool per
    structure): once the unit is removed they output constants."""
    dead: dict[str, bool] = {}
    for piece in slices:
        module_name = piece.parameter.rpartition(".")[0]
        complete = bool(in_unit[piece.owner].all()) and (
            len(piece.rows) == parameters[piece.parameter].shape[piece.dim]
        )
        dead[module_name] = dead.get(module_name, True) and complete
    return {name for name, is_dead in dead.items() if is_dead}


def _essential_units(
    model: nn.Module,
    example_inputs: torch.Tensor,
    slices: Sequence[RowSlice],
    n: int,
    units: Sequence[torch.Tensor],
) -> tuple[bool, ...]:
    """Per unit: whether the model's output stops depending on its input once the unit's
    structures are removed. Found by data flow: with the parameters constant and the input
    requiring a gradient, an output requires a gradient exactly when it depends on the
    input; the modules the unit leaves dead have their outputs detached. It holds whatever
    the model's code looks like. Run on the meta device (shapes only, no arithmetic); a
    forward that reads values there (.item(), numpy, a branch on the data) is run on the
    example inputs instead."""
    if not torch.is_floating_point(example_inputs):
        raise ParameterError("example_inputs must be a floating-point tensor")
    meta_inputs = torch.empty(
        (2, *example_inputs.shape[1:]), device="meta", dtype=example_inputs.dtype
    )
    try:
        return _data_flow(model, meta_inputs, slices, n, units)
    except (RuntimeError, NotImplementedError):  # what the meta device raises on values
        pass
    try:
        return _data_flow(model, example_inputs.detach().clone(), slices, n, units)
    except Exception as error:  # the user's forward: one line, not a traceback
        raise ParameterError(
            "the model's forward failed while finding which structures keep its output "
            f"alive: {type(error).__name__}: {first_line(error)}"
        ) from None


def _data_flow(
    model: nn.Module,
    inputs: torch.Tensor,
    slices: Sequence[RowSlice],
    n: int,
    units: Sequence[torch.Tensor],
) -> tuple[bool, ...]:
    """_essential_units on a copy of the model on `inputs`' device."""
    probe = copy.deepcopy(model).to(inputs.device).eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    inputs = inputs.requires_grad_(True)
    parameters = dict(model.named_parameters())
    modules = dict(probe.named_modules())
    essential = []
    for unit in units:
        in_unit = torch.zeros(n, dtype=torch.bool)
        in_unit[unit] = True
        hooks = [
            modules[name].register_forward_hook(lambda _m, _a, output: output.detach())
            for name in _dead_modules(parameters, slices, in_unit)
        ]
        try:
            with torch.enable_grad():
                output = probe(inputs)
        finally:
            for hook in hooks:
                hook.remove()
        essential.append(not any(o.requires_grad for o in output_tensors(output)))
    return tuple(essential)
