"""Save/load of compressed networks (weights_only, replayed on the user's constructor) and
ONNX export."""

import json

import pytest
import torch
from zoo import ZOO, randomize

from sprkit.errors import SprkitInputError
from sprkit.networks import SPRPruner, load_compressed
from sprkit.networks.architectures import build_model
from sprkit.networks.serialization import export_onnx


def _saved(tmp_path, fn, shape, seed=0):
    model = randomize(fn(), seed=seed)
    pruner = SPRPruner(model, torch.zeros(2, *shape), grouping="layer")
    keep = torch.tensor([layer != "layers.0.conv1" for layer in pruner.structures.layer])
    pruner.set_masks(keep)
    pruner.prune(fraction=0.3)
    return model, pruner.save(tmp_path, meta={"note": "test"})


def test_a_built_in_with_a_dead_branch_round_trips(tmp_path):
    def fn():
        return build_model("resnet20", 10)

    _, compressed = _saved(tmp_path, fn, (3, 32, 32))
    description = json.loads((tmp_path / "network.json").read_text())
    assert "layers.0" in description["replaced"] and description["meta"] == {"note": "test"}
    loaded, _ = load_compressed(tmp_path, fn)
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), compressed(inputs))
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_missing_damaged_and_mismatched_saves_are_named(tmp_path):
    with pytest.raises(SprkitInputError, match="network.json"):
        load_compressed(tmp_path, ZOO["mlp_bn1d"][0])
    fn, shape = ZOO["vgg16_bn"]
    _saved(tmp_path, fn, shape)
    with pytest.raises(SprkitInputError, match="does not match this constructor|do not fit"):
        load_compressed(tmp_path, ZOO["resnet18_tv"][0])
    (tmp_path / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(SprkitInputError, match="damaged"):
        load_compressed(tmp_path, fn)


def test_saving_onto_a_file_is_one_error_and_leaves_the_file(tmp_path):
    in_the_way = tmp_path / "net"
    in_the_way.write_text("keep me")
    fn, shape = ZOO["mlp_bn1d"]
    pruner = SPRPruner(randomize(fn()), torch.zeros(2, *shape))
    pruner.prune(fraction=0.3)
    with pytest.raises(SprkitInputError, match="cannot write the network"):
        pruner.save(in_the_way)
    assert in_the_way.read_text() == "keep me"


def test_onnx_export_runs_in_onnxruntime_with_the_same_outputs(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    masked, compressed = _saved(tmp_path, lambda: build_model("resnet20", 10), (3, 32, 32))
    export_onnx(compressed, (3, 32, 32), tmp_path / "net.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    inputs = torch.randn(5, 3, 32, 32)  # batch size other than the example's
    (outputs,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        expected = masked.eval()(inputs).numpy()
    assert abs(outputs - expected).max() <= 1e-5


def test_weights_and_description_from_two_saves_are_refused(tmp_path):
    fn, shape = ZOO["mlp_bn1d"]
    _, compressed = _saved(tmp_path / "first", fn, shape)
    _saved(tmp_path / "second", fn, shape, seed=1)
    mixed = tmp_path / "mixed"  # an interrupt between the two writes of a second save
    mixed.mkdir()
    (mixed / "network.json").write_bytes((tmp_path / "first" / "network.json").read_bytes())
    (mixed / "weights.pt").write_bytes((tmp_path / "second" / "weights.pt").read_bytes())
    with pytest.raises(SprkitInputError, match="come from different saves"):
        load_compressed(mixed, fn)
    loaded, _ = load_compressed(tmp_path / "first", fn)  # an untouched save loads as saved
    x = torch.randn(4, *shape)
    assert torch.allclose(loaded(x), compressed.eval()(x), atol=1e-6)


def test_a_channels_last_network_loads_back_channels_last_with_the_same_outputs(tmp_path):
    def make():
        return ZOO["vgg16_bn"][0]()

    torch.manual_seed(0)
    model = randomize(make(), seed=3).to(memory_format=torch.channels_last).eval()
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    pruner = SPRPruner(model, x, ignored_layers=[model.features[0]])  # kept whole: uncut
    pruner.prune(fraction=0.5)
    small = pruner.save(tmp_path / "net")
    loaded, _ = load_compressed(tmp_path / "net", make)
    saved = dict(small.named_parameters())
    for name, parameter in loaded.named_parameters():  # the same memory layout, trainable
        assert parameter.stride() == saved[name].stride() and parameter.requires_grad
    first = loaded.features[0].weight
    assert first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
