"""Benchmark: which shift of the loss's curvature strengthens the root bound (docs/mip.md).

The strengthened relaxations move a PSD part E of the Gram matrix G into the penalty: with
G - E positive semidefinite and E block diagonal over blocks b of structures, the
relaxation in which every block is replaced by the convex hull of its own indicator set,

    min  <W, (G - E) W> - 2 <W, B> + const
         + sum_b sum_{S subset of b, S nonempty} [ <W^S, (E_SS + lam2 I) W^S> / l_S + lam0 |S| l_S ]
    s.t. W_b = sum_S W^S,  sum_{S in b} l_S <= 1,  l >= 0,  |W^S| <= M l_S,

is a lower bound on the MIP (disjunctive form; one structure per block and E = d_j I is the
perspective relaxation with sprkit's diagonal). Its value is concave in E; at a minimizer,
-W_b W_b' + sum_S W^S W^S' / l_S is a supergradient in E_b (Danskin). Five rules for E, each
climbed from the scalar shift lambda_min(G) by the same ascent as sprkit.optim.diagonal
(--steps steps of geometrically decreasing size, each pulled back into the PSD cone by clipping
E_b's eigenvalues at -lam2 / 2 and a uniform decrease), the best E met kept:

- "scalar": E = lambda_min(G) I, no ascent;
- "diagonal": d_j I per structure (sprkit's root diagonal);
- "row diagonal": one value per row;
- "structure matrix": a full matrix on each structure's own rows;
- "pairs": a full matrix on pairs of structures matched greedily by the normalized Frobenius
  norm of their block of G (adjacent features under an AR(1) design).

Relaxations solved by cvxpy with Clarabel. Gap = (incumbent - bound) / incumbent, the
incumbent being `bnb`'s after --limit seconds. Writes docs/benchmarks/block_bounds.{md,csv}.

    .venv/bin/python benchmarks/block_bounds.py [--instances 24 21 23] [--steps 20]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import cvxpy as cp
import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from mip_hard import grid, make_case  # noqa: E402

from sprkit.optim.mip import ExactSolver  # noqa: E402
from sprkit.optim.problem import ScaledProblem  # noqa: E402

RULES = ("scalar", "diagonal", "row diagonal", "structure matrix", "pairs")
_FIRST_STEP, _DECAY = 2.0, 0.8  # as sprkit.optim.diagonal


class BlockRelaxation:
    """The relaxation above for one partition of the structures into blocks."""

    def __init__(self, problem: ScaledProblem, blocks: list[list[int]]) -> None:
        self.problem = problem
        structure = problem.row_structure
        rows_of = [np.flatnonzero(structure == j) for j in range(problem.n_groups)]
        self.block_rows = [np.concatenate([rows_of[j] for j in block]) for block in blocks]
        # one entry per nonempty subset S of a block: (block, S's rows within the block, |S|)
        self.subsets = []
        for b, block in enumerate(blocks):
            local = [np.flatnonzero(np.isin(self.block_rows[b], rows_of[j])) for j in block]
            for size in range(1, len(block) + 1):
                for chosen in itertools.combinations(range(len(block)), size):
                    self.subsets.append((b, np.concatenate([local[k] for k in chosen]), size))

    def solve(self, E: list[np.ndarray]) -> float:
        """The relaxation's value for the blocks' matrices E (G - E PSD); keeps its point."""
        problem = self.problem
        gram, cross = problem.reduced.gram, problem.reduced.cross
        d, outputs = cross.shape
        E_full = scipy.linalg.block_diag(*E)
        order = np.concatenate(self.block_rows)
        shifted = gram.copy()
        shifted[np.ix_(order, order)] -= E_full
        values, vectors = np.linalg.eigh(shifted)
        root = (vectors * np.sqrt(np.maximum(values, 0.0))).T
        parts = [cp.Variable((len(rows), outputs)) for _, rows, _ in self.subsets]
        share = cp.Variable(len(self.subsets), nonneg=True)
        cost = cp.Variable(len(self.subsets))
        W = 0
        constraints = []
        per_block: dict[int, list[int]] = {}
        for k, (b, rows, _) in enumerate(self.subsets):
            per_block.setdefault(b, []).append(k)
            global_rows = self.block_rows[b][rows]
            embed = scipy.sparse.csr_matrix(
                (np.ones(len(rows)), (global_rows, np.arange(len(rows)))), shape=(d, len(rows))
            )
            W = W + embed @ parts[k]
            curvature = E[b][np.ix_(rows, rows)] + problem.lam2 * np.eye(len(rows))
            factor = np.linalg.cholesky(curvature).T
            constraints.append(cp.quad_over_lin(factor @ parts[k], share[k]) <= cost[k])
            M_rows = problem.M[problem.row_structure[global_rows]]
            constraints.append(cp.abs(parts[k]) <= np.outer(M_rows, np.ones(outputs)) * share[k])
        constraints += [cp.sum(share[members]) <= 1 for members in per_block.values()]
        sizes = np.array([size for _, _, size in self.subsets], dtype=float)
        objective = (
            cp.sum_squares(root @ W)
            - 2 * cp.sum(cp.multiply(W, cross))
            + problem.reduced.const
            + cp.sum(cost)
            + problem.lam0 * (sizes @ share)
        )
        relaxation = cp.Problem(cp.Minimize(objective), constraints)
        relaxation.solve(solver=cp.CLARABEL)
        self._parts = [part.value for part in parts]
        self._share = share.value
        self._W = W.value
        return float(relaxation.value)

    def supergradient(self) -> list[np.ndarray]:
        """-W_b W_b' + sum_S W^S W^S' / l_S per block, at the last point solved."""
        result = [-self._W[rows] @ self._W[rows].T for rows in self.block_rows]
        for k, (b, rows, _) in enumerate(self.subsets):
            if self._share[k] > 1e-10:
                part = self._parts[k]
                result[b][np.ix_(rows, rows)] += part @ part.T / self._share[k]
        return [(g + g.T) / 2 for g in result]


def pair_blocks(problem: ScaledProblem) -> list[list[int]]:
    """Structures matched greedily by |G_jk|_F / sqrt(|G_jj|_F |G_kk|_F); unmatched alone."""
    gram, structure, n = problem.reduced.gram, problem.row_structure, problem.n_groups
    rows_of = [np.flatnonzero(structure == j) for j in range(n)]
    own = np.array([np.linalg.norm(gram[np.ix_(r, r)]) for r in rows_of])
    coupling = np.zeros((n, n))
    for a, b in itertools.combinations(range(n), 2):
        block = gram[np.ix_(rows_of[a], rows_of[b])]
        coupling[a, b] = np.linalg.norm(block) / np.sqrt(own[a] * own[b])
    free, blocks = set(range(n)), []
    for flat in np.argsort(-coupling, axis=None):
        a, b = np.unravel_index(flat, coupling.shape)
        if a < b and a in free and b in free:
            blocks.append([int(a), int(b)])
            free -= {a, b}
    return blocks + [[j] for j in sorted(free)]


def project(gradient: list[np.ndarray], rule: str) -> list[np.ndarray]:
    """The supergradient restricted to the rule's form of E."""
    if rule in ("structure matrix", "pairs"):
        return gradient
    if rule == "row diagonal":
        return [np.diag(np.diag(g)) for g in gradient]
    # diagonal: one value per structure (blocks hold one structure each)
    return [np.mean(np.diag(g)) * np.eye(len(g)) for g in gradient]


def pull_back(gram: np.ndarray, relaxation: BlockRelaxation, E: list, lam2: float) -> list:
    """E with each block's eigenvalues clipped at -lam2 / 2, decreased uniformly until G - E is
    PSD (twice the violation per try)."""
    order = np.concatenate(relaxation.block_rows)
    for _ in range(30):
        clipped = []
        for block in E:
            values, vectors = np.linalg.eigh(block)
            clipped.append((vectors * np.maximum(values, -lam2 / 2)) @ vectors.T)
        shifted = gram[np.ix_(order, order)] - scipy.linalg.block_diag(*clipped)
        smallest = np.linalg.eigvalsh(shifted)[0]
        if smallest >= 0:
            return clipped
        E = [block + 2 * smallest * np.eye(len(block)) for block in clipped]
    raise RuntimeError("the pull-back did not reach the PSD cone")


def climb(problem: ScaledProblem, rule: str, steps: int) -> tuple[float, float]:
    """(best bound, seconds) of `rule`'s ascent from the scalar shift."""
    start = time.perf_counter()
    gram = problem.reduced.gram
    blocks = pair_blocks(problem) if rule == "pairs" else [[j] for j in range(problem.n_groups)]
    relaxation = BlockRelaxation(problem, blocks)
    scale = float(np.linalg.eigvalsh(gram)[0]) * (1 - 1e-7)
    E = [scale * np.eye(len(rows)) for rows in relaxation.block_rows]
    best = relaxation.solve(E)
    if rule != "scalar":
        current = E
        for step in range(steps):
            gradient = project(relaxation.supergradient(), rule)
            top = max(np.linalg.eigvalsh(g)[-1] for g in gradient)
            if top <= 0:
                break
            size = _FIRST_STEP * scale * _DECAY**step
            current = pull_back(
                gram,
                relaxation,
                [block + size * g / top for block, g in zip(current, gradient, strict=True)],
                problem.lam2,
            )
            best = max(best, relaxation.solve(current))
    return best, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[24, 21, 23])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--limit", type=float, default=60.0, help="bnb seconds (incumbent)")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/block_bounds"))
    args = parser.parse_args()
    specs = grid([20, 30, 50, 100, 200], 5, 2026)
    rows = []
    with threadpool_limits(1):
        for index in args.instances:
            case = make_case(specs[index])
            solver = ExactSolver(case.instance, case.M)
            result = solver.solve(case.lam0, case.lam2, method="bnb", time_limit=args.limit)
            problem = solver.scaled_problem(case.lam0, case.lam2)
            incumbent = result.objective / problem.f_scale
            for rule in args.rules:
                bound, seconds = climb(problem, rule, args.steps)
                rows.append(
                    {
                        "instance": index,
                        "rows_per_structure": int(np.bincount(problem.row_structure).max()),
                        "outputs": problem.reduced.cross.shape[1],
                        "rule": rule,
                        "bound": bound,
                        "gap": (incumbent - bound) / incumbent,
                        "seconds": seconds,
                    }
                )
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    command = " ".join(["python", "benchmarks/block_bounds.py", *sys.argv[1:]])
    args.out.with_suffix(".md").write_text(
        "# Root bounds of shifts of the curvature\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {platform.machine()}, cvxpy {cp.__version__} with Clarabel, one thread  \n"
        f"Instances of benchmarks/mip_hard.py's grid; incumbent from `bnb` in {args.limit:g} s; "
        "gap = (incumbent - root bound) / incumbent; every rule climbed for "
        f"{args.steps} supergradient steps from the scalar shift (benchmark's docstring).\n\n"
        + table.to_markdown(index=False, floatfmt=".4g")
        + "\n"
    )


if __name__ == "__main__":
    main()
