"""Benchmark: `bnb` against exhaustive search on instances small enough to enumerate.

Instances (sprkit.instances.hard_case): 12-14 structures of three rows, n just above d
(3 G + 1 to 3 G + 5 samples), correlation 0.9 / 0.95, SNR 0.5 / 1 / 2, lam2 0 / 1e-6 / 1e-4,
30-70 % kept, c = 1 / 4, M = 4 (the box binds): the corner where node relaxations are slow
(per-entry ridges in the prox, an ill-conditioned Gram matrix) and every support can still be
tried. Instance k is drawn from a generator seeded 7000 + k.

The competitor is an exhaustive search written here, on the raw data, independent of sprkit
(the unpenalized columns in every support): every support's ridge fit without the box (a
lower bound on its value) by least squares, then, in increasing order of that bound, the exact
fit (bounded-variable least squares of scipy, the ridge as extra rows) until the bound passes
the best value found. Both run in the
same process, one after the other, one thread; seconds of both, their ratio, and the
difference of their objectives.

    .venv/bin/python benchmarks/mip_enumerable.py [--count 12] [--limit 60] [--workers 2]

Writes docs/benchmarks/mip_enumerable.md (+ .csv).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread per solver process (before numpy)

import argparse  # noqa: E402
import itertools  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.optimize  # noqa: E402

from sprkit.instances import hard_case  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402


def spec(k: int) -> dict:
    """The factors of instance k."""
    rng = np.random.default_rng(7000 + k)
    structures = int(rng.integers(12, 15))
    return dict(
        structures=structures,
        correlation=float(rng.choice([0.9, 0.95])),
        snr=float(rng.choice([0.5, 1.0, 2.0])),
        lam2=float(rng.choice([0.0, 1e-6, 1e-4])),
        keep_fraction=float(rng.choice([0.3, 0.5, 0.7])),
        c=int(rng.choice([1, 4])),
        rows_per_group=3,
        n=3 * structures + int(rng.integers(1, 6)),
        seed=7000 + k,
    )


def exhaustive(X, Y, groups, lam0: float, lam2: float, M: float) -> float:
    """Optimum over all supports (module docstring); columns of group -1 are in every
    support, with no ridge and no box."""
    n = X.shape[0]
    free = np.flatnonzero(groups < 0)
    ids = np.unique(groups[groups >= 0])
    columns = [np.flatnonzero(groups == i) for i in ids]
    target = np.vstack([Y / np.sqrt(n), np.zeros((X.shape[1], Y.shape[1]))])

    def fit(kept: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(A, b, box) of a support: scaled columns over the ridge's rows, the target."""
        penalized = np.concatenate([columns[j] for j in kept] + [np.zeros(0, dtype=int)])
        ridge = np.hstack([np.zeros((penalized.size, free.size)), np.eye(penalized.size)])
        A = np.vstack([X[:, np.r_[free, penalized]] / np.sqrt(n), np.sqrt(lam2) * ridge])
        box = np.r_[np.full(free.size, np.inf), np.full(penalized.size, M)]
        return A, target[: A.shape[0]], box

    candidates = []  # (box-free value, kept positions, within the box)
    for size in range(ids.size + 1):
        for kept in itertools.combinations(range(ids.size), size):
            A, b, box = fit(kept)
            W = np.linalg.lstsq(A, b, rcond=None)[0] if A.shape[1] else np.zeros((0, b.shape[1]))
            value = float(np.sum((A @ W - b) ** 2)) + lam0 * size
            candidates.append((value, kept, bool(np.all(np.abs(W) <= box[:, None]))))
    candidates.sort(key=lambda candidate: candidate[0])
    best = np.inf
    for lower, kept, inside in candidates:
        if lower > best * (1 + 1e-9):
            break
        if inside:
            best = min(best, lower)
            continue
        A, b, box = fit(kept)
        value = lam0 * len(kept)
        for output in range(b.shape[1]):
            solved = scipy.optimize.lsq_linear(
                A, b[:, output], bounds=(-box, box), method="bvls", tol=1e-12
            )
            value += float(np.sum((A @ solved.x - b[:, output]) ** 2))
        best = min(best, value)
    return best


def run_one(task: tuple[int, float]) -> dict:
    k, limit = task
    factors = spec(k)
    case = hard_case(**factors)
    start = time.perf_counter()
    result = ExactSolver(case.instance, case.M).solve(
        case.lam0, case.lam2, tol=1e-6, time_limit=limit, method="bnb"
    )
    bnb_seconds = time.perf_counter() - start
    start = time.perf_counter()
    instance = case.instance
    optimum = exhaustive(instance.X, instance.Y, instance.groups, case.lam0, case.lam2, case.M)
    exhaustive_seconds = time.perf_counter() - start
    return {
        "instance": k,
        **factors,
        "status": result.status,
        "bnb_seconds": bnb_seconds,
        "nodes": result.nodes,
        "exhaustive_seconds": exhaustive_seconds,
        "ratio": bnb_seconds / exhaustive_seconds,
        "objective_minus_optimum": (result.objective - optimum) / optimum,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/mip_enumerable.md"))
    args = parser.parse_args()
    tasks = [(k, args.limit) for k in range(args.count)]
    with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        rows = sorted(pool.imap_unordered(run_one, tasks), key=lambda row: row["instance"])
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    certified = table["status"] == "optimal"
    ratios = table.loc[certified, "ratio"]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    args.out.write_text(
        "# `bnb` against exhaustive search, 12-14 structures with a binding box\n\n"
        f"Command: `python benchmarks/mip_enumerable.py --count {args.count} --limit "
        f"{args.limit:g} --workers {args.workers}`  \nMachine: {machine}, CPU only, one thread "
        f"per process, {args.workers} side by side. Relative gap 1e-6. `ratio`: bnb seconds / "
        "exhaustive seconds; `objective_minus_optimum`: relative.\n\n"
        f"- certified within {args.limit:g} s: **{int(certified.sum())} of {len(table)}**\n"
        f"- time ratio on those, geometric mean {np.exp(np.log(ratios).mean()):.3g}, "
        f"worst {ratios.max():.3g}\n"
        f"- largest objective above the exhaustive optimum (relative): "
        f"{table['objective_minus_optimum'].max():.2g}\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
