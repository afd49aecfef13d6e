"""`sprkit prune` under torchrun: 2 processes, gloo on CPU, the digits data and a tiny
ImageNet-format folder of JPEGs.

The runs go through torchrun in a subprocess (python -m torch.distributed.run, --standalone:
a free port of its own), one thread per process. tests/torchrun_prune.py runs the command line
in each process and records what that process trained and wrote.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_imagenet import write_imagenet

import sprkit.networks.distributed as distributed
from sprkit.errors import ParameterError
from sprkit.networks.training import TrainConfig, check_processes

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
OBSERVER = str(ROOT / "tests" / "torchrun_prune.py")
CONFIG = """\
baseline = false
[train]
penalized_epochs = 1
finetune_epochs = 1
milestones = [1]
batch_size = 64
lam = 0.5
tolerance = 0.05
"""
EPOCHS = 2


def _torchrun(args: list, cwd: Path) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [*TORCHRUN, *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,  # a hang fails the test instead of stalling the suite
    )


def _observed(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def _sprkit_lines(stderr: str) -> list[str]:
    """The lines sprkit printed (torchrun adds its own report of failed processes; a line
    may follow another process's progress bar on the same line of the merged output)."""
    return re.findall(r"sprkit(?: \(rank \d+\))?: [^\r\n]*", stderr)


def _weights(path: Path, key: str | None = None) -> dict:
    state = torch.load(path, weights_only=True)
    return state[key] if key else state


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[dict]]:
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "tiny.toml").write_text(CONFIG)
    (folder / "observed").mkdir()
    argv = ["prune", "--dataset", "digits", "--config", "tiny.toml", "--out", "full"]
    result = _torchrun([OBSERVER, "observed", *argv], folder)
    return folder, result, _observed(folder / "observed")


def test_two_processes_end_with_the_same_weights_and_rank_0_alone_writes(full_run):
    folder, result, (rank0, rank1) = full_run
    assert result.returncode == 0, result.stderr[-2000:]
    assert rank0["code"] == rank1["code"] == 0
    assert len(rank0["digests"]) == 1 and rank0["digests"] == rank1["digests"]
    assert rank1["replaced"] == []  # the other process wrote no file
    written = [Path(p).relative_to("full").as_posix() for p in rank0["replaced"]]
    for name in ("report.json", "report.csv", "network/weights.pt", "training/penalized.pt"):
        assert written.count(name) == 1, name
    assert written.count("training/checkpoint.pt") == EPOCHS
    log = (folder / "full" / "training" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    report = json.loads((folder / "full" / "report.json").read_text())
    assert report["processes"] == 2
    assert result.stdout.count('"macs_removed"') == 1  # the summary, printed by rank 0 only
    assert not list((folder / "full").rglob("*.tmp"))


def test_an_interrupted_run_resumed_ends_where_the_uninterrupted_one_does(full_run):
    folder, _, _ = full_run
    (folder / "interrupted").mkdir()
    argv = ["prune", "--dataset", "digits", "--config", "tiny.toml", "--out", "run"]
    stopped = _torchrun([OBSERVER, "interrupted", "--interrupt-at", 2, *argv], folder)
    assert stopped.returncode != 0
    assert [rank["code"] for rank in _observed(folder / "interrupted")] == [130, 130]
    assert len(_sprkit_lines(stopped.stderr)) == 1, stopped.stderr[-2000:]
    assert "--resume" in _sprkit_lines(stopped.stderr)[0]
    checkpoint = torch.load(folder / "run" / "training" / "checkpoint.pt", weights_only=True)
    # Stopped after the first checkpoint, in the pruning rule's first evaluation: the resumed
    # run prunes again, then fine-tunes.
    assert checkpoint["epoch"] == 1 and not checkpoint["pruned"]
    assert (folder / "run" / "training" / "penalized.pt").exists()

    resumed = _torchrun(["-m", "sprkit", *argv, "--resume"], folder)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name, key in (("training/checkpoint.pt", "model"), ("network/weights.pt", None)):
        uninterrupted = _weights(folder / "full" / name, key)
        continued = _weights(folder / "run" / name, key)
        assert uninterrupted.keys() == continued.keys()
        for parameter, tensor in uninterrupted.items():
            assert torch.equal(tensor, continued[parameter]), (name, parameter)
    log = (folder / "run" / "training" / "log.csv").read_text().splitlines()
    assert len(log) == 1 + EPOCHS  # header + one row per epoch, none twice


def test_a_tiny_imagenet_folder_runs_through_torchrun(tmp_path):
    """JPEGs decoded by one DataLoader worker per process, shards of a DistributedSampler."""
    root = write_imagenet(tmp_path / "imagenet")
    config = CONFIG.replace("batch_size = 64", "batch_size = 8\nworkers = 1")
    (tmp_path / "tiny.toml").write_text(
        'arch = "resnet18-imagenet"\ncrop_size = 16\nresize_size = 18\nlatency_batch = 2\n' + config
    )
    (tmp_path / "observed").mkdir()
    argv = ["prune", "--dataset", "imagenet", "--data-dir", root, "--config", "tiny.toml"]
    result = _torchrun([OBSERVER, "observed", *argv, "--out", "run"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = _observed(tmp_path / "observed")
    assert len(rank0["digests"]) == 1 and rank0["digests"] == rank1["digests"]
    assert rank1["replaced"] == []
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["processes"] == 2 and report["dataset"] == "imagenet"
    rows = pd.read_csv(tmp_path / "run" / "report.csv")
    assert rows["network"].tolist() == ["penalized", "pruned", "compressed"]
    # 3 classes x 3 test images: accuracies are multiples of 1/9, and compression keeps them.
    assert rows.loc[1, "top1"] == rows.loc[2, "top1"]


def test_a_refusal_by_rank_0_ends_every_process_with_one_line(tmp_path):
    (tmp_path / "tiny.toml").write_text(CONFIG)
    (tmp_path / "out" / "training").mkdir(parents=True)  # someone else's folder
    argv = ["-m", "sprkit", "prune", "--dataset", "digits", "--config", "tiny.toml"]
    result = _torchrun([*argv, "--out", "out"], tmp_path)
    assert result.returncode != 0
    lines = _sprkit_lines(result.stderr)
    assert len(lines) == 1 and "holds training but no sprkit run" in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".sprkit.lock", "training"]


def test_a_crash_of_another_process_ends_the_run_with_its_line(tmp_path):
    (tmp_path / "tiny.toml").write_text(CONFIG)
    (tmp_path / "observed").mkdir()
    argv = ["prune", "--dataset", "digits", "--config", "tiny.toml", "--out", "out"]
    result = _torchrun([OBSERVER, "observed", "--fail-at", 1, *argv], tmp_path)
    assert result.returncode != 0
    lines = _sprkit_lines(result.stderr)
    crash = "sprkit (rank 1): internal error (please report it): RuntimeError: simulated failure"
    assert sum(line.startswith(crash) for line in lines) == 1, lines
    # Rank 0, waiting for rank 1 in a collective, is stopped (by torchrun's signal, or by its
    # own line when gloo reports the lost process first): never left waiting.
    lost = "sprkit: error: another process of the run stopped (its own line says why)"
    assert [line for line in lines if not line.startswith(crash)] in ([], [lost]), lines


def test_the_global_batch_must_split_evenly_over_the_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    check_processes(TrainConfig(batch_size=96))
    with pytest.raises(ParameterError, match="batch_size 64 is the global batch: .* the 3 proc"):
        check_processes(TrainConfig(batch_size=64))
