"""Command line: sprkit demo | bounds | solve | instance | prune | sweep.

Every command ends with exit code 0; or 2 and one line on stderr naming the problem (bad
input, an unwritable path, missing data, a run folder in use, too little memory, a training
that diverged; an unexpected failure is one line too, marked as an internal error); or 130
and one line on an interrupt (Ctrl-C, SIGINT), saying what was kept. Never a traceback: the
library raises typed errors (sprkit.errors) and this module alone turns them into lines.

Under torchrun (`torchrun --nproc_per_node=N -m sprkit prune ...`) every process runs the
command; rank 0 prints the output and the errors every process meets alike (bad input, a
failure of rank 0's work, a diverging training, an interrupt); a process with another rank
prints only an error of its own, its rank named."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sprkit.atomic import check_output_file, check_output_folder
from sprkit.errors import CheckpointError, RunExistsError, SprkitInputError, TrainingError
from sprkit.params import SPRParams, check_alpha

if TYPE_CHECKING:
    from sprkit.optim.result import Progress


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _add_lambdas(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lam0", type=float, help="weight of the indicator (count) term")
    parser.add_argument("--lam2", type=float, help="weight of the squared l2 term")
    parser.add_argument(
        "--lam", type=float, help="paper's lam: lam2 = lam*alpha, lam0 = lam*(1-alpha)"
    )
    parser.add_argument("--alpha", type=float, help="paper's alpha in (0, 1)")
    parser.add_argument("--M", type=float, required=True, help="big-M bound on |w| (> 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sprkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser(
        "demo", help="MIP study on the digits MLP, then SPR pruning of a ResNet on digits"
    )
    demo.add_argument("--out", type=Path, default=Path("sprkit-demo"), help="output folder")
    demo.add_argument("--points", type=int, default=8, help="lambda values on the path")
    demo.add_argument("--hidden", type=int, default=32, help="hidden neurons of the MLP")
    demo.add_argument("--alpha", type=float, default=0.5, help="paper's alpha in (0, 1)")
    demo.add_argument("--no-prune", action="store_true", help="skip the ResNet pruning run")

    bounds = commands.add_parser("bounds", help="big-M, perspective and SPR-route bounds")
    bounds.add_argument("instance", type=Path, help="instance .npz (X, Y, groups)")
    _add_lambdas(bounds)
    bounds.add_argument("--tol", type=float, default=1e-9, help="SPR route relative gap")
    bounds.add_argument("--json", action="store_true", help="print one JSON object")
    bounds.add_argument("--with-mip", action="store_true", help="also solve the MIP exactly")
    bounds.add_argument(
        "--time-limit", type=float, default=600.0, help="seconds for all bounds together (> 0)"
    )

    solve = commands.add_parser("solve", help="solve the MIP to certified optimality")
    solve.add_argument("instance", type=Path, help="instance .npz (X, Y, groups)")
    _add_lambdas(solve)
    solve.add_argument("--time-limit", type=float, default=600.0, help="seconds (> 0)")
    solve.add_argument("--tol", type=float, default=1e-6, help="relative gap for 'optimal'")
    solve.add_argument("--json", action="store_true", help="print one JSON object")
    solve.add_argument(
        "--method",
        default="auto",
        help="bnb (branch and bound), oa (outer approximation, HiGHS), auto, or "
        "pyomo:<solver> (the Pyomo model handed to an installed solver, e.g. pyomo:gurobi)",
    )
    solve.add_argument(
        "--branching",
        choices=("fractional", "pseudocost", "strong"),
        default="fractional",
        help="branching rule of bnb",
    )
    solve.add_argument(
        "--log",
        action="store_true",
        help="print the search's progress to stderr about once a second (bnb, oa, auto)",
    )

    instance = commands.add_parser("instance", help="write an instance .npz")
    kinds = instance.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    synthetic = kinds.add_parser("synthetic", help="planted support, Gaussian design")
    synthetic.add_argument("--structures", type=int, default=50)
    synthetic.add_argument("--rows-per-group", type=int, default=1)
    synthetic.add_argument("--n", type=int, default=500, help="samples")
    synthetic.add_argument("--c", type=int, default=10, help="outputs")
    synthetic.add_argument("--support", type=int, default=None, help="planted structures")
    synthetic.add_argument("--noise", type=float, default=0.1, help="noise standard deviation")
    synthetic.add_argument("--snr", type=float, default=None, help="signal-to-noise (sets noise)")
    synthetic.add_argument("--correlation", type=float, default=0.3)
    synthetic.add_argument(
        "--design",
        choices=("factor", "ar1"),
        default="factor",
        help="factor: one shared factor; ar1: corr = correlation^|a-b| (Toeplitz)",
    )
    synthetic.add_argument("--scale", type=float, default=1.0, help="multiply X by this")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("-o", "--output", type=Path, required=True)
    digits = kinds.add_parser("digits-mlp", help="hidden neurons of an MLP trained on digits")
    digits.add_argument("--hidden", type=int, default=32)
    digits.add_argument("--targets", choices=("outputs", "onehot"), default="outputs")
    digits.add_argument("--seed", type=int, default=0)
    digits.add_argument("-o", "--output", type=Path, required=True)

    prune = commands.add_parser(
        "prune", help="SPR-train, prune, fine-tune and compress a network; write the report"
    )
    prune.add_argument("--dataset", help="digits (embedded), cifar10, cifar100 or imagenet")
    prune.add_argument(
        "--arch",
        help="resnet20/32/44/56/110, resnet18, resnet50 (CIFAR form), resnet18-imagenet, "
        "resnet34-imagenet, resnet50-imagenet, resnet-digits, vgg16, or "
        "package.module:function (your constructor; num_classes and in_channels passed "
        "where it accepts them)",
    )
    prune.add_argument(
        "--data-dir",
        help="CIFAR: folder with the .tar.gz or its extracted folder; ImageNet: folder with "
        "train/<wnid>/ and val/<wnid>/",
    )
    prune.add_argument(
        "--init",
        type=Path,
        help="state dict (torch.save file) the network starts from, e.g. torchvision's "
        "pretrained weights for the *-imagenet ResNets",
    )
    prune.add_argument("--config", type=Path, help="TOML file of settings (configs/*.toml)")
    prune.add_argument("--out", type=Path, default=Path("sprkit-prune"), help="run folder")
    prune.add_argument(
        "--device",
        default=None,
        help="cpu or cuda[:N] (default: cuda if any; under torchrun, cuda is cuda:LOCAL_RANK)",
    )
    prune.add_argument("--seed", type=int, default=None)
    existing = prune.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    existing.add_argument("--overwrite", action="store_true", help="replace the run in --out")

    sweep = commands.add_parser(
        "sweep",
        help="prune runs over a grid of lam values per penalty; the accuracy-cost table, "
        "plot and Pareto fronts",
    )
    sweep.add_argument("--dataset", help="digits (embedded), cifar10 or cifar100")
    sweep.add_argument("--arch", help="as for prune")
    sweep.add_argument("--data-dir", help="folder with the CIFAR .tar.gz or its extracted folder")
    sweep.add_argument("--config", type=Path, help="TOML file of settings (as for prune)")
    sweep.add_argument("--out", type=Path, default=Path("sprkit-sweep"), help="sweep folder")
    sweep.add_argument(
        "--methods",
        help="comma-separated penalties (default: spr,group_lasso,bn_l1,tp_group_norm)",
    )
    sweep.add_argument(
        "--lams",
        action="append",
        default=[],
        metavar="METHOD=V1,V2,...",
        help="lam values of one method (repeatable; default: the dataset's grid)",
    )
    sweep.add_argument("--seeds", type=int, default=1, help="runs per point, seeds from --seed")
    sweep.add_argument("--seed", type=int, default=None, help="first seed")
    sweep.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if any)")
    sweep.add_argument(
        "--resume", action="store_true", help="continue the sweep in --out (finished runs kept)"
    )
    return parser


def _prune(args: argparse.Namespace) -> None:
    import torch

    from sprkit.app.config import read_config, resolve_settings
    from sprkit.app.pipeline import run_prune
    from sprkit.networks import distributed

    config = read_config(args.config) if args.config else {}
    overrides = {
        "arch": args.arch,
        "data_dir": args.data_dir,
        "seed": args.seed,
        "init": str(args.init) if args.init else None,
    }
    settings = resolve_settings(args.dataset, config, overrides)
    device = distributed.process_device(
        args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    summary = run_prune(
        settings, args.out, device=device, resume=args.resume, overwrite=args.overwrite
    )
    if _rank() == 0:
        print(json.dumps({k: summary[k] for k in PRUNE_SUMMARY_KEYS}, indent=1))
        print(f"report: {args.out / 'report.json'}, {args.out / 'kept_channels.png'}")


PRUNE_SUMMARY_KEYS = ("arch", "dataset", "macs_removed", "parameters_removed", "speedup")


def _sweep(args: argparse.Namespace) -> None:
    import torch

    from sprkit.app.config import read_config, resolve_settings
    from sprkit.app.sweep import parse_lams, parse_methods, run_sweep

    config = read_config(args.config) if args.config else {}
    overrides = {"arch": args.arch, "data_dir": args.data_dir, "seed": args.seed}
    settings = resolve_settings(args.dataset, config, overrides)
    grid = parse_lams(args.lams, parse_methods(args.methods), settings.dataset)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run_sweep(settings, args.out, grid, seeds=args.seeds, device=device, resume=args.resume)
    print(f"sweep: {args.out / 'sweep.csv'}, {args.out / 'sweep.md'}, {args.out / 'sweep.png'}")


def _checked_problem(args: argparse.Namespace):
    """Load the instance and validate lambdas, M, tol and time limit before any solve."""
    from sprkit.instances import load_instance
    from sprkit.params import structure_bounds

    params = SPRParams.resolve(args.lam0, args.lam2, lam=args.lam, alpha=args.alpha, M=args.M)
    if not 0 < args.tol < 1:
        raise SprkitInputError(f"--tol must lie in (0, 1), got {args.tol}")
    if not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise SprkitInputError(
            f"--time-limit must be finite and > 0 seconds, got {args.time_limit}"
        )
    instance = load_instance(args.instance)
    structure_bounds(params.M, instance.n_structures)
    return instance, params.lam0, params.lam2


def _bounds(args: argparse.Namespace) -> None:
    from sprkit.optim.bounds import compute_bounds

    instance, lam0, lam2 = _checked_problem(args)
    result = compute_bounds(
        instance,
        lam0=lam0,
        lam2=lam2,
        M=args.M,
        tol=args.tol,
        with_mip=args.with_mip,
        deadline=args.started + args.time_limit,
    )
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"instance {args.instance}: n={instance.n} d={instance.d} c={instance.c} "
        f"structures={instance.n_structures}; lam0={lam0:g} lam2={lam2:g} M={args.M:g}"
    )
    for key in ("bigm", "perspective", "spr", "mip"):
        if key in result["seconds"]:
            value = result[key]
            status = result.get("relaxation_status", {}).get(key, "")
            shown = f"{value:.10g}" if value is not None else f"not converged ({status})"
            print(f"{key:>12}: {shown}   ({result['seconds'][key]:.3f} s)")
    note = "" if result["spr_converged"] else "  (not converged: certificate still valid)"
    print(
        f"{'spr dual':>12}: {result['spr_lower_bound']:.10g}   "
        f"kept {result['spr_kept']}/{instance.n_structures} structures{note}"
    )


class _ProgressLines:
    """A solve's Progress as lines on stderr (stdout keeps the result, or its JSON), a header
    before the first; times in seconds since the solve started."""

    def __init__(self) -> None:
        self.started = False

    def __call__(self, progress: Progress) -> None:
        if not self.started:
            self.started = True
            header = f"{'seconds':>9} {'nodes':>9} {'open':>9} {'objective':>17} {'bound':>17}"
            print(f"{header} {'gap':>9}", file=sys.stderr)
        open_nodes = "-" if progress.open_nodes is None else str(progress.open_nodes)
        print(
            f"{progress.seconds:9.1f} {progress.nodes:9d} {open_nodes:>9} "
            f"{progress.objective:17.10g} {progress.bound:17.10g} {progress.gap:9.3g}",
            file=sys.stderr,
            flush=True,
        )


def _solve(args: argparse.Namespace) -> None:
    from sprkit.optim.mip import ExactSolver

    instance, lam0, lam2 = _checked_problem(args)
    solver = ExactSolver(instance, args.M)  # the data's reduction counts against the limit
    remaining = args.time_limit - (time.perf_counter() - args.started)
    result = solver.solve(
        lam0,
        lam2,
        tol=args.tol,
        time_limit=max(remaining, 1e-3),
        method=args.method,
        branching=args.branching,
        log=_ProgressLines() if args.log else None,
    )
    if args.json:
        print(json.dumps(result.as_dict()))
        return
    print(
        f"status    {result.status}\nobjective {result.objective:.10g}\n"
        f"bound     {result.bound:.10g}\ngap       {result.gap:.3g}\n"
        f"kept      {len(result.kept)}/{instance.n_structures}: {result.kept}\n"
        f"seconds   {result.seconds:.3f} ({result.method}, {result.nodes} nodes)"
    )


def _instance(args: argparse.Namespace) -> None:
    from sprkit.instances import digits_mlp_instance, save_instance, synthetic_instance

    if args.output.suffix != ".npz":
        raise SprkitInputError(f"output must end in .npz, got {args.output}")
    check_output_file(args.output)
    if args.kind == "synthetic":
        instance = synthetic_instance(
            args.structures,
            rows_per_group=args.rows_per_group,
            n=args.n,
            c=args.c,
            support=args.support,
            noise=args.noise,
            snr=args.snr,
            correlation=args.correlation,
            design=args.design,
            scale=args.scale,
            seed=args.seed,
        )
    else:
        instance = digits_mlp_instance(args.hidden, targets=args.targets, seed=args.seed)
    save_instance(args.output, instance)
    print(
        f"wrote {args.output}: n={instance.n} d={instance.d} c={instance.c} "
        f"structures={instance.n_structures}"
    )


def _demo(args: argparse.Namespace) -> None:
    from sprkit.app.config import resolve_settings
    from sprkit.app.demo import run_demo
    from sprkit.app.pipeline import run_prune

    if not 2 <= args.points <= 100:
        raise SprkitInputError(f"--points must lie in [2, 100], got {args.points}")
    check_alpha(args.alpha)  # alpha's domain, before anything is written
    check_output_folder(args.out)
    run_demo(args.out, points=args.points, hidden=args.hidden, alpha=args.alpha)
    if args.no_prune:
        return
    print("\nSPR pruning of the small ResNet on the digits images (sprkit prune --dataset digits)")
    summary = run_prune(resolve_settings("digits", {}, {}), args.out / "prune", overwrite=True)
    print(json.dumps({k: summary[k] for k in PRUNE_SUMMARY_KEYS}, indent=1))
    print(f"report: {args.out / 'prune' / 'report.csv'}")


INTERRUPTED = {
    "prune": "interrupted; run the same command with --resume to continue from the last "
    "finished epoch (each is saved as it ends)",
    "demo": "interrupted; files already written are complete (each is replaced atomically)",
    "instance": "interrupted; nothing was written",
    "sweep": "interrupted; run the same command with --resume to continue: finished runs are "
    "kept and the interrupted one continues from its last finished epoch",
}


def _rank() -> int:
    """This process's rank under torchrun (which sets RANK), 0 otherwise."""
    rank = os.environ.get("RANK", "0")
    return int(rank) if rank.isdigit() else 0


def _shared(error: BaseException) -> bool:
    """Whether every process of a distributed run meets `error` alike (rank 0 shows it):
    input errors (the same input everywhere, or rank 0's refusal, passed on), a failure of
    rank 0's work (RankFailedError), a diverging training (reduced loss), an interrupt."""
    return isinstance(error, SprkitInputError | TrainingError | KeyboardInterrupt)


def _peer_lost(error: BaseException) -> bool:
    """gloo's error when another process of the run died during a collective."""
    return isinstance(error, RuntimeError) and "Connection closed by peer" in str(error)


def _error_line(error: BaseException) -> str:
    """The one line shown for an error the library raised or the system reported."""
    return " ".join(_message(error).split())  # one line, whatever the message holds


def _message(error: BaseException) -> str:
    text = str(error)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        # Re-raised by a DataLoader from one of its workers (e.g. an image that does not
        # decode): the message is the worker's traceback, ending "module.Type: message".
        return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    if isinstance(error, CheckpointError):
        return f"{error}; --overwrite starts the run again"
    if isinstance(error, RunExistsError):
        return f"{error}: --resume continues it, --overwrite replaces it"
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    if _out_of_memory(error):
        return "not enough memory for this input (try a smaller size or batch)"
    return str(error)


def _out_of_memory(error: BaseException) -> bool:
    """Python's MemoryError, or torch's (a RuntimeError subclass on CUDA, a RuntimeError
    naming the allocator on CPU); torch is not imported here for the check."""
    text = str(error)
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError)
        and ("out of memory" in text or "DefaultCPUAllocator: can't allocate" in text)
    )


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, one line printed)
        return int(exc.code or 0)
    args.started = started
    handlers = {
        "demo": _demo,
        "bounds": _bounds,
        "solve": _solve,
        "instance": _instance,
        "prune": _prune,
        "sweep": _sweep,
    }
    try:
        handlers[args.command](args)
    except (KeyboardInterrupt, Exception) as error:  # the boundary: one line, no traceback
        rank = _rank()
        if rank == 0 or not _shared(error):
            name = "sprkit" if rank == 0 else f"sprkit (rank {rank})"
            print(f"{name}: {_failure_line(error, args.command)}", file=sys.stderr)
        return 130 if isinstance(error, KeyboardInterrupt) else 2
    return 0


def _failure_line(error: BaseException, command: str) -> str:
    """What a command that ended with `error` prints after "sprkit: " (or its rank's tag)."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED.get(command, "interrupted; nothing was written")
    expected = SprkitInputError | TrainingError | OSError | MemoryError
    if isinstance(error, expected) or _out_of_memory(error):
        return f"error: {_error_line(error)}"
    if _peer_lost(error):
        return "error: another process of the run stopped (its own line says why)"
    return f"internal error (please report it): {type(error).__name__}: {_error_line(error)}"
