"""`sprkit prune --init FILE`: the run starts from the file's weights; files that do not fit
are refused in one line before the run folder is marked."""

import json

import pytest
import torch
from cli_run import run_cli

from sprkit.app.initial import read_state_dict
from sprkit.networks.architectures import build_model
from sprkit.networks.pruner import SPRPruner

# No penalized epoch: the weights before pruning (penalized.pt) are the starting weights.
FROM_THE_START = """
[train]
penalized_epochs = 0
finetune_epochs = 1
milestones = [1]
batch_size = 256
"""


def _weights(arch: str, classes: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict that differs from what the run would draw itself (another seed, and
    BatchNorm statistics moved off their initial 0 and 1)."""
    torch.manual_seed(seed)
    model = build_model(arch, classes, 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.mark.parametrize("wrapping", ["plain", "state_dict", "ddp_model"])
def test_state_dicts_are_read_plain_or_from_a_checkpoint(tmp_path, wrapping):
    state = _weights("resnet-digits", 10, seed=1)
    saved = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 90},
        "ddp_model": {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3},
    }[wrapping]
    torch.save(saved, tmp_path / "init.pt")
    read = read_state_dict(tmp_path / "init.pt")
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)


def test_the_run_and_its_baseline_start_from_the_files_weights(tmp_path, capsys):
    state = _weights("resnet-digits", 10, seed=123)
    init = tmp_path / "init.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, init)
    config = tmp_path / "config.toml"
    config.write_text('init = "elsewhere.pt"\nbaseline = true\n' + FROM_THE_START)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out]
    code, _, err = run_cli(capsys, [*argv, "--init", init])  # the command line wins
    assert code == 0, err
    penalized = torch.load(out / "training" / "penalized.pt", weights_only=True)
    assert penalized.keys() == state.keys()
    assert all(torch.equal(penalized[k], state[k]) for k in state)
    # M comes from the file's weights too (the pruner is built on them).
    model = build_model("resnet-digits", 10, 1)
    model.load_state_dict(state)
    expected = SPRPruner(model, torch.zeros(2, 1, 8, 8)).regularizer.M
    checkpoint = torch.load(out / "training" / "checkpoint.pt", weights_only=True)
    assert torch.equal(checkpoint["M"], expected)
    assert json.loads((out / "report.json").read_text())["init"] == str(init)
    # The baseline's one epoch of SGD moved its weights from the file's: its first layer is
    # much closer to them than a fresh draw is.
    baseline = torch.load(out / "baseline" / "checkpoint.pt", weights_only=True)["model"]
    drawn = build_model("resnet-digits", 10, 1).state_dict()["conv1.weight"]
    moved = (baseline["conv1.weight"] - state["conv1.weight"]).norm()
    assert moved < 0.5 * (drawn - state["conv1.weight"]).norm()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: torch.save(_weights("vgg16", 10, 0), p), "missing conv1.weight, bn1.weight"),
        (
            lambda p: torch.save(_weights("resnet-digits", 5, 0), p),
            "shape fc.weight (5, 32) in the file, (10, 32) in the model",
        ),
        (lambda p: p.write_bytes(b"not a torch file"), "is not a readable weights file"),
        (lambda p: torch.save({"epoch": 3}, p), "holds no state dict"),
        (lambda p: None, "does not exist"),
    ],
)
def test_a_file_that_does_not_fit_is_one_line_and_marks_no_run(tmp_path, capsys, make, message):
    path = tmp_path / "init.pt"
    make(path)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--init", path, "--out", out]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and str(path) in err
    assert not (out / ".sprkit-run").exists()
