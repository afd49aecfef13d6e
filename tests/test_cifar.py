"""CIFAR loaders on tiny files written in the official python-version format."""

import pickle
import tarfile

import numpy as np
import pytest

from sprkit.data.cifar import load_cifar
from sprkit.errors import SprkitInputError


def _batch(rng, n, label_key, classes):
    return {
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, classes, size=n).tolist(),
        b"batch_label": b"x",
    }


def _write_cifar10(root, rng, as_archive):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _batch(rng, 4, b"labels", 10) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, 3, b"labels", 10)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    if as_archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    return batches


@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar10_reads_folder_and_archive_with_channel_first_images(tmp_path, as_archive):
    batches = _write_cifar10(tmp_path, np.random.default_rng(0), as_archive)
    train, test = load_cifar("cifar10", tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    first = batches["data_batch_1"][b"data"][0]
    # Official layout: 1024 red, then 1024 green, then 1024 blue values, row-major.
    np.testing.assert_array_equal(train.images[0, 1].ravel(), first[1024:2048])
    assert train.labels[:4].tolist() == batches["data_batch_1"][b"labels"]
    assert train.num_classes == 10


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 5), ("test", 2)):
        batch = _batch(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [0] * n
        (folder / name).write_bytes(pickle.dumps(batch))
    train, test = load_cifar("cifar100", tmp_path)
    assert train.num_classes == 100 and len(test.labels) == 2


def test_missing_data_names_the_file_and_the_source(tmp_path):
    with pytest.raises(SprkitInputError, match="cifar-10-python.tar.gz"):
        load_cifar("cifar10", tmp_path)
    _write_cifar10(tmp_path, np.random.default_rng(2), as_archive=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(SprkitInputError, match="lacks data_batch_3"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(SprkitInputError, match="not a directory"):
        load_cifar("cifar10", tmp_path / "nope")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    _write_cifar10(tmp_path, np.random.default_rng(3), as_archive=False)

    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(SprkitInputError, match="unexpected object builtins.print"):
        load_cifar("cifar10", tmp_path)


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": [[300] * 3072], b"labels": [1]}, "damaged or not a CIFAR batch"),
        ({b"data": np.zeros((0, 3072), dtype=np.uint8), b"labels": []}, "N >= 1"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": 3}, "1 labels; expected"),
    ],
)
def test_malformed_batches_are_named(tmp_path, batch, message):
    _write_cifar10(tmp_path, np.random.default_rng(0), as_archive=False)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(SprkitInputError, match=message):
        load_cifar("cifar10", tmp_path)
