"""The exact Bayesian filter: what the organization can know about the hidden state.

Runs are independent given the ideas' base rates, and each idea's base rate is
independent of the others a priori, so the posterior factorizes (docs/model.md,
"The Bayesian filter"):

- per idea i, a posterior weight over the support of its base rate, updated by every
  finished run of that idea;
- for the run under way, the joint posterior over (its idea's base rate, latent state),
  pushed through the same transition matrices and test likelihoods as the env.

The filter is written once, over a batch of N independent episodes
(:class:`BatchBeliefFilter`); a single program looks its beliefs up per history already seen
(:class:`RunBeliefs`), each computed once by a one-episode filter. Ideas whose base-rate
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


# -- the updates, as functions: written once, used by the filter below and by the solver -----
def start_joint(dynamics: Dynamics, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A run's start, ``J(v, s) = W_i(v) * init_v(s)``: ``(n, V, S)`` from ``weights`` ``(n, V)``
    and the support ``values`` (``(V,)``, or ``(n, V)`` when the runs' ideas differ)."""
    return np.asarray(weights)[..., None] * dynamics.initial(values)


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
        self.joint[rows] = start_joint(self.dyn, self.weights[rows, idea], self.values[idea])

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
        return self.joint.sum(axis=1) @ self._aligned

    @property
    def p_shaped(self) -> np.ndarray:
        """``(N, k)`` P(the current model is shaped to pass proxy j | history); zeros where no run is under way."""
        return self.joint.sum(axis=1) @ self._shaped

    @property
    def mean_base_rates(self) -> np.ndarray:
        """``(N, m)`` posterior mean base rate of each idea, counting the run under way."""
        out = (self.weights * self.values).sum(axis=2)
        rows = np.flatnonzero(self.idea >= 0)
        idea = self.idea[rows]
        out[rows, idea] = (self.joint[rows].sum(axis=2) * self.values[idea]).sum(axis=1)
        return out

    def read_outs(self, shaped: bool = True) -> tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]:
        """``(p_aligned, p_shaped, mean_base_rates)`` at once, as the properties give them (the
        marginal over the base rate computed once); the last two are None unless ``shaped``."""
        marginal = self.joint.sum(axis=1)
        if not shaped:
            return marginal @ self._aligned, None, None
        return marginal @ self._aligned, marginal @ self._shaped, self.mean_base_rates


class RunBeliefs:
    """The filter's state of one episode, looked up by its history: a memo over the histories already seen.

    Within a run of idea ``i`` started from the idea's posterior ``W_i``, the filter's joint and
    read-outs are a function of the run's history alone: its checkpoint ``d`` and its node at that
    depth of the run tree (``x' = x * fan + c * 2^k + r`` from the parent ``x``, the phase's usage
    code ``c`` and the result code ``r``; the run's start is node 0 at depth 0). Every entry is computed once, by a one-episode
    :class:`BatchBeliefFilter` given exactly the arguments the batch rules give it, so a looked-up
    belief is the filter's own, to the last bit; later visits to the same history cost a dict
    look-up. A posterior ``W_i`` is keyed by the bytes of its weights. The memo is shared by every
    single env of one scenario object (:meth:`of`) and is emptied when it holds ``limit`` entries.
    """

    LIMIT = 200_000

    @classmethod
    def of(cls, dynamics: Dynamics) -> "RunBeliefs":
        return dynamics.scenario.cached("run_beliefs", lambda _: cls(dynamics))

    def __init__(self, dynamics: Dynamics, limit: int = LIMIT):
        self.dyn = dynamics
        self.limit = int(limit)
        self.fan = dynamics.n_usages * 2**dynamics.n_proxies
        self.values, self.prior = padded_support(dynamics)
        self._filter = BatchBeliefFilter(dynamics, 1)
        self._one = np.zeros(1, dtype=np.int64)
        self._entries: dict[tuple, RunBelief] = {}
        self._means: dict[tuple, float] = {}

    def prior_key(self, idea: int) -> bytes:
        """The key of idea ``idea``'s prior (its posterior before any run)."""
        return self.prior[idea].tobytes()

    def mean(self, idea: int, weights: bytes) -> float:
        """The posterior mean base rate of ``idea`` under the posterior keyed ``weights`` (no run under way)."""
        key = (idea, weights)
        out = self._means.get(key)
        if out is None:
            f = self._filter
            f.weights[0, idea] = np.frombuffer(weights)
            out = self._means[key] = float((f.weights * f.values).sum(axis=2)[0, idea])
        return out

    def start(self, idea: int, weights: bytes) -> "RunBelief":
        """A run of ``idea`` just started from the posterior keyed ``weights`` (node 0)."""
        key = (idea, weights, 0, 0)
        entry = self._entries.get(key)
        if entry is None:
            f = self._filter
            f.weights[0, idea] = np.frombuffer(weights)
            f.start_run(np.full(1, idea, dtype=np.int64), self._one)
            entry = self._store(key, idea, weights, 0, 0)
        return entry

    def after(self, entry: "RunBelief", phase: int, usage_code: int, n_anti_before, n_anti_after, results,
              result_code: int) -> "RunBelief":
        """The belief after one more phase under ``usage_code`` and its test ``results``, from ``entry``."""
        node = entry.node * self.fan + usage_code * 2**self.dyn.n_proxies + result_code
        key = (entry.idea, entry.weights, phase + 1, node)
        child = self._entries.get(key)
        if child is None:
            f = self._filter
            f.idea[0], f.joint[0] = entry.idea, entry.joint
            t = np.full(1, phase, dtype=np.int64)
            f.advance(t, np.full(1, usage_code, dtype=np.int64), self._one, n_anti=np.asarray([n_anti_before]))
            f.observe(t, np.asarray([n_anti_after]), np.asarray([results]), self._one)
            child = self._store(key, entry.idea, entry.weights, phase + 1, node)
        return child

    def end(self, entry: "RunBelief") -> bytes:
        """The key of the idea's posterior once the run of ``entry`` ends there."""
        if entry.end is None:
            f = self._filter
            f.idea[0], f.joint[0] = entry.idea, entry.joint
            f.end_run(self._one)
            entry.end = f.weights[0, entry.idea].tobytes()
        return entry.end

    def _store(self, key: tuple, idea: int, weights: bytes, depth: int, node: int) -> "RunBelief":
        f = self._filter
        f.weights[0, idea] = np.frombuffer(weights)
        p_aligned, p_shaped, base_rates = f.read_outs(shaped=True)
        entry = RunBelief(idea, weights, depth, node, f.joint[0].copy(), float(p_aligned[0]), p_shaped[0].copy(),
                          float(base_rates[0, idea]))
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = entry
        return entry


class RunBelief:
    """One history's belief (:class:`RunBeliefs`): the joint ``(V, S)`` and its read-outs."""

    __slots__ = ("idea", "weights", "depth", "node", "joint", "p_aligned", "p_shaped", "base_rate", "end")

    def __init__(self, idea, weights, depth, node, joint, p_aligned, p_shaped, base_rate):
        self.idea, self.weights, self.depth, self.node, self.joint = idea, weights, depth, node, joint
        self.p_aligned, self.p_shaped, self.base_rate = p_aligned, p_shaped, base_rate
        self.end: bytes | None = None
