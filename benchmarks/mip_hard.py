"""Benchmark: the MIP in its hard regime, sprkit `bnb` and `oa` against Gurobi and SCIP.

Instances (sprkit.instances.hard_case): AR(1) designs with correlation 0 / 0.5 / 0.8,
signal-to-noise 1 / 2 / 5, weak (lam2 = 0.001) or moderate (0.05) ridge, lam0 calibrated so
that about 10 % to 90 % of the structures are worth keeping, c = 1 or 3 outputs, 1 or 2 rows
per structure, M = 4, data in natural units or rescaled (X x 1e3, Y x 1e-2, the same problem in
other units); the factors are spread over the instances of each size by a balanced random
design (every level of every factor appears at every size). Every solver gets the same
instance, relative gap 1e-6 and the time limit; Gurobi (gurobipy's size-limited pip licence)
and SCIP (pyscipopt) receive sprkit's Pyomo model (compact loss: X = QR, residuals R W - Q'Y),
time measured inside the solver; sprkit's time is its whole solve. Each process is single
threaded and two run side by side (2 cores).

    .venv/bin/python benchmarks/mip_hard.py [--sizes 20 30 50 100 200] [--per-size 5]
        [--limit 60] [--workers 2]

Writes docs/benchmarks/mip_hard.md, .csv and mip_hard_profile.png (performance profile).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per solver process (before numpy)

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sprkit.errors import SolverError  # noqa: E402
from sprkit.instances import hard_case  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402

SOLVERS = {
    "bnb": ("bnb", None),
    "oa": ("oa", None),
    "gurobi": ("pyomo:gurobi", {"Threads": 1}),
    "scip": ("pyomo:scip", {"parallel/maxnthreads": 1}),
}
_DEFAULT_OUT = Path("docs/benchmarks/mip_hard.md")
LEVELS = {
    "correlation": [0.0, 0.5, 0.8],
    "snr": [1.0, 2.0, 5.0],
    "lam2": [0.001, 0.05],
    "keep_fraction": [0.1, 0.3, 0.5, 0.7, 0.9],
    "c": [1, 3],
    "rows_per_group": [1, 2],
    "scaled": [False, True],
}


def grid(sizes: list[int], per_size: int, seed: int) -> list[dict]:
    """Instance specifications: per size, each factor's levels repeated and shuffled."""
    rng = np.random.default_rng(seed)
    specs = []
    for structures in sizes:
        columns = {
            name: rng.permutation(np.resize(levels, per_size)).tolist()
            for name, levels in LEVELS.items()
        }
        for k in range(per_size):
            spec = {name: columns[name][k] for name in LEVELS}
            specs.append({"structures": structures, **spec, "seed": len(specs)})
    return specs


def make_case(spec: dict):
    options = {k: v for k, v in spec.items() if k != "scaled"}
    if spec["scaled"]:
        return hard_case(**options, x_scale=1e3, y_scale=1e-2)
    return hard_case(**options)


def run_one(task: tuple[int, dict, str, float]) -> dict:
    index, spec, name, limit = task
    case = make_case(spec)
    method, options = SOLVERS[name]
    row = {"instance": index, "solver": name}
    try:
        result = ExactSolver(case.instance, case.M).solve(
            case.lam0,
            case.lam2,
            tol=1e-6,
            time_limit=limit,
            method=method,
            solver_options=options,
        )
    except SolverError as error:  # Gurobi's size-limited licence refuses large models
        return {**row, "status": "did_not_fit", "note": str(error)[:80]}
    seconds = result.solver_seconds if result.solver_seconds is not None else result.seconds
    return {
        **row,
        "status": result.status,
        "seconds": seconds,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "nodes": result.nodes,
        "kept": len(result.kept),
        "kept_ids": " ".join(map(str, result.kept)),
    }


def performance_profile(times: pd.DataFrame, path: Path, limit: float) -> None:
    """Share of instances each solver certifies within tau x the best solver's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = times.min(axis=1)
    usable = np.isfinite(best)
    ratios = times[usable].div(best[usable], axis=0)
    taus = np.logspace(0, np.log10(max(limit / best[usable].min(), 10.0)), 200)
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name in times.columns:
        share = [(ratios[name] <= tau).mean() * usable.mean() for tau in taus]
        axis.step(taus, share, where="post", label=name)
    axis.set_xscale("log")
    axis.set_xlabel("tau (time / best time on the instance)")
    axis.set_ylabel("share of instances certified")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def summarize(wide: pd.DataFrame, sizes: list[int], solvers: list[str]) -> str:
    """Solved counts per size and the time ratios of bnb against the other solvers run."""
    lines = [
        "| structures | instances | " + " | ".join(solvers) + " |",
        "|---" * (len(solvers) + 2) + "|",
    ]
    for structures in sizes:
        part = wide[wide["structures"] == structures]
        counts = [str(int((part[f"{s}_status"] == "optimal").sum())) for s in solvers]
        lines.append(f"| {structures} | {len(part)} | " + " | ".join(counts) + " |")
    total = [str(int((wide[f"{s}_status"] == "optimal").sum())) for s in solvers]
    lines.append(f"| all | {len(wide)} | " + " | ".join(total) + " |")
    text = "\n".join(lines) + "\n\n"
    if "bnb" not in solvers:
        return text
    for name in [s for s in solvers if s != "bnb"]:
        both = (wide["bnb_status"] == "optimal") & (wide[f"{name}_status"] == "optimal")
        if both.any():
            ratio = wide.loc[both, "bnb_seconds"] / wide.loc[both, f"{name}_seconds"]
            text += (
                f"- bnb / {name}: geometric mean of time ratios {np.exp(np.log(ratio).mean()):.3g} "
                f"on the {int(both.sum())} instances both certify (max {ratio.max():.3g})\n"
            )
    if "gurobi" in solvers:
        fits = (wide["gurobi_status"] != "did_not_fit").sum()
        missed = wide[(wide["gurobi_status"] == "optimal") & (wide["bnb_status"] != "optimal")]
        text += f"- Gurobi's licence took {fits} of {len(wide)} models; instances Gurobi "
        text += f"certifies and bnb does not: {len(missed)}\n"
    certified = wide[wide["bnb_status"] == "optimal"]
    if len(certified):
        text += f"- largest size bnb certified: {int(certified['structures'].max())} structures\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 30, 50, 100, 200])
    parser.add_argument("--per-size", type=int, default=5)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT)
    args = parser.parse_args()
    specs = grid(args.sizes, args.per_size, args.seed)
    tasks = [(i, spec, name, args.limit) for i, spec in enumerate(specs) for name in args.solvers]
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(run_one, tasks):
            rows.append(row)
            print(row, flush=True)
    long = pd.DataFrame(rows)
    wide = pd.DataFrame(specs)
    wide.insert(0, "instance", range(len(specs)))
    for name in args.solvers:
        part = long[long["solver"] == name].set_index("instance")
        for column in ("status", "seconds", "gap", "nodes", "kept", "kept_ids"):
            if column in part:
                wide[f"{name}_{column}"] = wide["instance"].map(part[column])
    for name in args.solvers:  # agreement of the kept sets where both certify
        if name != "bnb" and "bnb" in args.solvers:
            both = (wide["bnb_status"] == "optimal") & (wide[f"{name}_status"] == "optimal")
            same = wide["bnb_kept_ids"] == wide[f"{name}_kept_ids"]
            wide[f"{name}_same_kept"] = np.where(both, same, np.nan)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    wide.to_csv(args.out.with_suffix(".csv"), index=False)
    times = pd.DataFrame(
        {
            name: np.where(wide[f"{name}_status"] == "optimal", wide[f"{name}_seconds"], np.inf)
            for name in args.solvers
        }
    )
    profile = args.out.with_name(f"{args.out.stem}_profile.png")
    performance_profile(times, profile, args.limit)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = (
        f"python benchmarks/mip_hard.py --sizes {' '.join(map(str, args.sizes))} --per-size "
        f"{args.per_size} --limit {args.limit:g} --workers {args.workers} --seed {args.seed}"
    )
    if args.solvers != list(SOLVERS):
        command += f" --solvers {' '.join(args.solvers)}"
    if args.out != _DEFAULT_OUT:
        command += f" --out {args.out}"
    columns = [
        "instance",
        "structures",
        "correlation",
        "snr",
        "lam2",
        "keep_fraction",
        "c",
        "rows_per_group",
        "scaled",
    ]
    for name in args.solvers:
        columns += [f"{name}_status", f"{name}_seconds"]
    columns += ["bnb_nodes", "bnb_gap", "bnb_kept"]
    names = {"bnb": "sprkit bnb", "oa": "sprkit oa", "gurobi": "Gurobi", "scip": "SCIP"}
    title = ", ".join(names[name] for name in args.solvers)
    args.out.write_text(
        f"# Exact MIP, hard regime: {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine}, CPU only, every solver single threaded, "
        f"{args.workers} solver processes side by side. Time limit {args.limit:g} s, relative "
        "gap 1e-6. Seconds: to a certified gap (status optimal), model build excluded for "
        "Gurobi and SCIP. `did_not_fit`: refused by Gurobi's size-limited licence.\n\n"
        "## Certified instances\n\n"
        + summarize(wide, args.sizes, args.solvers)
        + f"\n![performance profile]({profile.name})\n\n## Every instance\n\n"
        + wide[[c for c in columns if c in wide]].to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
