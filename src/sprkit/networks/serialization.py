"""Save, load and export compressed networks without the training code's objects.

A saved network is a folder with two files:
- `network.json`: what makes the compressed architecture from the dense one: the input shape
  (without batch), the residual blocks replaced by ShortcutBlock and the pruning history
  (root layer, output channels removed, in order), plus the kept output channels per layer
  (original indices, for reading) and free-form `meta` (e.g. the built-in architecture);
- `weights.pt`: the state dict, plain tensors only, loadable with torch.load(weights_only=True).
Loading replays the history on a freshly built dense model (the user's constructor), with
Torch-Pruning's dependency graph, and loads the weights into it: any model compress() can cut,
including users' own, loads back.
ONNX export needs the optional `onnx` extra (onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sprkit.atomic import write_atomically
from sprkit.errors import OutputError, SprkitInputError, first_line
from sprkit.networks.architectures import ShortcutBlock
from sprkit.networks.compression import Compression
from sprkit.networks.graph import build_graph, example_batch

DESCRIPTION, WEIGHTS = "network.json", "weights.pt"


def save_compressed(
    model: nn.Module,
    compression: Compression,
    *,
    input_shape: tuple[int, ...],
    folder: Path,
    meta: dict | None = None,
) -> None:
    """Write weights.pt, then network.json into `folder`, each atomically; network.json
    records the SHA-256 of weights.pt, so that a pair from two different saves (an interrupt
    between the two writes) is refused on load instead of mixed."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:  # a file in the way, no permission, a full disk: one line; each file whole or as it was
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / WEIGHTS, lambda path: torch.save(state, path))
        description = {
            "input_shape": list(input_shape),
            "replaced": compression.replaced,
            "history": [[name, channels] for name, channels in compression.history],
            "kept_channels": compression.kept_channels,
            "meta": meta or {},
            "weights_sha256": _digest(folder / WEIGHTS),
        }
        write_atomically(
            folder / DESCRIPTION, lambda path: path.write_text(json.dumps(description))
        )
    except (OSError, RuntimeError) as error:  # torch.save: RuntimeError on a failed write
        reason = error.strerror if isinstance(error, OSError) else None
        raise OutputError(
            f"cannot write the network to {folder}: {reason or first_line(error)}"
        ) from None


def _digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_compressed(folder: Path, model_fn: Callable[[], nn.Module]) -> tuple[nn.Module, dict]:
    """The saved network (eval mode, on the CPU) rebuilt from `model_fn()`, the dense model's
    constructor, and its description."""
    for name in (DESCRIPTION, WEIGHTS):
        if not (folder / name).is_file():
            raise SprkitInputError(f"not a saved network: {folder / name} is missing")
    try:
        description = json.loads((folder / DESCRIPTION).read_text())
        state = torch.load(folder / WEIGHTS, weights_only=True, map_location="cpu")
    except Exception as error:  # torch.load raises many kinds on a damaged file
        reason = first_line(error)
        raise SprkitInputError(f"{folder} holds a damaged saved network: {reason}") from None
    recorded = description.get("weights_sha256")  # absent in saves older than the check
    if recorded is not None and recorded != _digest(folder / WEIGHTS):
        raise SprkitInputError(
            f"{folder}: weights.pt and network.json come from different saves; save again"
        )
    model = model_fn().cpu().eval()
    for name, channels in description["replaced"].items():
        model.set_submodule(name, ShortcutBlock(model.get_submodule(name).shortcut, channels))
    example = example_batch(model, description["input_shape"])
    graph = build_graph(model, example)
    for name, channels in description["history"]:
        try:
            root = model.get_submodule(name)
        except AttributeError:
            raise SprkitInputError(
                f"the saved network does not match this constructor: no layer {name!r}"
            ) from None
        pruner = graph.get_pruner_of_module(root)
        graph.get_pruning_group(root, pruner.prune_out_channels, channels).prune()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise SprkitInputError(
            f"the saved weights do not fit the model this constructor builds: {first}"
        ) from None
    _keep_memory_formats(model, state)
    return model.eval(), description


@torch.no_grad()
def _keep_memory_formats(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give each parameter the memory layout of its saved tensor (a channels_last weight
    stays channels_last), in place: tied parameters stay one."""
    for name, parameter in model.named_parameters():
        saved = state.get(name)
        if saved is not None and saved.stride() != parameter.stride():
            parameter.data = torch.empty_strided(
                saved.shape, saved.stride(), dtype=parameter.dtype, device=parameter.device
            ).copy_(parameter.data)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """ONNX graph of `model` with a dynamic batch dimension (needs the `onnx` extra)."""
    example = example_batch(model, input_shape, 1)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        dynamic_shapes={"x": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
