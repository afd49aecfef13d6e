"""Instances cut from a small ReLU MLP trained on the digits data.

The network is 64 -> hidden -> 10. The instance asks which hidden neurons to keep while
refitting the output layer: X = hidden activations on the training split plus a constant
column (the output bias, group -1), one structure per hidden neuron, and Y = the network's
logits (``targets="outputs"``) or one-hot labels (``targets="onehot"``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sprkit.data.digits import digits_split
from sprkit.errors import InstanceError
from sprkit.instances.format import MAX_ENTRIES, Instance, make_instance


def train_digits_mlp(
    hidden: int, seed: int, steps: int = 400
) -> tuple[nn.Sequential, float, float]:
    """Full-batch Adam on the training split; returns (model, validation acc, test acc)."""
    split = digits_split(seed)
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            bound = 1.0 / np.sqrt(parameter.shape[-1])
            parameter.uniform_(-bound, bound, generator=generator)
    x = torch.as_tensor(split.x_train, dtype=torch.float64)
    labels = torch.as_tensor(split.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    def accuracy(pixels: np.ndarray, target: np.ndarray) -> float:
        with torch.no_grad():
            predicted = model(torch.as_tensor(pixels, dtype=torch.float64)).argmax(1).numpy()
        return float(np.mean(predicted == target))

    return model, accuracy(split.x_val, split.y_val), accuracy(split.x_test, split.y_test)


def digits_mlp_instance(hidden: int = 32, *, targets: str = "outputs", seed: int = 0) -> Instance:
    """Train the MLP (deterministic for a seed) and cut the output-layer instance from it."""
    samples = len(digits_split(seed).x_train)
    if not 1 <= hidden or samples * (hidden + 1) > MAX_ENTRIES:
        raise InstanceError(
            f"hidden must lie in [1, {MAX_ENTRIES // samples - 1}] (X has one column per "
            f"hidden neuron and {samples} rows; limit {MAX_ENTRIES} entries), got {hidden}"
        )
    if targets not in ("outputs", "onehot"):
        raise InstanceError(f"targets must be 'outputs' or 'onehot', got {targets!r}")
    model, val_accuracy, test_accuracy = train_digits_mlp(hidden, seed)
    split = digits_split(seed)
    with torch.no_grad():
        first, _, last = model
        activations = torch.relu(first(torch.as_tensor(split.x_train, dtype=torch.float64)))
        logits = last(activations)
    X = np.hstack([activations.numpy(), np.ones((activations.shape[0], 1))])
    Y = logits.numpy() if targets == "outputs" else np.eye(10)[split.y_train]
    groups = np.append(np.arange(hidden), -1)
    meta = {
        "generator": "digits-mlp",
        "hidden": hidden,
        "targets": targets,
        "seed": seed,
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
    }
    extras = {
        "hidden_weight": first.weight.detach().numpy(),
        "hidden_bias": first.bias.detach().numpy(),
        "output_weight": last.weight.detach().numpy(),
        "output_bias": last.bias.detach().numpy(),
    }
    return make_instance(X, Y, groups, meta=meta, extras=extras)


def pruned_network_accuracy(instance: Instance, W: np.ndarray, split: str = "test") -> float:
    """Accuracy of the MLP whose output layer is replaced by W (d x 10, last row the bias);
    hidden neurons whose row of W is zero are pruned. Needs a digits-mlp instance."""
    if instance.meta.get("generator") != "digits-mlp":
        raise InstanceError("pruned_network_accuracy needs an instance from digits_mlp_instance")
    data = digits_split(int(instance.meta["seed"]))
    pixels, labels = {"test": (data.x_test, data.y_test), "val": (data.x_val, data.y_val)}[split]
    hidden = np.maximum(
        pixels.astype(np.float64) @ instance.extras["hidden_weight"].T
        + instance.extras["hidden_bias"],
        0.0,
    )
    logits = np.hstack([hidden, np.ones((hidden.shape[0], 1))]) @ W
    return float(np.mean(logits.argmax(axis=1) == labels))
