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
- Ideas whose base-rate priors and dynamics are identical are *exchangeable*: they form
  one idea class and share their posterior ids and run trees.
- A *program state* is where a run starts: ``(n, c, W)``, the runs not yet started (``n``,
  counting the one about to start), the compute left (``c``; 0 without a compute budget)
  and the per-idea posteriors ``W = (W_0 .. W_{m-1})``. Each ``W_i`` is interned (rounded to
  1e-12) into an integer id per idea class, so a program state is the key
  ``(n, c, (id_0, .., id_{m-1}))``. Program states that differ only by a permutation of
  exchangeable ideas have the same value, and the solver plans over one *canonical* key per
  such set (the ids of each class sorted); :class:`Policy` maps a real key to its canonical
  state and the canonical choice back to a real idea. With known base rates and no compute
  budget every ``W_i`` is the point mass and there are exactly ``B`` program states.
- Within a run of an idea of class ``g`` started from ``W_i``, the belief at checkpoint ``d`` is the
  node of a complete *run tree*: each phase branches on the usage code (``3^k``) and
  then on the result vector (``2^k``), so level ``d`` holds ``(3^k 2^k)^d`` nodes, indexed
  ``x' = x * 3^k 2^k + c * 2^k + r`` from the parent ``x``, usage code ``c`` and result code
  ``r = sum_j [proxy j passed] 2^j``. A node stores its branch probability (the filter's
  predictive probability), ``P(aligned)`` and the id of the idea's posterior if the run
  ended there. The tree depends only on ``(g, W_i)`` (not on ``n`` nor on the other ideas),
  so it is built once per distinct ``(g, id)`` and shared. The last level is never held as
  joints: the filter's updates are linear in the joint before normalization, so each
  last-level node's predictive probability, ``P(aligned)`` and end posterior are its parent's
  joint times the updates of the unit joints (:func:`predict_joint` then
  :func:`condition_joint` applied to each latent state alone), computed in blocks of parents.

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
last layer, all states of a layer at once: the states' ideas are grouped by run tree and
each group's backward step is one set of array operations over its rows. Ties go to
discarding at an early checkpoint (continuing gains nothing then; within 1e-12), to
deploying at the final one (within 1e-12), among usages to the lowest usage code (reserve first; within
1e-12 of the best), and
among ideas to the highest posterior mean base rate (then the first idea).

A size guard runs before any of this (:func:`estimate_size`); it counts, never builds.
"""

from __future__ import annotations

import bisect
import math
import re
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
#: here, so the limit is some 20 seconds), and the default most memory, in bytes (``proxygym solve
#: --max-memory`` and ``solve(..., max_memory=)`` set another).
MAX_WORK = 1_000_000_000
MAX_MEMORY = 1_000_000_000
#: The cost model of the guard, in node evaluations: valuing one idea's run at one program
#: state costs its tree's nodes plus PER_STATE (the states of a layer are valued together);
#: building a run tree costs BUILD_PER_NODE per node, plus one per 16 latent states (times the
#: base rate's support), plus PER_BUILD (measured: 85 ns a node with 16 latent states, 150 ns with 128).
PER_STATE = 40
BUILD_PER_NODE = 4
PER_BUILD = 50_000
#: Bytes a cached run tree keeps per node (two floats, an int and a pair index); a stored
#: action is 1 byte; a program state's key, value, choice and links to the next layer (about
#: BYTES_PER_STATE, plus 8 per link).
TREE_BYTES_PER_NODE = 24
BYTES_PER_STATE = 200
#: Bytes a solve holds whatever its size, and per level of each tree built (its arrays' own objects, its posteriors).
BASE_BYTES = 2_000_000
BYTES_PER_TREE_LEVEL = 6_000
#: Elements of the largest array block the solver works on at once (the last level of a
#: large tree is built and valued in blocks of parents).
BLOCK = 1 << 21
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


def idea_classes(dyn: Dynamics) -> np.ndarray:
    """``(m,)``: the class of each idea; ideas of one class are exchangeable (the same base-rate
    support and prior and the same phase dynamics), numbered in order of their first idea."""
    out = np.full(dyn.n_ideas, -1, dtype=np.int64)
    reps: list[int] = []
    for i in range(dyn.n_ideas):
        for g, j in enumerate(reps):
            if (
                np.array_equal(dyn.base_rate_values[i], dyn.base_rate_values[j])
                and np.array_equal(dyn.base_rate_probs[i], dyn.base_rate_probs[j])
                and np.array_equal(dyn.values[:, :, i], dyn.values[:, :, j])
                and (dyn.transition is None or np.array_equal(dyn.transition[:, :, i], dyn.transition[:, :, j]))
            ):
                out[i] = g
                break
        else:
            out[i] = len(reps)
            reps.append(i)
    return out


@dataclass
class RunTree:
    """Every belief a run of ``idea`` (or any idea of its class) started from the posterior ``weights`` can reach.

    Per checkpoint ``d`` (0 = the run's start), arrays over the ``(3^k 2^k)^d`` nodes of
    that level: ``prob[d]`` the probability of the node's last results given its parent
    and usage (1 at the root), ``p_aligned[d]``, ``end_id[d]`` the idea's posterior id if the
    run ends there (-1 for nodes of probability 0), ``end_ids`` the distinct ones and
    ``level_end_ids[d]`` those reachable at checkpoint ``d``. The tree's *pairs* are the
    ``(checkpoint, end id)`` a run can be discarded with: ``pair_d``/``pair_e``, checkpoint by
    checkpoint; ``pair_inv[d]`` is each node's pair (that of a node of probability 0 is never read).
    """

    idea: int
    weight_id: int
    prob: list[np.ndarray]
    p_aligned: list[np.ndarray]
    end_id: list[np.ndarray]
    end_ids: np.ndarray = field(default=None)
    level_end_ids: list[np.ndarray] = field(default=None)
    pair_d: np.ndarray = field(default=None)
    pair_e: np.ndarray = field(default=None)
    pair_inv: list[np.ndarray] = field(default=None)

    @property
    def n_nodes(self) -> int:
        return sum(len(p) for p in self.prob)


class _Builder:
    """Builds run trees and interns the posteriors they end in, per idea class."""

    def __init__(self, dyn: Dynamics):
        self.dyn = dyn
        k = dyn.n_proxies
        self.C = dyn.n_usages
        self.R = 2**k
        self.anti = (dyn.usages == ANTI).astype(np.int64)  # (C, k)
        self.cls = idea_classes(dyn)
        self.n_classes = int(self.cls.max()) + 1
        self.rep = [int(np.flatnonzero(self.cls == g)[0]) for g in range(self.n_classes)]
        self.weights: list[list[np.ndarray]] = [[] for _ in range(self.n_classes)]
        self.means: list[list[float]] = [[] for _ in range(self.n_classes)]
        self._ids: list[dict[tuple, int]] = [{} for _ in range(self.n_classes)]
        self.trees: dict[tuple[int, int], RunTree] = {}
        # the last level's predictive masses of each latent state alone, by (idea, phase, anti-training counts): the
        # same in every tree of the idea (:meth:`_unit_masses`)
        self._units: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def intern(self, g: int, w: np.ndarray, rounded: "np.ndarray | None" = None) -> int:
        """The id of posterior ``w`` of class ``g`` (``rounded``: ``w`` already rounded to the key's decimals)."""
        if rounded is None:
            rounded = np.round(np.asarray(w, dtype=np.float64), KEY_DECIMALS) + 0.0  # + 0.0: no -0.0 in keys
        key = tuple(rounded.tolist())
        table = self._ids[g]
        got = table.get(key)
        if got is None:
            got = table[key] = len(self.weights[g])
            self.weights[g].append(np.array(w, dtype=np.float64))
            self.means[g].append(float(np.dot(self.weights[g][-1], self.dyn.base_rate_values[self.rep[g]])))
        return got

    def tree(self, g: int, weight_id: int) -> RunTree:
        key = (g, weight_id)
        if key not in self.trees:
            self.trees[key] = self._build(g, weight_id)
        return self.trees[key]

    def _build(self, g: int, weight_id: int) -> RunTree:
        dyn = self.dyn
        idea = self.rep[g]
        w = self.weights[g][weight_id]
        joint = start_joint(w[None, :], dyn.support_start[idea])  # (1, V, S)
        n_anti = np.zeros((1, dyn.n_proxies), dtype=np.int64)
        prob, p_al, end_id = [np.ones(1)], [self._p_aligned(joint)], [np.full(1, -1, dtype=np.int32)]
        for t in range(dyn.n_phases - 1):
            joint, n_anti, p = self._level(joint, n_anti, t, idea)
            prob.append(p)
            p_al.append(self._p_aligned(joint))
            alive = p > 0.0  # a node of probability 0 has a zero joint, so its children too
            e = np.full(len(p), -1, dtype=np.int32)
            e[alive] = self._intern_rows(g, end_weights(joint[alive]))
            end_id.append(e)
        p, pa, e = self._last_level(g, joint, n_anti, dyn.n_phases - 1, idea)
        del joint
        prob.append(p)
        p_al.append(pa)
        end_id.append(e)
        tree = RunTree(idea, weight_id, prob, p_al, end_id)
        tree.level_end_ids = [np.zeros(0, dtype=np.int32)] + [self._distinct(e) for e in end_id[1:]]
        tree.end_ids = np.unique(np.concatenate(tree.level_end_ids))
        counts = [len(x) for x in tree.level_end_ids]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        tree.pair_d = np.repeat(np.arange(len(counts)), counts)
        tree.pair_e = np.concatenate(tree.level_end_ids).astype(np.int64)
        dtype = np.uint8 if offsets[-1] <= 255 else np.uint16 if offsets[-1] <= 65535 else np.int32
        tree.pair_inv = [np.zeros(1, dtype=dtype)]
        for d in range(1, len(end_id)):
            ids = tree.level_end_ids[d]
            if len(ids) == 1:
                tree.pair_inv.append(np.full(len(end_id[d]), offsets[d], dtype=dtype))
            else:
                tree.pair_inv.append((offsets[d] + np.searchsorted(ids, end_id[d])).astype(dtype))
        return tree

    @staticmethod
    def _distinct(e: np.ndarray) -> np.ndarray:
        first = e[e >= 0][:1]
        if len(first) and not (e[e >= 0] != first[0]).any():
            return first.astype(np.int32)
        return np.unique(e[e >= 0]).astype(np.int32)

    def _level(self, joint: np.ndarray, n_anti: np.ndarray, t: int, idea: int):
        """The children of every node of one level (phase ``t``): their joints, anti-training counts and probabilities."""
        dyn, C, R = self.dyn, self.C, self.R
        n, V, S = joint.shape
        k = dyn.n_proxies
        out = np.empty((n, C, R, V, S))
        p = np.empty((n, C, R))
        for c in range(C):
            pred = predict_joint(dyn, joint, t, c, idea, n_anti)  # one usage for all rows: one matrix
            na = n_anti + self.anti[c]
            for r in range(R):
                out[:, c, r], p[:, c, r] = condition_joint(dyn, pred, t, na, np.broadcast_to(dyn.results[r], (n, k)))
        na = (n_anti[:, None, None, :] + self.anti[None, :, None, :]) + np.zeros((1, 1, R, 1), dtype=np.int64)
        return out.reshape(n * C * R, V, S), na.reshape(n * C * R, k), p.reshape(-1)

    def _last_level(self, g: int, joint: np.ndarray, n_anti: np.ndarray, t: int, idea: int):
        """The last level's probabilities, P(aligned) and end posterior ids, without its joints.

        The filter's predict and condition steps are linear in the joint before normalization, so
        for a parent joint ``J`` the child's unnormalized mass under usage ``c`` and results ``r`` is
        ``sum_s J(v, s) Z_s(c, r)``, where ``Z_s`` is the predictive probability the filter gives the
        unit joint of state ``s`` (and likewise for its aligned part). Parents are taken by their
        anti-training counts (the updates depend on them), in blocks.
        """
        C, R = self.C, self.R
        n, V, S = joint.shape
        CR = C * R
        prob = np.zeros(n * CR)
        p_al = np.zeros(n * CR)
        end = np.full(n * CR, -1, dtype=np.int32)
        point = self.intern(g, np.ones(1)) if V == 1 else -1
        counts, inv = np.unique(n_anti, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        step = max(1, BLOCK // (CR * max(V, 2)))
        for gi, na in enumerate(counts):
            mass, aligned = self._unit_masses(idea, t, na)
            rows = np.flatnonzero(inv == gi)
            for lo in range(0, len(rows), step):
                block = rows[lo : lo + step]
                jb = joint[block]
                marginal = jb.sum(axis=1)  # (b, S)
                z = marginal @ mass  # (b, CR)
                za = marginal @ aligned
                idx = (block[:, None] * CR + np.arange(CR)[None, :]).reshape(-1)
                z, za = z.reshape(-1), za.reshape(-1)
                live = z > 0.0
                prob[idx] = z
                p_al[idx] = za / np.where(live, z, 1.0)
                if V == 1:
                    end[idx[live]] = point
                else:
                    w = (jb.reshape(-1, S) @ mass).reshape(len(block), V, CR).transpose(0, 2, 1).reshape(-1, V)
                    end[idx[live]] = self._intern_rows(g, end_weights(w[live][:, :, None]))
        return prob, p_al, end

    def _unit_masses(self, idea: int, t: int, na: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mass, aligned)``, each ``(S, C R)``: for the unit joint of each latent state, the predictive probability
        of each (usage, results) of phase ``t`` and its aligned part, after anti-training counts ``na``."""
        key = (idea, t, tuple(na.tolist()))
        got = self._units.get(key)
        if got is None:
            dyn, C, R = self.dyn, self.C, self.R
            S, k = dyn.n_states, dyn.n_proxies
            unit = np.eye(S)[:, None, :]  # (S, 1, S): each latent state alone
            results = np.tile(dyn.results, (S, 1))
            mass = np.empty((S, C, R))
            aligned = np.empty((S, C, R))
            for c in range(C):
                pred = predict_joint(dyn, unit, t, c, idea, np.broadcast_to(na, (S, k)))
                post, z = condition_joint(
                    dyn, np.repeat(pred, R, axis=0), t, np.broadcast_to(na + self.anti[c], (S * R, k)), results
                )
                mass[:, c] = z.reshape(S, R)
                aligned[:, c] = (self._p_aligned(post) * z).reshape(S, R)
            got = (mass.reshape(S, C * R), aligned.reshape(S, C * R))
            if (len(self._units) + 1) * 2 * mass.nbytes <= UNIT_CACHE_BYTES:  # (kept while small: many small trees)
                self._units[key] = got
        return got

    def _p_aligned(self, joint: np.ndarray) -> np.ndarray:
        return joint[:, :, self.dyn.aligned].sum(axis=(1, 2))

    def _intern_rows(self, g: int, w: np.ndarray) -> np.ndarray:
        """The posterior id of each row of ``w`` ``(n, V)``."""
        if w.shape[1] == 1:  # a known base rate: the posterior is the point mass, always
            return np.full(len(w), self.intern(g, np.ones(1)), dtype=np.int64)
        rounded = np.round(w, KEY_DECIMALS) + 0.0
        uniq, first, inv = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
        ids = np.array([self.intern(g, w[f], u) for f, u in zip(first, uniq)], dtype=np.int64)
        return ids[inv.reshape(-1)]


#: The most memory the last level's per-state masses are kept in for reuse across trees (:meth:`_Builder._unit_masses`).
UNIT_CACHE_BYTES = 4 * 2**20


# -- the size guard -----------------------------------------------------------------------
def _fmt(x: float) -> str:
    """``x`` to 3 significant digits, also for integers too large for a float."""
    if x == math.inf:
        return "inf"
    if x < 10**300:
        return f"{x:.3g}"
    e = math.log10(x)
    return f"{10 ** (e - math.floor(e)):.2f}e+{math.floor(e)}"


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str) -> int:
    """Bytes from ``text``: a whole number of bytes, or a number with a unit (``500MB``, ``4GB``, ``1.5GiB``; kB/MB/GB/TB
    are powers of 1000, KiB/MiB/GiB/TiB powers of 1024). A bad value is a one-line :class:`ProxyGymError`."""
    got = _SIZE.fullmatch(str(text))
    if got is not None:
        unit = (got.group(2) or "").lower()
        unit = unit[:-1] if unit.endswith("b") and unit != "b" else unit
        value = float(got.group(1)) * _UNITS[unit]
        if value >= 1 and math.isfinite(value):
            return int(value)
    raise ProxyGymError(
        f"--max-memory {text!r}: give a size in bytes, e.g. 4GB, 500MB, 1.5GiB or 2000000000"
        " (units B, kB, MB, GB, TB, KiB, MiB, GiB, TiB; at least 1 byte)"
    )


@dataclass
class SizeEstimate:
    """Upper bounds on what a solve needs (see :func:`estimate_size`)."""

    tree_nodes: int  # decision points of one run tree (run start and checkpoints)
    program_states: float  # canonical (runs left, compute left, base-rate posteriors) states
    tree_builds: float  # run trees built (one per idea class and distinct posterior of it)
    work: float  # node evaluations, with the overheads of the cost model
    memory: float  # bytes: the cached trees and their construction, the program states and the policy

    def check(self, scenario: Scenario, max_memory: int = MAX_MEMORY) -> None:
        """Raise :class:`ProxyGymError` (one line) when the solve would be too large."""
        T, k = len(scenario.phases), len(scenario.proxies)
        shape = f"k = {k} prox{'y' if k == 1 else 'ies'}, T = {T} phase{'' if T == 1 else 's'}, budget {scenario.budget}"
        if scenario.compute is not None:
            shape += f", compute {scenario.compute} (at most {most_runs(scenario)} runs)"
        if self.memory > max_memory:
            raise ProxyGymError(
                f"{scenario.source}: too large for the exact solver ({shape}): it would need about"
                f" {_fmt(self.memory)} bytes of memory (up to {_fmt(self.program_states)} program states x"
                f" {_fmt(self.tree_nodes)} belief states per run, (3^k 2^k)^d at checkpoint d);"
                f" the limit is {_fmt(max_memory)} bytes (raise it with --max-memory SIZE, e.g. --max-memory 8GB)"
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


def _fcomb(n: float, r: int) -> float:
    """``C(n + r - 1, r)`` as a float (multisets of size ``r`` from ``n`` kinds; inf when too large)."""
    if r == 0:
        return 1.0
    if n <= 0:
        return 0.0
    out = 1.0
    for i in range(r):
        out *= (n + i) / (i + 1)
        if out > 1e300:
            return math.inf
    return out


def _multisets(items: np.ndarray, q: int) -> np.ndarray:
    """``(J+1,)``: multisets of ``q`` items by total weight ``0..J``, with ``items[r]`` kinds of item of weight ``r``."""
    J = len(items) - 1
    f = np.zeros((q + 1, J + 1))
    f[0, 0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for r in range(J + 1):
            if items[r] <= 0:
                continue
            new = f.copy()
            for t in range(1, q + 1):
                if t * r > J:
                    break
                new[t:, t * r :] += _fcomb(items[r], t) * f[: q + 1 - t, : J + 1 - t * r]
            f = new
    return np.nan_to_num(f[q], nan=math.inf)


def _combine(classes: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """``(J+1,)``: multisets per class (``(items by weight, ideas)``), all classes together, by total weight."""
    J = len(classes[0][0]) - 1
    out = np.zeros(J + 1)
    out[0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for items, q in classes:
            part = _multisets(items, q)
            out = np.array([np.dot(out[: j + 1], part[j::-1]) for j in range(J + 1)])
    return np.nan_to_num(out, nan=math.inf)


@dataclass
class _Endings:
    """How one run of an idea class can end, for the guard: ``kinds`` distinct posteriors (``per_checkpoint``:
    counted per checkpoint), ``span``: with a two-point support whose endings' log-likelihood ratios are
    whole multiples ``k_e`` of one unit, ``max(k, 0) - min(k, 0)`` (a posterior is then fixed by ``sum k_e``;
    inf otherwise), and ``ideas`` in the class."""

    kinds: float
    per_checkpoint: float
    span: float
    ideas: int

    def reachable(self, J: int) -> np.ndarray:
        """``(J+1,)``: an upper bound on the distinct posteriors of one idea after at most ``r`` runs of it."""
        r = np.arange(J + 1)
        by_multiset = np.array([_fcomb(self.kinds + 1, int(x)) for x in r])
        by_span = 1.0 + r * self.span if math.isfinite(self.span) else np.full(J + 1, math.inf)
        return np.minimum(by_multiset, by_span)


def _one_phase_endings(dyn: Dynamics, idea: int) -> tuple[int, float]:
    """A one-phase run of ``idea`` from its prior (``3^k 2^k`` filter updates): its distinct end posteriors,
    and the span of their log-likelihood ratios in whole units (:class:`_Endings`; inf if none fits)."""
    prior = dyn.base_rate_probs[idea]
    joint = start_joint(prior[None, :], dyn.support_start[idea])
    anti = (dyn.usages == ANTI).astype(np.int64)
    k = dyn.n_proxies
    seen: dict[tuple, np.ndarray] = {}
    for c in range(dyn.n_usages):
        pred = predict_joint(dyn, joint, 0, c, idea, np.zeros((1, k), dtype=np.int64))
        for r in range(2**k):
            post, z = condition_joint(dyn, pred, 0, anti[c][None], dyn.results[r][None])
            if z[0] > 0.0:
                w = end_weights(post)[0]
                seen[tuple((np.round(w, KEY_DECIMALS) + 0.0).tolist())] = w
    span = math.inf
    ends = np.array(list(seen.values()))
    if len(prior) == 2 and (prior > 0).all() and (ends > 0).all():
        llr = np.log(ends[:, 1] / ends[:, 0]) - math.log(prior[1] / prior[0])
        unit = np.abs(llr)[np.abs(llr) > 1e-12].min(initial=math.inf)
        steps = llr / unit if math.isfinite(unit) else np.zeros(len(llr))
        whole = np.round(steps)
        if np.all(np.abs(steps - whole) < 1e-9) and np.all(np.abs(whole) <= 1000):
            span = float(max(whole.max(), 0.0) - min(whole.min(), 0.0))
    return len(seen), span


def estimate_size(scenario: Scenario) -> SizeEstimate:
    """Bound the work and memory of an exact solve from above, before solving, by counting (nothing is built).

    One run tree has ``N = sum_{d=0..T} (3^k 2^k)^d`` nodes. Every discarded run ends in one of
    ``U`` ways for its idea's posterior: 1 for a known base rate; for an unknown one, with one
    phase, the distinct posteriors of the ``3^k 2^k`` endings from the prior (a run's likelihood
    does not depend on the posterior it starts from), and with more phases ``N - 1`` (every node).
    The canonical program states after ``j`` discards are then bounded per idea class by two
    counts of multisets, the smaller taken layer by layer (a small dynamic program over weights):

    - an idea's posterior after ``r`` runs of it is fixed by the multiset of their endings
      (``C(U + r - 1, r)``): multisets, per class, of its ideas' ending-multisets, ``j`` endings in all;
    - at most ``A(r)`` posteriors are reachable within ``r`` runs (``A(r) = C(U + r, r)``, and, for a
      two-point support whose endings' log-likelihood ratios are whole multiples of one unit,
      ``r span + 1``): multisets, per class, of posteriors weighted by the runs they need, ``<= j`` in all.

    With a compute budget ``B`` is the most runs that fit (:func:`most_runs`), and a state's compute
    left is one of at most ``min(compute + 1, C(T + j - 1, j))`` values (the multisets of the checkpoints
    the ``j`` runs were discarded at), or is fixed by the endings when they are counted per checkpoint
    (``T`` kinds for a known base rate): again the smaller bound.

    Work: per state and idea ``N + PER_STATE``; per tree built (per class, its posteriors within
    ``B - 1`` runs) ``(BUILD_PER_NODE + S V / 16) N + PER_BUILD`` for ``S`` latent states and a support
    of ``V``. Memory: the cached trees and the largest construction, per state an action per node,
    its key and its links to the next layer, and the largest layer's actions for every idea while it
    is valued, plus BASE_BYTES. (Posteriors are matched to 1e-12, so two float paths to one posterior count once.)
    """
    dyn = Dynamics.of(scenario)
    N = tree_nodes(dyn)
    fan, T, S = tree_fan(dyn), dyn.n_phases, dyn.n_states
    m, B = dyn.n_ideas, most_runs(scenario)
    J = B - 1
    cls = idea_classes(dyn)
    ends = []
    for g in range(int(cls.max()) + 1):
        rep = int(np.flatnonzero(cls == g)[0])
        q = int((cls == g).sum())
        if len(dyn.base_rate_values[rep]) == 1:
            ends.append(_Endings(1.0, float(T), 0.0, q))
        elif T == 1 and fan <= 4096:
            u, span = _one_phase_endings(dyn, rep)
            ends.append(_Endings(float(u), float(u), span, q))
        else:
            ends.append(_Endings(float(N - 1), float(N - 1), math.inf, q))
    weights = np.arange(J + 1)
    exact_total = _combine([(np.array([_fcomb(e.kinds, int(r)) for r in weights]), e.ideas) for e in ends])
    reach = [e.reachable(J) for e in ends]
    at_most = np.cumsum(_combine([(np.diff(a, prepend=0.0), e.ideas) for a, e in zip(reach, ends)]))
    by_runs = np.minimum(exact_total, at_most)
    if scenario.compute is not None:
        lefts = np.array([min(scenario.compute + 1, _fcomb(T, int(j))) for j in weights])
        per_checkpoint = _combine([(np.array([_fcomb(e.per_checkpoint, int(r)) for r in weights]), e.ideas) for e in ends])
        by_runs = np.minimum(by_runs * lefts, per_checkpoint)
    states = float(by_runs.sum())
    widest = float(by_runs.max())
    builds = sum(1.0 if e.kinds == 1 else min(float(a[-1]), states * e.ideas) for a, e in zip(reach, ends))
    width = max(len(v) for v in dyn.base_rate_values)
    pairs = min(max(e.per_checkpoint for e in ends), N - 1)  # discard links per idea and state
    last = fan**T
    with np.errstate(over="ignore"):
        work = states * m * (N + PER_STATE) + builds * ((BUILD_PER_NODE + S * width / 16) * N + PER_BUILD)
        build_bytes = (
            (N - last) * width * S * 8 * 2 + min(last * max(width, 2), BLOCK) * 8 * 4 + N * TREE_BYTES_PER_NODE
            + S * S * 2**dyn.n_proxies * 8 * 3  # the unit joints' updates
        )
        memory = (
            BASE_BYTES
            + build_bytes
            + builds * (N * TREE_BYTES_PER_NODE + BYTES_PER_TREE_LEVEL * (T + 1))
            + states * (N + BYTES_PER_STATE + 8 * m * pairs)
            + widest * m * (N + 8 * pairs)
        )
    return SizeEstimate(N, states, builds, float(work), float(memory))


# -- the solution -----------------------------------------------------------------------
class _States:
    """``Policy.index``: a real key ``(runs left, compute left, per-idea posterior ids)`` -> its state,
    made on first use from the canonical state the solver valued (KeyError for a key never reached)."""

    def __init__(self, policy: "Policy"):
        self._policy = policy

    def __getitem__(self, key) -> int:
        return self._policy._state(key)

    def __contains__(self, key) -> bool:
        try:
            self._policy._state(key)
        except KeyError:
            return False
        return True


class Policy:
    """The optimal policy, queried by the solver's state.

    A program state (a run's start) is an integer ``state``; ``root`` is the one an episode
    starts in. Within the run that starts there, a decision point is ``(checkpoint d,
    node x)``, with ``x`` from :meth:`node_index`.

    The solver values canonical states (exchangeable ideas' posteriors sorted); a state here is
    a real one, with each idea's own posterior, made when first reached (from ``root``, by
    :meth:`after_discard`, :meth:`state_of` or ``index``) with its canonical state's value and
    the run of the real idea the canonical choice maps to (ties between ideas of equal posterior
    mean: the first real idea). ``keys``, ``values``, ``ideas`` and ``actions`` list the real
    states made so far.
    """

    def __init__(self, dyn: Dynamics, builder: _Builder):
        self.dyn = dyn
        self._builder = builder
        sc = dyn.scenario
        self.budget, self.compute, self.full_run = sc.budget, sc.compute, sc.full_run_compute
        # spent[d]: the compute a run has used by checkpoint d (not counted without a compute budget)
        self.spent = sc.spent_by_checkpoint if sc.compute is not None else (0,) * (len(sc.phases) + 1)
        self._cls = builder.cls
        self._class_slots = [np.flatnonzero(builder.cls == g) for g in range(builder.n_classes)]
        # the canonical solution (filled by the solver): keys (n, c, ids...), values, chosen slots,
        # per checkpoint the chosen run's actions, and the candidate slots where ideas of different
        # posteriors tie (each with its actions)
        self._ckeys = np.zeros((0, 2 + dyn.n_ideas), dtype=np.int64)
        self._cvalues = np.zeros(0)
        self._cslot = np.zeros(0, dtype=np.int64)
        self._cacts: list[np.ndarray] = []
        self._ccands: dict[int, list[tuple[int, list[np.ndarray]]]] = {}
        self._sorted = None
        # the real states made so far
        self.keys: list[tuple[int, int, tuple[int, ...]]] = []
        self.values: list[float] = []
        self.ideas: list[int] = []  # state -> the idea its run uses
        self.actions: list[list[np.ndarray]] = []  # state -> per checkpoint, per node: action code
        self._real: dict[tuple, int] = {}
        self._left = np.zeros(0, dtype=np.int64)
        self.index = _States(self)
        self.root = -1

    # -- real states from canonical ones --
    def _canonical(self, ids) -> tuple[int, ...]:
        out = list(ids)
        for slots in self._class_slots:
            if len(slots) > 1:
                for j, v in zip(slots, sorted(out[j] for j in slots)):
                    out[j] = v
        return tuple(out)

    def _find(self, row: tuple) -> int:
        """The canonical state with key ``row`` (KeyError if the solve never reached it)."""
        if self._sorted is None:
            order = np.lexsort(self._ckeys.T[::-1])
            self._sorted = (order, [tuple(r) for r in self._ckeys[order].tolist()])
        order, rows = self._sorted
        at = bisect.bisect_left(rows, row)
        if at == len(rows) or rows[at] != row:
            raise KeyError(row)
        return int(order[at])

    def _state(self, key) -> int:
        n, c, ids = int(key[0]), int(key[1]), tuple(int(i) for i in key[2])
        key = (n, c, ids)
        got = self._real.get(key)
        if got is not None:
            return got
        cs = self._find((n, c) + self._canonical(ids))
        canon = self._ckeys[cs, 2:]

        def real_idea(slot: int) -> int:  # the first real idea with the slot's class and posterior
            g = self._cls[slot]
            return next(i for i in self._class_slots[g] if ids[i] == canon[slot])

        if cs in self._ccands:
            idea, acts = min(((real_idea(slot), acts) for slot, acts in self._ccands[cs]), key=lambda o: o[0])
        else:
            idea = real_idea(int(self._cslot[cs]))
            acts = [a[cs] for a in self._cacts]
        state = self._real[key] = len(self.keys)
        self.keys.append(key)
        self.values.append(float(self._cvalues[cs]))
        self.ideas.append(idea)
        self.actions.append(acts)
        return state

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

    def runs_left_table(self) -> np.ndarray:
        """Runs left of every real state made so far, by state."""
        if len(self._left) != len(self.keys):
            self._left = np.array([key[0] for key in self.keys], dtype=np.int64)
        return self._left

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
            ids.append(self._builder._ids[self._cls[i]][key])
        return self._state((int(runs_left), int(compute_left or 0), tuple(ids)))

    def posterior(self, state: int) -> list[np.ndarray]:
        """Per idea, the posterior over its base rate's support at this program state."""
        return [self._builder.weights[self._cls[i]][w] for i, w in enumerate(self.keys[state][2])]

    def value(self, state: int) -> float:
        return self.values[state]

    def idea(self, state: int) -> int:
        return self.ideas[state]

    def tree(self, state: int) -> RunTree:
        """The run tree of the run that starts at this program state (the idea the policy picks)."""
        i = self.ideas[state]
        return self._builder.tree(int(self._cls[i]), self.keys[state][2][i])

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
        return -1 if key is None else self._state(key)


@dataclass
class Solution:
    """What :func:`solve` returns.

    ``value``: the optimal expected return from the start; ``seconds``: wall time of the
    solve; ``states``: belief states evaluated (every decision point of the run tree of every
    idea with a distinct class and posterior at every canonical program state, the run starts
    included); ``program_states``: canonical (runs left, compute left, base-rate posterior)
    states; ``policy``: the optimal policy.
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
                    gone = np.flatnonzero(live & (a == DISCARD_CODE))
                    if not len(gone):
                        continue
                    # discards with one end posterior lead to one state: summed before the look-up
                    ends, inv = np.unique(tree.end_id[d][gone], return_inverse=True)
                    sums = np.bincount(inv.reshape(-1), weights=reach[gone], minlength=len(ends))
                    for e, x, s in zip(ends, gone[np.unique(inv.reshape(-1), return_index=True)[1]], sums):
                        s2 = pol.after_discard(state, d, int(x))
                        if s2 < 0:
                            ab += float(s)
                        else:
                            nxt[s2] = nxt.get(s2, 0.0) + float(s)
            mass = nxt
        ret = r.aligned * da + r.misaligned * dm + r.abstain * ab - r.run_cost * runs
        return exact(ret, da, dm, ab, runs)


def solve(scenario: "Scenario | str", max_memory: int = MAX_MEMORY) -> Solution:
    """The Bayes-optimal policy of a scenario and its value, by exact backward induction,
    solved once per scenario object (:meth:`Scenario.cached`).

    Raises :class:`proxygym.envs.errors.ProxyGymError` (one line) when the scenario is too large
    (see :func:`estimate_size`; ``max_memory`` bytes at most).
    """
    return load_scenario(scenario).cached("solution", lambda sc: _solve(sc, max_memory))


def optimum(scenario: Scenario, max_memory: int = MAX_MEMORY) -> Solution | None:
    """The scenario's solution, or None when it is too large to solve exactly within ``max_memory`` bytes
    (decided once per scenario object: later calls give the first answer whatever their limit)."""

    def attempt(sc: Scenario) -> Solution | None:
        try:
            return solve(sc, max_memory=max_memory)
        except ProxyGymError:
            return None

    return scenario.cached("optimum", attempt)


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an int array (sorted) and each row's index among them."""
    if len(a) == 0:
        return a, np.zeros(0, dtype=np.int64)
    lo, hi = a.min(axis=0), a.max(axis=0)
    spans = [int(h) - int(low) + 1 for low, h in zip(lo, hi)]
    if math.prod(spans) < 2**62:
        code = np.zeros(len(a), dtype=np.int64)
        for col, low, span in zip(a.T, lo, spans):
            code = code * span + (col - low)
        _, first, inv = np.unique(code, return_index=True, return_inverse=True)
        return a[first], inv.reshape(-1)
    uniq, inv = np.unique(a, axis=0, return_inverse=True)
    return uniq, inv.reshape(-1)


def _backward_rows(tree: RunTree, disc: np.ndarray, reward, T: int, C: int, R: int):
    """Value the run tree once per row of ``disc`` ``(rows, pairs)`` (the value of discarding with each of
    the tree's pairs): the root's value per row and the action code at every node, per checkpoint
    ``(rows, nodes)``. The last level is taken in blocks of parents."""
    rows = len(disc)
    acts: list[np.ndarray] = [None] * (T + 1)

    def discard(d: int, sl=slice(None)) -> np.ndarray:
        prob = tree.prob[d][sl]
        return np.where(prob > 0.0, disc[:, tree.pair_inv[d][sl]], 0.0)  # a node of probability 0: 0, never read

    CR = C * R
    parents = len(tree.prob[T]) // CR
    step = max(1, BLOCK // (rows * CR))
    acts[T] = np.empty((rows, len(tree.prob[T])), dtype=np.int8)
    q = np.empty((rows, parents, C))
    span = reward.aligned - reward.misaligned
    for lo in range(0, parents, step):
        sl = slice(lo * CR, min(parents, lo + step) * CR)
        deploy = reward.misaligned + tree.p_aligned[T][sl] * span
        dis = discard(T, sl)
        keep = deploy >= dis - TIE * (1.0 + np.abs(dis))  # a tie: deploy (whatever the rounding of either side)
        value = np.where(keep, deploy, dis)
        acts[T][:, sl] = np.where(keep, DEPLOY_CODE, DISCARD_CODE)
        q[:, lo : lo + step] = (tree.prob[T][sl] * value).reshape(rows, -1, C, R).sum(axis=3)
    for d in range(T - 1, -1, -1):
        top = q.max(axis=2, keepdims=True)
        best = (q >= top - TIE * (1.0 + np.abs(top))).argmax(axis=2)  # a tie: the lowest usage code (reserve first)
        cont = np.take_along_axis(q, best[:, :, None], axis=2)[:, :, 0]
        if d == 0:
            acts[0] = best.astype(np.int8)
            return cont[:, 0], acts
        dis = discard(d)
        keep = cont > dis + TIE * (1.0 + np.abs(dis))  # a tie: discard now (nothing is lost by it)
        value = np.where(keep, cont, dis)
        acts[d] = np.where(keep, best, DISCARD_CODE).astype(np.int8)
        q = (tree.prob[d] * value).reshape(rows, -1, C, R).sum(axis=3)
    raise AssertionError("unreachable")


def _solve(scenario: Scenario, max_memory: int = MAX_MEMORY) -> Solution:
    start = time.perf_counter()
    est = estimate_size(scenario)
    est.check(scenario, max_memory)
    dyn = Dynamics.of(scenario)
    builder = _Builder(dyn)
    r = scenario.reward
    m, T, B = dyn.n_ideas, dyn.n_phases, scenario.budget
    C, R = builder.C, builder.R
    cls = builder.cls
    spent = np.asarray(scenario.spent_by_checkpoint if scenario.compute is not None else (0,) * (T + 1), dtype=np.int64)
    multi = [slots for slots in (np.flatnonzero(cls == g) for g in range(builder.n_classes)) if len(slots) > 1]
    # dup[:, j]: slot j repeats the previous slot of its class (same posterior): the same run, valued once
    prev = np.full(m, -1)
    for slots in multi:
        prev[slots[1:]] = slots[:-1]

    def canonical(ids: np.ndarray) -> np.ndarray:
        for slots in multi:
            ids[:, slots] = np.sort(ids[:, slots], axis=1)
        return ids

    root = np.array([[B, scenario.compute or 0] + [builder.intern(int(cls[i]), dyn.base_rate_probs[i]) for i in range(m)]])
    root[:, 2:] = canonical(root[:, 2:])

    # Forward: every canonical program state reachable from the prior, layer by layer (runs left n = B, B-1, ..).
    # Per layer, the runs to value are grouped by tree: (tree key, state rows, slots, child state per pair).
    layers: list[np.ndarray] = [root]
    groups: list[list[tuple]] = []
    while True:
        keys = layers[-1]
        n = int(keys[0, 0])
        ids = keys[:, 2:]
        dup = np.zeros(ids.shape, dtype=bool)
        has = prev >= 0
        dup[:, has] = ids[:, has] == ids[:, prev[has]]
        s_idx, j_idx = np.nonzero(~dup)
        g_row, w_row = cls[j_idx], ids[s_idx, j_idx]
        tkeys, tinv = _unique_rows(np.stack([g_row, w_row], axis=1))
        layer_groups, children = [], []
        for t, (g, w) in enumerate(tkeys.tolist()):
            tree = builder.tree(g, w)
            sel = np.flatnonzero(tinv == t)
            s, j = s_idx[sel], j_idx[sel]
            P = len(tree.pair_d)
            n2 = n - 1
            c2 = keys[s, 1][:, None] - spent[tree.pair_d][None, :]  # (rows, P)
            ok = np.asarray(can_start(B - n2, c2, B, scenario.compute, scenario.full_run_compute)) & np.ones((len(s), P), bool)
            child = np.full((len(s), P), -1, dtype=np.int64)
            if ok.any():
                rr, pp = np.nonzero(ok)
                cids = ids[s[rr]].copy()
                cids[np.arange(len(rr)), j[rr]] = tree.pair_e[pp]
                children.append((child, rr, pp, np.concatenate([np.full((len(rr), 1), n2), c2[rr, pp][:, None], canonical(cids)], axis=1)))
            layer_groups.append(((g, w), s, j, child))
        groups.append(layer_groups)
        if not children:
            break
        uniq, inv = _unique_rows(np.concatenate([c[3] for c in children]))
        at = 0
        for child, rr, pp, rows in children:
            child[rr, pp] = inv[at : at + len(rows)]
            at += len(rows)
        layers.append(uniq)

    # Backward: value every canonical state, the last layer first.
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in layers])])
    total = int(offsets[-1])
    pol = Policy(dyn, builder)
    pol._ckeys = np.concatenate(layers)
    pol._cvalues = np.empty(total)
    pol._cslot = np.empty(total, dtype=np.int64)
    nodes = [len(p) for p in builder.tree(*next(iter(builder.trees))).prob]
    pol._cacts = [np.empty((total, x), dtype=np.int8) for x in nodes]
    means = [np.array(x) for x in builder.means]
    evaluated = 0
    later = np.zeros(0)
    for li in range(len(layers) - 1, -1, -1):
        keys = layers[li]
        K = len(keys)
        ids = keys[:, 2:]
        Q = np.full((K, m), np.nan)
        chunks = []  # (states, slots, their actions per checkpoint)
        for (g, w), s, j, child in groups[li]:
            tree = builder.tree(g, w)
            disc = np.where(child >= 0, later[np.maximum(child, 0)] if len(later) else 0.0, r.abstain)
            step = max(1, BLOCK // max(1, len(tree.prob[T])))
            for lo in range(0, len(s), step):
                value, acts = _backward_rows(tree, disc[lo : lo + step], r, T, C, R)
                Q[s[lo : lo + step], j[lo : lo + step]] = value
                chunks.append((s[lo : lo + step], j[lo : lo + step], acts))
            evaluated += len(s) * tree.n_nodes
        for jj in range(m):  # a repeated slot: its class's previous slot's run
            if prev[jj] >= 0:
                fill = np.isnan(Q[:, jj])
                Q[fill, jj] = Q[fill, prev[jj]]
        opt = Q - r.run_cost
        top = opt.max(axis=1)
        tied = opt >= (top - TIE * (1.0 + np.abs(top)))[:, None]
        # Ties between ideas (common: the order of informative runs often does not matter)
        # go to the highest posterior mean base rate, then to the first idea.
        mean = np.stack([means[cls[jj]][ids[:, jj]] for jj in range(m)], axis=1)
        best_mean = np.where(tied, mean, -np.inf).max(axis=1)
        cand = tied & (mean == best_mean[:, None])
        first = np.argmax(cand, axis=1)
        distinct = cand.copy()
        has = prev >= 0
        distinct[:, has] &= ~(ids[:, has] == ids[:, prev[has]])
        base = int(offsets[li])
        pol._cvalues[base : base + K] = opt[np.arange(K), first]
        pol._cslot[base : base + K] = first
        several = distinct.sum(axis=1) > 1  # ideas of different posteriors tie: the real order decides
        for s, j, acts in chunks:
            chosen = np.flatnonzero(first[s] == j)
            for d in range(T + 1):
                pol._cacts[d][base + s[chosen]] = acts[d][chosen]
            for row in np.flatnonzero(several[s] & distinct[s, j]).tolist():
                pol._ccands.setdefault(base + int(s[row]), []).append((int(j[row]), [a[row].copy() for a in acts]))
        later = pol._cvalues[base : base + K]
    pol.root = pol._state((B, scenario.compute or 0, tuple(int(x) for x in root[0, 2:])))
    seconds = time.perf_counter() - start
    return Solution(scenario, pol.values[pol.root], seconds, evaluated, total, pol, est)
