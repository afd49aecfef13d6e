"""The training recipe: resume equality, masks frozen in fine-tuning, NaN stop, bad config."""

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

import sprkit.networks.training as training
from sprkit.data.digits import digits_image_datasets
from sprkit.errors import CheckpointError, ParameterError
from sprkit.networks.architectures import build_model
from sprkit.networks.training import CHECKPOINT_PARTS, NonFiniteLossError, TrainConfig, train_spr


def _data():
    train, val, _ = digits_image_datasets(0)
    small = Subset(train, range(192))
    images = torch.stack([small[i][0] for i in range(len(small))])
    labels = torch.stack([small[i][1] for i in range(len(small))])
    return TensorDataset(images, labels), val


CONFIG = TrainConfig(
    penalized_epochs=2,
    finetune_epochs=1,
    lr=0.05,
    milestones=[2],
    batch_size=64,
    lam=0.5,
    alpha=0.5,
    tolerance=0.05,
)


def _model():
    torch.manual_seed(0)
    return build_model("resnet-digits", num_classes=10, in_channels=1)


def test_resume_after_interruption_ends_at_the_same_weights(tmp_path, monkeypatch):
    train, val = _data()
    full = train_spr(_model(), train, val, CONFIG, tmp_path / "full")

    calls = {"n": 0}
    original = training.accuracy

    def interrupt_on_second_call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # during epoch 2's log: only epoch 1 is checkpointed
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "accuracy", interrupt_on_second_call)
    with pytest.raises(KeyboardInterrupt):
        train_spr(_model(), train, val, CONFIG, tmp_path / "resumed")
    monkeypatch.setattr(training, "accuracy", original)
    resumed = train_spr(_model(), train, val, CONFIG, tmp_path / "resumed", resume=True)
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(full.keep, resumed.keep)
    log = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert len(log) == 1 + 3  # header + one row per epoch, no duplicate


def test_removed_channels_stay_zero_through_fine_tuning(tmp_path):
    train, val = _data()
    config = TrainConfig(
        penalized_epochs=1,
        finetune_epochs=2,
        lr=0.05,
        milestones=[],
        batch_size=64,
        lam=2.0,
        alpha=0.5,
        tolerance=0.3,
    )
    pruner = train_spr(_model(), train, val, config, tmp_path)
    assert int((~pruner.keep).sum()) > 0
    parameters = dict(pruner.model.named_parameters())
    for piece in pruner.structures.slices:  # every row of a removed structure is zero
        rows = piece.rows[~pruner.keep[piece.owner]]
        assert torch.all(parameters[piece.parameter].detach()[rows] == 0), piece.parameter


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    train, val = _data()
    config = TrainConfig(
        penalized_epochs=3,
        finetune_epochs=0,
        milestones=[],
        batch_size=64,
        lam=1e36,  # within float64's accepted range, beyond what float32 training survives
        alpha=0.5,
    )
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch"):
        train_spr(_model(), train, val, config, tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    if checkpoint.exists():  # whatever was saved is the last good, finite state
        state = torch.load(checkpoint, weights_only=True)
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha=1.0), "alpha"),
        (dict(lam=-1.0), "lam"),
        (dict(penalized_epochs=-1), "epochs"),
        (dict(momentum=-1.0), "momentum"),
        (dict(weight_decay=-1e-4), "weight_decay"),
        (dict(gamma=-1.0), "gamma"),
        (dict(milestones=[250, 150]), "milestones"),
        (dict(tolerance=float("nan")), "tolerance must be a finite number"),
        (dict(keep_fraction=0.0), "keep_fraction"),
        (dict(lr=float("inf")), "lr must be a finite number"),
        (dict(lr=1e300), r"lr must lie in \(0, 100\]"),
        (dict(weight_decay=1e3), r"weight_decay must lie in \[0, 10\]"),
        (dict(lam=1e300), "lam = 1e\\+300 is beyond"),
        (dict(seed=-1), "seed"),
        (dict(penalty="l1"), "unknown penalty"),
    ],
)
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        TrainConfig(**kwargs)


def test_resume_refuses_other_settings_another_architecture_and_a_corrupt_file(tmp_path):
    train, val = _data()
    first = TrainConfig(penalized_epochs=1, finetune_epochs=0, milestones=[], batch_size=64)
    train_spr(_model(), train, val, first, tmp_path / "run")
    other = TrainConfig(penalized_epochs=2, finetune_epochs=0, milestones=[], batch_size=64)
    with pytest.raises(CheckpointError, match=r"other settings \(penalized_epochs\)"):
        train_spr(_model(), train, val, other, tmp_path / "run", resume=True)
    wider = build_model("resnet20", num_classes=10, in_channels=1)
    with pytest.raises(CheckpointError, match="does not fit the network"):
        train_spr(wider, train, val, first, tmp_path / "run", resume=True)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        train_spr(_model(), train, val, first, tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        *[(("drop", key), f"missing {key}") for key in CHECKPOINT_PARTS],
        (("set", "epoch", "3"), "epoch of the wrong type"),
        (("set", "epoch", 99), "epoch 99 outside"),
        (("set", "log", "{not json"), "not JSON"),
        (("set", "config", "[1]"), "wrong shape"),
        (("set", "keep", torch.ones(3, dtype=torch.bool)), "'keep' must be"),
        (("set", "optimizer", {"state": {}}), "does not fit"),
    ],
)
def test_a_damaged_checkpoint_is_named_whole_before_anything_is_used(tmp_path, damage, message):
    train, val = _data()
    config = TrainConfig(penalized_epochs=1, finetune_epochs=0, milestones=[], batch_size=64)
    train_spr(_model(), train, val, config, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    if damage[0] == "drop":
        del state[damage[1]]
    else:
        state[damage[1]] = damage[2]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message):
        train_spr(_model(), train, val, config, tmp_path / "run", resume=True)


def test_dense_training_keeps_every_channel_and_writes_its_weights(tmp_path):
    train, val = _data()
    config = TrainConfig(
        penalized_epochs=2, finetune_epochs=0, milestones=[], batch_size=64, lam=0.0, prune=False
    )
    pruner = train_spr(_model(), train, val, config, tmp_path)
    assert bool(pruner.keep.all())
    saved = torch.load(tmp_path / "penalized.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in pruner.model.state_dict().items())
    assert bool((pruner.structures.norms(pruner.model) > 0).all())
