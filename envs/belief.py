"""The exact Bayesian filter: what the organization can know about the hidden state.

Runs are independent given the ideas' base rates, and each idea's base rate is
independent of the others a priori, so the posterior factorizes (docs/model.md,
"The Bayesian filter"; with ``worlds:`` the world is drawn with the one idea's base rate,
so its support is the (world, base rate) pairs and the posterior over worlds is read from it):

- per idea i, a posterior weight over the support of its base rate, updated by every
  finished run of that idea;
- for the run under way, the joint posterior over (its idea's base rate, latent state),
  pushed through the same transition matrices and test likelihoods as the env.

The filter is written once, over a batch of N independent episodes
(:class:`BatchBeliefFilter`); the envs look the beliefs of the histories already seen up in a
:class:`RunTable`, each computed once by that filter. Ideas whose base-rate
priors have different numbers of support values share one padded support axis: the
padding has prior weight 0, so it stays 0 through every update and adds nothing to any sum.
"""

from __future__ import annotations

import numpy as np

from proxygym.envs.dynamics import Dynamics


def padded_support(dynamics: Dynamics) -> tuple[np.ndarray, np.ndarray]:
    """Every idea's base-rate support on one axis: ``values`` and ``probs``, both ``(m, V)``.

    ``V`` is the largest support; shorter ones are padded with value 0 at probability 0.
    """
    m = dynamics.n_ideas
    width = max(len(v) for v in dynamics.base_rate_values)
    values = np.zeros((m, width))
    probs = np.zeros((m, width))
    for i, (v, p) in enumerate(zip(dynamics.base_rate_values, dynamics.base_rate_probs)):
        values[i, : len(v)] = v
        probs[i, : len(p)] = p
    return values, probs


def padded_starts(dynamics: Dynamics) -> np.ndarray:
    """``(m, V, S)``: each idea's start distribution per support value (:attr:`Dynamics.support_start`) on
    the padded support of :func:`padded_support` (the padding starts nowhere: it has prior weight 0)."""
    width = max(len(v) for v in dynamics.base_rate_values)
    out = np.zeros((dynamics.n_ideas, width, dynamics.n_states))
    for i, start in enumerate(dynamics.support_start):
        out[i, : len(start)] = start
    return out


def padded_worlds(dynamics: Dynamics) -> np.ndarray:
    """``(m, V, W)``: one-hot of the world of each idea's padded support value (a world's posterior is
    the weights summed by world)."""
    width = max(len(v) for v in dynamics.base_rate_values)
    out = np.zeros((dynamics.n_ideas, width, dynamics.n_worlds))
    for i, world in enumerate(dynamics.support_world):
        out[i, np.arange(len(world)), world] = 1.0
    return out


# -- the updates, as functions: written once, used by the filter below and by the solver -----
def start_joint(weights: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """A run's start, ``J(v, s) = W_i(v) * init_v(s)``: ``(n, V, S)`` from ``weights`` ``(n, V)``
    and the support's start distributions ``starts`` (``(V, S)``, :attr:`Dynamics.support_start` of the
    idea, or ``(n, V, S)`` when the runs' ideas differ)."""
    return np.asarray(weights)[..., None] * starts


def predict_joint(dynamics: Dynamics, joint: np.ndarray, phase, usage_code, idea, n_anti=None) -> np.ndarray:
    """A phase, ``J <- J P_t[c, i]`` (:meth:`Dynamics.advance`), for joints ``(n, V, S)``; ``phase`` (0-based),
    ``usage_code`` and ``idea`` are per joint ``(n,)`` or one for all, ``n_anti`` (the run's anti-trained
    phases before this one) ``(n, k)`` or ``(k,)``. Returns a new array."""
    return dynamics.advance(joint, phase, usage_code, idea, n_anti)


def condition_joint(dynamics: Dynamics, joint: np.ndarray, phase, n_anti: np.ndarray, results: np.ndarray):
    """Test results, ``Z = sum_{v,s} J L``, ``J <- J L / Z``, for joints ``(n, V, S)``.

    ``n_anti`` and ``results`` (True: pass) are ``(n, k)``. Returns the posteriors (all zeros
    where ``Z = 0``) and the predictive probabilities ``Z`` ``(n,)``; the arguments are not changed.
    """
    joint = joint * dynamics.test_likelihood(phase, n_anti, results)[:, None, :]
    total = joint.sum(axis=(1, 2))
    return joint / np.where(total > 0.0, total, 1.0)[:, None, None], total


def end_weights(joint: np.ndarray) -> np.ndarray:
    """A run's end, ``W_i(v) <- sum_s J(v, s)`` (normalized): ``(n, V)`` from joints ``(n, V, S)``."""
    w = joint.sum(axis=-1)
    return w / w.sum(axis=-1, keepdims=True)


class BatchBeliefFilter:
    """Exact posterior over the hidden state of N independent episodes, given each one's observable history.

    State, for episode n: ``weights[n, i, v]`` the posterior over idea i's base rate
    (on the padded support, see :func:`padded_support`), ``idea[n]`` the idea of the run
    under way (-1: none), ``joint[n, v, s]`` the joint posterior over that idea's base
    rate and the current latent state (all zeros when no run is under way).

    Every update takes ``envs``, the episodes it applies to (an index array or a boolean
    mask of length N; ``None``: all); array arguments are given per episode updated.
    """

    def __init__(self, dynamics: Dynamics, num_envs: int):
        self.dyn = dynamics
        self.num_envs = int(num_envs)
        self.values, self.prior = padded_support(dynamics)
        self.starts, self.worlds = padded_starts(dynamics), padded_worlds(dynamics)
        m, width = self.values.shape
        self.weights = np.empty((self.num_envs, m, width))
        self.idea = np.full(self.num_envs, -1, dtype=np.int64)
        self.joint = np.zeros((self.num_envs, width, dynamics.n_states))
        self._aligned = dynamics.aligned.astype(np.float64)
        self._shaped = dynamics.shaped.astype(np.float64)
        self.reset()

    def _select(self, envs) -> "slice | np.ndarray":
        """The episodes ``envs`` names, as an index array, or ``slice(None)`` for all (no copies then)."""
        if envs is None:
            return slice(None)
        if isinstance(envs, np.ndarray) and envs.dtype == np.int64:
            # one episode named by an index array: all of them (a view, where the array would copy)
            return slice(None) if self.num_envs == 1 and len(envs) == 1 else envs
        envs = np.asarray(envs)
        return np.flatnonzero(envs) if envs.dtype == bool else envs.astype(np.int64, copy=False)

    def _rows(self, envs) -> np.ndarray:
        sel = self._select(envs)
        return np.arange(self.num_envs) if isinstance(sel, slice) else sel

    def reset(self, envs=None) -> None:
        """Forget everything: back to the scenario's priors, no run under way."""
        sel = self._select(envs)
        self.weights[sel] = self.prior
        self.idea[sel] = -1
        self.joint[sel] = 0.0

    def start_run(self, idea, envs=None) -> None:
        """Start a run of ``idea`` (per episode, or one for all): ``J(v, s) = W_i(v) * init_v(s)``."""
        rows = self._rows(envs)
        self.idea[rows] = idea
        self.joint[rows] = start_joint(self.weights[rows, idea], self.starts[idea])

    def advance(self, phase, usage_code, envs=None, n_anti=None) -> None:
        """Apply phase ``phase`` (0-based) under ``usage_code`` (each per episode, or one for all): ``J <- J P``.

        ``n_anti``: each run's anti-trained phases of each proxy before this phase, ``(n, k)``
        (read only where the phase depends on it: a persistent proxy with anti-training damage).
        """
        sel = self._select(envs)
        self.joint[sel] = predict_joint(self.dyn, self.joint[sel], phase, usage_code, self.idea[sel], n_anti)

    def observe(self, phase, n_anti: np.ndarray, results: np.ndarray, envs=None) -> np.ndarray:
        """Condition on the test results at the end of ``phase``; returns their predictive probabilities ``(n,)``.

        ``n_anti`` and ``results`` are ``(n, k)``: the run's anti-training counts so far and
        each proxy's result (True: pass), for each episode updated.
        """
        sel = self._select(envs)
        joint, total = condition_joint(self.dyn, self.joint[sel], phase, n_anti, results)
        if (total <= 0.0).any():
            raise ValueError("the observed test results have probability 0 under the scenario")
        self.joint[sel] = joint
        return total

    def end_run(self, envs=None) -> None:
        """Fold each finished run's evidence into its idea's base-rate posterior: ``W_i(v) <- sum_s J(v, s)``."""
        rows = self._rows(envs)
        self.weights[rows, self.idea[rows]] = end_weights(self.joint[rows])
        self.idea[rows] = -1
        self.joint[rows] = 0.0

    # -- read-outs (every episode) -----------------------------------------------
    @property
    def p_aligned(self) -> np.ndarray:
        """``(N,)`` P(the current model is aligned | history); 0.0 where no run is under way."""
        return self.read_outs(shaped=False)[0]

    @property
    def p_shaped(self) -> np.ndarray:
        """``(N, k)`` P(the current model is shaped to pass proxy j | history); zeros where no run is under way."""
        return self.read_outs()[1]

    @property
    def mean_base_rates(self) -> np.ndarray:
        """``(N, m)`` posterior mean base rate of each idea, counting the run under way."""
        out = (self.weights * self.values).sum(axis=2)
        rows = np.flatnonzero(self.idea >= 0)
        idea = self.idea[rows]
        out[rows, idea] = (self.joint[rows].sum(axis=2) * self.values[idea]).sum(axis=1)
        return out

    def world_posterior(self) -> np.ndarray:
        """``(N, W)`` P(world | history), counting the run under way (a scenario with worlds has one idea,
        whose posterior carries the world's)."""
        rows = np.flatnonzero(self.idea >= 0)
        out = self.weights[:, 0] @ self.worlds[0]
        out[rows] = np.einsum("nv,nvw->nw", self.joint[rows].sum(axis=2), self.worlds[self.idea[rows]])
        return out

    def read_outs(self, shaped: bool = True) -> tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]:
        """``(p_aligned, p_shaped, mean_base_rates)`` at once, as the properties give them (the
        marginal over the base rate computed once); the last two are None unless ``shaped``."""
        marginal = self.joint.sum(axis=1)
        # sums of products row by row (not a matrix product, whose rounding may depend on how many rows
        # there are), so an episode's read-outs are the same to the bit in a batch of any size
        p_aligned = (marginal * self._aligned).sum(axis=1)
        if not shaped:
            return p_aligned, None, None
        return p_aligned, (marginal[:, :, None] * self._shaped).sum(axis=1), self.mean_base_rates


#: The belief id of a program with no run under way.
NO_RUN = 0


class RunTable:
    """The filter's beliefs interned: every run history already seen gets an integer id, computed once.

    Within a run of idea ``i`` started from the idea's posterior ``W_i``, the filter's joint and its
    read-outs are a function of ``W_i`` and the run's history alone. The table numbers each distinct
    posterior ``W_i`` (a *weights id*; ids ``0 .. m-1`` are the ideas' priors) and each distinct belief
    of a run under way (a *belief id*; id 0, :data:`NO_RUN`, stands for no run under way: its
    ``p_aligned`` and ``p_shaped`` are 0), and keeps, per belief id: the joint ``(V, S)``, ``p_aligned``,
    ``p_shaped`` ``(k,)``, the idea's posterior mean base rate ``base_rate``, the posterior over the scenario's
    worlds ``world`` ``(W,)`` (``[1.0]`` without ``worlds:``), the ``idea``, and counts of the
    run's history (a belief id is one history): its anti-trained phases so far per proxy ``n_anti`` ``(k,)``
    (and their ``anti_key``, which picks the next phase's dense transition) and its ``record`` ``(1 + 2k,)``, what it adds to its idea's record if it ends now (1 run, its passes per
    proxy, its fails per proxy); per
    weights id: the ``weights`` ``(V,)``, their ``mean`` base rate, their posterior over the worlds
    ``weights_world`` ``(W,)`` and the ``idea``. The way between
    them is looked up: the belief at a run's start (:meth:`start`), after a phase and its results
    (:meth:`child`, by branch ``usage code * 2^k + result code``) and the idea's posterior once the run
    ends (:meth:`end`). A step that meets a history not seen before computes it with a
    :class:`BatchBeliefFilter` given exactly those arguments (one filter for all the new ones), so every
    number is the filter's own; later visits cost an array look-up. Every method takes arrays (one id
    per program) and has a one-program form (``*_one``, ints) that gives the same numbers.

    The table holds at most ``max_bytes`` (default 256 MiB) but room for at least ``min_ids`` beliefs
    (an owner of N programs needs ``4 N``); an owner asks :meth:`needs_room` before a step and, when it
    does, keeps only its programs' current ids (:meth:`compact`).
    """

    MAX_BYTES = 256 * 2**20
    _PER_ID = ("joint", "p_aligned", "p_shaped", "base_rate", "world", "idea", "n_anti", "anti_key", "record")  # the arrays by belief id

    def __init__(self, dynamics: Dynamics, max_bytes: int = MAX_BYTES, min_ids: int = 4096):
        self.dyn = d = dynamics
        self.values, self.prior = padded_support(d)
        self.worlds = padded_worlds(d)
        self.n_ideas, width = self.values.shape
        self.fan = d.n_usages * 2**d.n_proxies
        k, S = d.n_proxies, d.n_states
        per_id = width * S * 8 + self.fan * 8 + (4 * k + 6 + d.n_worlds) * 8
        self.max_ids = max(int(max_bytes) // per_id, int(min_ids))
        self.compactions = 0
        self._cap = 0
        self._wcap = 0
        self.clear()

    # -- storage ---------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every history: only the ideas' priors are left (weights ids ``0 .. m-1``)."""
        d, (m, width) = self.dyn, self.values.shape
        self._cap, self._wcap = 1024, 64
        self.joint = np.zeros((self._cap, width, d.n_states))
        self.p_aligned = np.zeros(self._cap)
        self.p_shaped = np.zeros((self._cap, d.n_proxies))
        self.base_rate = np.zeros(self._cap)
        self.world = np.zeros((self._cap, d.n_worlds))
        self.idea = np.zeros(self._cap, dtype=np.int64)
        self.n_anti = np.zeros((self._cap, d.n_proxies), dtype=np.int64)
        self.anti_key = np.zeros(self._cap, dtype=np.int64)  # Dynamics.anti_key of n_anti: the next phase's transition
        self.record = np.zeros((self._cap, 1 + 2 * d.n_proxies), dtype=np.int64)
        self.children = np.full(self._cap * self.fan, -1, dtype=np.int64)  # [id * fan + branch]
        self.ends = np.full(self._cap, -1, dtype=np.int64)
        self.n_ids = 1  # NO_RUN: a zero joint, zero read-outs
        self.weights = np.zeros((self._wcap, width))
        self.mean = np.zeros(self._wcap)
        self.weights_world = np.zeros((self._wcap, d.n_worlds))
        self.weights_idea = np.zeros(self._wcap, dtype=np.int64)
        self.starts = np.full(self._wcap, -1, dtype=np.int64)
        self.n_weights = 0
        self._weights_ids: dict[tuple, int] = {}
        for i in range(m):
            self._intern(i, self.prior[i])

    def _grow(self, n: int) -> None:
        while self.n_ids + n > self._cap:
            cap = self._cap * 2
            for name in self._PER_ID:
                old = getattr(self, name)
                new = np.zeros((cap,) + old.shape[1:], dtype=old.dtype)
                new[: self._cap] = old
                setattr(self, name, new)
            for name, size in (("children", self.fan), ("ends", 1)):
                new = np.full(cap * size, -1, dtype=np.int64)
                new[: self._cap * size] = getattr(self, name)
                setattr(self, name, new)
            self._cap = cap

    def _intern(self, idea: int, weights: np.ndarray) -> int:
        key = (idea, weights.tobytes())
        wid = self._weights_ids.get(key)
        if wid is None:
            if self.n_weights == self._wcap:
                cap = self._wcap * 2
                for name in ("weights", "mean", "weights_world", "weights_idea", "starts"):
                    old = getattr(self, name)
                    new = np.full((cap,) + old.shape[1:], -1 if name == "starts" else 0, dtype=old.dtype)
                    new[: self._wcap] = old
                    setattr(self, name, new)
                self._wcap = cap
            wid = self._weights_ids[key] = self.n_weights
            self.weights[wid], self.weights_idea[wid] = weights, idea
            self.mean[wid] = (weights * self.values[idea]).sum()
            self.weights_world[wid] = weights @ self.worlds[idea]
            self.n_weights += 1
        return wid

    def _add(self, f: BatchBeliefFilter) -> np.ndarray:
        """New belief ids for the runs under way in filter ``f``: their joints and read-outs."""
        n = f.num_envs
        self._grow(n)
        ids = np.arange(self.n_ids, self.n_ids + n)
        p_aligned, p_shaped, rates = f.read_outs(shaped=True)
        self.joint[ids], self.p_aligned[ids], self.p_shaped[ids] = f.joint, p_aligned, p_shaped
        self.base_rate[ids], self.idea[ids] = rates[np.arange(n), f.idea], f.idea
        self.world[ids] = f.world_posterior()
        self.n_ids += n
        return ids

    def needs_room(self, n: int) -> bool:
        """Whether a step of ``n`` programs (at most ``3 n`` new ids) might not fit."""
        return self.n_ids + 3 * n > self.max_ids

    def compact(self, beliefs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep only the belief ids ``beliefs`` and weights ids ``weights`` of an owner's programs; returns
        them renumbered (same shapes). Everything else is forgotten (and recomputed if met again)."""
        beliefs, weights = np.asarray(beliefs), np.asarray(weights)
        live = np.union1d(beliefs, [NO_RUN])  # sorted, NO_RUN first
        kept = {name: getattr(self, name)[live].copy() for name in self._PER_ID}
        live_w = np.unique(weights)
        kept_w = [(int(self.weights_idea[w]), self.weights[w].copy()) for w in live_w]
        self.clear()
        self.compactions += 1
        new_w = np.array([self._intern(i, w) for i, w in kept_w], dtype=np.int64)
        self._grow(len(live))
        for name, values in kept.items():
            getattr(self, name)[: len(live)] = values
        self.n_ids = len(live)
        return np.searchsorted(live, beliefs), new_w[np.searchsorted(live_w, weights)]

    # -- the way between beliefs ---------------------------------------------------------
    def start(self, weights: np.ndarray) -> np.ndarray:
        """Belief ids at the start of runs whose idea's posterior is ``weights`` (weights ids)."""
        ids = self.starts.take(weights)
        if ids.min(initial=0) < 0:  # (one reduction: the misses are rare once the table is warm)
            miss = ids < 0
            new = np.unique(weights[miss])
            f = BatchBeliefFilter(self.dyn, len(new))
            ideas = self.weights_idea[new]
            f.weights[np.arange(len(new)), ideas] = self.weights[new]
            f.start_run(ideas)
            self.starts[new] = ids = self._add(f)  # (nothing anti-trained yet: n_anti 0)
            self.record[ids, 0] = 1
            ids = self.starts[weights]
        return ids

    def child(self, ids, branch, phase, usage_code, n_before, n_after, results) -> np.ndarray:
        """Belief ids after one more phase: ``phase`` (0-based) under ``usage_code``, the run's anti-training
        counts before and after it ``(n, k)``, the test ``results`` ``(n, k)`` (True: pass), and ``branch`` =
        ``usage_code * 2^k`` + the results' code."""
        flat = ids * self.fan + branch
        out = self.children.take(flat)
        if out.min(initial=0) < 0:
            miss = out < 0
            keys, first = np.unique(flat[miss], return_index=True)
            rows = np.flatnonzero(miss)[first]
            f = BatchBeliefFilter(self.dyn, len(rows))
            f.idea[:], f.joint[:] = self.idea[ids[rows]], self.joint[ids[rows]]
            f.advance(phase[rows], usage_code[rows], n_anti=n_before[rows])
            f.observe(phase[rows], n_after[rows], results[rows])
            self.children[keys] = new = self._add(f)
            self.n_anti[new] = n_after[rows]
            self.anti_key[new] = self.dyn.anti_key(n_after[rows])
            k = self.dyn.n_proxies
            self.record[new] = self.record[ids[rows]]
            self.record[new, 1 : 1 + k] += results[rows]
            self.record[new, 1 + k :] += ~results[rows]
            out = self.children[flat]
        return out

    def end(self, ids: np.ndarray) -> np.ndarray:
        """Weights ids of the ideas' posteriors once the runs at belief ``ids`` end there."""
        out = self.ends.take(ids)
        if out.min(initial=0) < 0:
            miss = out < 0
            new = np.unique(ids[miss])
            f = BatchBeliefFilter(self.dyn, len(new))
            ideas = self.idea[new]
            f.idea[:], f.joint[:] = ideas, self.joint[new]
            f.end_run()
            ended = f.weights[np.arange(len(new)), ideas]
            self.ends[new] = [self._intern(int(i), w) for i, w in zip(ideas, ended)]
            out = self.ends[ids]
        return out

    # -- one program ------------------------------------------------------------------
    def start_one(self, weights: int) -> int:
        out = self.starts[weights]
        return int(out) if out >= 0 else int(self.start(np.array([weights]))[0])

    def child_one(self, id_: int, branch: int, phase: int, usage_code: int, n_before, n_after, results) -> int:
        out = self.children[id_ * self.fan + branch]
        if out >= 0:
            return int(out)
        one = np.ones(1, dtype=np.int64)
        return int(self.child(one * id_, one * branch, one * phase, one * usage_code, np.array([n_before]),
                              np.array([n_after]), np.array([results]))[0])

    def end_one(self, id_: int) -> int:
        out = self.ends[id_]
        return int(out) if out >= 0 else int(self.end(np.array([id_]))[0])
