"""Save, load and export compressed networks without the training code's objects.

A saved network is a folder with two files:
- `network.json`: architecture name, classes, input shape (channels, height, width), the dead
  blocks (replaced by ShortcutBlock) and the kept output channels of every conv (original
  indices, for reading; the layer sizes themselves are taken from the weights);
- `weights.pt`: the state dict, plain tensors only, loadable with torch.load(weights_only=True).
ONNX export needs the optional `onnx` extra (onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sprkit.atomic import write_atomically
from sprkit.errors import SprkitInputError
from sprkit.networks.architectures import (
    ResidualBias,
    ShortcutBlock,
    ZeroPadShortcut,
    build_model,
)
from sprkit.networks.compression import Compression

DESCRIPTION, WEIGHTS = "network.json", "weights.pt"


def save_compressed(
    model: nn.Module,
    compression: Compression,
    *,
    arch: str,
    num_classes: int,
    input_shape: tuple[int, ...],
    folder: Path,
) -> None:
    """Write network.json and weights.pt into `folder` (each written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    description = {
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": list(input_shape),
        "dead_blocks": compression.dead_blocks,
        "kept_channels": compression.kept_channels,
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomically(folder / WEIGHTS, lambda path: torch.save(state, path))
    write_atomically(folder / DESCRIPTION, lambda path: path.write_text(json.dumps(description)))


def _resized(module: nn.Module, name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """A module of the same kind as `module` with the sizes of its weights in `state`."""
    if isinstance(module, nn.Conv2d):
        out_channels, in_per_group = state[f"{name}.weight"].shape[:2]
        return nn.Conv2d(
            in_per_group * module.groups,
            out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            groups=module.groups,
            bias=f"{name}.bias" in state,
        )
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(len(state[f"{name}.weight"]), eps=module.eps)
    if isinstance(module, nn.Linear):
        out_features, in_features = state[f"{name}.weight"].shape
        return nn.Linear(in_features, out_features, bias=f"{name}.bias" in state)
    if isinstance(module, ZeroPadShortcut):
        module.source = torch.empty_like(state[f"{name}.source"])
        return module
    if isinstance(module, ResidualBias):
        return ResidualBias(len(state[f"{name}.bias"]))
    return module


def load_compressed(folder: Path) -> tuple[nn.Module, dict]:
    """The saved network (eval mode) and its description."""
    try:
        description = json.loads((folder / DESCRIPTION).read_text())
        state = torch.load(folder / WEIGHTS, weights_only=True, map_location="cpu")
    except FileNotFoundError as error:
        raise SprkitInputError(f"not a saved network: {error.filename} is missing") from None
    input_shape = description["input_shape"]
    model = build_model(description["arch"], description["num_classes"], input_shape[0])
    for index in description["dead_blocks"]:
        block = model.layers[index]
        channels = len(state[f"layers.{index}.branch_bias.bias"])
        model.layers[index] = ShortcutBlock(block.shortcut, channels)
    for name, module in list(model.named_modules()):
        if not name:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _resized(module, name, state))
    model.load_state_dict(state)
    return model.eval(), description


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """ONNX graph of `model` with a dynamic batch dimension (needs the `onnx` extra)."""
    example = torch.zeros((1, *input_shape))
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
    )
