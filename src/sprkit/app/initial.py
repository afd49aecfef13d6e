"""The starting weights of a run (`sprkit prune --init FILE`): a file saved by torch.save.

Accepted: a state dict (parameter and buffer name -> tensor, e.g. torchvision's pretrained
files for the *-imagenet ResNets), or a checkpoint dict holding one under 'state_dict' or
'model', as many training scripts save; a 'module.' prefix on every key (a
DistributedDataParallel model's) is dropped. The file is read with
torch.load(weights_only=True): nothing in it runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sprkit.errors import SprkitInputError, first_line

_SHOWN = 3  # names listed per kind of mismatch in the one-line message


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in `path` (module docstring); SprkitInputError naming the file if it
    is missing, unreadable or holds none."""
    if not path.is_file():
        raise SprkitInputError(f"init file {path} does not exist")
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise SprkitInputError(
            f"init file {path} is not a readable weights file ({first_line(error)})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
            break
    if not (
        isinstance(content, dict)
        and content
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items())
    ):
        raise SprkitInputError(
            f"init file {path} holds no state dict (a dict of tensors, or one under "
            "'state_dict' or 'model')"
        )
    if all(key.startswith("module.") for key in content):
        content = {key.removeprefix("module."): value for key, value in content.items()}
    return content


def _listed(names: list[str]) -> str:
    extra = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + extra


def load_strictly(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy `state` into `model`: the same keys, each of the same shape (strict loading);
    otherwise SprkitInputError saying, for `what` (the file and the model), which keys are
    missing, unexpected or of another shape."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{kind} {_listed(names)}"
        for kind, names in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if names
    ]
    if problems:
        raise SprkitInputError(f"{what}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
