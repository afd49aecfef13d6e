"""Incumbent improvement by local search over supports: add, drop and swap one structure.

Moves are ranked by their exact effect on the ridge fit without the box (block Schur
complements of H = G + lam2 I on the current support), then verified by the exact
fixed-support solve (box included) of sprkit.optim.support; the first verified improvement is
taken and the search repeats until no ranked move improves.
"""

from __future__ import annotations

import time

import numpy as np

from sprkit.optim.dense_cost import LEAST_SQUARES, affordable
from sprkit.optim.support import SupportProblem, SupportSolution

_VERIFIED_PER_ROUND = 8


def _block_quadratic(matrix_rows: np.ndarray, vectors: np.ndarray, blocks: list[np.ndarray]):
    """sum over columns of v_b' inv(B_b) v_b for each block b (B_b: square blocks of rows)."""
    values = np.empty(len(blocks))
    for position, (block, rows) in enumerate(zip(matrix_rows, blocks, strict=True)):
        solved = np.linalg.lstsq(block, vectors[rows], rcond=None)[0]
        values[position] = float(np.sum(vectors[rows] * solved))
    return values


def ranked_moves(supports: SupportProblem, current: SupportSolution) -> list[np.ndarray]:
    """Candidate supports (one add, one drop, or a swap) with positive estimated gain, best
    first. The estimate is exact for the ridge fit when the box does not bind."""
    reduced, lam0, lam2 = supports.reduced, supports.lam0, supports.lam2
    row_structure = supports.row_structure
    support = current.support
    kept_rows = np.flatnonzero(support[row_structure])
    out_rows = np.flatnonzero(~support[row_structure])
    kept_groups = np.flatnonzero(support)
    out_groups = np.flatnonzero(~support)
    gains: dict[tuple[int, int], float] = {}
    drop_gain = np.zeros(0)
    add_gain = np.zeros(0)
    if kept_rows.size:
        hessian = reduced.gram[np.ix_(kept_rows, kept_rows)] + lam2 * np.eye(kept_rows.size)
        inverse = np.linalg.pinv(hessian, hermitian=True)
        position = {row: k for k, row in enumerate(kept_rows)}
        blocks = [
            np.array([position[r] for r in np.flatnonzero(row_structure == j)]) for j in kept_groups
        ]
        inverse_blocks = [inverse[np.ix_(b, b)] for b in blocks]
        W_S = current.W_P[kept_rows]
        drop_gain = lam0 - _block_quadratic(inverse_blocks, W_S, blocks)
    if out_rows.size:
        gradient = 2.0 * (reduced.gram[out_rows] @ current.W_P - reduced.cross[out_rows])
        if kept_rows.size:
            coupling = reduced.gram[np.ix_(out_rows, kept_rows)]
            projected = coupling @ inverse
        position_out = {row: k for k, row in enumerate(out_rows)}
        blocks_out = [
            np.array([position_out[r] for r in np.flatnonzero(row_structure == j)])
            for j in out_groups
        ]
        schur_blocks = []
        for b in blocks_out:
            block = reduced.gram[np.ix_(out_rows[b], out_rows[b])] + lam2 * np.eye(b.size)
            if kept_rows.size:
                block = block - projected[b] @ coupling[b].T
            schur_blocks.append(block)
        add_gain = 0.25 * _block_quadratic(schur_blocks, gradient, blocks_out) - lam0
    for j, gain in zip(kept_groups, drop_gain, strict=True):
        if gain > 0:
            gains[(int(j), -1)] = gain
    for a, gain in zip(out_groups, add_gain, strict=True):
        if gain > 0:
            gains[(-1, int(a))] = gain
    if drop_gain.size and add_gain.size:
        top_drops = kept_groups[np.argsort(-drop_gain)[:_VERIFIED_PER_ROUND]]
        top_adds = out_groups[np.argsort(-add_gain)[:_VERIFIED_PER_ROUND]]
        drop_of = dict(zip(kept_groups.tolist(), drop_gain, strict=True))
        add_of = dict(zip(out_groups.tolist(), add_gain, strict=True))
        for j in top_drops:
            for a in top_adds:
                estimate = drop_of[int(j)] + add_of[int(a)]
                if estimate > 0:
                    gains[(int(j), int(a))] = estimate
    moves = []
    for (drop, add), _ in sorted(gains.items(), key=lambda item: -item[1]):
        candidate = support.copy()
        if drop >= 0:
            candidate[drop] = False
        if add >= 0:
            candidate[add] = True
        moves.append(candidate)
    return moves


def local_search(
    supports: SupportProblem, start: SupportSolution, deadline: float = np.inf
) -> SupportSolution:
    """Best support reachable from `start` by improving single moves (verified exactly)."""
    best = start
    # ranking the moves costs a pseudo-inverse of the kept rows' block
    while time.perf_counter() < deadline and affordable(
        int(np.count_nonzero(best.support[supports.row_structure])), deadline, LEAST_SQUARES, 0.5
    ):
        improved = False
        for candidate in ranked_moves(supports, best)[:_VERIFIED_PER_ROUND]:
            target = best.value - 1e-12 * abs(best.value)
            solution = supports.improving(candidate, target)
            if solution is not None and solution.value < target:
                best, improved = solution, True
                break
            if time.perf_counter() >= deadline:
                break
        if not improved:
            break
    return best
