"""ImageNet: the folder layout on tiny JPEGs written here, the standard transforms against
computations by hand, the held-out split, the errors a user meets, and a run end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_run import run_cli
from PIL import Image
from torch.utils.data import DataLoader

from sprkit.app.cli import _error_line
from sprkit.data import imagenet, transforms
from sprkit.data.images import load_image_data
from sprkit.errors import SprkitInputError
from sprkit.networks.architectures import build_model
from sprkit.networks.measure import top_k_accuracies
from sprkit.networks.serialization import load_compressed

WNIDS = ["n01440764", "n01443537", "n01484850"]
MEAN, STD = np.array(transforms.IMAGENET_MEAN), np.array(transforms.IMAGENET_STD)


def write_imagenet(root: Path, train: int = 8, val: int = 3) -> Path:
    """train/ and val/ with one folder per wnid of 40x48 (height x width) JPEGs, each class
    with its own dominant colour."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label, wnid in enumerate(WNIDS):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 120, size=(40, 48, 3), dtype=np.uint8)
                pixels[..., label] += 120
                Image.fromarray(pixels).save(folder / f"{wnid}_{index}.JPEG", quality=90)
    return root


def test_classes_splits_and_items(tmp_path):
    root = write_imagenet(tmp_path)
    (root / "train" / WNIDS[1] / ".DS_Store").write_bytes(b"\0")  # hidden: skipped
    Image.new("L", (30, 20), 7).save(root / "train" / WNIDS[2] / "extra.png")
    Image.new("RGB", (20, 30)).save(root / "val" / WNIDS[0] / "lower.jpg")
    splits = imagenet.load_imagenet(root, seed=0, crop_size=16, resize_size=18)
    assert splits.classes == WNIDS
    # 8, 8 and 9 training images: one of each held out for validation (a fifth, at least one).
    assert np.bincount(splits.val.labels).tolist() == [1, 1, 1]
    assert np.bincount(splits.train.labels).tolist() == [7, 7, 8]
    assert np.bincount(splits.test.labels).tolist() == [4, 3, 3]
    pairs = zip(*_pairs(splits.train, splits.val), strict=True)
    names = {(int(label), name.decode()) for label, name in pairs}
    on_disk = {(WNIDS.index(p.parent.name), p.name) for p in (root / "train").glob("*/[!.]*")}
    assert names == on_disk
    image, label = splits.train[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 0
    grey = next(d for d in (splits.train, splits.val) if b"extra.png" in d.names.tolist())
    image, label = grey[grey.names.tolist().index(b"extra.png")]  # greyscale, read as RGB
    assert label == 2 and image.shape == (3, 16, 16)
    assert imagenet.load_imagenet(root, seed=0).test[0][0].shape == (3, 224, 224)
    again = imagenet.load_imagenet(root, seed=0, crop_size=16, resize_size=18)
    assert np.array_equal(again.val.names, splits.val.names)
    other = [imagenet.load_imagenet(root, seed=s, crop_size=16).val.names for s in (1, 2, 3)]
    assert any(not np.array_equal(names, splits.val.names) for names in other)


def _pairs(*datasets):
    labels = np.concatenate([d.labels for d in datasets])
    return labels, np.concatenate([d.names for d in datasets])


def test_held_out_share_per_class():
    counts = [1, 2, 9, 10, 50, 1300]
    labels = np.repeat(np.arange(len(counts)), counts)
    held = imagenet._held_out(labels, len(counts), seed=0)
    assert np.bincount(labels[held], minlength=len(counts)).tolist() == [0, 1, 1, 2, 10, 10]


def test_load_image_data_shapes_and_size_settings(tmp_path):
    root = write_imagenet(tmp_path)
    data = load_image_data("imagenet", root, crop_size=16, resize_size=20)
    assert data.input_shape == (3, 16, 16) and data.num_classes == 3 and data.augment is None
    images, labels = next(iter(DataLoader(data.test, batch_size=4)))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64
    with pytest.raises(SprkitInputError, match="crop_size: digits images have a fixed size"):
        load_image_data("digits", None, crop_size=16)
    with pytest.raises(SprkitInputError, match="crop_size <= resize_size"):
        load_image_data("imagenet", root, crop_size=32, resize_size=20)
    with pytest.raises(SprkitInputError, match="needs data_dir, the folder holding train/"):
        load_image_data("imagenet", None)


def _linear_image(height: int, width: int) -> tuple[Image.Image, np.ndarray]:
    """Pixels a*row + b*column + c per channel (even slopes: every bilinear average of
    interior pixels is an integer, so Pillow's 8-bit rounding is exact)."""
    slopes = np.array([[2, 2, 0], [4, 0, 0], [0, 2, 50]])  # (a, b, c) per channel
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.stack([a * rows + b * columns + c for a, b, c in slopes], axis=-1)
    assert pixels.max() <= 255
    return Image.fromarray(pixels.astype(np.uint8)), slopes


def test_pillow_eval_transform_equals_a_computation_by_hand():
    """48x72 (height x width) -> shorter side 24: 24x36, scale 1/2 -> center 16x16 crop at
    rows 4..19, columns 10..25, all interior (Pillow's triangle filter of radius 2 source
    pixels never reaches the border). Output pixel (i, j) is centered on source coordinate
    2i + 1/2 (in pixel indices), where a linear image takes a(2i + 1/2) + b(2j + 1/2) + c."""
    image, slopes = _linear_image(48, 72)
    got = transforms.EvalTransform(crop_size=16, resize_size=24)(image).numpy()
    rows, columns = np.mgrid[4:20, 10:26]
    expected = np.stack([a * (2 * rows + 0.5) + b * (2 * columns + 0.5) + c for a, b, c in slopes])
    expected = (expected / 255.0 - MEAN[:, None, None]) / STD[:, None, None]
    assert got.shape == (3, 16, 16)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pillow_eval_transform_on_a_portrait_image_crops_the_middle_rows():
    """No resizing needed (shorter side already 20): the crop is the plain middle, offsets
    round((30 - 16) / 2) = 7 rows and round((20 - 16) / 2) = 2 columns."""
    image, _ = _linear_image(30, 20)
    got = transforms.EvalTransform(crop_size=16, resize_size=20)(image).numpy()
    pixels = np.asarray(image, dtype=np.float64)[7:23, 2:18].transpose(2, 0, 1)
    expected = (pixels / 255.0 - MEAN[:, None, None]) / STD[:, None, None]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_train_crops_have_the_size_the_bounds_and_come_from_the_seed():
    image, _ = _linear_image(40, 48)
    transform = transforms.TrainTransform(crop_size=24)
    torch.manual_seed(3)
    first = [transform(image) for _ in range(4)]
    torch.manual_seed(3)
    second = [transform(image) for _ in range(4)]
    assert all(t.shape == (3, 24, 24) for t in first)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])
    torch.manual_seed(0)
    for _ in range(200):
        top, left, height, width = transforms.random_crop_box(48, 40)
        assert 0 <= top and top + height <= 40 and 0 <= left and left + width <= 48
        # Sides are rounded to whole pixels (by at most 1/2): the bounds hold before that.
        assert (width + 0.5) * (height + 0.5) >= 0.08 * 40 * 48
        assert (width - 0.5) / (height + 0.5) <= 4 / 3 and (width + 0.5) / (height - 0.5) >= 3 / 4
    # A strip no crop of the allowed ratios fits: the central crop of ratio 4/3.
    assert transforms.random_crop_box(1000, 10) == (0, (1000 - 13) // 2, 10, 13)


def test_pillow_transforms_equal_torchvisions():
    tv = pytest.importorskip("torchvision.transforms")  # where torchvision imports
    image, _ = _linear_image(40, 48)
    ours = transforms.TrainTransform(24), transforms.EvalTransform(24, 28)
    theirs = transforms.imagenet_transforms(24, 28)
    assert isinstance(theirs[0], tv.Compose)
    for mine, reference in zip(ours, theirs, strict=True):
        for seed in range(5):
            torch.manual_seed(seed)
            expected = reference(image)
            torch.manual_seed(seed)
            assert torch.equal(mine(image), expected)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "train").rename(r / "training"), "train is missing"),
        (lambda r: shutil.rmtree(r / "val"), "val is missing"),
        (lambda r: (r / "val" / "n09999999").mkdir(), "n09999999 is not a class of train/"),
        (lambda r: (r / "train" / "n02000000").mkdir(), "n02000000 holds no images"),
        (lambda r: (r / "train" / WNIDS[0] / "notes.txt").write_text("x"), "notes.txt is not"),
        (lambda r: (r / "val" / WNIDS[1] / "sub").mkdir(), "sub is not an image file"),
        (lambda r: (r / "train" / WNIDS[2] / "zero.jpg").write_bytes(b""), "zero.jpg is an empty"),
        (lambda r: [shutil.rmtree(p) for p in (r / "val").iterdir()], "val has no class folders"),
    ],
)
def test_layout_errors_name_the_problem(tmp_path, damage, message):
    root = write_imagenet(tmp_path, train=2, val=1)
    damage(root)
    with pytest.raises(SprkitInputError, match=message):
        imagenet.load_imagenet(root)


def test_single_image_classes_leave_nothing_to_hold_out(tmp_path):
    root = write_imagenet(tmp_path, train=1, val=1)
    with pytest.raises(SprkitInputError, match="no class has 2 images"):
        imagenet.load_imagenet(root)


def test_an_image_that_does_not_decode_is_named_also_from_a_worker(tmp_path):
    root = write_imagenet(tmp_path, train=2, val=1)
    broken = root / "val" / WNIDS[0] / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    test = imagenet.load_imagenet(root, crop_size=16, resize_size=18).test
    with pytest.raises(SprkitInputError, match=r"broken.JPEG cannot be decoded as an image"):
        test[0]
    with pytest.raises(SprkitInputError) as raised:  # re-raised by the loader: a traceback
        list(DataLoader(test, batch_size=2, num_workers=1))
    line = _error_line(raised.value)
    assert line.startswith(f"{broken} cannot be decoded as an image") and "Traceback" not in line


TINY = """
arch = "resnet18-imagenet"
crop_size = 16
resize_size = 18
latency_batch = 2
baseline = false

[train]
penalized_epochs = 1
finetune_epochs = 1
milestones = [1]
batch_size = 8
workers = 0  # decoding in the main process: tiny images, no worker start-up
lam = 0.5
"""


def test_a_tiny_imagenet_folder_runs_end_to_end(tmp_path, capsys):
    root = write_imagenet(tmp_path / "imagenet")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "imagenet", "--data-dir", root, "--config", config]
    code, _, err = run_cli(capsys, [*argv, "--out", out])
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    networks = pd.read_csv(out / "report.csv").set_index("network")
    assert report["dataset"] == "imagenet" and report["arch"] == "resnet18-imagenet"
    # torchvision's 11,689,512 for 1000 classes, with a 3-class fc instead.
    assert networks.loc["penalized", "parameters"] == 11_689_512 - 513 * 1000 + 513 * 3
    assert networks["top1"].between(0, 1).all() and networks["top5"].isna().all()
    assert networks.loc["compressed", "top1"] == networks.loc["pruned", "top1"]
    assert networks.loc["compressed", "parameters"] <= networks.loc["pruned", "parameters"]
    assert report["max_logit_difference_pruned_vs_compressed"] <= 1e-4
    compressed, description = load_compressed(
        out / "network", lambda: build_model("resnet18-imagenet", 3)
    )
    assert description["input_shape"] == [3, 16, 16]
    test = load_image_data("imagenet", root, crop_size=16, resize_size=18).test
    accuracy = top_k_accuracies(compressed, test)["top1"]  # the CSV's text may round k / n
    assert accuracy == pytest.approx(networks.loc["compressed", "top1"], abs=1e-12)


def test_a_bad_folder_is_one_line_and_marks_no_run(tmp_path, capsys):
    root = write_imagenet(tmp_path / "imagenet", train=2, val=1)
    (root / "val" / "n09999999").mkdir()
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "imagenet", "--data-dir", root, "--out", out]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "n09999999 is not a class of train/" in err
    assert not (out / ".sprkit-run").exists()
