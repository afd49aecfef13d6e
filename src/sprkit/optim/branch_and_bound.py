"""Branch and bound on the perspective relaxation (method `bnb` of ExactSolver).

Works on a ScaledProblem (solver units). A node fixes structures to removed or kept; its bound
is the certificate of its perspective relaxation (sprkit.optim.node_relaxation), computed
warm-started from the parent and stopped as soon as it proves the node can be pruned. Search:
best bound first, with plunges (the child the relaxation rounds to is processed next).
Incumbents: the exact fixed-support fit of each relaxation's support, improved at the root by
local search and, once the search proves hard, by exact re-optimization of windows of coupled
structures (sprkit.optim.window_search). At every node, valid deductions (docs/mip.md)
shrink the subtree: reduced-cost fixing from the certificate's affine minorant, fixing from
quadratic growth, and a smaller M per structure from the growth ellipsoid, which strengthens
the children's bounds (a node's growth needs a factorization of its own: it is skipped, on a
backoff schedule, while the growths keep deducing nothing).

A node is discarded only when its certified bound reaches the pruning level
T = incumbent - tol/2 |incumbent|, so the search proves min(T, open bounds) as lower bound.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sprkit.errors import ParameterError
from sprkit.optim.dense_cost import CHOLESKY, EIGH, affordable
from sprkit.optim.diagonal import DiagonalAscent, StrengthenedForm
from sprkit.optim.local_search import local_search
from sprkit.optim.node_relaxation import (
    FREE,
    KEPT,
    REMOVED,
    Frame,
    NodeBound,
    NodeRelaxation,
    free_shift,
)
from sprkit.optim.presolve import QuadraticGrowth, reduced_cost_fixings
from sprkit.optim.problem import ScaledProblem
from sprkit.optim.result import GAP_FLOOR, SearchProgress
from sprkit.optim.support import SupportProblem, SupportSolution
from sprkit.optim.window_search import window_search

# Branching rules: the most fractional y_j; pseudo-costs (average bound gain per unit of
# y_j moved, learned from the children solved, product score); strong branching near the root
# (both children of the most fractional candidates solved briefly), pseudo-costs below.
Branching = Literal["fractional", "pseudocost", "strong"]
_NODE_ITERATIONS = 3000
_ROOT_ITERATIONS = 5000
_LOOSE_TOL = 1e-4  # a branched node is still solved this far: its D drives the deductions
_STRONG_CANDIDATES = 8
_STRONG_ITERATIONS = 200
_STRONG_DEPTH = 4  # strong branching at depths 0..4, pseudo-costs (seeded by it) below
_GROWTH_CACHE = 16  # node growths kept (one P x P matrix each)
_BACKOFF_LIMIT = 64  # largest interval, in offers, between two new node growths
_USEFUL_TIGHTENING = 0.99  # a node growth is useful if it fixes or cuts an M_j by 1 %
# The root diagonal (optim.diagonal) costs 10-60 root solves: its ascent starts once the search
# has solved this many nodes, so that instances certified in fewer do not pay for it, and runs
# in portions, its time about at most _ASCENT_RATIO times the rest of the search's so far (a
# portion is given the smaller of that allowance and _ASCENT_SHARE of the time left, and ends
# at the first step boundary after it: a step is up to 6 root solves): an instance the tree
# alone would certify soon pays about that ratio at most for it.
_ASCENT_AFTER_NODES = 100
_ASCENT_TOL = 1e-8  # its root solves: the barrier's steps compare values this close
_ASCENT_SHARE = 0.1
_ASCENT_RATIO = 1.0
# A node with at most this many free structures is enumerated where that is cheaper than its
# relaxation (BranchAndBound._enumerates).
ENUMERATE_FREE = 16
# The root is enumerated before any relaxation where its supports' fits are predicted to take
# at most this long (a few structures: a relaxation with no ridge and a huge M can take
# seconds to converge where 64 fits take milliseconds).
_ENUMERATE_ROOT_SECONDS = 0.05
# Rent or buy (BranchAndBound.run): an enumeration of the open nodes predicted from fewer
# than _MEASURED supports enumerated so far is a probe, given _PROBE_SHARE of the search's time,
# and starts as soon as that prediction is within _PROBE_REACH times the search's time (offers
# one at a time predict an enumeration's cost within about 5x, either way).
_MEASURED = 32
_PROBE_SHARE = 0.1
_PROBE_REACH = 5.0
# Window search (optim.window_search) runs once the search has solved this many nodes (the
# grid instances bnb certifies need at most 719), for at most this share of the time left.
_WINDOWS_AFTER_NODES = 1000
_WINDOWS_SHARE = 0.25


def check_branching(branching: object) -> None:
    """ParameterError unless `branching` names a rule (Branching)."""
    if branching not in ("fractional", "pseudocost", "strong"):
        raise ParameterError(
            f"unknown branching rule {branching!r}; known: fractional, pseudocost, strong"
        )


@dataclass(order=True)
class _Node:
    bound: float
    order: int
    state: np.ndarray = field(compare=False)
    M: np.ndarray = field(compare=False)
    warm: np.ndarray = field(compare=False)
    depth: int = field(compare=False, default=0)
    branch: tuple[int, int, float] | None = field(compare=False, default=None)
    offered: int = field(compare=False, default=0)  # supports enumerated (_enumerate's order)

    def supports_left(self) -> float:
        """Supports of the node not enumerated yet (2^free - offered; small nodes only)."""
        return _supports(self.state) - self.offered


def _supports(state: np.ndarray) -> float:
    """Number of supports of a node, 2^(free structures); only called where at most
    ENUMERATE_FREE structures are free."""
    return 2.0 ** np.count_nonzero(state == FREE)


@dataclass(frozen=True)
class SearchOutcome:
    """incumbent: best support found (exact fit, solver units); lower: proven lower bound;
    nodes: node relaxations solved; exhausted: the tree was closed before the deadline."""

    incumbent: SupportSolution
    lower: float
    nodes: int
    exhausted: bool


class _PseudoCosts:
    """Average bound gain per unit change of y_j, per structure and direction."""

    def __init__(self, n_groups: int) -> None:
        self.sums = np.zeros((2, n_groups))
        self.counts = np.zeros((2, n_groups))

    def record(self, j: int, direction: int, gain: float, change: float) -> None:
        self.sums[direction, j] += max(gain, 0.0) / max(change, 1e-6)
        self.counts[direction, j] += 1

    def estimates(self) -> np.ndarray:
        seen = self.counts > 0
        average = np.array(
            [self.sums[d][seen[d]].sum() / max(self.counts[d][seen[d]].sum(), 1) for d in range(2)]
        )
        mean = np.where(seen, self.sums / np.maximum(self.counts, 1), average[:, None])
        return np.where(mean > 0, mean, np.maximum(average[:, None], 1e-12))


class _Backoff:
    """When to compute an optional deduction: after every computation that deduced nothing
    the interval (in offers) doubles, up to _BACKOFF_LIMIT; a useful one resets it. The
    node growths cost an O(P^3) factorization each and, on weak-ridge instances, rarely deduce
    anything (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.interval = 1
        self.wait = 0

    def due(self) -> bool:
        if self.wait > 0:
            self.wait -= 1
            return False
        return True

    def record(self, useful: bool) -> None:
        self.interval = 1 if useful else min(2 * self.interval, _BACKOFF_LIMIT)
        self.wait = self.interval - 1


def _score(down: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The product rule of branching scores (gains of the two children)."""
    return np.maximum(down, 1e-12) * np.maximum(up, 1e-12)


class BranchAndBound:
    """One search per solve; `problem` fixes the data, lambdas and M (solver units)."""

    def __init__(
        self,
        problem: ScaledProblem,
        *,
        branching: Branching = "pseudocost",
        windows: bool = True,
        deadline: float = np.inf,
    ) -> None:
        """`windows`: run the window search on hard instances (off for the windows' own
        searches). `deadline` (time.perf_counter() seconds, the solve's): factorizations of
        the setup (and later of the nodes) predicted to take too much of the time left are
        skipped (optim.dense_cost); each only strengthens the search."""
        check_branching(branching)
        self.problem = problem
        self.branching = branching
        self.windows = windows
        self.deadline = deadline
        self.relaxation = NodeRelaxation(problem, deadline=deadline)
        self.supports = SupportProblem(
            problem.reduced, problem.row_structure, problem.M, lam0=problem.lam0, lam2=problem.lam2
        )
        groups = problem.n_groups
        reduced = problem.reduced
        # Unconstrained fits and their growth: the loss alone (matrix G) and loss + ridge
        # (G + lam2 I); the MIP objective is at least fit minimum + growth (+ lam0 if w_j != 0).
        # Each costs an eigendecomposition of G's size (and a solve).
        size = reduced.gram.shape[0]
        affords_growth = affordable(size, deadline, EIGH * (2 if problem.lam2 > 0 else 1), 0.25)
        self.growth = None
        if affords_growth:
            self.growth = QuadraticGrowth.from_matrix(reduced.gram, problem.row_structure, groups)
        self.fits: list[tuple[QuadraticGrowth, np.ndarray, float]] = []
        matrices = [(self.growth, reduced.gram)]
        if problem.lam2 > 0 and affords_growth:
            hessian = reduced.gram + problem.lam2 * np.eye(reduced.gram.shape[0])
            growth = QuadraticGrowth.from_matrix(hessian, problem.row_structure, groups)
            matrices.append((growth, hessian))
        for growth, matrix in matrices:
            if growth is not None:
                center = np.linalg.solve(matrix, reduced.cross)
                minimum = reduced.const - float(np.sum(center * reduced.cross))
                self.fits.append((growth, center, minimum))
        self.pseudocosts = _PseudoCosts(groups)
        self._growth_cache: OrderedDict[bytes, QuadraticGrowth | None] = OrderedDict()
        self._growth_schedule = _Backoff()
        self.form: StrengthenedForm | None = None  # chosen at the root (optim.diagonal)
        self.incumbent: SupportSolution | None = None
        self.nodes = 0
        self._fit_seconds, self._fits = 0.0, 0
        self._down_seconds, self._downs = 0.0, 0  # offers turned down without a solve
        self._enumerated_seconds, self._enumerated = 0.0, 0  # offers made by _enumerate

    # -- incumbents ---------------------------------------------------------------------------

    def _offer(self, support: np.ndarray) -> SupportSolution | None:
        """Offer a support as incumbent; returns its solution (None if turned down without a
        solve: its box-free fit reaches the incumbent). Times the offers (_enumerates,
        _support_seconds)."""
        start = time.perf_counter()
        if self.incumbent is None:
            solution = self.incumbent = self.supports.solve(support)
        else:
            solution = self.supports.improving(support, self.incumbent.value)
            if solution is not None and solution.value < self.incumbent.value:
                self.incumbent = solution
        seconds = time.perf_counter() - start
        self._fit_seconds += seconds
        self._fits += 1
        if solution is None:
            self._down_seconds += seconds
            self._downs += 1
        return solution

    def _support_seconds(self) -> float:
        """Predicted seconds per support of an enumeration: the mean of the enumerations so
        far once they offered _MEASURED supports; before, that of the offers turned down
        (most supports are, once the incumbent is good), or of all offers before 16 were."""
        if self._enumerated >= _MEASURED:
            return self._enumerated_seconds / self._enumerated
        if self._downs >= 16:
            return self._down_seconds / self._downs
        return self._fit_seconds / max(self._fits, 1)

    def _enumerates(self, state: np.ndarray, node_seconds: float) -> bool:
        """Whether the node's subtree is cheaper to enumerate than to branch: at most
        ENUMERATE_FREE free structures, and 2^free fits (at the mean fit time so far) cost
        no more than the node's relaxation did (slow relaxations: no ridge and fewer
        samples than rows, columns in very different units)."""
        free = np.count_nonzero(state == FREE)
        return free <= ENUMERATE_FREE and self._enumeration_seconds(state) <= node_seconds

    def _enumeration_seconds(self, state: np.ndarray) -> float:
        """Predicted seconds to enumerate the node's supports (at most ENUMERATE_FREE free
        structures): 2^free times the mean time of the offers so far."""
        return _supports(state) * self._fit_seconds / max(self._fits, 1)

    def _enumerate_root(
        self, state: np.ndarray, deadline: float, progress: SearchProgress | None
    ) -> bool:
        """Enumerate the root's supports (_enumerate); True when all were offered, so that
        each one's value is at least the incumbent's and the search is over."""
        if progress is not None:  # the root, open, before its supports are enumerated
            progress(self.nodes, 1, 0.0, self.incumbent.value)
        return self._enumerate(state, deadline) == _supports(state)

    def _enumerate_open(self, nodes: list[_Node], tol: float, deadline: float) -> list[_Node]:
        """Enumerate the open `nodes` (at most ENUMERATE_FREE free structures each), those
        with the fewest supports left first, each from where an earlier enumeration of it
        stopped; those whose bound reaches the pruning level are closed without. Returns
        the nodes left open (at the deadline, or a fit cut short there)."""
        left: list[_Node] = []
        for node in sorted(nodes, key=lambda node: (node.supports_left(), node.bound)):
            if not left and node.bound >= self._level(tol):
                continue
            if not left:
                node.offered = self._enumerate(node.state, deadline, node.offered)
                if node.supports_left() == 0:
                    continue
            left.append(node)
        return left

    def _enumerate(self, state: np.ndarray, deadline: float, done: int = 0) -> int:
        """Offer the supports of the node (its kept structures, any subset of its free
        ones), in the order of a binary counter over the free ones, from the `done`-th;
        returns how many of them have been offered, stopping at the deadline or at a fit cut
        short there. All 2^free close the node: each support's value is then at least the
        incumbent (solved exactly, or turned down by its box-free fit, a lower bound on it;
        the incumbent only decreases)."""
        start = time.perf_counter()
        free = np.flatnonzero(state == FREE)
        choices = (np.arange(done, 2**free.size)[:, None] >> np.arange(free.size)) & 1
        support = state == KEPT
        offered = done
        for choice in choices.astype(bool):
            if (offered - done) % 64 == 0 and time.perf_counter() >= deadline:
                break
            support[free] = choice
            solution = self._offer(support.copy())
            if solution is not None and not solution.exact:
                break
            offered += 1
        self._enumerated_seconds += time.perf_counter() - start
        self._enumerated += offered - done
        return offered

    def _search_windows(self, tol: float, deadline: float) -> None:
        """Improve the incumbent by window search within _WINDOWS_SHARE of the time left."""
        now = time.perf_counter()
        until = now + _WINDOWS_SHARE * (deadline - now) if np.isfinite(deadline) else deadline

        def solve_window(local: ScaledProblem, window_deadline: float) -> np.ndarray:
            search = BranchAndBound(
                local, branching=self.branching, windows=False, deadline=window_deadline
            )
            return search.run(tol=tol, deadline=window_deadline).incumbent.support

        self.incumbent = window_search(
            self.problem, self.supports, self.incumbent, solve_window, deadline=until
        )

    def _level(self, tol: float) -> float:
        """Pruning level T: nodes certified at or above it cannot improve by more than tol/2
        (relative to the incumbent, floored at GAP_FLOOR: a zero optimum can be certified)."""
        value = self.incumbent.value
        return value - 0.5 * tol * max(abs(value), GAP_FLOOR)

    # -- deductions ---------------------------------------------------------------------------

    def _shift(self, state: np.ndarray) -> np.ndarray:
        """The shifts of the node's strengthened relaxation, per row (node_relaxation.
        free_shift, on top of the root's form once it is chosen, in its frame)."""
        problem = self.problem
        if self.form is None:
            return free_shift(
                problem.reduced.gram, problem.row_structure, state, deadline=self.deadline
            )
        gram = self.form.gram(problem)
        return free_shift(gram, problem.row_structure, state, self.form.base, self.deadline)

    @property
    def _frame(self) -> Frame | None:
        return None if self.form is None else self.form.frame

    def _deduce(
        self, state: np.ndarray, M: np.ndarray, bound: NodeBound, level: float, shift: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Fixings and tightened M valid for every point of the node below `level` (`bound`
        certified with the form `shift`); None if no such point exists."""
        radius = level - bound.lower
        if radius <= 0:
            return None
        state = state.copy()
        free = state == FREE
        remove, keep = reduced_cost_fixings(bound.slopes, free, radius)
        growth, rows, fresh = self._node_growth(state)
        if growth is not None:
            # the growth's matrix is G: it needs the certificate of the form with Gram G
            if np.any(shift > 0):
                radius = level - self.relaxation.certificate(state, M, bound.W_dual)[0]
            if radius <= 0:
                return None
            center = bound.W_dual[rows]
            forced = free & growth.forced_kept(center, radius)
            tightened = growth.tightened(M, center, radius)
            useful = np.any(forced & ~keep) or np.any(tightened < _USEFUL_TIGHTENING * M)
            if fresh or useful:  # a cached or full-row growth cost nothing: it only resets
                self._growth_schedule.record(bool(useful))
            keep |= forced
            M = tightened
        if np.any(remove & keep):
            return None
        state[remove] = REMOVED
        state[keep] = KEPT
        return state, M

    def _node_growth(self, state: np.ndarray) -> tuple[QuadraticGrowth | None, np.ndarray, bool]:
        """(growth, rows, fresh): growth of the Gram matrix restricted to the rows of the
        structures not removed (better conditioned than the whole, so the ellipsoid is
        smaller); fresh if it was factored for this call. It depends on the removed set only,
        which a plunge's kept children share with their parent: the last few are cached. New
        factorizations follow the backoff schedule (None when skipped)."""
        problem = self.problem
        rows = np.flatnonzero(state[problem.row_structure] != REMOVED)
        if self.growth is None or rows.size == problem.row_structure.size:
            return self.growth, np.arange(problem.row_structure.size), False
        key = np.packbits(state == REMOVED).tobytes()
        fresh = key not in self._growth_cache
        if not fresh:
            self._growth_cache.move_to_end(key)
        elif not affordable(rows.size, self.deadline, 3 * CHOLESKY, 0.25):
            return None, rows, False  # a Cholesky factor and its inverse: too slow here
        elif not self._growth_schedule.due():
            return None, rows, False
        else:
            self._growth_cache[key] = QuadraticGrowth.from_matrix(
                problem.reduced.gram[np.ix_(rows, rows)],
                problem.row_structure[rows],
                problem.n_groups,
                known_definite=True,
            )
            if len(self._growth_cache) > _GROWTH_CACHE:
                self._growth_cache.popitem(last=False)
        return self._growth_cache[key], rows, fresh

    def _presolve(self, state: np.ndarray, M: np.ndarray, level: float):
        """Deductions from the unconstrained fits' growth, before any relaxation is solved."""
        state = state.copy()
        for growth, center, minimum in self.fits:
            M = growth.tightened(M, center, level - minimum - self.problem.lam0)
            keep = (state == FREE) & growth.forced_kept(center, level - minimum)
            state[keep] = KEPT
        return state, M

    # -- branching ----------------------------------------------------------------------------

    def _choose(self, node: _Node, bound: NodeBound, state, M, tol, deadline) -> int:
        free = np.flatnonzero(state == FREE)
        y = bound.y[free]
        fractional = np.minimum(y, 1.0 - y)
        if self.branching == "fractional" or np.all(fractional <= 0):
            return int(free[np.argmax(fractional)])
        if self.branching == "strong" and node.depth <= _STRONG_DEPTH:
            return self._strong(
                free[np.argsort(-fractional)[:_STRONG_CANDIDATES]], bound, state, M, tol, deadline
            )
        costs = self.pseudocosts.estimates()
        return int(free[np.argmax(_score(costs[0, free] * y, costs[1, free] * (1.0 - y)))])

    def _strong(self, candidates, bound: NodeBound, state, M, tol, deadline) -> int:
        """The candidate whose two children (solved briefly) raise the bound most (product)."""
        level = self._level(tol)
        best, best_score = int(candidates[0]), -np.inf
        for j in candidates:
            gains = []
            for direction, fix in ((0, REMOVED), (1, KEPT)):
                child = state.copy()
                child[j] = fix
                probe = self.relaxation.solve(
                    child,
                    M,
                    bound.W,
                    prune_at=level,
                    tol=tol,
                    loose_tol=_LOOSE_TOL,
                    max_iter=_STRONG_ITERATIONS,
                    deadline=deadline,
                    shift=self._shift(child),
                    frame=self._frame,
                )
                gain = probe.lower - bound.lower
                change = bound.y[j] if direction == 0 else 1.0 - bound.y[j]
                self.pseudocosts.record(int(j), direction, gain, change)
                gains.append(gain)
            score = float(_score(np.array(gains[0]), np.array(gains[1])))
            if score > best_score:
                best, best_score = int(j), score
        return best

    # -- search -------------------------------------------------------------------------------

    def _root_rounds(self, state, M, shift, root: NodeBound, root_lower: float, tol, deadline):
        """Root presolve: deduce, re-solve with the smaller M, until the bound stops moving;
        returns (state, M, shift, root, best root bound)."""
        for _ in range(8):
            level = self._level(tol)
            if root.lower >= level or time.perf_counter() >= deadline:
                break
            deduced = self._deduce(state, M, root, level, shift)
            if deduced is None:
                break
            new_state, new_M = deduced
            if np.array_equal(new_state, state) and np.allclose(new_M, M, rtol=1e-3):
                break
            state, M = new_state, new_M
            shift = self._shift(state)
            root = self.relaxation.solve(
                state,
                M,
                root.W,
                tol=tol * 0.01,
                max_iter=_ROOT_ITERATIONS,
                deadline=deadline,
                shift=shift,
            )
            self.nodes += 1
            root_lower = max(root_lower, root.lower)
            self._offer(root.nonzero | (state == KEPT))
        return state, M, shift, root, root_lower

    def _ascend(self, ascent: DiagonalAscent, allowance: float, state, tol, deadline) -> bool:
        """Advance the root diagonal's ascent (from the root `state`) by a portion of
        `allowance` seconds, at most _ASCENT_SHARE of the time left (the portion ends at the
        first step boundary after it); where it found a better form, the tree takes it for
        the nodes to come. Returns whether the root bound rose."""
        now = time.perf_counter()
        budget = min(allowance, _ASCENT_SHARE * (deadline - now))
        before = ascent.best.lower
        ascent.advance(level=self._level(tol), until=now + budget, deadline=deadline)
        if ascent.best_form is None or not ascent.best.lower > before:
            return False
        self.form = ascent.best_form
        self._offer(ascent.best.nonzero | (state == KEPT))
        return True

    def run(
        self, *, tol: float, deadline: float, progress: SearchProgress | None = None
    ) -> SearchOutcome:
        """Search to relative gap tol/2 below the incumbent, or until `deadline`
        (time.perf_counter() seconds); `progress` is called once the root is solved and
        before every node (where the root is enumerated, once before that)."""
        problem = self.problem
        self.supports.deadline = self.deadline = deadline
        search_start = time.perf_counter()
        groups = problem.n_groups
        state = np.full(groups, FREE, dtype=np.int8)
        M = problem.M.copy()
        warm = np.zeros_like(problem.reduced.cross)
        self._offer(np.zeros(groups, dtype=bool))
        self._offer(np.ones(groups, dtype=bool))
        few = groups <= ENUMERATE_FREE
        if few and self._enumeration_seconds(state) <= _ENUMERATE_ROOT_SECONDS:
            if self._enumerate_root(state, deadline, progress):
                lower = min(self._level(tol), self.incumbent.value)
                return SearchOutcome(self.incumbent, lower, 0, True)
        state, M = self._presolve(state, M, self._level(tol))
        shift = self._shift(state)
        root_start = time.perf_counter()
        # with few free structures, the root relaxation races their enumeration: it gets the
        # time the enumeration is predicted to take, and where it used it the enumeration
        # follows, for at most as long as the search has taken so far
        race = np.count_nonzero(state == FREE) <= ENUMERATE_FREE
        root_deadline = deadline
        if race:
            root_deadline = min(deadline, root_start + self._enumeration_seconds(state))
        root = self.relaxation.solve(
            state,
            M,
            warm,
            tol=tol * 0.01,
            max_iter=_ROOT_ITERATIONS,
            deadline=root_deadline,
            shift=shift,
        )
        root_seconds = time.perf_counter() - root_start
        self.nodes = 1
        now = time.perf_counter()
        if race and root_deadline < deadline and now >= root_deadline:
            until = min(deadline, 2.0 * now - search_start)
            if self._enumerate_root(state, until, progress):
                lower = min(self._level(tol), self.incumbent.value)
                return SearchOutcome(self.incumbent, lower, 1, True)
        self._offer(root.nonzero | (state == KEPT))
        self._offer((root.y >= 0.5) | (state == KEPT))
        if progress is not None:  # before the local search, which can take a while
            progress(self.nodes, 1, min(root.lower, self._level(tol)), self.incumbent.value)
        self.incumbent = local_search(self.supports, self.incumbent, deadline)
        state, M, shift, root, root_lower = self._root_rounds(
            state, M, shift, root, root.lower, tol, deadline
        )
        root_state, root_M = state, M
        counter = itertools.count()
        heap: list[_Node] = [_Node(root_lower, next(counter), state, M, root.W, 0)]
        # With at most ENUMERATE_FREE free structures at the root every open node can be
        # enumerated: once the search has spent as long as enumerating all the open nodes
        # (`pending` supports) is predicted to take, it enumerates them instead, for at most
        # as long again (rent or buy); where that was too short, the search resumes and tries
        # again after twice its time. Until enumerations have measured their cost per support,
        # an enumeration is a probe (_PROBE_SHARE of that time, started within _PROBE_REACH),
        # and the rule is checked again with the cost it measured once the search's time has
        # grown by that share.
        small = np.count_nonzero(state == FREE) <= ENUMERATE_FREE
        pending = _supports(state) if small else np.inf
        enumeration_seconds, retry_after = 0.0, 0.0
        first, first_shift = root, shift
        ascent: DiagonalAscent | None = None
        ascent_seconds = 0.0
        searched_windows = not self.windows
        unfitted = False
        while heap and not unfitted and time.perf_counter() < deadline:
            if not searched_windows and self.nodes >= _WINDOWS_AFTER_NODES:
                searched_windows = True
                self._search_windows(tol, deadline)
            if self.nodes >= _ASCENT_AFTER_NODES and not (ascent and ascent.finished):
                if ascent is None:
                    ascent = DiagonalAscent(
                        self.relaxation,
                        root_state,
                        root_M,
                        root,
                        tol=_ASCENT_TOL,
                        max_iter=_ROOT_ITERATIONS,
                        deadline=deadline,
                    )
                now = time.perf_counter()
                searched = now - search_start - ascent_seconds
                # a portion is worth starting when it has room for a root solve (as long as
                # the ascent's own solves took on average, or the first root's)
                solve_seconds = ascent_seconds / ascent.solves if ascent.solves else root_seconds
                allowance = _ASCENT_RATIO * searched - ascent_seconds
                if allowance >= solve_seconds:
                    rose = self._ascend(ascent, allowance, root_state, tol, deadline)
                    ascent_seconds += time.perf_counter() - now
                    if rose:  # the root bound is a bound on every node of the tree
                        for node in heap:
                            node.bound = max(node.bound, ascent.best.lower)
                        heapq.heapify(heap)  # equal raised bounds reorder by insertion
            node = heapq.heappop(heap)
            if small:
                pending -= node.supports_left()
            while node is not None:
                now = time.perf_counter()
                if now >= deadline:
                    heapq.heappush(heap, node)
                    break
                # rent or buy (below the heap's creation)
                tree_seconds = now - search_start - enumeration_seconds
                probe = self._enumerated < _MEASURED
                reach = (_PROBE_REACH if probe else 1.0) * tree_seconds
                if (
                    small
                    and tree_seconds >= retry_after
                    and (pending + node.supports_left()) * self._support_seconds() <= reach
                ):
                    if progress is not None:
                        open_bound = min(node.bound, heap[0].bound if heap else np.inf)
                        lower = min(open_bound, self._level(tol))
                        progress(self.nodes, len(heap) + 1, lower, self.incumbent.value)
                    until = min(deadline, now + (_PROBE_SHARE if probe else 1.0) * tree_seconds)
                    heap[:] = self._enumerate_open([node, *heap], tol, until)
                    heapq.heapify(heap)
                    pending = sum(open_node.supports_left() for open_node in heap)
                    enumeration_seconds += time.perf_counter() - now
                    # the search goes on in between (nodes left open are popped again)
                    retry_after = (1.0 + _PROBE_SHARE if probe else 2.0) * tree_seconds
                    break
                level = self._level(tol)
                if progress is not None:
                    open_bound = heap[0].bound if heap else np.inf
                    lower = min(open_bound, node.bound, level)
                    progress(self.nodes, len(heap) + 1, lower, self.incumbent.value)
                if node.bound >= level:
                    break
                node_start = time.perf_counter()
                if first is not None:
                    bound, shift, first = first, first_shift, None
                    node_start -= root_seconds
                else:
                    shift = self._shift(node.state)
                    bound = self.relaxation.solve(
                        node.state,
                        node.M,
                        node.warm,
                        prune_at=level,
                        tol=tol * 0.01,
                        loose_tol=_LOOSE_TOL,
                        max_iter=_NODE_ITERATIONS,
                        deadline=deadline,
                        shift=shift,
                        frame=self._frame,
                    )
                    self.nodes += 1
                    if time.perf_counter() >= deadline and bound.lower < level:
                        node.bound = max(node.bound, bound.lower)
                        heapq.heappush(heap, node)
                        break
                if node.branch is not None:
                    j, direction, change = node.branch
                    self.pseudocosts.record(j, direction, bound.lower - node.bound, change)
                node.bound = max(node.bound, bound.lower)
                if node.bound >= level:
                    break
                self._offer(bound.nonzero | (node.state == KEPT))
                level = self._level(tol)
                deduced = self._deduce(node.state, node.M, bound, level, shift)
                if deduced is None:
                    break
                state, M = deduced
                if not np.any(state == FREE):
                    leaf = self._offer(state == KEPT)
                    if leaf is not None and not leaf.exact:
                        # its fit was cut short, or would overrun the deadline: the search
                        # cannot close this node in the time left (and would pop it again)
                        heapq.heappush(heap, node)
                        unfitted = True
                    break
                node_seconds = time.perf_counter() - node_start
                if self._enumerates(state, node_seconds):
                    if self._enumerate(state, deadline) == _supports(state):
                        break
                j = self._choose(node, bound, state, M, tol, deadline)
                children = []
                for direction, fix in enumerate((REMOVED, KEPT)):
                    child_state = state.copy()
                    child_state[j] = fix
                    change = bound.y[j] if fix == REMOVED else 1.0 - bound.y[j]
                    children.append(
                        _Node(
                            node.bound,
                            next(counter),
                            child_state,
                            M,
                            bound.W,
                            node.depth + 1,
                            (j, direction, float(change)),
                        )
                    )
                dive = 1 if bound.y[j] >= 0.5 else 0
                heapq.heappush(heap, children[1 - dive])
                if small:
                    pending += _supports(children[1 - dive].state)
                node = children[dive]
        level = self._level(tol)
        open_bound = min((n.bound for n in heap), default=np.inf)
        lower = min(open_bound, level)
        return SearchOutcome(
            incumbent=self.incumbent,
            lower=min(lower, self.incumbent.value),
            nodes=self.nodes,
            exhausted=not heap,
        )
