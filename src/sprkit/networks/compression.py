"""Physical compression of any masked model: cut what carries exactly zero.

Input: a masked model, i.e. one whose removed structures have all their rows zero (conv and
Linear weights and bias, normalization scale and shift: those channels output exactly 0).
Steps, on a copy in eval mode:
1. Dead residual branches: one of sprkit's residual blocks (`folds_to_shortcut`: it computes
   relu(branch(x) + shortcut(x))) whose branch output no longer depends on its input is
   replaced by `relu(shortcut(x) + bias)` (ShortcutBlock), the constant folded into `bias`,
   when that constant is the same at every position (else the block is kept as it is).
   Other modules are left to step 2, which cuts their dead channels as any layer's.
2. Channels: in every pruning group of the dependency graph (sprkit.networks.graph), position
   k is cut when every member contributes zero there: the layers with parameters have their
   rows zero (a zeroed normalization outputs 0 whatever its input), channel links carry a
   zero or a cut channel, operations carry what they receive. A grouped conv's channel is cut
   only with its counterparts in every channel group, in whichever groups they lie (its input
   may be a torch.cat of several layers' outputs). A group keeps at least one position (a
   layer whose outputs are all zero keeps one zero channel: exact, and the graph stays
   valid), and with `round_to` its kept count is rounded up to a multiple (zero channels),
   both in whole classes of a grouped conv's counterparts (`_rounded`).
3. The copy's outputs are compared with the masked model's on random inputs; a difference
   above 1e-4 of the output scale (an operation that maps 0 to a nonzero value, e.g. a
   sigmoid, between a cut channel and its consumer) raises CompressionError: nothing is ever
   silently changed.
Groups feeding the model's outputs and those of ignored layers are never cut.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sprkit.errors import ParameterError, first_line
from sprkit.networks.architectures import ShortcutBlock, folds_to_shortcut
from sprkit.networks.graph import (
    ROOT_TYPES,
    CoupledGroup,
    build_graph,
    channel_group_keys,
    coupled_groups,
    is_grouped_conv,
    is_out_channel,
    output_channel_dim,
    output_tensors,
    position_classes,
)

_IDENTITY_TOLERANCE = 1e-4  # relative to the output scale (float32 rounding is ~1e-6)


class CompressionError(ParameterError):
    """The masked model cannot be cut exactly."""


def check_round_to(round_to: object) -> int | None:
    """`round_to` validated: None (no rounding) or a positive integer (bool excluded)."""
    if round_to is None:
        return None
    if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ParameterError(f"round_to must be a positive integer (or None), got {round_to!r}")
    return int(round_to)


@dataclass(frozen=True)
class Compression:
    """What was cut. history: (root layer name, output channels removed) in the order they
    were removed, replayable on the dense model (serialization); replaced: residual blocks
    replaced by ShortcutBlock -> their channels; kept_channels: original indices of the output
    channels kept, per conv/Linear layer of a pruning group."""

    history: list[tuple[str, list[int]]] = field(default_factory=list)
    replaced: dict[str, int] = field(default_factory=dict)
    kept_channels: dict[str, list[int]] = field(default_factory=dict)


@torch.no_grad()
def _fold_dead_branches(model: nn.Module, inputs: torch.Tensor) -> dict[str, int]:
    """Step 1 of the module docstring; returns the replaced blocks and their channels."""
    blocks = {name: module for name, module in model.named_modules() if folds_to_shortcut(module)}
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda _m, args, name=name: captured.setdefault(name, args[0])
        )
        for name, block in blocks.items()
    ]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    replaced = {}
    for name, block in blocks.items():
        if name not in captured:
            continue
        output = block.branch(captured[name])
        if output.ndim != 4 or not torch.equal(output[0], output[1]):
            continue  # depends on its input (or not an image block)
        bias = output[0].mean(dim=(1, 2))
        scale = float(bias.abs().max()) + 1.0
        if float((output[0] - bias[:, None, None]).abs().max()) > 1e-5 * scale:
            continue  # constant but not per channel: keep the block
        replacement = ShortcutBlock(block.shortcut, len(bias)).to(bias)
        replacement.branch_bias.bias.copy_(bias)
        model.set_submodule(name, replacement)
        replaced[name] = len(bias)
    return replaced


def _zero_rows(graph, module: nn.Module) -> torch.Tensor | None:
    """Per output channel of a member with parameters: whether all its rows are zero there
    (a zeroed layer outputs 0 whatever its input); None for a module without parameters
    (and for a bare parameter: it scales what it receives; the final check covers it)."""
    if not isinstance(module, nn.Module):
        return None
    rows = graph.get_out_channels(module)
    own = []
    for name, p in module.named_parameters(recurse=False):
        dim = output_channel_dim(module, name)  # 1 for a transposed conv's weight
        if p.ndim > dim and p.shape[dim] == rows:
            own.append(p.detach().transpose(0, dim).reshape(rows, -1))
    if not own:
        return None
    return torch.cat(own, dim=1).eq(0).all(dim=1).cpu()


@dataclass(frozen=True)
class _SymmetryClasses:
    """Positions of all groups that can only be cut together: a grouped conv's channel in
    every one of its channel groups, across groups where its input spans several (a
    torch.cat of several layers' outputs). labels[group][position] = class label."""

    labels: list[list[int]]
    members: dict[int, list[tuple[int, int]]]  # label -> its (group number, position) pairs

    @classmethod
    def of(cls, graph, groups: Sequence[CoupledGroup]) -> _SymmetryClasses:
        offsets = [sum(group.width for group in groups[:number]) for number in range(len(groups))]
        flat = position_classes(groups, [partial(channel_group_keys, graph)])
        labels = [
            flat[offset : offset + g.width] for g, offset in zip(groups, offsets, strict=True)
        ]
        members: dict[int, list[tuple[int, int]]] = {}
        for number, group_labels in enumerate(labels):
            for k, label in enumerate(group_labels):
                members.setdefault(label, []).append((number, k))
        return cls(labels, members)

    def complete(self, positions: list[set[int]]) -> list[set[int]]:
        """Per group, the positions of `positions` whose whole class is in `positions`."""
        whole = {
            label
            for label, pairs in self.members.items()
            if all(k in positions[number] for number, k in pairs)
        }
        return [{k for k in cut if self.labels[n][k] in whole} for n, cut in enumerate(positions)]

    def spans_groups(self, label: int) -> bool:
        return len({number for number, _ in self.members[label]}) > 1


def _member_rows(graph, groups: Sequence[CoupledGroup]) -> tuple[dict, dict]:
    """Per member with output channels (by id): its zero rows (`_zero_rows`), and for a
    module with `channel_links()` its links (output channel -> input channel it copies)."""
    zero_rows: dict[int, torch.Tensor | None] = {}
    links: dict[int, dict[int, int]] = {}
    for group in groups:
        for dependency, _ in group.members:
            module = dependency.target.module
            if not is_out_channel(graph, dependency) or id(module) in zero_rows:
                continue
            if hasattr(module, "channel_links"):
                links[id(module)] = dict(module.channel_links())
                zero_rows[id(module)] = None
            else:
                zero_rows[id(module)] = _zero_rows(graph, module)
    return zero_rows, links


def _zero_positions(graph, group: CoupledGroup, zero_rows, links, cut_inputs) -> set[int]:
    """The positions of `group` where every member contributes zero, given the input
    channels of linked modules cut so far (`cut_inputs`)."""
    zero = torch.ones(group.width, dtype=torch.bool)
    for dependency, channels in group.members:
        if not is_out_channel(graph, dependency):
            continue  # consumers carry nothing of their own
        module = dependency.target.module
        if id(module) in links:
            copied = links[id(module)]
            cut_sources = cut_inputs.get(id(module), set())
            zero &= torch.tensor(
                [copied.get(c) is None or copied[c] in cut_sources for c in channels]
            )
        elif zero_rows[id(module)] is not None:
            zero &= zero_rows[id(module)][torch.tensor(channels)]
    return set(torch.nonzero(zero).flatten().tolist())


def _cut_positions(
    graph, groups: Sequence[CoupledGroup], classes: _SymmetryClasses
) -> list[set[int]]:
    """Per group, the positions where every member contributes zero (module docstring), in
    whole symmetry classes, iterated to a fixed point over channel links (a link's output is
    zero once the input channel it copies is cut)."""
    zero_rows, links = _member_rows(graph, groups)
    cut: list[set[int]] = [set() for _ in groups]
    cut_inputs: dict[int, set[int]] = {}  # linked module -> its cut input channels
    while True:
        zero = [_zero_positions(graph, g, zero_rows, links, cut_inputs) for g in groups]
        new = classes.complete(zero)
        if new == cut:
            return cut
        cut = new
        cut_inputs = {}  # merged over the groups a linked module reads from
        for group, positions in zip(groups, cut, strict=True):
            for dependency, channels in group.members:
                module = dependency.target.module
                if id(module) in links and not is_out_channel(graph, dependency):
                    cut_inputs.setdefault(id(module), set()).update(channels[k] for k in positions)


def _rounded(
    cuts: list[set[int]], classes: _SymmetryClasses, round_to: int | None
) -> list[set[int]]:
    """`cuts` less whole symmetry classes, put back (as zero channels) so that every group
    keeps a position and, with round_to, a multiple of round_to positions: classes in order
    of their first position until it is. Where no count up to the width is a multiple (a
    width that is not, or a grouped conv's classes stepping over the multiples: with groups=2,
    round_to=3 keeps 6, 12, ...), the group keeps all its positions. A class over several
    groups is put back in all of them: repeated until no group changes."""
    cuts = [set(cut) for cut in cuts]
    changed = True
    while changed:
        changed = False
        for number, cut in enumerate(cuts):
            for label in _classes_put_back(cut, classes.labels[number], round_to):
                for other, k in classes.members[label]:
                    cuts[other].discard(k)
                changed = True
    return cuts


def _classes_put_back(cut: set[int], labels: list[int], round_to: int | None) -> list[int]:
    """The classes `_rounded` puts back into one group (`labels`: its positions' classes)."""
    sizes: dict[int, int] = {}  # cut class -> its positions here, by first position
    for k in sorted(cut):
        sizes[labels[k]] = sizes.get(labels[k], 0) + 1
    kept = len(labels) - len(cut)
    put_back = []
    for label, size in sizes.items():
        if kept > 0 and (round_to is None or kept % round_to == 0):
            break
        put_back.append(label)
        kept += size
    return put_back


def _lag_changes(graph, group: CoupledGroup, positions: list[int]) -> dict[int, tuple[int, int]]:
    """Per grouped conv whose inputs `positions` of `group` are (by id): (its groups, the
    change of its lag when they are cut, `_cut_calls`)."""
    changes = {}
    for dependency, channels in group.members:
        module = dependency.target.module
        if not is_grouped_conv(module) or is_out_channel(graph, dependency):
            continue
        per_group = module.in_channels // module.groups
        first = sum(channels[k] < per_group for k in positions)  # in the first channel group
        changes[id(module)] = (
            module.groups,
            (module.groups - 1) * first - (len(positions) - first),
        )
    return changes


def _cut_calls(
    graph, groups: Sequence[CoupledGroup], cuts: list[set[int]], classes: _SymmetryClasses
) -> list[tuple[int, list[int]]]:
    """The cuts as Torch-Pruning calls, (group number, positions), in an order it cuts
    grouped convs right. It cuts a grouped conv's weight (input channels per channel group)
    down to the first of the input channels it keeps; that is right while the conv's lag,
    input channels minus groups x weight columns, stays in [0, groups - 1]: cutting s input
    channels of the first channel group and t of the others adds (groups - 1) s - t. A call
    that cuts whole classes leaves every lag as it is: each group's classes within it are cut
    in one call; a class over several groups is cut piece by piece, a piece being cut once
    it keeps every lag in range (the piece with the first channel group's channel first)."""
    spread = {label for label in classes.members if classes.spans_groups(label)}
    calls = []
    for number, cut in enumerate(cuts):
        within = sorted(k for k in cut if classes.labels[number][k] not in spread)
        if within:
            calls.append((number, within))
    lags: dict[int, int] = {}
    for label in sorted(spread):
        pieces: dict[int, list[int]] = {}
        for number, k in classes.members[label]:
            if k in cuts[number]:
                pieces.setdefault(number, []).append(k)
        while pieces:
            number = next((n for n in pieces if _lags_fit(graph, groups[n], pieces[n], lags)), None)
            if number is None:
                raise CompressionError(
                    "found no order in which Torch-Pruning cuts exactly the zero input channels "
                    "of a grouped conv fed by several layers (e.g. through torch.cat)"
                )
            for conv, (_, change) in _lag_changes(graph, groups[number], pieces[number]).items():
                lags[conv] = lags.get(conv, 0) + change
            calls.append((number, pieces.pop(number)))
    return calls


def _lags_fit(graph, group: CoupledGroup, positions: list[int], lags: dict[int, int]) -> bool:
    """Whether cutting `positions` of `group` keeps every grouped conv's lag in range."""
    return all(
        0 <= lags.get(conv, 0) + change < groups
        for conv, (groups, change) in _lag_changes(graph, group, positions).items()
    )


def compress(
    masked: nn.Module,
    example_inputs: torch.Tensor,
    *,
    ignored_layers: Sequence[str] = (),
    round_to: int | None = None,
) -> tuple[nn.Module, Compression]:
    """A smaller copy of `masked` (eval mode) computing the same function, and what was cut
    (module docstring). `ignored_layers`: names of layers never cut."""
    round_to = check_round_to(round_to)
    model = copy.deepcopy(masked).eval()
    probe = _probe_inputs(example_inputs)
    replaced = _fold_dead_branches(model, probe)
    compression = _cut(model, example_inputs, ignored_layers, round_to, replaced)
    _check_identity(masked, model, probe)
    return model, compression


def check_cut(
    trial: nn.Module,
    example_inputs: torch.Tensor,
    ignored_layers: Sequence[str],
    precision: torch.dtype | None = None,
    tolerance: float | None = None,
) -> None:
    """CompressionError where compress() would refuse to cut `trial`'s zero channels, for
    a model none of whose residual branches is constant: trial cuts at construction
    (sprkit.networks.exactness). Cheaper than compress(): no folding of constant branches
    (so three forward passes in all), and `trial`, a copy made for it, is cut in place.
    `precision`: the dtype both models are compared in (traced and cut in their own);
    `tolerance`: relative to the output scale (default: compress()'s for the dtype). A
    ForwardError comes from the masked model's forward, before `trial` is cut."""
    probe = _probe_inputs(example_inputs)
    if precision is None:
        expected = _outputs(trial, probe)
    else:
        probe = probe.to(precision)
        expected = _outputs(copy.deepcopy(trial).to(precision), probe)
    _cut(trial.eval(), example_inputs, ignored_layers, None, {})
    _compare(expected, trial if precision is None else trial.to(precision), probe, tolerance)


class ForwardError(ParameterError):
    """The model's forward fails on random inputs of the example's shape."""


def _probe_inputs(example_inputs: torch.Tensor) -> torch.Tensor:
    """Random inputs of the example's shape (batch size included: a forward may depend on
    it), dtype and device (seeded)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(example_inputs.shape, generator=generator).to(example_inputs)


def _cut(
    model: nn.Module,
    example_inputs: torch.Tensor,
    ignored_layers: Sequence[str],
    round_to: int | None,
    replaced: dict[str, int],
) -> Compression:
    """Cut `model`'s zero channels in place (compress() without the checks around it)."""
    graph = build_graph(model, example_inputs)
    names = {id(module): name for name, module in model.named_modules()}
    modules = dict(model.named_modules())
    ignored = [modules[name] for name in ignored_layers if name in modules]
    groups = list(coupled_groups(graph, ignored))
    classes = _SymmetryClasses.of(graph, groups)
    cuts = _rounded(_cut_positions(graph, groups, classes), classes, round_to)
    compression = Compression(replaced=replaced)
    for group, cut in zip(groups, cuts, strict=True):
        for dependency, channels in group.members:
            module = dependency.target.module
            if isinstance(module, ROOT_TYPES) and is_out_channel(graph, dependency):
                compression.kept_channels[names[id(module)]] = sorted(
                    channels[k] for k in range(group.width) if k not in cut
                )
    removed: dict[int, list[int]] = {}  # group number -> root channels cut so far
    for number, positions in _cut_calls(graph, groups, cuts, classes):
        group, earlier = groups[number], removed.setdefault(number, [])
        original = [group.members[0][1][k] for k in positions]
        root_channels = sorted(c - sum(e < c for e in earlier) for c in original)
        earlier.extend(original)
        root = group.root
        pruner = graph.get_pruner_of_module(root)
        try:
            graph.get_pruning_group(root, pruner.prune_out_channels, root_channels).prune()
        except Exception as error:  # Torch-Pruning raises many kinds
            raise CompressionError(
                f"Torch-Pruning could not cut channels of {names[id(root)]}: {first_line(error)}"
            ) from None
        compression.history.append((names[id(root)], root_channels))
    return compression


def _check_identity(masked: nn.Module, compressed: nn.Module, inputs: torch.Tensor) -> None:
    _compare(_outputs(masked, inputs), compressed, inputs)


@torch.no_grad()
def _outputs(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The output tensors of `model` on `inputs` in eval mode (its mode is restored);
    ForwardError if the forward fails (the check needs it)."""
    was_training = model.training
    model.eval()
    try:
        return output_tensors(model(inputs))
    except Exception as error:  # the user's forward: one line, not a traceback
        raise ForwardError(
            "the model's forward fails on random inputs of the example's shape, which "
            f"checking a cut needs: {type(error).__name__}: {first_line(error)}"
        ) from None
    finally:
        model.train(was_training)


def identity_tolerance(dtype: torch.dtype) -> float:
    """The largest difference, relative to the output scale, between the masked and the cut
    model's outputs that is rounding: 1e-4, or 4 units of the last place of a half-precision
    dtype (float16: 3.9e-3, bfloat16: 3.1e-2)."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(_IDENTITY_TOLERANCE, 4 * eps)


@torch.no_grad()
def _compare(
    expected: list[torch.Tensor],
    compressed: nn.Module,
    inputs: torch.Tensor,
    tolerance: float | None = None,
) -> None:
    """CompressionError unless `compressed` runs on `inputs` and gives `expected`: the same
    entries finite, the finite ones within `tolerance` (default: identity_tolerance) of
    the largest of them; outputs with no finite entry cannot be checked and are refused."""
    try:
        got = output_tensors(compressed(inputs))
    except Exception as error:  # e.g. a GroupNorm left with channels not divisible
        raise CompressionError(
            f"the cut model does not run: {first_line(error)} (a layer whose channels are "
            "split or grouped, e.g. by chunk or GroupNorm, lost some of them, or the forward "
            "expects a fixed width)"
        ) from None
    shapes = [tuple(t.shape) for t in expected], [tuple(t.shape) for t in got]
    if shapes[0] != shapes[1]:
        raise CompressionError(
            f"the cut model's outputs have shapes {shapes[1]}, the model's {shapes[0]}: a cut "
            "layer's output is also one of the model's outputs, out of the traced graph's sight"
        )
    for want, have in zip(expected, got, strict=True):
        if not want.is_floating_point():
            if not torch.equal(want, have):
                raise CompressionError("cutting the zero channels would change the model's outputs")
            continue
        finite = torch.isfinite(want)
        if not bool(finite.any()) or not torch.equal(finite, torch.isfinite(have)):
            raise CompressionError(
                "the model's outputs on random inputs of the example's shape are not finite "
                "(or the cut changes which are), so the cut cannot be checked"
            )
        want, have = want[finite], have[finite]
        scale = float(want.abs().max()) + 1e-12
        difference = float((want - have).abs().max())
        limit = identity_tolerance(want.dtype) if tolerance is None else tolerance
        if difference > limit * scale:
            raise CompressionError(
                f"cutting the zero channels would change the model's outputs (max difference "
                f"{difference:.3g} on values up to {scale:.3g}): between a removed channel and "
                "its consumer an operation maps 0 to a nonzero value (e.g. a sigmoid) or mixes "
                "channels (e.g. LayerNorm, GroupNorm, attention); those cannot be cut exactly"
            )


def fold_batchnorm(model: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
    """An inference copy of `model` (eval mode) with every BatchNorm that directly follows a
    conv in data flow (the conv's only consumer, the BatchNorm's only input) folded into the
    conv's weights and bias and replaced by Identity; other BatchNorms are left as they are.
    The same function with fewer passes over memory, as deployed networks run."""
    folded = copy.deepcopy(model).eval()
    graph = build_graph(folded, example_inputs)
    names = {id(module): name for name, module in folded.named_modules()}
    pairs = []
    for module, node in graph.module2node.items():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or len(node.inputs) != 1:
            continue
        source = node.inputs[0]
        conv = source.module
        if (
            isinstance(conv, nn.Conv2d)
            and len(source.outputs) == 1
            and conv.out_channels == module.num_features
            and not conv.transposed
        ):
            pairs.append((names[id(conv)], names[id(module)], conv, module))
    for conv_name, bn_name, conv, bn in pairs:
        folded.set_submodule(conv_name, fuse_conv_bn_eval(conv, bn))
        folded.set_submodule(bn_name, nn.Identity())
    return folded
