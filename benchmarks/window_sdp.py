"""Benchmark: how much a lifted SDP would strengthen the root bound, measured on windows.

An instance of benchmarks/mip_hard.py's grid is solved by `bnb` for --limit seconds; then, for
--windows windows of --size coupled structures (sprkit.optim.window_search.windows, spread over
the structures), the window's problem with the rest fixed at the incumbent
(sprkit.optim.window_search.window_problem) gets three root values, each compared with the
window's optimum certified by `bnb`:
- "shor": the Shor SDP with perspective constraints (per output k, [1 w'; w Wt] PSD,
  Wt_rr * z_j >= w_r^2, |w_r| <= M_j z_j, Wt_rr <= M_j^2 z_j), the strength of the best
  diagonal perspective, which is sprkit's root bound;
- "lifted": the same with z lifted as well ([1 w' z'; w Wt V; z V' Z] PSD, Z_jj = z_j,
  McCormick on Z, V_rj = w_r for r in structure j, |V_rl| <= M Z_jl, |w_r - V_rl| <=
  M (z_j - Z_jl)).
Both solved by cvxpy with Clarabel. Writes docs/benchmarks/window_sdp.{md,csv}.

    .venv/bin/python benchmarks/window_sdp.py [--instance 24] [--size 30] [--windows 5]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cvxpy as cp
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from mip_hard import grid, make_case  # noqa: E402

from sprkit.optim.branch_and_bound import BranchAndBound  # noqa: E402
from sprkit.optim.mip import ExactSolver  # noqa: E402
from sprkit.optim.problem import ScaledProblem  # noqa: E402
from sprkit.optim.window_search import window_problem, windows  # noqa: E402


def sdp_bound(problem: ScaledProblem, lifted: bool) -> tuple[float, str, float]:
    """(value, cvxpy status, seconds) of the Shor or lifted SDP relaxation of `problem`."""
    gram, cross = problem.reduced.gram, problem.reduced.cross
    structure, groups = problem.row_structure, problem.n_groups
    d, outputs = cross.shape
    M_row = problem.M[structure]
    z = cp.Variable(groups)
    constraints = [z >= 0, z <= 1]
    objective = problem.reduced.const + problem.lam0 * cp.sum(z)
    size = 1 + d + (groups if lifted else 0)
    ws, wts, Z = [], [], None
    for k in range(outputs):
        P = cp.Variable((size, size), PSD=True)
        w, Wt = P[1 : d + 1, 0], P[1 : d + 1, 1 : d + 1]
        ws.append(w)
        wts.append(Wt)
        objective += cp.sum(cp.multiply(gram, Wt)) - 2 * cross[:, k] @ w
        objective += problem.lam2 * cp.trace(Wt)
        constraints += [P[0, 0] == 1, cp.abs(w) <= cp.multiply(M_row, z[structure])]
        constraints.append(cp.diag(Wt) <= cp.multiply(M_row**2, z[structure]))
        if lifted:
            V, Zk = P[1 : d + 1, d + 1 :], P[d + 1 :, d + 1 :]
            constraints.append(P[d + 1 :, 0] == z)
            if Z is None:
                Z = Zk
                ones = np.ones((groups, 1))
                row, column = (
                    cp.reshape(z, (1, groups), order="F"),
                    cp.reshape(z, (groups, 1), order="F"),
                )
                constraints += [cp.diag(Z) == z, Z <= ones @ row, Z >= 0]
                constraints.append(Z >= ones @ row + column @ ones.T - 1)
            else:
                constraints.append(Zk == Z)
            constraints.append(V[np.arange(d), structure] == w)
            bound = np.repeat(M_row[:, None], groups, 1)
            Z_rows = Z[structure, :]
            z_rows = cp.reshape(z[structure], (d, 1), order="F") @ np.ones((1, groups))
            w_rows = cp.reshape(w, (d, 1), order="F") @ np.ones((1, groups))
            constraints.append(cp.abs(V) <= cp.multiply(bound, Z_rows))
            constraints.append(cp.abs(w_rows - V) <= cp.multiply(bound, z_rows - Z_rows))
    for j in range(groups):
        rows = np.flatnonzero(structure == j)
        total = sum(cp.sum(cp.diag(Wt)[rows]) for Wt in wts)
        constraints.append(cp.quad_over_lin(cp.hstack([w[rows] for w in ws]), z[j]) <= total)
    relaxation = cp.Problem(cp.Minimize(objective), constraints)
    start = time.perf_counter()
    relaxation.solve(solver=cp.CLARABEL)
    return float(relaxation.value), relaxation.status, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", type=int, default=24)
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/window_sdp"))
    args = parser.parse_args()
    case = make_case(grid([20, 30, 50, 100, 200], 5, 2026)[args.instance])
    solver = ExactSolver(case.instance, case.M)
    problem = solver.scaled_problem(case.lam0, case.lam2)
    result = solver.solve(case.lam0, case.lam2, method="bnb", time_limit=args.limit)
    support = np.isin(case.instance.structure_ids, list(result.kept))
    every = windows(problem, args.size)
    spread = np.unique(np.linspace(0, len(every) - 1, args.windows).astype(int))
    rows = []
    for window in (every[k] for k in spread):
        local = window_problem(problem, support, window)
        if local is None:  # the kept rows outside are singular under the ridge
            continue
        with threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            outcome = BranchAndBound(local, branching="fractional", windows=False).run(
                tol=1e-7, deadline=np.inf
            )
            seconds = time.perf_counter() - start
        optimum = outcome.incumbent.value
        row = {"first": int(window[0]), "optimum": optimum, "bnb_seconds": seconds}
        for name, lifted in (("shor", False), ("lifted", True)):
            value, status, elapsed = sdp_bound(local, lifted)
            row |= {
                f"{name}_gap": (optimum - value) / abs(optimum),
                f"{name}_seconds": elapsed,
                f"{name}_status": status,
            }
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    command = (
        f"python benchmarks/window_sdp.py --instance {args.instance} --size {args.size} "
        f"--windows {args.windows} --limit {args.limit:g}"
    )
    text = [
        "# Root SDP relaxations on windows of a grid instance",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, cvxpy {cp.__version__} with Clarabel  ",
        f"Instance {args.instance} of benchmarks/mip_hard.py's grid; incumbent from `bnb` in "
        f"{args.limit:g} s (gap {result.gap:.3%}); windows of {args.size} coupled structures, "
        "the rest fixed at the incumbent. Gap = (window optimum - root value) / optimum; a "
        "small negative gap is the SDP solver's inaccuracy.",
        "",
        table.to_markdown(index=False, floatfmt=".3g"),
    ]
    args.out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
