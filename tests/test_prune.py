"""`sprkit prune`: the report on the digits data and on a tiny CIFAR archive; bad settings."""

import json
import pickle
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_run import run_cli

from sprkit.app.config import DEFAULTS, read_config, resolve_settings
from sprkit.data.images import load_image_data
from sprkit.networks.architectures import build_model
from sprkit.networks.measure import count_macs, count_parameters, top_k_accuracies
from sprkit.networks.serialization import load_compressed

CONFIGS = Path(__file__).parent.parent / "configs"
# what --device cuda:99 is told, on a machine with or without CUDA
NO_SUCH_GPU = "GPU(s)" if torch.cuda.is_available() else "CUDA is not available"
QUICK = """
[train]
penalized_epochs = 3
finetune_epochs = 1
milestones = [3]
batch_size = 128
lam = 2.0
tolerance = 0.05
"""


def test_digits_run_writes_a_consistent_report(tmp_path, capsys):
    config = tmp_path / "quick.toml"
    config.write_text(QUICK)
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, ["prune", "--dataset", "digits", "--config", config, "--out", out]
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    networks = pd.read_csv(out / "report.csv").set_index("network")
    assert list(networks.index) == ["baseline", "penalized", "pruned", "compressed"]
    assert report["top1_change_against"] == "baseline"
    assert report["uncut_layers"] == {}  # the built-in ResNet is cut exactly everywhere
    assert set(report["rows"]) == set(networks.index)
    assert (out / "kept_channels.png").stat().st_size > 0
    assert len(pd.read_csv(out / "layers.csv")) == 5
    # The saved network, loaded alone, reproduces the report's figures.
    compressed, description = load_compressed(
        out / "network", lambda: build_model("resnet-digits", 10, 1)
    )
    test = load_image_data("digits", None).test
    accuracy = top_k_accuracies(compressed, test)
    # equal counts of correct answers; the CSV's text may round the last bit of k / n
    # (pandas versions parse it differently)
    assert accuracy["top1"] == pytest.approx(networks.loc["compressed", "top1"], abs=1e-12)
    assert networks.loc["compressed", "top1"] == networks.loc["pruned", "top1"]
    assert networks.loc["compressed", "macs"] == count_macs(compressed, (1, 8, 8))
    assert networks.loc["compressed", "parameters"] == count_parameters(compressed)
    assert networks.loc["penalized", "macs"] == 525_632  # resnet-digits, counted by layer shapes
    assert report["macs_removed"] == pytest.approx(
        1 - networks.loc["compressed", "macs"] / networks.loc["penalized", "macs"]
    )
    assert report["max_logit_difference_pruned_vs_compressed"] <= 1e-5
    assert report["train"]["penalized_epochs"] == 3
    assert '"macs_removed"' in stdout
    # A second run into the same folder is refused (the first one stays intact) ...
    before = (out / "report.json").read_bytes()
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and "already holds a run" in err
    assert (out / "report.json").read_bytes() == before
    # ... and resuming a finished run reproduces the report's accuracies.
    code, _, err = run_cli(capsys, [*argv, "--resume"])
    assert code == 0, err
    again = pd.read_csv(out / "report.csv").set_index("network")
    assert again["top1"].tolist() == networks["top1"].tolist()
    # --overwrite replaces the run: same settings, same seed, same result from scratch.
    (out / "training" / "log.csv").write_text("stale")
    code, _, err = run_cli(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert len(pd.read_csv(out / "training" / "log.csv")) == 4  # 3 + 1 epochs, fresh log
    assert pd.read_csv(out / "report.csv")["top1"].tolist() == networks["top1"].tolist()


USER_MODELS = '''
import torch
from torch import nn


class Net(nn.Module):
    """A user's model: conv-BN pairs, a concatenation, Linear + BatchNorm1d head."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(12, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes)
        )

    def forward(self, x):
        x = self.a(x)
        x = torch.cat([x, self.b(x)], dim=1)
        return self.head(x.mean(dim=(2, 3)))


def build(num_classes=10):
    return Net(num_classes)
'''


def test_a_users_constructor_is_pruned_with_the_same_recipe(tmp_path, capsys, monkeypatch):
    (tmp_path / "user_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "quick.toml"
    config.write_text(QUICK)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--arch", "user_models:build", "--config", config]
    code, _, err = run_cli(capsys, [*argv, "--out", out])
    assert code == 0, err
    networks = pd.read_csv(out / "report.csv").set_index("network")
    assert networks.loc["compressed", "top1"] == networks.loc["pruned", "top1"]
    assert networks.loc["compressed", "macs"] <= networks.loc["penalized", "macs"]
    import user_models

    compressed, description = load_compressed(out / "network", user_models.build)
    assert description["meta"]["arch"] == "user_models:build"
    assert count_parameters(compressed) == networks.loc["compressed", "parameters"]
    layers = pd.read_csv(out / "layers.csv")
    assert set(layers["layer"]) == {"a.0", "b.0", "head.0"}


@pytest.mark.parametrize(
    "arch, message",
    [
        ("no_such_module_xyz:build", "cannot import no_such_module_xyz"),
        ("sprkit:no_such_function", "has no 'no_such_function'"),
        ("sprkit:__version__", "is not callable"),
    ],
)
def test_a_bad_constructor_is_one_line(tmp_path, capsys, arch, message):
    code, _, err = run_cli(
        capsys, ["prune", "--dataset", "digits", "--arch", arch, "--out", tmp_path / "run"]
    )
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


USER_MISTAKES = """
import torch
from torch import nn


class TwoOutputs(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(8, num_classes)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.fc(h), h


def tuple_output(num_classes=10):
    return TwoOutputs(num_classes)


def raises(num_classes=10):
    raise RuntimeError("constructor exploded")
"""


@pytest.mark.parametrize(
    "function, message",
    [
        ("tuple_output", "the model returns tuple"),
        ("raises", "constructor exploded"),
    ],
)
def test_a_users_model_that_cannot_be_trained_is_one_line(
    tmp_path, capsys, monkeypatch, function, message
):
    (tmp_path / "user_mistakes.py").write_text(USER_MISTAKES)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["prune", "--dataset", "digits", "--arch", f"user_mistakes:{function}"]
    code, _, err = run_cli(capsys, [*argv, "--out", tmp_path / "run"])
    assert code == 2 and message in err and "internal error" not in err, err
    assert len(err.strip().splitlines()) == 1


def _write_tiny_cifar10(root: Path) -> None:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"data": rng.integers(0, 256, size=(8, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, size=8).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def test_cifar_archive_runs_end_to_end(tmp_path, capsys):
    _write_tiny_cifar10(tmp_path / "data")
    config = tmp_path / "quick.toml"
    config.write_text('arch = "resnet20"\nlatency_batch = 2\n' + QUICK)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "cifar10", "--data-dir", tmp_path / "data"]
    code, _, err = run_cli(capsys, [*argv, "--config", config, "--out", out])
    assert code == 0, err
    networks = pd.read_csv(out / "report.csv").set_index("network")
    assert networks.loc["penalized", "parameters"] == 269_722
    assert networks.loc["compressed", "top1"] == networks.loc["pruned", "top1"]


def test_cifar_augmentation_and_normalization(tmp_path):
    _write_tiny_cifar10(tmp_path)
    data = load_image_data("cifar10", tmp_path)
    assert data.input_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 40 and len(data.test) == 8
    pixels = data.train.tensors[0]
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    augmented = data.augment(pixels[:4], torch.Generator().manual_seed(0))
    assert augmented.shape == pixels[:4].shape


@pytest.mark.parametrize(
    "argv, config, message",
    [
        (["--dataset", "digits", "--arch", "resnet7"], "", "unknown architecture 'resnet7'"),
        (["--dataset", "digits"], "[train]\nalpha = 1.5\n", "alpha must lie in the open"),
        (["--dataset", "digits"], "[train]\nlam = -1.0\n", "lam must be finite and >= 0"),
        (["--dataset", "cifar10"], "", "needs data_dir"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "", "is not a directory"),
        (["--dataset", "mnist"], "", "unknown dataset 'mnist'"),
        (["--dataset", "imagenet"], "", "needs data_dir, the folder holding train/"),
        (["--dataset", "imagenet", "--data-dir", "/nonexistent/in"], "", "is not a directory"),
        (["--dataset", "digits"], "crop_size = 32\n", "digits images have a fixed size"),
        (["--dataset", "digits"], "init = 3\n", "init must be a string"),
        (["--dataset", "digits"], "resize_size = 2.5\n", "resize_size must be an integer"),
        (["--dataset", "digits"], "[train]\nepochs = 3\n", "unknown key(s) epochs"),
        (["--dataset", "digits"], "learning_rate = 3\n", "unknown key(s) learning_rate"),
        (["--dataset", "digits"], "arch = [\n", "is not valid TOML"),
        (["--dataset", "digits"], '[train]\ngrouping = "rows"\n', "unknown grouping 'rows'"),
        (["--dataset", "digits"], '[train]\nlr = "fast"\n', "[train] lr must be a number"),
        (["--dataset", "digits"], "[train]\nmilestones = [1.5]\n", "a list of integers"),
        (["--dataset", "digits"], "[train]\nbatch_size = true\n", "must be an integer"),
        (["--dataset", "digits"], 'seed = "x"\n', "seed must be an integer"),
        (["--dataset", "digits"], "latency_batch = 0\n", "latency_batch must lie in"),
        (["--dataset", "digits", "--device", "gpu"], "", "is not a torch device"),
        (["--dataset", "digits", "--device", "cuda:99"], "", NO_SUCH_GPU),
        (["--dataset", "digits", "--device", "meta"], "", "sprkit runs on cpu or cuda"),
        (["--dataset", "digits", "--device", "cpu:1"], "", "sprkit runs on cpu or cuda"),
        (["--dataset", "digits"], "seed = -1\n[train]\nseed = 0\n", "seed must lie in"),
        (["--dataset", "digits", "--seed", "-1"], "", "seed must lie in"),
        (["--dataset", "digits"], "train = 3\n", "train must be a table"),
        (["--dataset", "digits"], "[train]\nmomentum = -1.0\n", "momentum must lie in"),
        (["--dataset", "digits"], "[train]\ntolerance = nan\n", "tolerance must be a finite"),
        (["--dataset", "digits"], "[train]\nkeep_fraction = 0\n", "keep_fraction must lie"),
        (["--dataset", "digits"], "[train]\nmilestones = [50, 30]\n", "milestones must be"),
        (["--dataset", "digits"], "[train]\nlr = 1e300\n", "lr must lie in (0, 100]"),
        (["--dataset", "digits"], "[train]\nlam = 1e300\n", "lam = 1e+300 is beyond"),
        (["--dataset", "digits"], "baseline = 1\n", "baseline must be true or false"),
        (["--dataset", "digits"], '[train]\nprecision = "fp8"\n', "unknown precision 'fp8'"),
        (["--dataset", "digits", "--device", "cpu"], '[train]\nprecision = "fp16"\n', "fp16 needs"),
        (["--dataset", "digits"], "[train]\nworkers = -1\n", "workers must lie in [0, 256]"),
        (["--dataset", "digits"], "[train]\nchannels_last = 1\n", "must be true or false"),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, argv, config, message):
    config_file = tmp_path / "bad.toml"
    config_file.write_text(config)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, ["prune", *argv, "--config", config_file, "--out", out])
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (out / "report.json").exists()


def test_out_that_is_a_file_is_refused_and_left_intact(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    for out in (target, target / "run"):
        code, _, err = run_cli(capsys, ["prune", "--dataset", "digits", "--out", out])
        assert code == 2 and "is a file" in err and target.read_text() == "keep me"


def test_command_line_seed_wins_over_the_config_file():
    settings = resolve_settings("digits", {"train": {"seed": 5}}, {"seed": 3})
    assert settings.seed == 3 and settings.train.seed == 3
    assert resolve_settings("digits", {"train": {"seed": 5}}, {}).train.seed == 5


def test_missing_config_file_is_named(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, ["prune", "--dataset", "digits", "--config", tmp_path / "no.toml"]
    )
    assert code == 2 and "no.toml does not exist" in err
    code, _, err = run_cli(capsys, ["prune", "--dataset", "digits", "--config", tmp_path])
    assert code == 2 and "cannot be read" in err


# Classes and a small input shape each dataset's networks take (ImageNet's run on 32x32 too).
INPUTS = {
    "digits": (10, (1, 8, 8)),
    "cifar10": (10, (3, 32, 32)),
    "cifar100": (100, (3, 32, 32)),
    "imagenet": (1000, (3, 32, 32)),
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_resolve_and_build_their_model(path):
    settings = resolve_settings(None, read_config(path), {})
    assert settings.dataset == tomllib.loads(path.read_text())["dataset"]
    classes, shape = INPUTS[settings.dataset]
    model = build_model(settings.arch, classes, shape[0]).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, *shape)).shape == (1, classes)


def test_the_study_grid_has_its_configs():
    """The paper's grid: CIFAR-10/100 x ResNet-20/32/56/110 and VGG-16 (batch 64), and the
    ImageNet ResNets with the authors' ImageNet recipe (its defaults)."""
    for dataset in ("cifar10", "cifar100"):
        for arch in ("resnet20", "resnet32", "resnet56", "resnet110", "vgg16"):
            train = resolve_settings(None, read_config(CONFIGS / f"{dataset}-{arch}.toml"), {})
            assert (train.arch, train.train.penalized_epochs, train.train.finetune_epochs) == (
                arch,
                300,
                200,
            )
            assert train.train.weight_decay == 5e-4
            assert train.train.batch_size == (64 if arch == "vgg16" else 128)
    embedded = resolve_settings("imagenet", {}, {})
    for depth in (18, 34, 50):
        settings = resolve_settings(None, read_config(CONFIGS / f"imagenet-resnet{depth}.toml"), {})
        assert settings.arch == f"resnet{depth}-imagenet"
        assert settings.train == embedded.train and (settings.crop_size, settings.resize_size) == (
            224,
            256,
        )
    recipe = embedded.train
    assert (recipe.lr, recipe.weight_decay, recipe.batch_size) == (0.1, 1e-4, 256)
    assert (recipe.penalized_epochs, recipe.finetune_epochs) == (150, 50)


def test_digits_config_file_equals_the_embedded_default():
    from_file = resolve_settings(None, read_config(CONFIGS / "digits.toml"), {})
    embedded = resolve_settings("digits", {}, {})
    assert from_file == embedded
    assert DEFAULTS["digits"]["arch"] == from_file.arch
