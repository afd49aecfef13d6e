"""`sprkit sweep`: trade-off sweeps, one `sprkit prune` run per (penalty, lam, seed).

A sweep folder DIR holds

    baseline/seed=<s>/                 the dense reference of seed s (sprkit.app.pipeline.
                                       train_baseline: no penalty for the whole budget),
                                       shared by every point; measured.json: its measured row
    runs/<method>/lam=<lam>/seed=<s>/  one prune run folder per point (baseline off)
    runs.csv                           one row per run, baselines included
    sweep.csv, sweep.md                one row per (method, lam), means over the seeds, with
                                       Pareto flags (rewritten after every point)
    sweep.png                          the trade-off plot (sprkit.app.plots), at the end

A point's figures are those of its compressed network (its report.json). A point is on its
method's Pareto front for MACs (pareto_macs) when no other point of the same method has at
most its mean MACs and at least its mean top-1, one of the two strictly (equal points are all
on it); pareto_parameters likewise with the parameter count.
With `resume`, finished points (every report file present, written with the same settings)
are read back, an interrupted one continues from its checkpoint, the others run; the grid may
grow or shrink between resumes.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sprkit.app.config import PruneSettings
from sprkit.app.initial import read_state_dict
from sprkit.app.pipeline import (
    check_device,
    load_run_data,
    measure_network,
    run_prune,
    starting_network,
    train_baseline,
)
from sprkit.app.reports import REPORT_FILES, SWEEP_FILES, write_sweep_report
from sprkit.app.runfolder import RunFolder
from sprkit.atomic import write_atomically
from sprkit.errors import CheckpointError, RunExistsError, RunFolderError, SprkitInputError
from sprkit.networks.architectures import model_constructor
from sprkit.networks.penalties import PENALTIES

# Default lam grids. digits: chosen with this tool (a wider exploratory sweep, one seed) so
# that each method's points spread from about 20% to 95% of the MACs removed under the default
# recipe (bn_l1: to 70%, beyond which it loses its accuracy before pruning); the scales differ
# by orders of magnitude between methods. CIFAR: starting points,
# not measured here (no CIFAR on this machine): SPR and group lasso around the default lam,
# network slimming around its published 1e-5 to 1e-4 (Liu et al. 2017; sprkit's bn_l1 sums
# |gamma| unnormalized, and a ResNet-56 has ~20x the channels of resnet-digits), Torch-Pruning
# around the reg 5e-4 of its ResNet-56 scripts.
DEFAULT_LAMS: dict[str, dict[str, tuple[float, ...]]] = {
    "digits": {
        "spr": (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0),
        "group_lasso": (8.0, 16.0, 32.0, 64.0, 96.0, 128.0),
        "bn_l1": (0.003, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07),
        "tp_group_norm": (0.001, 0.002, 0.003, 0.005, 0.01, 0.015, 0.02),
    },
    "cifar10": {
        "spr": (0.25, 0.5, 1.0, 2.0, 4.0),
        "group_lasso": (4.0, 8.0, 16.0, 32.0, 64.0),
        "bn_l1": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
        "tp_group_norm": (1e-4, 2e-4, 5e-4, 1e-3, 2e-3),
    },
}
DEFAULT_LAMS["cifar100"] = DEFAULT_LAMS["cifar10"]
MAX_SEEDS = 100
BUDGETS = (0.5, 0.3, 0.2, 0.1, 0.05)  # shares of the baseline's MACs (sweep.md)
SWEEP_MARKER = ".sprkit-sweep"
SWEEP_PARTS = ("baseline", "runs", *SWEEP_FILES, SWEEP_MARKER)
# What the sweep reads from a point's report.json.
REPORT_KEYS = ("arch", "dataset", "train", "networks", "macs_removed", "parameters_removed")


def parse_methods(text: str | None) -> tuple[str, ...]:
    """The methods of `--methods` (comma-separated penalties; None: all of PENALTIES)."""
    if text is None:
        return PENALTIES
    methods = tuple(name.strip() for name in text.split(","))
    for name in methods:
        if name not in PENALTIES:
            known = ", ".join(PENALTIES)
            raise SprkitInputError(f"--methods: unknown method {name!r}; known: {known}")
    if len(set(methods)) != len(methods):
        raise SprkitInputError(f"--methods names a method twice: {text}")
    return methods


def parse_lams(items: list[str], methods: tuple[str, ...], dataset: str) -> dict[str, tuple]:
    """lam grid per method: the dataset's defaults, replaced by every `METHOD=v1,v2,...` item
    (each method at most once, among `methods`; values finite, > 0, distinct)."""
    grid = {method: DEFAULT_LAMS[dataset][method] for method in methods}
    given: set[str] = set()
    for item in items:
        method, equals, values = item.partition("=")
        method = method.strip()
        if not equals:
            raise SprkitInputError(f"--lams {item!r}: expected METHOD=v1,v2,...")
        if method not in methods:
            known = "unknown method" if method not in PENALTIES else "a method not in --methods"
            raise SprkitInputError(f"--lams {item!r}: {known} {method!r}")
        if method in given:
            raise SprkitInputError(f"--lams gives {method} twice")
        given.add(method)
        lams = []
        for text in values.split(","):
            try:
                lam = float(text)
            except ValueError:
                raise SprkitInputError(
                    f"--lams {method}: {text.strip()!r} is not a number"
                ) from None
            if not (math.isfinite(lam) and lam > 0):
                raise SprkitInputError(f"--lams {method}: lam must be finite and > 0, got {lam:g}")
            if lam in lams:
                raise SprkitInputError(f"--lams {method}: {lam:g} appears twice")
            lams.append(lam)
        grid[method] = tuple(lams)
    return grid


def pareto_front(costs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per point, whether no other point has cost <= and value >= with one strict (module
    docstring). O(n^2): sweeps have tens of points."""
    costs, values = np.asarray(costs, dtype=float), np.asarray(values, dtype=float)
    front = np.ones(len(costs), dtype=bool)
    for i in range(len(costs)):
        better = (costs <= costs[i]) & (values >= values[i])
        strictly = (costs < costs[i]) | (values > values[i])
        front[i] = not bool((better & strictly).any())
    return front


@dataclass(frozen=True)
class Point:
    """One run of the sweep: the prune settings of (method, lam, seed) and its folder."""

    method: str
    lam: float
    seed: int
    settings: PruneSettings

    @property
    def folder(self) -> Path:
        """Relative to the sweep folder."""
        return Path("runs", self.method, f"lam={self.lam!r}", f"seed={self.seed}")


def sweep_points(
    settings: PruneSettings, grid: dict[str, tuple[float, ...]], seeds: int
) -> list[Point]:
    """Every (method, lam, seed) of the grid with its settings (checked here, before any run):
    `settings` with that penalty, lam and seed and without a baseline of its own."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise SprkitInputError(f"--seeds must lie in [1, {MAX_SEEDS}], got {seeds}")
    points = []
    for seed in range(settings.seed, settings.seed + seeds):
        for method, lams in grid.items():
            for lam in lams:
                train = replace(settings.train, penalty=method, lam=lam, seed=seed)
                point_settings = replace(settings, train=train, seed=seed, baseline=False)
                points.append(Point(method, lam, seed, point_settings))
    return points


def _changed(saved: dict, settings: PruneSettings) -> list[str]:
    """The settings a finished run (`saved`: arch, dataset and the train fields, as read from
    its JSON) was made with that differ from `settings`."""
    current = {"arch": settings.arch, "dataset": settings.dataset, **asdict(settings.train)}
    current = json.loads(json.dumps(current))  # JSON's types, as saved
    return sorted(key for key, value in current.items() if saved.get(key) != value)


def _read_json(path: Path, keys: tuple[str, ...]) -> dict:
    """The JSON object in `path`, with `keys`; RunFolderError if it is damaged."""
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict) or any(key not in document for key in keys):
        raise RunFolderError(f"{path} is damaged; delete its folder to run that part again")
    return document


def _finished_point(folder: Path, settings: PruneSettings) -> dict | None:
    """The report of a finished point in `folder` (None if unfinished); RunFolderError if
    it was run with other settings."""
    if not all((folder / name).exists() for name in REPORT_FILES):
        return None
    report = _read_json(folder / "report.json", REPORT_KEYS)
    changed = _changed(
        {"arch": report["arch"], "dataset": report["dataset"], **report["train"]}, settings
    )
    if changed:
        raise RunFolderError(
            f"{folder} was run with other settings ({', '.join(changed)}); resume with the "
            "same settings, or delete that folder to run the point again"
        )
    return report


def _point_row(point: Point, out: Path, device: str, resume: bool) -> dict:
    """Run (or read back) one point; its row of runs.csv."""
    folder = out / point.folder
    report = _finished_point(folder, point.settings) if resume else None
    if report is None:
        try:
            run_prune(point.settings, folder, device=device, resume=resume)
        except CheckpointError as error:
            raise RunFolderError(f"{error}; delete {folder} to run the point again") from None
        report = _read_json(folder / "report.json", REPORT_KEYS)
    compressed = next(row for row in report["networks"] if row["network"] == "compressed")
    return {
        "method": point.method,
        "lam": point.lam,
        "seed": point.seed,
        **{key: compressed[key] for key in ("top1", "top5", "macs", "parameters")},
        "macs_removed": report["macs_removed"],
        "parameters_removed": report["parameters_removed"],
        "latency_ms": compressed["latency_ms"],
        "run": str(point.folder),
        "val_top1": _final_val_accuracy(folder / "training"),
    }


def _final_val_accuracy(run_dir: Path) -> float:
    """Validation accuracy at the end of a training (the last row of its log.csv): the
    split on which a lam can be chosen without looking at the test figures."""
    return float(pd.read_csv(run_dir / "log.csv")["val_accuracy"].iloc[-1])


def _baseline_row(settings: PruneSettings, seed: int, out: Path, device: str, resume: bool):
    """Train (or read back) the dense reference of `seed`; its row of runs.csv."""
    folder = out / "baseline" / f"seed={seed}"
    # The penalty and lam of `settings` do not touch the baseline: fixed, so that they may
    # differ between resumes.
    train = replace(settings.train, seed=seed, penalty="spr", lam=0.0)
    settings = replace(settings, seed=seed, train=train)
    measured = folder / "measured.json"
    if resume and measured.exists():
        saved = _read_json(measured, ("settings", "row"))
        changed = _changed(saved["settings"], settings)
        if changed:
            raise RunFolderError(
                f"{folder} was trained with other settings ({', '.join(changed)}); resume "
                "with the same settings, or delete that folder to train it again"
            )
        return {**saved["row"], "val_top1": _final_val_accuracy(folder)}
    data = load_run_data(settings, seed)
    shape = data.input_shape
    torch.manual_seed(seed)
    initial = read_state_dict(Path(settings.init)) if settings.init else None
    model = starting_network(model_constructor(settings.arch), data, initial)
    try:
        train_baseline(model, settings, data, folder, device=device, resume=resume)
    except CheckpointError as error:
        raise RunFolderError(f"{error}; delete {folder} to train it again") from None
    measured_row = measure_network(model, "baseline", data, shape, settings, device)
    row = {
        "method": "baseline",
        "lam": 0.0,
        "seed": seed,
        **{key: measured_row[key] for key in ("top1", "top5", "macs", "parameters")},
        "macs_removed": 0.0,
        "parameters_removed": 0.0,
        "latency_ms": measured_row["latency_ms"],
        "run": str(folder.relative_to(out)),
    }
    identity = {"arch": settings.arch, "dataset": settings.dataset, **asdict(settings.train)}
    document = {"settings": identity, "row": row}
    write_atomically(measured, lambda path: path.write_text(json.dumps(document, indent=1)))
    return {**row, "val_top1": _final_val_accuracy(folder)}


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, lam) of runs.csv: means over the seeds (top1_std: their standard
    deviation, 0 for one seed; val_top1: validation accuracy at the end of training) and the
    Pareto flags of each method's points (on test top-1)."""
    grouped = runs.groupby(["method", "lam"], sort=False)
    table = grouped.agg(
        seeds=("seed", "size"),
        top1=("top1", "mean"),
        top1_std=("top1", lambda values: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0),
        val_top1=("val_top1", "mean"),
        top5=("top5", "mean"),
        macs=("macs", "mean"),
        parameters=("parameters", "mean"),
        macs_removed=("macs_removed", "mean"),
        parameters_removed=("parameters_removed", "mean"),
        latency_ms=("latency_ms", "mean"),
    ).reset_index()
    table["pareto_macs"] = False
    table["pareto_parameters"] = False
    for method, rows in table.groupby("method", sort=False):
        if method == "baseline":
            continue
        for cost in ("macs", "parameters"):
            front = pareto_front(rows[cost].to_numpy(), rows["top1"].to_numpy())
            table.loc[rows.index, f"pareto_{cost}"] = front
    table["run"] = [
        "baseline" if method == "baseline" else str(Path("runs", method, f"lam={lam!r}"))
        for method, lam in zip(table["method"], table["lam"], strict=True)
    ]
    return table


def front_at_budgets(table: pd.DataFrame, shares: tuple[float, ...] = BUDGETS) -> pd.DataFrame:
    """Each method's Pareto front read at MAC budgets: per budget (`share` of the baseline's
    mean MACs) and method, the best mean top-1 among the method's points within the budget
    and that point's lam (NaN where none fits)."""
    dense = float(table.loc[table["method"] == "baseline", "macs"].iloc[0])
    rows = []
    for share in shares:
        for method, points in table[table["method"] != "baseline"].groupby("method", sort=False):
            fitting = points[points["macs"] <= share * dense]
            best = fitting.loc[fitting["top1"].idxmax()] if len(fitting) else None
            rows.append(
                {
                    "share": share,
                    "macs": share * dense,
                    "method": method,
                    "top1": np.nan if best is None else best["top1"],
                    "lam": np.nan if best is None else best["lam"],
                }
            )
    return pd.DataFrame(rows)


def run_sweep(
    settings: PruneSettings,
    out: Path,
    grid: dict[str, tuple[float, ...]],
    *,
    seeds: int = 1,
    device: str = "cpu",
    resume: bool = False,
) -> pd.DataFrame:
    """Run the sweep of `grid` (method -> lams) with `seeds` seeds from settings.seed into
    `out` (module docstring) and return its table (sweep.csv). A folder that already holds a
    sweep is continued with `resume` and refused otherwise; one in use is refused."""
    model_constructor(settings.arch)  # unknown: fail before anything is written
    check_device(device)
    points = sweep_points(settings, grid, seeds)
    with RunFolder(out, marker=SWEEP_MARKER, parts=SWEEP_PARTS, kind="sweep") as folder:
        try:
            folder.check_free(resume=resume, overwrite=False)
        except RunExistsError:
            raise RunFolderError(
                f"{out} already holds a sweep: --resume continues it, or choose another folder"
            ) from None
        load_run_data(settings)  # missing data: fail now
        folder.mark()
        rows = [
            _baseline_row(settings, seed, out, device, resume)
            for seed in range(settings.seed, settings.seed + seeds)
        ]
        context = _context(settings, grid, seeds, device)
        for number, point in enumerate(points, start=1):
            row = _point_row(point, out, device, resume)
            rows.append(row)
            print(
                f"sweep [{number}/{len(points)}] {point.method} lam={point.lam:g} "
                f"seed={point.seed}: top1 {row['top1']:.4f}, MACs {row['macs']:,} "
                f"({row['macs_removed']:.1%} removed)",
                flush=True,
            )
            runs = pd.DataFrame(rows)
            table = summarize(runs)
            budgets = front_at_budgets(table)
            write_sweep_report(out, runs, table, budgets, context, plot=False)  # partial
        write_sweep_report(out, runs, table, budgets, context, plot=True)
        return table


def _context(settings: PruneSettings, grid: dict, seeds: int, device: str) -> list[str]:
    """The lines above sweep.md's table: data, network, recipe, rule, grid, machine."""
    train = settings.train
    rule = (
        f"the fewest lowest-scoring structures within {train.target_macs:,} MACs"
        if train.target_macs is not None
        else f"within {train.tolerance:.1%} of validation accuracy (SPR, group lasso: the "
        "largest weight threshold; bn_l1, tp_group_norm: the most lowest-scoring structures)"
    )
    return [
        f"Data: {settings.dataset}; network: {settings.arch}; seeds {settings.seed} to "
        f"{settings.seed + seeds - 1} (figures: means over the seeds; top1 = test accuracy).",
        f"Recipe (every run): {train.penalized_epochs} penalized + {train.finetune_epochs} "
        f"fine-tuning epochs, SGD lr {train.lr:g} momentum {train.momentum:g} weight decay "
        f"{train.weight_decay:g}, milestones {train.milestones}, batch {train.batch_size}, "
        f"grouping '{train.grouping}', SPR alpha {train.alpha:g}. Baseline: no penalty, the "
        f"same {train.penalized_epochs + train.finetune_epochs} epochs, not pruned.",
        f"Pruning rule: {rule}; then fine-tuning with the masks and physical compression.",
        "Grid (lam): "
        + "; ".join(f"{m} {', '.join(f'{v:g}' for v in lams)}" for m, lams in grid.items()),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {device}, {torch.get_num_threads()} torch threads.",
    ]
