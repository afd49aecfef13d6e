"""Instance format: round trip, validation, generators."""

import zipfile

import numpy as np
import pytest

from sprkit.errors import InstanceError
from sprkit.instances import (
    digits_mlp_instance,
    load_instance,
    make_instance,
    save_instance,
    synthetic_instance,
)


def test_round_trip_keeps_arrays_meta_and_extras(tmp_path):
    inst = synthetic_instance(6, rows_per_group=2, n=40, c=3, support=2, seed=7)
    path = save_instance(tmp_path / "inst.npz", inst)
    back = load_instance(path)
    np.testing.assert_array_equal(back.X, inst.X)
    np.testing.assert_array_equal(back.Y, inst.Y)
    np.testing.assert_array_equal(back.groups, inst.groups)
    np.testing.assert_array_equal(back.extras["W_true"], inst.extras["W_true"])
    assert back.meta == inst.meta
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_synthetic_plants_the_support_it_reports():
    inst = synthetic_instance(20, rows_per_group=3, n=200, c=4, support=5, noise=0.0, seed=1)
    W_true = inst.extras["W_true"]
    nonzero_groups = np.unique(inst.groups[np.any(W_true != 0, axis=1) & (inst.groups >= 0)])
    assert nonzero_groups.tolist() == inst.meta["planted"]
    np.testing.assert_allclose(inst.Y, inst.X @ W_true, atol=1e-12)
    assert inst.groups[-1] == -1 and inst.n_structures == 20


def test_digits_mlp_instance_reproduces_the_network_outputs():
    inst = digits_mlp_instance(12, seed=2)
    assert inst.X.shape[1] == 13 and inst.Y.shape[1] == 10
    # Keeping every neuron with the network's own output layer gives zero loss.
    W = np.vstack([inst.extras["output_weight"].T, inst.extras["output_bias"][None]])
    assert inst.loss(W) == pytest.approx(0.0, abs=1e-20)
    assert inst.meta["test_accuracy"] > 0.85
    onehot = digits_mlp_instance(12, seed=2, targets="onehot")
    np.testing.assert_array_equal(onehot.Y.sum(axis=1), np.ones(onehot.n))


@pytest.mark.parametrize(
    "X, Y, groups, message",
    [
        (np.ones(5), np.ones((5, 1)), np.zeros(1, int), "X must be 2-D"),
        (np.ones((5, 2)), np.ones((4, 1)), np.zeros(2, int), "Y has 4 rows"),
        (np.ones((5, 2)), np.ones((5, 1)), np.zeros(3, int), "groups has 3 entries"),
        (np.full((5, 2), np.nan), np.ones((5, 1)), np.zeros(2, int), "X contains NaN"),
        (np.ones((5, 2)), np.full((5, 1), np.inf), np.zeros(2, int), "Y contains NaN or Inf"),
        (np.ones((5, 2)), np.ones((5, 1)), np.array([0.5, 1.0]), "groups must be integers"),
        (np.ones((5, 2)), np.ones((5, 1)), np.array([-2, 0]), ">= -1"),
        (np.ones((5, 2)), np.ones((5, 1)), np.array([-1, -1]), "no prunable group"),
        # uint64 ids beyond int64 wrapped to -1: a structure silently became a free row
        (np.ones((5, 2)), np.ones((5, 1)), np.array([0, 2**64 - 1], np.uint64), "fit in int64"),
    ],
)
def test_validation_names_the_problem(X, Y, groups, message):
    with pytest.raises(InstanceError, match=message):
        make_instance(X, Y, groups)


def test_loader_rejects_missing_garbage_and_incomplete_files(tmp_path):
    with pytest.raises(InstanceError, match="not found"):
        load_instance(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip")
    with pytest.raises(InstanceError, match="not an .npz archive") as raised:
        load_instance(garbage)
    assert "allow_pickle" not in str(raised.value)  # numpy's hint would be unsafe advice
    partial = tmp_path / "partial.npz"
    np.savez(partial, X=np.ones((3, 2)), Y=np.ones((3, 1)))
    with pytest.raises(InstanceError, match="missing array\\(s\\) groups"):
        load_instance(partial)


def _valid_arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 3)), rng.normal(size=(6, 1)), np.array([0, 1, 1])


def test_loader_names_a_single_npy_array_and_object_arrays(tmp_path):
    X, Y, groups = _valid_arrays()
    renamed = tmp_path / "single.npz"
    with open(renamed, "wb") as handle:
        np.save(handle, X)
    with pytest.raises(InstanceError, match="one .npy array"):
        load_instance(renamed)
    objects = tmp_path / "objects.npz"
    np.savez(objects, X=X, Y=Y, groups=groups, extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InstanceError, match="Python objects; refused"):
        load_instance(objects)
    raw = tmp_path / "raw.npz"  # a zip whose members are not .npy files
    with zipfile.ZipFile(raw, "w") as archive:
        for key in ("X", "Y", "groups"):
            archive.writestr(key, b"not an array")
    with pytest.raises(InstanceError, match="X, Y, groups are not .npy arrays"):
        load_instance(raw)


@pytest.mark.parametrize("meta", ["[1, 2]", '"text"', "3"])
def test_meta_must_be_a_json_object(tmp_path, meta):
    X, Y, groups = _valid_arrays()
    path = tmp_path / "meta.npz"
    np.savez(path, X=X, Y=Y, groups=groups, meta=np.array(meta))
    with pytest.raises(InstanceError, match="'meta' must hold a JSON object"):
        load_instance(path)
    with pytest.raises(InstanceError, match="meta must be a dict"):
        make_instance(X, Y, groups, meta=[1, 2])


def test_data_whose_products_overflow_is_refused_with_the_remedy():
    X, Y, groups = _valid_arrays()
    with pytest.raises(InstanceError, match=r"X has entries up to [0-9.]+e\+200; .*rescale"):
        make_instance(X * 1e200, Y, groups)
    assert make_instance(X * 1e50, Y, groups).X.max() == pytest.approx(X.max() * 1e50)
