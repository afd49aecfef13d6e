"""Benchmark: how flat is the optimum's neighbourhood, and does that predict certification?

For each instance `bnb` runs to the time limit; around the best support S it finds (the
optimum where certified), every single change (one structure added or removed) and every
swap among the `--swap-pool` cheapest additions and removals is fitted exactly
(SupportProblem, box included), and their objectives are compared with S's, relative to it.
Branch and bound must separate every support whose objective lies within its node bounds'
gap of the optimum: the counts of such neighbours within 0.001 %, 0.01 % and 0.1 % of it, and
within the gap left at the time limit, show how many supports the search has to tell apart
with bounds that tight. `root_gap`: the gap after the root relaxation (scalar shift, before
the root diagonal's ascent and any branching). Instances: the
mip_hard grid (`--grid`, its indices) and the random 200-structure weak-ridge instances of
mip_weak_ridge_200 (`--weak-ridge`, their indices). One thread per process.

    .venv/bin/python benchmarks/mip_landscape.py [--grid 12 15 ...] [--weak-ridge 0 1 ...]
        [--limit 60] [--workers 2]

Writes docs/benchmarks/mip_landscape.md (+ .csv).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per solver process (before numpy)

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mip_hard import grid, make_case  # noqa: E402
from mip_weak_ridge_200 import spec as weak_ridge_spec  # noqa: E402

from sprkit.instances import hard_case  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402
from sprkit.optim.support import SupportProblem  # noqa: E402

_OUT = Path("docs/benchmarks/mip_landscape.md")
_GRID_SIZES, _GRID_PER_SIZE, _GRID_SEED = [20, 30, 50, 100, 200], 5, 2026
_WITHIN = {"1e-5": 1e-5, "1e-4": 1e-4, "1e-3": 1e-3}  # relative increases counted


def make(source: str, index: int):
    """(factors, MIPCase) of grid instance `index` or weak-ridge instance `index`."""
    if source == "grid":
        factors = grid(_GRID_SIZES, _GRID_PER_SIZE, _GRID_SEED)[index]
        return factors, make_case(factors)
    factors = {"structures": 200, **weak_ridge_spec(index)}
    return factors, hard_case(**factors)


def neighbours(solver: ExactSolver, case, support: np.ndarray, pool: int):
    """Relative objective increase of every single change of `support` and of the swaps
    among the `pool` cheapest additions and removals; (value of support, singles, swaps)."""
    problem = solver.scaled_problem(case.lam0, case.lam2)
    fits = SupportProblem(
        problem.reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
    )
    value = fits.solve(support).value

    def increase(changed: np.ndarray) -> float:
        return (fits.solve(changed).value - value) / value

    singles = np.empty(support.size)
    for j in range(support.size):
        changed = support.copy()
        changed[j] = not changed[j]
        singles[j] = increase(changed)
    order = np.argsort(singles)
    additions = [j for j in order if not support[j]][:pool]
    removals = [j for j in order if support[j]][:pool]
    swaps = []
    for added in additions:
        for removed in removals:
            changed = support.copy()
            changed[added], changed[removed] = True, False
            swaps.append(increase(changed))
    return value, singles, np.array(swaps)


def run_one(task: tuple[str, int, float, int]) -> dict:
    source, index, limit, pool = task
    factors, case = make(source, index)
    solver = ExactSolver(case.instance, case.M)
    first: list = []
    result = solver.solve(
        case.lam0,
        case.lam2,
        tol=1e-6,
        time_limit=limit,
        method="bnb",
        log=lambda progress: first or first.append(progress),
    )
    root_gap = first[0].gap if first else result.gap
    support = np.zeros(case.instance.n_structures, dtype=bool)
    support[list(result.kept)] = True
    _, singles, swaps = neighbours(solver, case, support, pool)
    row = {"source": source, "instance": index, **{k: factors[k] for k in factors if k != "seed"}}
    row.update(
        status=result.status,
        seconds=result.seconds,
        nodes=result.nodes,
        root_gap=root_gap,
        gap=result.gap,
        kept=len(result.kept),
        cheapest_single=float(singles.min()),
        singles_within_gap=int(np.sum(singles < result.gap)),
        **{f"singles_within_{name}": int(np.sum(singles < x)) for name, x in _WITHIN.items()},
        **{f"swaps_within_{name}": int(np.sum(swaps < x)) for name, x in _WITHIN.items()},
        swaps=int(swaps.size),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, nargs="*", default=[10, 12, 14, 15, 16, 17, 18, 19])
    parser.add_argument("--weak-ridge", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--swap-pool", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = [("grid", i, args.limit, args.swap_pool) for i in args.grid + [20, 21, 22, 23, 24]]
    tasks = list(dict.fromkeys(tasks))
    tasks += [("weak_ridge", i, args.limit, args.swap_pool) for i in args.weak_ridge]
    rows = []
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(run_one, tasks):
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows).sort_values(["source", "instance"])
    _OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(_OUT.with_suffix(".csv"), index=False)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = (
        f"python benchmarks/mip_landscape.py --grid {' '.join(map(str, args.grid))} "
        f"--weak-ridge {' '.join(map(str, args.weak_ridge))} --limit {args.limit:g} "
        f"--swap-pool {args.swap_pool} --workers {args.workers}"
    )
    shown = table.drop(columns=["scaled"], errors="ignore")
    for column in ("root_gap", "gap", "cheapest_single"):
        shown[column] = (100 * shown[column]).map(lambda v: f"{v:.3g} %")
    _OUT.write_text(
        "# The optimum's neighbourhood and certification\n\n"
        f"Command: `{command}`  \nMachine: {machine}, CPU only, one thread per process, "
        f"{args.workers} side by side. Time limit {args.limit:g} s, relative gap 1e-6.\n\n"
        "Around the best support found (the optimum where `status` is optimal): `singles_*` "
        "count the single changes (one structure added or removed, exact fit) whose objective "
        "is within the gap left at the limit, or within 1e-5, 1e-4 or 1e-3 of it (relative); "
        f"`swaps_*` the same among the {args.swap_pool} x {args.swap_pool} swaps of the "
        "cheapest additions and removals; `cheapest_single` the smallest increase of a single "
        "change; `root_gap` the gap after the root relaxation (scalar shift).\n\n"
        + shown.to_markdown(index=False)
        + "\n"
    )


if __name__ == "__main__":
    main()
