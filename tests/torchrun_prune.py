"""`sprkit prune` in one process of a torchrun run, observed (for tests/test_distributed.py).

    torchrun --nproc_per_node=2 tests/torchrun_prune.py OBSERVED [--interrupt-at K] ARGS...
    torchrun --nproc_per_node=2 tests/torchrun_prune.py OBSERVED [--fail-at K] ARGS...

Runs the command line (sprkit.app.cli.main with ARGS) as `python -m sprkit` does, and writes
OBSERVED/rank-R.json: the exit code; the SHA-256 of the weights (state dict, buffers included)
that each training of the run returned in this process; and the files this process put in
place with os.replace (every file sprkit writes goes through sprkit.atomic.write_atomically,
which renames it into place). With --interrupt-at K, rank 0 sends SIGINT to torchrun (its
parent process) at the K-th accuracy evaluation of the training (one per epoch, before that
epoch's checkpoint, and many in the pruning rule) and waits for torchrun to pass the signal on
to every process (a Ctrl-C at a known point). With
--fail-at K, rank 1 alone raises an unexpected error there (a crash of one process).
"""

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

import sprkit.app.pipeline as pipeline
import sprkit.networks.training as training
from sprkit.app.cli import main


def digest(model: torch.nn.Module) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


def observe(observed: Path, event: str | None, at: int, argv: list[str]) -> int:
    rank = int(os.environ["RANK"])
    record = {"digests": [], "replaced": []}

    def train_spr(model, *args, **kwargs):
        pruner = original_train(model, *args, **kwargs)
        record["digests"].append(digest(pruner.model))
        return pruner

    def replace(source, target, **kwargs):
        record["replaced"].append(str(target))
        return original_replace(source, target, **kwargs)

    validations = {"count": 0}

    def accuracy(*args, **kwargs):
        validations["count"] += 1
        if validations["count"] == at and (event, rank) == ("--interrupt-at", 0):
            os.kill(os.getppid(), signal.SIGINT)
            time.sleep(60)  # torchrun's SIGINT ends this
        if validations["count"] == at and (event, rank) == ("--fail-at", 1):
            raise RuntimeError("simulated failure of rank 1")
        return original_accuracy(*args, **kwargs)

    original_train, original_replace = pipeline.train_spr, os.replace
    original_accuracy = training.accuracy
    pipeline.train_spr, os.replace, training.accuracy = train_spr, replace, accuracy
    record["code"] = main(argv)
    os.replace = original_replace
    (observed / f"rank-{rank}.json").write_text(json.dumps(record))
    return record["code"]


if __name__ == "__main__":
    folder, rest = Path(sys.argv[1]), sys.argv[2:]
    event, at = None, 0
    if rest[0] in ("--interrupt-at", "--fail-at"):
        event, at, rest = rest[0], int(rest[1]), rest[2:]
    raise SystemExit(observe(folder, event, at, rest))
