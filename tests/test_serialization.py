"""Save/load of compressed networks (weights_only, no training objects) and ONNX export."""

import json

import pytest
import torch
from masked_models import input_shape, masked_model

from sprkit.errors import SprkitInputError
from sprkit.networks.compression import compress
from sprkit.networks.serialization import export_onnx, load_compressed, save_compressed


@pytest.mark.parametrize("arch", ["resnet-digits", "resnet20", "resnet50"])
def test_saved_network_loads_into_the_smaller_architecture(tmp_path, arch):
    masked, masks = masked_model(arch, "graph")
    compressed, compression = compress(masked, masks, input_shape(arch))
    save_compressed(
        compressed,
        compression,
        arch=arch,
        num_classes=10,
        input_shape=input_shape(arch),
        folder=tmp_path,
    )
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())
    loaded, description = load_compressed(tmp_path)
    assert description["dead_blocks"] == compression.dead_blocks
    assert json.loads((tmp_path / "network.json").read_text())["arch"] == arch
    inputs = torch.randn(2, *input_shape(arch))
    with torch.no_grad():
        assert torch.equal(loaded(inputs), compressed(inputs))
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in compressed.parameters()
    )


def test_loading_a_folder_without_a_network_names_the_missing_file(tmp_path):
    with pytest.raises(SprkitInputError, match="network.json"):
        load_compressed(tmp_path)


def test_onnx_export_runs_in_onnxruntime_with_the_same_outputs(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    masked, masks = masked_model("resnet20", "graph")
    compressed, _ = compress(masked, masks, input_shape("resnet20"))
    export_onnx(compressed, input_shape("resnet20"), tmp_path / "net.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    inputs = torch.randn(5, *input_shape("resnet20"))  # batch size other than the example's
    (outputs,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        expected = masked(inputs).numpy()
    assert abs(outputs - expected).max() <= 1e-5
