"""The exact Bayes-optimal policy of ProxyAlignment-v0, by backward induction over the exact belief state.

What the organization knows at any decision point is the Bayesian filter's posterior
(docs/model.md, "The Bayesian filter"): per idea, a weight ``W_i`` over the support of its
base rate, and, while a run is under way, the joint ``J(v, s)`` over that run's idea's
base rate and latent state, together with the run's anti-training counts. The solver
plans over exactly that object, and every number it uses comes from the arrays of
:class:`proxygym.envs.dynamics.Dynamics` through the filter's own update functions
(:func:`proxygym.envs.belief.start_joint`, :func:`~proxygym.envs.belief.predict_joint`,
:func:`~proxygym.envs.belief.condition_joint`, :func:`~proxygym.envs.belief.end_weights`); nothing about
transitions or test probabilities is derived here.

State space
-----------
- A *program state* is where a run starts: ``(n, c, W)``, the runs not yet started (``n``,
  counting the one about to start), the compute left (``c``; 0 without a compute budget)
  and the per-idea posteriors ``W = (W_0 .. W_{m-1})``. Each ``W_i`` is interned (rounded to
  1e-12) into an integer id per idea, so a program state is the key
  ``(n, c, (id_0, .., id_{m-1}))``. With known base rates and no compute budget every
  ``W_i`` is the point mass and there are exactly ``B`` program states.
- Within a run of idea ``i`` started from ``W_i``, the belief at checkpoint ``d`` is the
  node of a complete *run tree*: each phase branches on the usage code (``3^k``) and
  then on the result vector (``2^k``), so level ``d`` holds ``(3^k 2^k)^d`` nodes, indexed
  ``x' = x * 3^k 2^k + c * 2^k + r`` from the parent ``x``, usage code ``c`` and result code
  ``r = sum_j [proxy j passed] 2^j``. A node stores its branch probability (the filter's
  predictive probability), ``P(aligned)`` and the id of the idea's posterior if the run
  ended there. The tree depends only on ``(i, W_i)`` (not on ``n`` nor on the other ideas),
  so it is built once per distinct ``(i, id_i)`` and shared.

Backward induction
------------------
Where no run can start (no run left, or less than a full run's compute) the value is
``reward.abstain``. Otherwise ``V(n, c, W) = max_i [-run_cost + Q_i]`` where ``Q_i`` is the
value of the root of idea ``i``'s tree, computed bottom-up with ``discard(x) = V(n - 1,
c - spent(d), W with W_i replaced by the posterior at node x)`` for a node ``x`` at
checkpoint ``d`` (``spent(d)``: the compute of phases ``1..d``, 0 without a compute budget):

- final checkpoint ``T``: ``max(deploy(x), discard(x))``, ``deploy = P(A) R_aligned + (1 - P(A)) R_misaligned``;
- checkpoint ``1..T-1``: ``max(discard(x), max_c sum_r P(r | x, c) value(child))``;
- the run's start: ``max_c sum_r P(r | root, c) value(child)``.

The program states are enumerated forward from the prior (layer ``n = B, B-1, ..``,
every idea's every possible ending at every checkpoint), then valued backward from the
last layer. Ties go to
discarding at an early checkpoint (continuing gains nothing then; within 1e-12), to
deploying at the final one, among usages to the lowest usage code (reserve first), and
among ideas to the highest posterior mean base rate (then the first).

A size guard runs before any of this (:func:`estimate_size`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD
from proxygym.envs.belief import condition_joint, end_weights, predict_joint, start_joint
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes, exact
from proxygym.envs.regimen import ANTI, can_start
from proxygym.envs.scenario import Scenario, load_scenario

#: Action codes stored per node: a usage code (>= 0), or one of these.
DISCARD_CODE, DEPLOY_CODE = -1, -2
#: The size guard (:func:`estimate_size`): most work, in node evaluations (about 20 ns each
#: here, so the limit is some 20 seconds), and most memory, in bytes.
MAX_WORK = 1_000_000_000
MAX_MEMORY = 1_000_000_000
#: The cost model of the guard, in node evaluations: valuing one idea's run at one program
#: state costs its tree's nodes plus PER_STATE; building a run tree costs BUILD_PER_NODE per
#: node plus PER_BUILD. (Measured: a node's backward step is vectorized, a node's filter
#: update and the interning of its posterior are not quite.)
PER_STATE = 1_000
BUILD_PER_NODE = 150
PER_BUILD = 10_000
#: Bytes a cached run tree keeps per node (two floats, two ints); a stored action is 1 byte;
#: a program state's key, value and action arrays (measured: about 900).
TREE_BYTES_PER_NODE = 24
BYTES_PER_STATE = 1_000
#: Continuing must beat discarding by more than this (relative) to be chosen at an early checkpoint.
TIE = 1e-12
#: Decimals of the per-idea posterior weights in a program state's key.
KEY_DECIMALS = 12


# -- the run tree ---------------------------------------------------------------------
def tree_fan(dyn: Dynamics) -> int:
    """Children of a node of a run tree: ``3^k`` usage codes times ``2^k`` result codes."""
    return dyn.n_usages * 2**dyn.n_proxies


def tree_nodes(dyn: Dynamics) -> int:
    """Decision points of one run tree: ``sum_{d=0..T} (3^k 2^k)^d`` (exact integer)."""
    return sum(tree_fan(dyn) ** d for d in range(dyn.n_phases + 1))


@dataclass
class RunTree:
    """Every belief a run of ``idea`` started from the posterior ``weights`` can reach.

    Per checkpoint ``d`` (0 = the run's start), arrays over the ``(3^k 2^k)^d`` nodes of
    that level: ``prob[d]`` the probability of the node's last results given its parent
    and usage (1 at the root), ``p_aligned[d]``, ``end_id[d]`` the idea's posterior id if the
    run ends there (-1 for nodes of probability 0), ``end_ids`` the distinct ones and
    ``end_inv[d]`` each node's index into them.
    """

    idea: int
    weight_id: int
    prob: list[np.ndarray]
    p_aligned: list[np.ndarray]
    end_id: list[np.ndarray]
    end_ids: np.ndarray = field(default=None)
    end_inv: list[np.ndarray] = field(default=None)
    level_end_ids: list[np.ndarray] = field(default=None)  # per checkpoint, the end posteriors reachable there

    @property
    def n_nodes(self) -> int:
        return sum(len(p) for p in self.prob)


class _Builder:
    """Builds run trees and interns the per-idea posteriors they end in."""

    def __init__(self, dyn: Dynamics):
        self.dyn = dyn
        k = dyn.n_proxies
        self.C = dyn.n_usages
        self.R = 2**k
        self.anti = (dyn.usages == ANTI).astype(np.int64)  # (C, k)
        self.weights: list[list[np.ndarray]] = [[] for _ in range(dyn.n_ideas)]
        self._ids: list[dict[tuple, int]] = [{} for _ in range(dyn.n_ideas)]
        self.trees: dict[tuple[int, int], RunTree] = {}

    def intern(self, idea: int, w: np.ndarray, rounded: "np.ndarray | None" = None) -> int:
        """The id of posterior ``w`` of ``idea`` (``rounded``: ``w`` already rounded to the key's decimals)."""
        if rounded is None:
            rounded = np.round(np.asarray(w, dtype=np.float64), KEY_DECIMALS) + 0.0  # + 0.0: no -0.0 in keys
        key = tuple(rounded.tolist())
        table = self._ids[idea]
        got = table.get(key)
        if got is None:
            got = table[key] = len(self.weights[idea])
            self.weights[idea].append(np.array(w, dtype=np.float64))
        return got

    def tree(self, idea: int, weight_id: int) -> RunTree:
        key = (idea, weight_id)
        if key not in self.trees:
            self.trees[key] = self._build(idea, weight_id)
        return self.trees[key]

    def _build(self, idea: int, weight_id: int) -> RunTree:
        dyn, C, R = self.dyn, self.C, self.R
        k = dyn.n_proxies
        w = self.weights[idea][weight_id]
        joint = start_joint(dyn, w[None, :], dyn.base_rate_values[idea])  # (1, V, S)
        n_anti = np.zeros((1, k), dtype=np.int64)
        prob, p_al, alive, ends = [np.ones(1)], [self._p_aligned(joint)], [np.zeros(1, dtype=bool)], []
        for t in range(dyn.n_phases):
            n = len(joint)
            codes = np.tile(np.arange(C), n)
            pred = predict_joint(dyn, np.repeat(joint, C, axis=0), t, codes, idea, np.repeat(n_anti, C, axis=0))  # (n C, V, S)
            na = (n_anti[:, None, :] + self.anti[None]).reshape(n * C, k)
            joint, p = condition_joint(
                dyn, np.repeat(pred, R, axis=0), t, np.repeat(na, R, axis=0), np.tile(dyn.results, (n * C, 1))
            )
            n_anti = np.repeat(na, R, axis=0)
            prob.append(p)
            p_al.append(self._p_aligned(joint))
            alive.append(p > 0.0)  # a node of probability 0 has a zero joint, so its children too
            ends.append(end_weights(joint[alive[-1]]))
        # The posterior of the idea if the run ends at each node, interned all at once.
        ids = self._intern_rows(idea, np.concatenate(ends))
        end_id, start = [], 0
        for a in alive:
            e = np.full(len(a), -1, dtype=np.int32)
            count = int(a.sum())
            e[a] = ids[start : start + count]
            start += count
            end_id.append(e)
        tree = RunTree(idea, weight_id, prob, p_al, end_id)
        tree.end_ids = np.unique(ids)
        tree.end_inv = [np.searchsorted(tree.end_ids, e).astype(np.int32) for e in end_id]  # -1 rows: 0, never read
        tree.level_end_ids = [np.unique(e[e >= 0]) for e in end_id]
        return tree

    def _p_aligned(self, joint: np.ndarray) -> np.ndarray:
        return joint[:, :, self.dyn.aligned].sum(axis=(1, 2))

    def _intern_rows(self, idea: int, w: np.ndarray) -> np.ndarray:
        """The posterior id of each row of ``w`` ``(n, V)``."""
        if w.shape[1] == 1:  # a known base rate: the posterior is the point mass, always
            return np.full(len(w), self.intern(idea, w[0]), dtype=np.int64)
        rounded = np.round(w, KEY_DECIMALS) + 0.0
        uniq, first, inv = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
        ids = np.array([self.intern(idea, w[f], u) for f, u in zip(first, uniq)], dtype=np.int64)
        return ids[inv.reshape(-1)]


# -- the size guard -----------------------------------------------------------------------
def _fmt(x: int) -> str:
    """``x`` to 3 significant digits, also for integers too large for a float."""
    if x < 10**300:
        return f"{x:.3g}"
    e = math.log10(x)
    return f"{10 ** (e - math.floor(e)):.2f}e+{math.floor(e)}"


@dataclass
class SizeEstimate:
    """Upper bounds on what a solve needs (see :func:`estimate_size`)."""

    tree_nodes: int  # decision points of one run tree (run start and checkpoints)
    program_states: int  # (runs left, base-rate posterior) states
    tree_builds: int  # run trees built (one per idea and distinct posterior of that idea)
    work: int  # node evaluations, with the overheads of the cost model
    memory: int  # bytes: the largest tree's construction, the cached trees and the policy

    def check(self, scenario: Scenario) -> None:
        """Raise :class:`ProxyGymError` (one line) when the solve would be too large."""
        T, k = len(scenario.phases), len(scenario.proxies)
        shape = f"k = {k} prox{'y' if k == 1 else 'ies'}, T = {T} phase{'' if T == 1 else 's'}, budget {scenario.budget}"
        if scenario.compute is not None:
            shape += f", compute {scenario.compute} (at most {most_runs(scenario)} runs)"
        if self.memory > MAX_MEMORY:
            raise ProxyGymError(
                f"{scenario.source}: too large for the exact solver ({shape}): it would need about"
                f" {_fmt(self.memory)} bytes of memory (up to {_fmt(self.program_states)} program states x"
                f" {_fmt(self.tree_nodes)} belief states per run, (3^k 2^k)^d at checkpoint d);"
                f" the limit is {_fmt(MAX_MEMORY)} bytes"
            )
        if self.work > MAX_WORK:
            raise ProxyGymError(
                f"{scenario.source}: too large for the exact solver ({shape}): it would need about"
                f" {_fmt(self.work)} node evaluations (up to {_fmt(self.program_states)} program states x"
                f" {_fmt(self.tree_nodes)} belief states per run and idea, {_fmt(self.tree_builds)} run trees to build);"
                f" the limit is {_fmt(MAX_WORK)}"
            )


def most_runs(scenario: Scenario) -> int:
    """The most runs a program can start: its budget, and with a compute budget no more than fit when
    every run but the last is discarded at checkpoint 1 (the cheapest discard)."""
    if scenario.compute is None:
        return scenario.budget
    fit = 1 + (scenario.compute - scenario.full_run_compute) // scenario.phases[0].cost
    return min(scenario.budget, fit)


def estimate_size(scenario: Scenario, _builder: "_Builder | None" = None) -> SizeEstimate:
    """Bound the work and memory of an exact solve from above, before solving.

    One run tree has ``N = sum_{d=0..T} (3^k 2^k)^d`` nodes. A program state is ``(n, W)``;
    ``W`` after ``j`` finished runs is fixed by the multiset of how those runs ended (their
    likelihoods multiply), so with ``U_i`` distinct posteriors a run of idea ``i`` can end in
    (counted on the tree from the prior; 1 for a known base rate) and ``U = sum_i U_i``, there
    are at most ``S = C(U + B - 1, B - 1)`` program states, and idea ``i`` has at most
    ``min(S, C(U_i + B - 1, B - 1))`` distinct posteriors, each one tree to build. With a compute
    budget ``B`` is the most runs that fit (:func:`most_runs`) and ``S`` is multiplied by the
    values compute left can take (at most ``compute + 1``, and at most ``C(T + B - 1, B - 1)``,
    the multisets of the checkpoints the runs so far were discarded at). Work:
    ``S m (N + PER_STATE) + builds (BUILD_PER_NODE N + PER_BUILD)``. Memory: the largest
    level's joints while a tree is built, the cached trees, and per program state one action
    per node plus BYTES_PER_STATE. Only the prior's own trees are built to count the
    ``U_i``, and only when one tree fits in memory.
    """
    dyn = Dynamics.of(scenario)
    N = tree_nodes(dyn)
    m, B = dyn.n_ideas, most_runs(scenario)
    # With a compute budget a program state also has its compute left: at most compute + 1 values, and at
    # most as many as the multisets of the checkpoints (the T kinds of discard) the runs so far ended at.
    lefts = 1 if scenario.compute is None else min(scenario.compute + 1, math.comb(dyn.n_phases + B - 1, B - 1))
    width = max(len(v) for v in dyn.base_rate_values)
    build_bytes = tree_fan(dyn) ** dyn.n_phases * width * dyn.n_states * 8 * 3  # the last level's joints, 3 copies at once
    if build_bytes + N * TREE_BYTES_PER_NODE > MAX_MEMORY:
        known = all(len(v) == 1 for v in dyn.base_rate_values)
        S = (B if known else math.comb(N * m + B - 1, B - 1)) * lefts
        return SizeEstimate(
            N, S, m, S * m * (N + PER_STATE), build_bytes + m * N * TREE_BYTES_PER_NODE + S * (N + BYTES_PER_STATE)
        )
    builder = _builder or _Builder(dyn)
    U = []
    for i in range(m):
        if len(dyn.base_rate_values[i]) == 1:
            U.append(1)
        else:
            U.append(len(builder.tree(i, builder.intern(i, dyn.base_rate_probs[i])).end_ids))
    S = math.comb(sum(U) + B - 1, B - 1) * lefts
    builds = sum(1 if len(dyn.base_rate_values[i]) == 1 else min(S, math.comb(U[i] + B - 1, B - 1)) for i in range(m))
    work = S * m * (N + PER_STATE) + builds * (BUILD_PER_NODE * N + PER_BUILD)
    memory = build_bytes + builds * N * TREE_BYTES_PER_NODE + S * (N + BYTES_PER_STATE)
    return SizeEstimate(N, S, builds, work, memory)


# -- the solution -----------------------------------------------------------------------
class Policy:
    """The optimal policy, queried by the solver's state.

    A program state (a run's start) is an integer ``state``; ``root`` is the one an episode
    starts in. Within the run that starts there, a decision point is ``(checkpoint d,
    node x)``, with ``x`` from :meth:`node_index`.
    """

    def __init__(self, dyn: Dynamics, builder: _Builder):
        self.dyn = dyn
        self._builder = builder
        sc = dyn.scenario
        self.budget, self.compute, self.full_run = sc.budget, sc.compute, sc.full_run_compute
        # spent[d]: the compute a run has used by checkpoint d (not counted without a compute budget)
        self.spent = sc.spent_by_checkpoint if sc.compute is not None else (0,) * (len(sc.phases) + 1)
        # state -> (runs left, compute left, per-idea posterior ids)
        self.keys: list[tuple[int, int, tuple[int, ...]]] = []
        self.index: dict[tuple[int, int, tuple[int, ...]], int] = {}
        self.values: list[float] = []
        self.ideas: list[int] = []  # state -> the idea its run uses
        self.actions: list[list[np.ndarray]] = []  # state -> per checkpoint, per node: action code
        self.root = -1

    # -- building --
    def _add(self, key) -> int:
        if key not in self.index:
            self.index[key] = len(self.keys)
            self.keys.append(key)
            self.values.append(math.nan)
            self.ideas.append(-1)
            self.actions.append([])
        return self.index[key]

    # -- queries --
    @property
    def fan(self) -> int:
        """Children of a node (:func:`tree_fan`)."""
        return tree_fan(self.dyn)

    def child(self, node, usage_code, result_code):
        """The node one phase on from ``node`` under ``usage_code`` with results ``result_code`` (arrays broadcast)."""
        return (node * self.fan + usage_code * 2**self.dyn.n_proxies) + result_code

    def node_index(self, usage_codes, result_codes, depth=None):
        """The node reached by the phases done so far, from each phase's usage code and result code.

        One run: ``usage_codes`` and ``result_codes`` ``(d,)``, an int back. A batch: ``(N, T)`` each,
        with ``depth`` ``(N,)`` the phases done in each run (the rest are ignored), an array back.
        """
        c, r = np.atleast_2d(usage_codes), np.atleast_2d(result_codes)
        depth = np.full(len(c), c.shape[1]) if depth is None else np.asarray(depth)
        x = np.zeros(len(c), dtype=np.int64)
        for t in range(c.shape[1]):
            x = np.where(t < depth, self.child(x, c[:, t], r[:, t]), x)
        return int(x[0]) if np.ndim(usage_codes) == 1 else x

    def runs_left(self, state: int) -> int:
        return self.keys[state][0]

    def compute_left(self, state: int) -> int:
        """The compute left at this program state's run start (0 without a compute budget)."""
        return self.keys[state][1]

    def can_start(self, runs_left: int, compute_left: int) -> bool:
        """Whether a run may start (:func:`proxygym.envs.regimen.can_start`) with ``runs_left`` runs not yet started."""
        return can_start(self.budget - runs_left, compute_left, self.budget, self.compute, self.full_run)

    def next_key(self, key: tuple, idea: int, end_id: int, checkpoint: int) -> tuple | None:
        """The program state after a run of ``idea`` from ``key`` is discarded at ``checkpoint`` with the
        idea's posterior ``end_id``; None when no run can start then (the program ends)."""
        n, c, ids = key
        n2, c2 = n - 1, c - int(self.spent[checkpoint])
        if not self.can_start(n2, c2):
            return None
        return (n2, c2, ids[:idea] + (int(end_id),) + ids[idea + 1 :])

    def state_of(self, runs_left: int, posteriors, compute_left: int | None = None) -> int:
        """The program state with ``runs_left`` runs not yet started (and ``compute_left``, with a compute
        budget) and, per idea, this posterior over its base rate's support (e.g. a filter's
        ``idea_weights``); KeyError if it was never reached by the solve (it is matched to 1e-12)."""
        ids = []
        for i, w in enumerate(posteriors):
            key = tuple((np.round(np.asarray(w, dtype=np.float64), KEY_DECIMALS) + 0.0).tolist())
            ids.append(self._builder._ids[i][key])
        return self.index[(int(runs_left), int(compute_left or 0), tuple(ids))]

    def posterior(self, state: int) -> list[np.ndarray]:
        """Per idea, the posterior over its base rate's support at this program state."""
        return [self._builder.weights[i][w] for i, w in enumerate(self.keys[state][2])]

    def value(self, state: int) -> float:
        return self.values[state]

    def idea(self, state: int) -> int:
        return self.ideas[state]

    def tree(self, state: int) -> RunTree:
        """The run tree of the run that starts at this program state (the idea the policy picks)."""
        i = self.ideas[state]
        return self._builder.tree(i, self.keys[state][2][i])

    def action(self, state: int, checkpoint: int, node: int = 0) -> tuple[int, int]:
        """``(verdict, usage code)``; the usage code is -1 where no phase follows."""
        a = int(self.actions[state][checkpoint][node])
        if a == DISCARD_CODE:
            return DISCARD, -1
        if a == DEPLOY_CODE:
            return DEPLOY, -1
        return CONTINUE, a

    def children_reach(self, state: int, checkpoint: int, reach: np.ndarray) -> np.ndarray:
        """Spread ``reach`` over the nodes of ``checkpoint`` to the next level's nodes: each
        continued node's mass goes to every result of the usage it picks (times 1; multiply by
        the tree's ``prob`` for the results' probabilities); discarded or deployed nodes give none."""
        a = self.actions[state][checkpoint].astype(np.int64)
        R = 2**self.dyn.n_proxies
        out = np.zeros(len(reach) * self.fan)
        go = np.flatnonzero((a >= 0) & (reach > 0.0))
        if len(go):
            idx = self.child(go[:, None], a[go, None], np.arange(R)[None, :])
            out[idx] = reach[go, None]
        return out

    def after_discard(self, state: int, checkpoint: int, node: int) -> int:
        """The program state after discarding at ``(checkpoint, node)``; -1 when no run can start then."""
        i = self.ideas[state]
        end = int(self.tree(state).end_id[checkpoint][node])
        key = self.next_key(self.keys[state], i, end, checkpoint)
        return -1 if key is None else self.index[key]


@dataclass
class Solution:
    """What :func:`solve` returns.

    ``value``: the optimal expected return from the start; ``seconds``: wall time of the
    solve; ``states``: distinct belief states evaluated (every decision point of every
    idea's run tree at every program state, the run starts included); ``program_states``:
    distinct (runs left, base-rate posterior) states; ``policy``: the optimal policy.
    """

    scenario: Scenario
    value: float
    seconds: float
    states: int
    program_states: int
    policy: Policy
    estimate: SizeEstimate

    def outcomes(self) -> Outcomes:
        """The optimal policy's outcomes, exactly, by forward propagation over its states
        (their ``mean_return`` equals ``value`` up to rounding)."""
        pol, r = self.policy, self.scenario.reward
        T = pol.dyn.n_phases
        mass = {pol.root: 1.0}  # program states where a run starts, and the chance to get there
        da = dm = ab = runs = 0.0
        while mass:  # each pass is one run more; a discard leads to a later state or, when no run can start, ends
            nxt: dict[int, float] = {}
            for state, pm in mass.items():
                runs += pm
                tree = pol.tree(state)
                reach = np.full(1, pm)
                for d in range(1, T + 1):
                    reach = pol.children_reach(state, d - 1, reach) * tree.prob[d]
                    a = pol.actions[state][d]
                    live = reach > 0.0
                    stop = live & (a == DEPLOY_CODE)
                    da += float((reach * tree.p_aligned[d])[stop].sum())
                    dm += float((reach * (1.0 - tree.p_aligned[d]))[stop].sum())
                    for x in np.flatnonzero(live & (a == DISCARD_CODE)):
                        s2 = pol.after_discard(state, d, int(x))
                        if s2 < 0:
                            ab += float(reach[x])
                        else:
                            nxt[s2] = nxt.get(s2, 0.0) + float(reach[x])
            mass = nxt
        ret = r.aligned * da + r.misaligned * dm + r.abstain * ab - r.run_cost * runs
        return exact(ret, da, dm, ab, runs)


def solve(scenario: "Scenario | str") -> Solution:
    """The Bayes-optimal policy of a scenario and its value, by exact backward induction,
    solved once per scenario object (:meth:`Scenario.cached`).

    Raises :class:`proxygym.envs.errors.ProxyGymError` (one line) when the scenario is too large
    (see :func:`estimate_size`).
    """
    return load_scenario(scenario).cached("solution", _solve)


def optimum(scenario: Scenario) -> Solution | None:
    """The scenario's solution, or None when it is too large to solve exactly (decided once per scenario object)."""

    def attempt(sc: Scenario) -> Solution | None:
        try:
            return solve(sc)
        except ProxyGymError:
            return None

    return scenario.cached("optimum", attempt)


def _solve(scenario: Scenario) -> Solution:
    start = time.perf_counter()
    dyn = Dynamics.of(scenario)
    builder = _Builder(dyn)
    est = estimate_size(scenario, builder)
    est.check(scenario)

    r = scenario.reward
    m, T, B = dyn.n_ideas, dyn.n_phases, scenario.budget
    C, R = builder.C, builder.R
    pol = Policy(dyn, builder)
    root_ids = tuple(builder.intern(i, dyn.base_rate_probs[i]) for i in range(m))
    pol.root = pol._add((B, scenario.compute or 0, root_ids))

    # Forward: every program state reachable from the prior. A discard always leaves one run
    # fewer, so the states fall into layers by runs left.
    layers: dict[int, list[int]] = {B: [pol.root]}
    for n in range(B, 1, -1):
        nxt: list[int] = []
        seen = set()
        for state in layers[n]:
            key = pol.keys[state]
            for i in range(m):
                tree = builder.tree(i, key[2][i])
                for d in range(1, T + 1):
                    for e in tree.level_end_ids[d]:
                        child = pol.next_key(key, i, e, d)
                        if child is not None and child not in seen:
                            seen.add(child)
                            nxt.append(pol._add(child))
        if not nxt:
            break
        layers[n - 1] = nxt

    # Backward: value every program state from the last layer up.
    evaluated = 0
    for n in sorted(layers):
        for state in layers[n]:
            key = pol.keys[state]
            ids = key[2]
            options = []
            for i in range(m):
                tree = builder.tree(i, ids[i])
                # per checkpoint d: the value of discarding there, per end posterior of the tree (those the
                # tree cannot end in at d are never read: 0)
                disc = [np.zeros(0)]
                for d in range(1, T + 1):
                    here = set(tree.level_end_ids[d].tolist())
                    children = [pol.next_key(key, i, e, d) if e in here else () for e in tree.end_ids.tolist()]
                    disc.append(np.array([
                        0.0 if c == () else r.abstain if c is None else pol.values[pol.index[c]] for c in children
                    ]))
                value, acts = _backward(tree, disc, r, T, C, R)
                evaluated += tree.n_nodes
                options.append((value - r.run_cost, i, acts))
            top = max(v for v, _, _ in options)
            # Ties between ideas (common: the order of informative runs often does not matter)
            # go to the highest posterior mean base rate, then to the first idea.
            tied = [o for o in options if o[0] >= top - TIE * (1.0 + abs(top))]
            mean = [float(np.dot(builder.weights[i][ids[i]], dyn.base_rate_values[i])) for _, i, _ in tied]
            pol.values[state], pol.ideas[state], pol.actions[state] = tied[int(np.argmax(mean))]
    seconds = time.perf_counter() - start
    return Solution(scenario, pol.values[pol.root], seconds, evaluated, len(pol.keys), pol, est)


def _backward(tree: RunTree, disc_by_end: list[np.ndarray], reward, T: int, C: int, R: int):
    """The value of a run tree's root and the optimal action code at every node; ``disc_by_end[d]`` is the
    value of discarding at checkpoint ``d`` for each of the tree's end posteriors (``end_ids``)."""
    acts: list[np.ndarray] = [None] * (T + 1)

    def discard(d: int) -> np.ndarray:
        if len(disc_by_end[d]) == 0:
            return np.zeros(len(tree.prob[d]))
        return np.where(tree.end_id[d] >= 0, disc_by_end[d][tree.end_inv[d]], 0.0)  # end_inv of a dead node: 0

    p = tree.p_aligned[T]
    deploy = reward.misaligned + p * (reward.aligned - reward.misaligned)
    dis = discard(T)
    keep = deploy >= dis
    value = np.where(keep, deploy, dis)
    acts[T] = np.where(keep, DEPLOY_CODE, DISCARD_CODE).astype(np.int8)
    for d in range(T - 1, -1, -1):
        q = (tree.prob[d + 1] * value).reshape(-1, C, R).sum(axis=2)  # (nodes at d, C)
        best = q.argmax(axis=1)
        cont = q[np.arange(len(q)), best]
        if d == 0:
            acts[0] = best.astype(np.int8)
            return float(cont[0]), acts
        dis = discard(d)
        keep = cont > dis + TIE * (1.0 + np.abs(dis))  # a tie: discard now (nothing is lost by it)
        value = np.where(keep, cont, dis)
        acts[d] = np.where(keep, best, DISCARD_CODE).astype(np.int8)
    raise AssertionError("unreachable")
