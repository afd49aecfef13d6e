"""The command line's error boundary, as a user meets it: interrupts (SIGINT sent to a child
process), unwritable paths, two runs on one folder, a failed --overwrite, damaged checkpoints.
Every case ends with exit 0, or 2 (130 for SIGINT) and one line, and nothing written is lost."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_run import run_cli

from sprkit.app.cli import main
from sprkit.app.runfolder import RunFolder
from sprkit.instances import hard_case, load_instance, make_instance, save_instance

# The smallest real run of `sprkit prune` on digits: a few seconds.
TINY = """
baseline = false
[train]
penalized_epochs = 2
finetune_epochs = 1
milestones = [2]
batch_size = 128
lam = 2.0
tolerance = 0.05
"""


def _one_line(err: str) -> str:
    """The one message line on stderr (progress bars aside), with no traceback anywhere."""
    progress = ("training:", "lambda path:")
    lines = [line for line in err.strip().splitlines() if not line.startswith(progress)]
    assert len(lines) == 1 and lines[0].startswith("sprkit") and "Traceback" not in err, err
    return lines[0]


def _default_sigint() -> None:
    """In the child: SIGINT handled as in a terminal. A suite run as a background job of a
    non-interactive shell inherits SIGINT ignored, and so would every command it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _child(argv, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sprkit", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
        **options,
    )


def _interrupt(child: subprocess.Popen, after: float) -> tuple[int, str]:
    """Send SIGINT `after` seconds after start (the child must still be running)."""
    time.sleep(after)
    assert child.poll() is None, "the command ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    return child.returncode, err


@pytest.fixture(scope="module")
def hard_file(tmp_path_factory) -> Path:
    """200 structures in the weak-ridge regime: no solver certifies it in seconds (`bnb` at
    lam0 = 0.01: gap 1e-4 after 20 s; with rho = 0.5 and SNR 2 it now certifies in 4.6 s)."""
    case = hard_case(200, correlation=0.8, snr=1.0, lam2=0.001, keep_fraction=0.5, seed=4)
    path = tmp_path_factory.mktemp("hard") / "hard.npz"
    save_instance(path, case.instance)
    return path


@pytest.mark.parametrize("command", ["solve", "bounds"])
def test_sigint_during_a_solve_exits_130_with_one_line(hard_file, command):
    argv = [command, hard_file, "--lam0", 0.01, "--lam2", 0.001, "--M", 4, "--time-limit", 120]
    child = _child(argv + (["--with-mip"] if command == "bounds" else []))
    code, err = _interrupt(child, after=6.0)
    assert code == 130
    assert "interrupted" in _one_line(err)


def test_sigint_while_an_instance_is_built_writes_nothing(tmp_path):
    target = tmp_path / "digits.npz"
    child = _child(["instance", "digits-mlp", "--hidden", 1024, "-o", target])
    code, err = _interrupt(child, after=4.0)
    assert code == 130 and "nothing was written" in _one_line(err)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_sigint_during_prune_says_how_to_resume_and_resume_finishes(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(TINY.replace("penalized_epochs = 2", "penalized_epochs = 60"))
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out]
    child = _child(argv, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (out / "training" / "checkpoint.pt").exists():  # interrupt mid-training
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.2)
    code, err = _interrupt(child, after=0.5)
    assert code == 130 and "--resume" in _one_line(err)
    state = torch.load(out / "training" / "checkpoint.pt", weights_only=True)
    assert 1 <= state["epoch"] < 61
    resumed = subprocess.run(
        [sys.executable, "-m", "sprkit", *map(str, argv), "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "report.json").read_text())["train"]["penalized_epochs"] == 60


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_stale_lock_is_not(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from sprkit.app.runfolder import RunFolder\n"
            f"with RunFolder({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(capsys, ["prune", "--dataset", "digits", "--out", out])
        assert code == 2
        assert f"in use by another sprkit run (process {holder.pid})" in _one_line(err)
        assert sorted(p.name for p in out.iterdir()) == [".sprkit.lock"]
    finally:
        holder.kill()
        holder.wait()
    # The killed holder left its lock file behind: recognized as free at once.
    assert (out / ".sprkit.lock").read_text().strip() == str(holder.pid)
    with RunFolder(out) as folder:
        folder.check_free(resume=False, overwrite=False)  # the lock is taken: no error


def test_two_runs_started_together_on_one_folder_never_mix(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out]
    children = [_child(argv, cwd=tmp_path) for _ in range(2)]
    results = [(child.wait(timeout=600), child.communicate()[1]) for child in children]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = _one_line(next(err for code, err in results if code == 2))
    # Refused while the other runs, or (if it got the lock only after the other finished)
    # because the folder then holds that finished run: never mixed either way.
    assert "in use by another sprkit run" in refused or "already holds a run" in refused
    # The report is the finished run's own: its penalized row is penalized.pt's accuracy.
    from sprkit.app.config import resolve_settings
    from sprkit.data.images import load_image_data
    from sprkit.networks.architectures import build_model
    from sprkit.networks.measure import top_k_accuracies

    report = json.loads((out / "report.json").read_text())
    penalized = build_model("resnet-digits", 10, 1)
    penalized.load_state_dict(torch.load(out / "training" / "penalized.pt", weights_only=True))
    settings = resolve_settings("digits", {}, {})
    test = load_image_data("digits", None, settings.seed).test
    row = next(r for r in report["networks"] if r["network"] == "penalized")
    assert row["top1"] == top_k_accuracies(penalized, test)["top1"]
    assert not [p for p in out.rglob("*.tmp")]  # unique temporary names, all renamed


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("finished")
    config = folder / "tiny.toml"
    config.write_text(TINY)
    out = folder / "run"
    assert main(["prune", "--dataset", "digits", "--config", str(config), "--out", str(out)]) == 0
    return config, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".sprkit.lock"
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--arch", "resnet7"], "unknown architecture"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "is not a directory"),
    ],
)
def test_a_failed_overwrite_leaves_the_old_run_whole(finished_run, capsys, extra, message):
    config, out = finished_run
    before = _snapshot(out)
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out, "--overwrite"]
    code, _, err = run_cli(capsys, [*argv, *extra])
    assert code == 2 and message in _one_line(err)
    assert _snapshot(out) == before


def test_a_new_run_failing_before_its_first_checkpoint_puts_the_old_run_back(
    finished_run, tmp_path, capsys
):
    config, out = finished_run
    before = _snapshot(out)
    diverging = tmp_path / "diverging.toml"
    diverging.write_text(TINY.replace("lam = 2.0", "lam = 1e36"))  # NaN loss in epoch 1
    argv = ["prune", "--dataset", "digits", "--config", diverging, "--out", out, "--overwrite"]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and "non-finite loss at epoch 1" in _one_line(err)
    assert _snapshot(out) == before and not list(out.glob(".replaced-*"))


def test_resume_and_overwrite_together_and_a_foreign_folder_are_refused(tmp_path, capsys):
    out = tmp_path / "project"
    (out / "training").mkdir(parents=True)
    (out / "training" / "mine.txt").write_text("a user's own folder")
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, _, err = run_cli(capsys, ["prune", "--dataset", "digits", "--out", out, *extra])
        assert code == 2 and "holds training but no sprkit run" in _one_line(err)
    assert (out / "training" / "mine.txt").read_text() == "a user's own folder"
    code, _, err = run_cli(capsys, ["prune", "--dataset", "digits", "--resume", "--overwrite"])
    assert code == 2 and "not allowed with argument" in _one_line(err)


def test_an_unexpected_failure_is_one_line_too(monkeypatch, capsys, small_file):
    import sprkit.app.cli as cli

    def broken(args):
        raise ZeroDivisionError("a bug\nover two lines")

    monkeypatch.setattr(cli, "_bounds", broken)
    code, _, err = run_cli(capsys, ["bounds", small_file, "--lam0", 1, "--lam2", 1, "--M", 1])
    assert code == 2
    assert (
        _one_line(err)
        == "sprkit: internal error (please report it): ZeroDivisionError: a bug over two lines"
    )


def test_overwrite_replaces_every_part_of_the_old_run_together(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out]
    assert run_cli(capsys, argv)[0] == 0
    (out / "network" / "stale.txt").write_text("from the old run")
    (out / "baseline").mkdir()  # a part the new settings do not write
    code, _, err = run_cli(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert not (out / "network" / "stale.txt").exists() and not (out / "baseline").exists()
    assert not list(out.glob(".replaced-*"))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("checkpoint-key", "is damaged: missing optimizer; --overwrite starts the run again"),
        ("checkpoint-bytes", "is not a readable checkpoint"),
        ("penalized-bytes", "penalized.pt is damaged or from another network"),
        ("penalized-missing", "penalized.pt is missing; --overwrite starts the run again"),
    ],
)
def test_resume_from_a_damaged_run_is_one_line_pointing_to_overwrite(
    finished_run, tmp_path, capsys, damage, message
):
    config, finished = finished_run
    out = tmp_path / "run"
    for path in finished.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(finished)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    checkpoint, penalized = out / "training" / "checkpoint.pt", out / "training" / "penalized.pt"
    if damage == "checkpoint-key":
        state = torch.load(checkpoint, weights_only=True)
        del state["optimizer"]
        torch.save(state, checkpoint)
    elif damage == "checkpoint-bytes":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif damage == "penalized-bytes":
        penalized.write_bytes(b"\x00" * 64)
    else:
        penalized.unlink()
    report = (out / "report.json").read_bytes()
    argv = ["prune", "--dataset", "digits", "--config", config, "--out", out, "--resume"]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and message in _one_line(err)
    if "overwrite" not in message:
        assert "--overwrite starts the run again" in err
    assert (out / "report.json").read_bytes() == report


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write into (root ignores permission bits: /proc then)."""
    if os.geteuid() == 0:
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


def test_instance_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    folder_named_npz = tmp_path / "x.npz"
    folder_named_npz.mkdir()
    targets = {
        blocker / "inst.npz": "is a file, not a folder",
        folder_named_npz: "is a folder, not a file name",
        _read_only_folder(tmp_path) / "inst.npz": "",
    }
    for target, message in targets.items():
        argv = ["instance", "synthetic", "--structures", 5, "--n", 20, "-o", target]
        code, _, err = run_cli(capsys, argv)
        assert code == 2 and message in _one_line(err)
    assert blocker.read_text() == "keep me" and not list(folder_named_npz.iterdir())


def test_demo_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    for out in (blocker / "demo", _read_only_folder(tmp_path) / "demo"):
        started = time.perf_counter()
        code, _, err = run_cli(capsys, ["demo", "--out", out])
        assert code == 2 and "cannot write into" in _one_line(err)
        assert time.perf_counter() - started < 5  # refused before the study runs
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", -1], "seed must be >= 0"),
        (["--structures", 100_000_000], "instance too large"),
    ],
)
def test_instance_arguments_out_of_range_are_one_line(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, ["instance", "synthetic", *argv, "-o", tmp_path / "i.npz"])
    assert code == 2 and message in _one_line(err)
    assert not (tmp_path / "i.npz").exists()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    path = tmp_path_factory.mktemp("small") / "small.npz"
    save_instance(path, make_instance(X, X[:, :2] @ rng.normal(size=(2, 2)), np.arange(6) // 2))
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lam", 1e300, "--alpha", 0.5, "--M", 1], "lam = 1e+300 is beyond 1e+100"),
        (["--lam0", 0.1, "--lam2", 0.1, "--M", 1e300], "M = 1e+300 is beyond 1e+100"),
    ],
)
def test_absurd_parameters_are_refused_in_one_line(small_file, capsys, argv, message):
    code, _, err = run_cli(capsys, ["bounds", small_file, *argv])
    assert code == 2 and message in _one_line(err)


@pytest.mark.parametrize("lam0, M", [(1e90, 1.0), (0.1, 1e50)])
def test_out_of_scale_parameters_leave_the_relaxations_out_and_keep_the_rest(
    small_file, capsys, lam0, M
):
    argv = ["bounds", small_file, "--lam0", lam0, "--lam2", 0.1, "--M", M, "--json"]
    code, out, err = run_cli(capsys, [*argv, "--with-mip"])
    assert code == 0, err
    result = json.loads(out)
    assert result["bigm"] is None and result["perspective"] is None
    assert result["relaxation_status"] == {"bigm": "out_of_scale", "perspective": "out_of_scale"}
    assert result["mip_status"] == "optimal"
    assert result["spr_lower_bound"] <= result["mip"] * (1 + 1e-9)


def test_absurd_data_is_refused_and_badly_scaled_data_is_solved(small_file, tmp_path, capsys):
    instance = load_instance(small_file)
    huge = tmp_path / "huge.npz"
    np.savez(huge, X=instance.X * 1e200, Y=instance.Y, groups=instance.groups)
    code, _, err = run_cli(capsys, ["bounds", huge, "--lam0", 0.1, "--lam2", 0.1, "--M", 1])
    assert code == 2 and "X has entries up to" in _one_line(err)
    # Y x 1e6 with M = 1e7: the same problem as Y with M = 10, in other units.
    bounds = {}
    for name, Y, M in (("scaled", instance.Y * 1e6, 1e7), ("plain", instance.Y, 10.0)):
        path = save_instance(
            tmp_path / f"{name}.npz", make_instance(instance.X, Y, instance.groups)
        )
        lam0, lam2 = (0.1e12, 0.1) if name == "scaled" else (0.1, 0.1)
        argv = ["bounds", path, "--lam0", lam0, "--lam2", lam2, "--M", M, "--json"]
        code, out, err = run_cli(capsys, argv)
        assert code == 0, err
        bounds[name] = json.loads(out)
    for key in ("bigm", "perspective", "spr"):
        assert bounds["scaled"][key] == pytest.approx(1e12 * bounds["plain"][key], rel=1e-6)
