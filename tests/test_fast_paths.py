"""Fast data paths on CPU: batches of one epoch and their shards, the batched augmentation,
a map-style Dataset trained like the TensorDataset fast path, bf16 + channels-last."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from sprkit.data.augment import random_crop_flip
from sprkit.data.digits import digits_image_datasets
from sprkit.errors import ParameterError
from sprkit.networks.architectures import build_model
from sprkit.networks.batches import EpochBatches, ordered_batches
from sprkit.networks.training import TrainConfig, autocast_type, memory_layout, train_spr


class Items(Dataset):
    """The items of a TensorDataset one by one, as a map-style Dataset of files would give."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return tuple(tensor.clone() for tensor in self.data[index])


def _digits(count: int) -> tuple[TensorDataset, TensorDataset]:
    train, val, _ = digits_image_datasets(0)
    return TensorDataset(*(t[:count] for t in train.tensors)), val


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet-digits", num_classes=10, in_channels=1)


def test_the_batches_of_two_processes_together_are_the_batches_of_one():
    data = TensorDataset(torch.arange(11.0), torch.arange(11))  # 11: one item of padding
    one = list(EpochBatches(data, 4, torch.device("cpu"), seed=3)(epoch=5))
    shares = [
        list(EpochBatches(data, 4, torch.device("cpu"), seed=3, rank=r, world=2)(epoch=5))
        for r in (0, 1)
    ]
    assert sorted(torch.cat([labels for _, labels in one]).tolist()) == list(range(11))
    assert len(shares[0]) == len(shares[1]) == len(one) == 3  # DDP needs equal counts
    for k, (first, second) in enumerate(zip(*shares, strict=True)):
        together = torch.cat([first[1], second[1]]).tolist()
        expected = one[k][1].tolist()
        if k == len(one) - 1:  # the padding repeats the epoch's first item
            expected = [*expected, one[0][1][0].item()]
        assert sorted(together) == sorted(expected)
        assert len(first[1]) == len(second[1])
    again = list(EpochBatches(data, 4, torch.device("cpu"), seed=3)(epoch=5))
    other = list(EpochBatches(data, 4, torch.device("cpu"), seed=3)(epoch=6))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(one, again, strict=True))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(one, other, strict=True))


@pytest.mark.parametrize("wrap", [lambda d: d, Items])
def test_evaluation_shards_are_disjoint_and_cover_the_set(wrap):
    data = wrap(TensorDataset(torch.arange(7.0)[:, None], torch.arange(7)))
    seen = []
    for rank in (0, 1, 2):
        for inputs, labels in ordered_batches(data, 2, "cpu", rank=rank, world=3):
            assert torch.equal(inputs[:, 0].long(), labels)
            seen += labels.tolist()
    assert sorted(seen) == list(range(7))


def test_the_augmentation_crops_and_flips_each_image_like_a_loop_over_images():
    images = torch.randn(6, 3, 5, 7)
    augmented = random_crop_flip(images, torch.Generator().manual_seed(4), padding=2)
    generator = torch.Generator().manual_seed(4)  # the same draws, in the same order
    top = torch.randint(0, 5, (6,), generator=generator)
    left = torch.randint(0, 5, (6,), generator=generator)
    flip = torch.rand(6, generator=generator) < 0.5
    for i, image in enumerate(images):
        padded = nn.functional.pad(image, (2, 2, 2, 2))
        crop = padded[:, top[i] : top[i] + 5, left[i] : left[i] + 7]
        assert torch.equal(augmented[i], crop.flip(-1) if flip[i] else crop), i
    assert flip.any() and not flip.all()


def test_a_map_style_dataset_with_workers_trains_like_the_tensor_fast_path(tmp_path):
    train, val = _digits(128)
    config = TrainConfig(
        penalized_epochs=1,
        finetune_epochs=0,
        milestones=[],
        batch_size=32,
        lam=0.5,
        prune=False,  # one evaluation (the pruning rule's many would each start workers)
        workers=2,
    )
    fast = train_spr(_model(), train, val, config, tmp_path / "fast", augment=random_crop_flip)
    loaded = train_spr(
        _model(), Items(train), Items(val), config, tmp_path / "items", augment=random_crop_flip
    )
    for (name, a), (_, b) in zip(
        fast.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    logs = [(tmp_path / run / "log.csv").read_text() for run in ("fast", "items")]
    assert logs[0] == logs[1]  # same loss, same validation accuracy


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    train, val = _digits(64)
    config = TrainConfig(
        penalized_epochs=1,
        finetune_epochs=0,
        milestones=[],
        batch_size=32,
        lam=0.5,
        precision="bf16",
        channels_last=True,
    )
    model = _model()
    # A conv with several input channels (with one, both layouts are the same strides).
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    seen = []

    def record(module, inputs, output):
        if module.training:
            tensors = (inputs[0], module.weight)
            last = [t.is_contiguous(memory_format=torch.channels_last) for t in tensors]
            seen.append((output.dtype, last))

    conv.register_forward_hook(record)
    pruner = train_spr(model, train, val, config, tmp_path)
    assert seen == [(torch.bfloat16, [True, True])] * 2  # both training steps
    for name, parameter in pruner.model.named_parameters():
        assert parameter.dtype == torch.float32 and parameter.is_contiguous(), name
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert "nan" not in log[1] and "inf" not in log[1]


def test_precision_and_layout_defaults_follow_the_device():
    model, config = _model(), TrainConfig()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_type(config, cpu) is None
    assert memory_layout(config, model, cpu) == torch.contiguous_format
    assert memory_layout(config, model, cuda) == torch.channels_last
    assert memory_layout(config, nn.Linear(3, 2), cuda) == torch.contiguous_format
    assert autocast_type(TrainConfig(precision="bf16"), cpu) == torch.bfloat16
    with pytest.raises(ParameterError, match="precision fp16 needs a CUDA device"):
        autocast_type(TrainConfig(precision="fp16"), cpu)
