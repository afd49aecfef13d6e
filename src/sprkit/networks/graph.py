"""The data flow of a model, from Torch-Pruning's dependency graph.

Everything structural in sprkit's network side is read from this graph, never from module
names or registration order: which channels are coupled (one pruning group position: the
output channels of convs, Linear layers and BatchNorms tied through residual additions,
concatenations, depthwise convs), which channels a grouped conv forces to be removed in every
one of its channel groups at once, which layers feed the model's outputs.

sprkit's own shortcut modules (option-A ZeroPadShortcut, ResidualBias) get their pruning
functions here; a module with a `channel_links()` method declares (output, input) channel
pairs that carry the same signal and so can only be removed together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from sprkit.errors import ParameterError, first_line
from sprkit.networks.architectures import ResidualBias, ZeroPadShortcut

TRANSPOSED_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, *TRANSPOSED_TYPES)


class _ZeroPadShortcutPruner(tp.pruner.function.BasePruningFunc):
    """Option-A shortcut: inputs and outputs are pruned separately (they are not coupled,
    as they would be for an element-wise op); pruning renumbers the `source` buffer."""

    TARGET_MODULES = ZeroPadShortcut

    def prune_out_channels(self, layer: ZeroPadShortcut, idxs: Sequence[int]) -> ZeroPadShortcut:
        keep = torch.ones(len(layer.source), dtype=torch.bool, device=layer.source.device)
        keep[list(idxs)] = False
        layer.source = layer.source[keep]
        return layer

    def prune_in_channels(self, layer: ZeroPadShortcut, idxs: Sequence[int]) -> ZeroPadShortcut:
        source = layer.source
        removed = torch.as_tensor(sorted(idxs), dtype=torch.long, device=source.device)
        shift = torch.searchsorted(removed, source.clamp(min=0))  # removed inputs below
        dropped = torch.isin(source, removed)
        layer.source = torch.where((source < 0) | dropped, -1, source - shift)
        layer.inputs = layer.inputs - len(removed)
        return layer

    def get_out_channels(self, layer: ZeroPadShortcut) -> int:
        return len(layer.source)

    def get_in_channels(self, layer: ZeroPadShortcut) -> int:
        return int(layer.inputs)


class _ResidualBiasPruner(tp.pruner.function.BasePruningFunc):
    """Per-channel bias: input and output channels are the same channels."""

    TARGET_MODULES = ResidualBias

    def prune_out_channels(self, layer: ResidualBias, idxs: Sequence[int]) -> ResidualBias:
        keep = torch.ones(len(layer.bias), dtype=torch.bool, device=layer.bias.device)
        keep[list(idxs)] = False
        layer.bias = nn.Parameter(layer.bias.data[keep].clone())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: ResidualBias) -> int:
        return len(layer.bias)

    get_in_channels = get_out_channels


class _GroupNormPruner(tp.pruner.function.BasePruningFunc):
    """GroupNorm losing whole channel groups (channel_group_keys keeps a group's channels
    together): the remaining groups keep their channels and statistics, so the cut is
    exact; Torch-Pruning 1.6's own rule keeps num_groups and regroups the channels."""

    def prune_out_channels(self, layer: nn.GroupNorm, idxs: Sequence[int]) -> nn.GroupNorm:
        per_group = layer.num_channels // layer.num_groups
        if len(idxs) % per_group:
            raise ValueError(f"cutting {len(idxs)} channels of {layer}: not whole groups")
        keep = sorted(set(range(layer.num_channels)) - set(idxs))
        layer.num_groups -= len(idxs) // per_group
        layer.num_channels = len(keep)
        if layer.affine:
            layer.weight = nn.Parameter(layer.weight.data[keep].clone())
            layer.bias = nn.Parameter(layer.bias.data[keep].clone())
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.GroupNorm) -> int:
        return layer.num_channels

    get_in_channels = get_out_channels


CUSTOM_PRUNERS = {
    ZeroPadShortcut: _ZeroPadShortcutPruner(),
    ResidualBias: _ResidualBiasPruner(),
    nn.GroupNorm: _GroupNormPruner(),
}


def example_batch(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 2
) -> torch.Tensor:
    """A batch of zero inputs of `input_shape` (without batch dimension) on the model's device
    and in its dtype; the default of 2 lets BatchNorm layers in training mode run too. The one
    dummy-input builder of sprkit (tracing, MAC counts, latency)."""
    parameter = next(model.parameters())
    return torch.zeros((batch_size, *input_shape), dtype=parameter.dtype, device=parameter.device)


class TracedGraph(tp.DependencyGraph):
    """Torch-Pruning's dependency graph with what sprkit reads beside it from the same trace:
    `output_grad_fns`, the autograd nodes of the model's output tensors (a tensor returned
    and also consumed further has consumers, so "no consumer" alone misses it), and
    `input_consumers`, those of the operations applied to the input itself (their channels
    are the input's: never removable)."""

    output_grad_fns: frozenset = frozenset()
    input_consumers: frozenset = frozenset()


def _consumers_of(output_grad_fns: list, leaf: torch.Tensor) -> frozenset:
    """Autograd nodes, reachable from `output_grad_fns`, with `leaf` as a direct input."""
    found, seen = set(), set()
    stack = [fn for fn in output_grad_fns if fn is not None]
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        for parent, _ in fn.next_functions:
            if parent is None:
                continue
            if getattr(parent, "variable", None) is leaf:
                found.add(fn)
            else:
                stack.append(parent)
    return frozenset(found)


def build_graph(model: nn.Module, example_inputs: torch.Tensor) -> TracedGraph:
    """Torch-Pruning's dependency graph of `model`, traced once on `example_inputs` (the
    model's training/eval mode is restored afterwards). The trace follows autograd, so the
    input (when floating point) and every parameter are made to require gradients while it
    runs: a frozen layer (requires_grad False, e.g. a pretrained stem) is part of the data
    flow all the same."""
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    traced_input = example_inputs
    if torch.is_floating_point(example_inputs):
        traced_input = example_inputs.detach().requires_grad_(True)
    outputs: list = []

    def record_outputs(output):  # flat: Torch-Pruning's flattening fails on a None
        tensors = output_tensors(output)
        outputs.extend(t.grad_fn for t in tensors)
        return tensors

    try:
        for parameter in frozen:
            parameter.requires_grad_(True)
        with torch.enable_grad():  # the graph is read from autograd, even inside no_grad
            graph = TracedGraph().build_dependency(
                model,
                example_inputs=traced_input,
                customized_pruners={**CUSTOM_PRUNERS, **_group_norm_subclasses(model)},
                output_transform=record_outputs,
            )
    except Exception as error:  # tracing runs the user's forward: report, not traceback
        raise ParameterError(
            f"the model could not be traced on the example inputs: {type(error).__name__}: {error}"
        ) from None
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)
        model.train(was_training)
    graph.output_grad_fns = frozenset(fn for fn in outputs if fn is not None)
    graph.input_consumers = _consumers_of(outputs, traced_input)
    return graph


def _group_norm_subclasses(model: nn.Module) -> dict[type, tp.pruner.BasePruningFunc]:
    """The GroupNorm pruner for the model's subclasses of nn.GroupNorm (Torch-Pruning picks
    a custom pruner by exact class)."""
    return {
        type(module): CUSTOM_PRUNERS[nn.GroupNorm]
        for module in model.modules()
        if isinstance(module, nn.GroupNorm)
    }


def output_tensors(output) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in output_tensors(item)]
    return []


def is_out_channel(graph: tp.DependencyGraph, dependency: tp.Dependency) -> bool:
    return graph.is_out_channel_pruning_fn(dependency.handler)


@dataclass(frozen=True)
class CoupledGroup:
    """One pruning group of the graph: `members[i]` = (dependency, channel of that member at
    each position 0..width-1); `root` is the layer whose output channels define it."""

    root: nn.Module
    members: list[tuple[tp.Dependency, list[int]]]

    @property
    def width(self) -> int:
        return len(self.members[0][1])


def reaches_outputs(graph: tp.DependencyGraph, group: tp.Group) -> bool:
    """Whether a group's channels are (part of) the model's output: a member whose output
    channels nothing consumes, or (TracedGraph) are a tensor the model returns."""
    returned = getattr(graph, "output_grad_fns", frozenset())
    return any(
        is_out_channel(graph, dependency)
        and (not dependency.target.outputs or dependency.target.grad_fn in returned)
        for dependency, _ in group
    )


def carries_inputs(graph: tp.DependencyGraph, group: tp.Group) -> bool:
    """Whether a group's channels are the model input's own (TracedGraph): a member applied
    to the input that keeps its channels (an addition x + f(x), a BatchNorm, a depthwise
    conv, a concatenation; not a conv or Linear layer, whose output channels are new). A
    concatenation torch.cat([x, f(x)]) holds f's channels beside the input's, but
    Torch-Pruning's index mapping there misplaces the cut (measured: the cut model's outputs
    changed), so f's channels are kept whole too."""
    consumers = getattr(graph, "input_consumers", frozenset())
    return any(
        dependency.target.grad_fn in consumers
        and not (
            isinstance(dependency.target.module, ROOT_TYPES)
            and not is_depthwise(dependency.target.module)
        )
        for dependency, _ in group
    )


# Layers whose outputs on one channel depend on the other channels' values (statistics over
# channels, attention over the embedding): a zero channel still counts in them, so removing it
# changes the rest of the layer's outputs and no cut of it is exact.
CHANNEL_MIXING_TYPES = tuple(
    getattr(nn, name)
    for name in (
        "LayerNorm",
        "RMSNorm",  # torch >= 2.4
        "LocalResponseNorm",
        "CrossMapLRN2d",
        "MultiheadAttention",
        "Softmax2d",
    )
    if hasattr(nn, name)
)


def mixes_channels(group: tp.Group) -> bool:
    """Whether a group's channels pass through a layer of CHANNEL_MIXING_TYPES (subclasses,
    e.g. a channels-first LayerNorm, included), or share a GroupNorm group with channels of
    another group (after a concatenation: the group could not be cut whole)."""
    return any(
        isinstance(member.target.module, CHANNEL_MIXING_TYPES)
        or _splits_norm_groups(member.target.module, channels)
        for member, channels in group
    )


def _splits_norm_groups(module: nn.Module, channels: Sequence[int]) -> bool:
    """Whether `channels` of a GroupNorm cover some of its groups only in part."""
    if not isinstance(module, nn.GroupNorm):
        return False
    per_group = module.num_channels // module.num_groups
    held = {int(c) for c in channels}
    return any(c // per_group * per_group + k not in held for c in held for k in range(per_group))


def output_channel_dim(module: nn.Module, parameter_name: str) -> int:
    """The dimension of a module's parameter that indexes the module's output channels: 1 for
    the weight of a transposed conv that is not depthwise (in_channels, out_channels /
    groups, ...), else 0."""
    transposed = isinstance(module, TRANSPOSED_TYPES) and not is_depthwise(module)
    return 1 if transposed and parameter_name == "weight" else 0


def cuts_transposed_conv(group: tp.Group) -> bool:
    """Whether a group holds channels of a transposed conv with several channel groups,
    not depthwise: its weight keeps output channels per channel group on dimension 1, and
    Torch-Pruning 1.6 cuts its input rows as a grouped conv's (to in_channels / groups
    rows, and the cut model does not run). Other transposed convs are cut (outputs on
    their weight's dimension 1)."""
    return any(
        isinstance(dependency.target.module, TRANSPOSED_TYPES)
        and is_grouped_conv(dependency.target.module)
        for dependency, _ in group
    )


def never_pruned(graph: tp.DependencyGraph, group: tp.Group) -> bool:
    """A group whose channels are the model's output or its input, are mixed with each other
    by a normalization or attention layer, or pass a grouped transposed conv: it has no
    structures."""
    return (
        reaches_outputs(graph, group)
        or carries_inputs(graph, group)
        or mixes_channels(group)
        or cuts_transposed_conv(group)
    )


def coupled_groups(
    graph: tp.DependencyGraph, ignored: Sequence[nn.Module] = ()
) -> Iterator[CoupledGroup]:
    """Every group rooted at the output channels of a conv or Linear layer, except those with
    an ignored member and those never pruned (never_pruned)."""
    ignored_modules = [m for layer in ignored for m in layer.modules()]
    groups = [g for g in _all_groups(graph, ignored_modules) if not never_pruned(graph, g)]
    _refuse_tied_parameters(graph.model, {id(dep.target.module) for g in groups for dep, _ in g})
    for group in groups:
        members = [(dependency, [int(i) for i in idxs]) for dependency, idxs in group]
        yield CoupledGroup(group[0].dep.target.module, members)


def _refuse_tied_parameters(model: nn.Module, cut: set[int]) -> None:
    """ParameterError if a parameter held by several modules (weight tying) is held by one
    whose channels are cut (`cut`: module ids): Torch-Pruning would cut one holder's copy
    and untie the others (exact, but with more parameters than before)."""
    holders: dict[int, dict[int, str]] = {}  # parameter -> holding module -> its name
    for name, module in model.named_modules(remove_duplicate=False):
        for local, parameter in module.named_parameters(recurse=False):
            full = f"{name}.{local}" if name else local
            holders.setdefault(id(parameter), {}).setdefault(id(module), full)
    for by_module in holders.values():
        if len(by_module) > 1 and cut.intersection(by_module):
            names = " and ".join(sorted(by_module.values()))
            raise ParameterError(
                f"{names} are one parameter (weight tying) in layers whose channels would be "
                "cut; untie them (a copy each) or keep those layers and the layers feeding "
                "them whole (ignored_layers)"
            )


def _all_groups(graph: tp.DependencyGraph, ignored: Sequence[nn.Module]) -> list[tp.Group]:
    """Torch-Pruning's groups rooted at conv and Linear layers; its failure to follow the
    channels (e.g. through an nn.GRU, or an LSTM traced op by op in float64) is one
    ParameterError naming the modules it has no pruning rule for."""
    try:
        return list(graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES))
    except Exception as error:  # Torch-Pruning raises many kinds
        names = {id(p): name for name, p in graph.model.named_parameters()}
        unruled = sorted(
            {names[id(p)].rpartition(".")[0] or names[id(p)] for p, _ in graph.unwrapped_parameters}
        )
        known = f" (no pruning rule for: {', '.join(unruled)})" if unruled else ""
        raise ParameterError(
            f"Torch-Pruning could not follow the channels through the model{known}: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None


def is_depthwise(module: nn.Module) -> bool:
    """A conv (transposed or not) whose every output channel is computed from its own input
    channel alone."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def is_grouped_conv(module: nn.Module) -> bool:
    """A conv (transposed or not) with several channel groups that is not depthwise
    (depthwise channels are pruned one by one with their input channel)."""
    return (
        isinstance(module, nn.modules.conv._ConvNd)
        and module.groups > 1
        and not is_depthwise(module)
    )


def channel_group_keys(graph: tp.DependencyGraph, group: CoupledGroup) -> list[list[tuple]]:
    """Per position, keys that must be removed together with it elsewhere: a grouped conv's
    channel c in each of its channel groups (key: module, side, c mod channels per group),
    since every channel group must keep the same number of channels; and a GroupNorm's
    whole group of channels (key: module, c div channels per group), since its channels
    share their statistics."""
    keys: list[list[tuple]] = [[] for _ in range(group.width)]
    for dependency, channels in group.members:
        module = dependency.target.module
        if isinstance(module, nn.GroupNorm):
            per_group = module.num_channels // module.num_groups
            for k, channel in enumerate(channels):
                keys[k].append((id(module), "statistics", channel // per_group))
            continue
        if not is_grouped_conv(module):
            continue
        out = is_out_channel(graph, dependency)
        per_group = (module.out_channels if out else module.in_channels) // module.groups
        for k, channel in enumerate(channels):
            keys[k].append((id(module), out, channel % per_group))
    return keys


def link_keys(graph: tp.DependencyGraph, group: CoupledGroup) -> list[list[tuple]]:
    """Per position, keys shared with positions of other groups that carry the same signal
    (modules with `channel_links()`, e.g. an option-A shortcut copying input channel i to
    output channel j: both sides get the key (module, j))."""
    keys: list[list[tuple]] = [[] for _ in range(group.width)]
    for dependency, channels in group.members:
        module = dependency.target.module
        if not hasattr(module, "channel_links"):
            continue
        out = is_out_channel(graph, dependency)
        pairs = module.channel_links()
        by_side = {}
        for output, source in pairs:
            by_side.setdefault((True, output), output)
            by_side.setdefault((False, source), output)
        for k, channel in enumerate(channels):
            if (out, channel) in by_side:
                keys[k].append(("link", id(module), by_side[(out, channel)]))
    return keys


class UnionFind:
    """Disjoint sets over 0..n-1 (path halving), renumbered to 0..k-1 by `labels`."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(first)] = self.find(second)

    def labels(self) -> list[int]:
        """Set label of every element, numbered in order of first appearance."""
        numbering: dict[int, int] = {}
        return [numbering.setdefault(self.find(i), len(numbering)) for i in range(len(self.parent))]


def position_classes(
    groups: Sequence[CoupledGroup], keys_of: Sequence[Callable[[CoupledGroup], list[list[tuple]]]]
) -> list[int]:
    """Class label of every position of `groups` (flattened in order, offsets = running sum
    of widths): positions that share a key of any of `keys_of` (e.g. channel_group_keys,
    link_keys with the graph bound) can only be removed together."""
    union = UnionFind(sum(group.width for group in groups))
    first_with_key: dict[tuple, int] = {}
    offset = 0
    for group in groups:
        for keys_per_position in (key_function(group) for key_function in keys_of):
            for k, position_keys in enumerate(keys_per_position):
                for key in position_keys:
                    union.union(offset + k, first_with_key.setdefault(key, offset + k))
        offset += group.width
    return union.labels()
