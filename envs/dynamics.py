"""The dynamics of one training run, defined once, as arrays.

Everything that simulates or reasons about a run (the env, the Bayesian filter, the
exact analysis, the vector env and the solver) reads these arrays, through
:meth:`Dynamics.initial`, :meth:`Dynamics.advance` and the ``pass_prob`` table; none of
them re-derives a transition or a test probability. The formulas are stated in
``docs/model.md``; each one below cites its section there.

Latent state of a model under training (docs/model.md, "Latent state"): ``a`` (1 if
aligned), ``h_j`` for each proxy (1 if the weights sit in the basin that passes proxy j
whatever the model's values) and, for each proxy with ``persistence > 0``, ``b_j`` (1 if
the model, while unshaped, passes proxy j by itself: a lasting quirk or skill). It is
packed into one index ``s = a + 2 * sum_j h_j 2^j + 2^(k+1) * sum_q b_(q) 2^q`` over the
persistent proxies q, so a scenario without them has v0's ``2^(k+1)`` states.

A phase is the product of per-bit steps (values, then shaping, then dispositions). Where
the dense ``S x S`` matrices are small and do not depend on the run's anti-training so far,
they are materialised once (``transition``); otherwise :meth:`Dynamics.advance` applies the
steps bit by bit.
"""

from __future__ import annotations

import itertools
import operator
from typing import Sequence

import numpy as np

from proxygym.envs.regimen import ANTI, TRAIN
from proxygym.envs.scenario import Scenario

#: The largest dense transition table materialised; above it a phase is applied bit by bit.
DENSE_LIMIT_BYTES = 128 * 2**20
#: The most memory a stack of scenarios (:meth:`Dynamics.stack`) is sized to take while it is built.
STACK_LIMIT_BYTES = 64 * 2**20


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


class Dynamics:
    """The scenario compiled into the arrays that define a run.

    Attributes:
        n_phases, n_proxies, n_ideas: T, k and m of the scenario.
        persistent: the proxies (indices) with ``persistence > 0``, each with a ``b`` bit.
        n_bits, n_states: bits of the latent state (``1 + k + len(persistent)``) and ``S = 2**n_bits``
            (with worlds: ``n_bits`` of one world's state, and ``S = W 2**n_bits``).
        start_given_aligned: ``(2 W, S)``; row ``a + 2 w`` is P(s | a, world w) at a run's start (``(2, S)``
            without worlds; a stack: ``(batch, 2, S)``).
        aligned: ``(S,)`` bool, whether state s is aligned.
        shaped: ``(S, k)`` bool, whether state s is shaped to pass proxy j.
        disposed: ``(S, len(persistent))`` bool, the ``b`` bit of each persistent proxy.
        usages: ``(3**k, k)`` the usage of each proxy for each usage code;
            the code of a usage vector u is ``sum_j u_j * 3**j`` (:meth:`usage_code`; ``usage_weights``
            holds the ``3**j``, ``result_weights`` the ``2**j`` of :meth:`result_code`).
        results: ``(2**k, k)`` whether each proxy passed, for each result code
            ``sum_j [proxy j passed] 2**j`` (:meth:`result_code`).
        unshaped_pass: ``(2, T+1, T+1, k)``; ``unshaped_pass[a, c, n, j]`` is pi_j: the probability
            that an unshaped model of alignment a passes proxy j at checkpoint c (0: a run's
            start, read with phase 1's capability) after n anti-trained phases of j.
        pass_prob: ``(T, T+1, S, k)``; ``pass_prob[t, n, s, j]`` is the probability
            that proxy j passes at checkpoint t+1 for a model in state s whose run
            has anti-trained proxy j in n phases so far.
        values: ``(T, 3**k, m, S, 2)``: P(a' | s) in phase t+1 under usage code c with idea i (step 1).
        shaping: ``(T, 3**k, k, 2, 2, 2)``: ``[t, c, j, a', h, h']``, P(h_j' | h_j, a') (step 2).
        dispositions: ``(T, 3, T, len(persistent), 2, 2, 2, 2)``: ``[t, u, n, q, a, a', b, b']``,
            P(b' | b, a, a') of persistent proxy q used u in phase t+1 after n anti-trained phases (step 3).
        transition: ``(T, 3**k, m, A, S, S)`` or None; ``transition[t, c, i, key, s, s2]`` is the
            probability that phase t+1 (0-based t) under usage code c, with idea i, moves the
            model from state s to s2, after the anti-training counts of :meth:`anti_key` ``key``
            (A = 1 unless a persistent proxy has ``anti_damage > 0``: its dispositions then
            depend on how often the run anti-trained it). None where it would be too large:
            :meth:`advance` then applies the steps bit by bit.
        anti_proxies: the persistent proxies with ``anti_damage > 0``, whose anti-training counts
            (0..T-1 before a phase) make the key of a transition: ``A = T ** len(anti_proxies)``.
        base_rate_values, base_rate_probs: per idea, the support of its base rate and
            the prior over it (one value with probability 1 when the rate is known); with worlds,
            every world's support in turn, weighted by the world's prior weight.
        support_world: per idea, the world of each support value (all 0 without worlds).
        support_start: per idea, ``(V_i, S)``: the distribution over states at a run's start for
            each support value (:meth:`initial` of its base rate in its world).
        n_worlds, world: the number of worlds (1 without ``worlds:``) and ``(S,)`` the world of each state.
        world_dynamics: each world's own dynamics (``(self,)`` without worlds). With worlds, the
            per-bit tables (``unshaped_pass``, ``values``, ``shaping``, ``dispositions``, ``kappa``) are
            each world's, there; this object holds the tables every consumer reads, over all worlds.


    A stack (:meth:`stack`) holds the dynamics of several scenarios of one :meth:`layout` at once:
    every table above that comes from the scenario's numbers (``kappa``, ``unshaped_pass``,
    ``start_given_aligned``, ``pass_prob``, ``values``, ``shaping``, ``dispositions``,
    ``transition``, ``base_rate_values``, ``base_rate_probs``) has a leading axis of one row per
    scenario (``batch`` is its length; None for one scenario), built by the same code.
    """

    @classmethod
    def of(cls, scenario: Scenario) -> "Dynamics":
        """The scenario's dynamics, compiled once per scenario object and shared by every consumer."""
        return scenario.cached("dynamics", cls)

    def __init__(self, scenario: Scenario, persistent=None, anti_proxies=None):
        """``persistent`` and ``anti_proxies`` (proxy indices) give the state a ``b`` bit, and the transitions
        an anti-training key, for proxies that need none in this scenario (a world's dynamics takes the
        union over the worlds, so that every world has the same latent states)."""
        worlds = scenario.world_scenarios
        if persistent is None:
            persistent = [j for j in range(len(scenario.proxies)) if any(w.proxies[j].persistence > 0 for w in worlds)]
        if anti_proxies is None:
            anti_proxies = [j for j in persistent if any(w.proxies[j].anti_damage > 0 for w in worlds)]
        if scenario.worlds:
            self.scenario, self.batch = scenario, None
            self._compose([Dynamics(w, persistent, anti_proxies) for w in worlds], scenario.world_weights)
            return
        self._compile([scenario], False, persistent, anti_proxies)

    @classmethod
    def stack(cls, scenarios: Sequence[Scenario]) -> "Dynamics":
        """The dynamics of several scenarios of one :meth:`layout`, each table with a leading axis of one row
        per scenario (:meth:`stack_size` says how many to take at once). Only the analysis' queries read a
        stack: :meth:`initial` (``rho`` ``(V,)`` or ``(batch, V)``), :meth:`advance` (one phase, usage, idea
        and ``n_anti`` for all; ``dist`` ``(batch, ..., S)``; the matrices of a phase are built when first
        asked, not ``transition``) and :meth:`pass_set_prob` (``(batch, S)``)."""
        scenarios = list(scenarios)
        layouts = {cls.layout(sc) for sc in scenarios}
        if len(layouts) != 1:
            raise ValueError(f"Dynamics.stack: the scenarios have {len(layouts)} different layouts; stack one layout at a time")
        if any(sc.worlds for sc in scenarios):
            raise ValueError("Dynamics.stack: a scenario with worlds is compiled alone")
        dyn = cls.__new__(cls)
        first = scenarios[0]
        persistent = [j for j, p in enumerate(first.proxies) if p.persistence > 0]
        dyn._compile(scenarios, True, persistent, [j for j in persistent if first.proxies[j].anti_damage > 0])
        return dyn

    @staticmethod
    def layout(scenario: Scenario) -> tuple:
        """What scenarios must share to stack: the number of phases, the proxies' names, which proxies are
        persistent and which of those anti-training wears, which have an obfuscation difficulty, the proxies
        each one transfers from (in order), and the size of each idea's base-rate support."""
        return (
            len(scenario.phases),
            tuple([(p.name, p.persistence > 0, p.persistence > 0 and p.anti_damage > 0, p.obfuscation_difficulty is not None,
                    tuple(p.transfer)) for p in scenario.proxies]),
            tuple([len(idea.support[0]) for idea in scenario.ideas]),
        )

    @staticmethod
    def stack_size(scenario: Scenario) -> int:
        """How many scenarios of this one's layout to stack at once so that the tables and the matrices of a
        phase (and the arrays on the way to one) stay within STACK_LIMIT_BYTES."""
        T, k, m = len(scenario.phases), len(scenario.proxies), len(scenario.ideas)
        q = sum(p.persistence > 0 for p in scenario.proxies)
        S, C = 2 ** (1 + k + q), 3**k
        per = 8 * (T * C * (m * S * 2 + k * 8) + 48 * T * T * max(q, 1) + S * S * (k + q + 2 + 2 * T))
        return max(1, STACK_LIMIT_BYTES // per)

    def _compile(self, scenarios: list[Scenario], stacked: bool, persistent, anti_proxies) -> None:
        scenario = scenarios[0]
        self.scenario = None if stacked else scenario
        self.batch = len(scenarios) if stacked else None
        proxies = scenario.proxies
        self.n_phases = T = len(scenario.phases)
        self.n_proxies = k = len(proxies)
        self.n_ideas = len(scenario.ideas)
        self.n_usages = 3**k
        self.persistent = np.array(persistent, dtype=np.int64)
        self.n_bits = 1 + k + len(self.persistent)
        self.n_states = 2**self.n_bits
        self.n_worlds, self.world_dynamics = 1, (self,)
        self.world = np.zeros(self.n_states, dtype=np.int64)

        states = np.arange(self.n_states)
        bits = (states[:, None] >> np.arange(self.n_bits)[None, :]) & 1
        self.aligned = bits[:, 0].astype(bool)
        self.shaped = bits[:, 1 : 1 + k].astype(bool)
        self.disposed = bits[:, 1 + k :].astype(bool)
        # usage code c -> usage of each proxy: digit j of c in base 3
        self.usages = np.array(list(itertools.product(range(3), repeat=k)))[:, ::-1].copy()
        self.usage_weights = 3 ** np.arange(k, dtype=np.int64)
        # result code r -> whether each proxy passed: bit j of r
        self.results = ((np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
        self.result_weights = 2 ** np.arange(k, dtype=np.int64)
        self._set_anti_keys(anti_proxies)
        # per proxy, the proxies whose pressure transfers to it (indices, in the order of its ``transfer``)
        self._transfers = [[scenario.proxy_names.index(o) for o in proxy.transfer] for proxy in proxies]

        # every table is built with a leading axis of one row per scenario (one row when not stacked)
        x = _Inputs(scenarios)
        kappa = x.proxy["persistence"]
        unshaped_pass = self._build_unshaped_pass(x)
        pass_prob = self._build_pass_prob(unshaped_pass, kappa)
        values = self._build_values(x, unshaped_pass, kappa)
        shaping = self._build_shaping(x)
        dispositions = self._build_dispositions(unshaped_pass)
        # a stack builds the matrices of the phases it advances through, when first asked (:meth:`advance`)
        # (sized by the compiled state: a world's dynamics carries the persistent bits of every world)
        dense_bytes = T * self.n_usages * self.n_ideas * self.n_anti_keys * self.n_states**2 * 8
        dense = not stacked and dense_bytes <= DENSE_LIMIT_BYTES
        transition = self._build_transition(values, shaping, dispositions) if dense else None
        self._matrices: dict[tuple, np.ndarray] = {}
        row = (lambda a: a) if stacked else (lambda a: a[0])
        self.kappa = row(kappa)
        self.base_rate_values = [row(v) for v in x.base_rate_values]
        self.base_rate_probs = [row(p) for p in x.base_rate_probs]
        self.unshaped_pass = row(unshaped_pass)
        self.pass_prob = row(pass_prob)
        self.values = row(values)
        self.shaping = row(shaping)
        self.dispositions = row(dispositions)
        self.transition = None if transition is None else row(transition)
        self.support_world = [np.zeros(v.shape[-1], dtype=np.int64) for v in self.base_rate_values]
        # P(s | a) at a run's start: what is drawn after a (the dispositions of persistent proxies)
        self.start_given_aligned = self.initial(np.array([0.0, 1.0]))
        self._finish()

    def _set_anti_keys(self, anti_proxies) -> None:
        T, k = self.n_phases, self.n_proxies
        self.anti_proxies = np.array(anti_proxies, dtype=np.int64)
        self.n_anti_keys = T ** len(self.anti_proxies)
        self._anti_weights = np.zeros(k, dtype=np.int64)
        self._anti_weights[self.anti_proxies] = T ** np.arange(len(self.anti_proxies))

    def _finish(self) -> None:
        # each idea's start distributions, one per support value: (V_i, S)
        self.support_start = [self.initial(v, w) for v, w in zip(self.base_rate_values, self.support_world)]
        for table in (self.start_given_aligned, self.unshaped_pass, self.pass_prob, self.values, self.shaping,
                      self.dispositions, self.transition, *self.support_start):
            if table is not None:
                table.setflags(write=False)

    def _compose(self, worlds: "list[Dynamics]", weights) -> None:
        """The dynamics of a scenario with worlds (docs/model.md, "Worlds"): the world is one more hidden
        variable of the latent state, ``s = s_w + S_w * w`` over the states ``s_w`` of world ``w``'s own
        dynamics, which never changes within a run; each idea's base-rate support is every world's support
        in turn, with prior ``P(w) P(rho | w)``, so a program draws its world with its base rate."""
        first = worlds[0]
        for name in ("n_phases", "n_proxies", "n_ideas", "n_usages", "persistent", "n_bits", "usages", "usage_weights",
                     "results", "result_weights"):
            setattr(self, name, getattr(first, name))
        W, inner = len(worlds), first.n_states
        self.n_worlds, self.world_dynamics, self.inner_states = W, tuple(worlds), inner
        self._matrices = {}
        self.n_states = S = W * inner
        self.world = np.repeat(np.arange(W), inner)
        self.aligned = np.tile(first.aligned, W)
        self.shaped = np.tile(first.shaped, (W, 1))
        self.disposed = np.tile(first.disposed, (W, 1))
        self.kappa = self.unshaped_pass = self.values = self.shaping = self.dispositions = None  # per world
        m = self.n_ideas
        self.base_rate_values = [np.concatenate([d.base_rate_values[i] for d in worlds]) for i in range(m)]
        self.base_rate_probs = [np.concatenate([p * d.base_rate_probs[i] for p, d in zip(weights, worlds)])
                                for i in range(m)]
        self.support_world = [np.concatenate([np.full(len(d.base_rate_values[i]), w) for w, d in enumerate(worlds)])
                              for i in range(m)]
        self.pass_prob = np.concatenate([d.pass_prob for d in worlds], axis=2)  # (T, T+1, S, k)
        # row a + 2 w: P(s | a, w) at a run's start
        self.start_given_aligned = np.zeros((2 * W, S))
        for w, d in enumerate(worlds):
            self.start_given_aligned[2 * w : 2 * w + 2, w * inner : (w + 1) * inner] = d.start_given_aligned
        self._set_anti_keys(first.anti_proxies)
        self.transition = None
        if all(d.transition is not None for d in worlds) and \
                first.transition.nbytes * W * W <= DENSE_LIMIT_BYTES:
            self.transition = np.zeros(first.transition.shape[:-2] + (S, S))
            for w, d in enumerate(worlds):
                block = slice(w * inner, (w + 1) * inner)
                self.transition[..., block, block] = d.transition
        self._finish()

    # -- construction (each table with a leading axis N: one row per scenario) ---------------------
    def _build_unshaped_pass(self, x: "_Inputs") -> np.ndarray:
        # docs/model.md, "Checkpoint tests": pi_j(a, c, n)
        T, k, p = self.n_phases, self.n_proxies, x.proxy
        capability = np.concatenate([x.capability[:, :1], x.capability], axis=1)[:, :, None]  # (N, T+1, 1): checkpoint 0..T
        out = np.empty((x.n, 2, T + 1, T + 1, k))
        n_anti = np.arange(T + 1)[None, :, None]
        out[:, 1] = (p["sensitivity"][:, None, :] * (1.0 - p["anti_damage"][:, None, :]) ** n_anti)[:, None, :, :]
        circumvent = sigmoid(p["sharpness"][:, None, :] * (capability - p["difficulty"][:, None, :]))  # (N, T+1, k)
        false_pass = p["false_pass"][:, None, :]
        out[:, 0] = (false_pass + (1.0 - false_pass) * circumvent)[:, :, None, :]
        return out

    def _build_pass_prob(self, unshaped_pass: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        # docs/model.md, "Checkpoint tests": shaped passes; else a lasting disposition or a fresh draw
        a = self.aligned.astype(np.int64)
        unshaped = unshaped_pass[:, a, 1:].transpose(0, 2, 3, 1, 4).copy()  # (N, T, T+1, S, k): checkpoint t+1, n, state, proxy
        for q, j in enumerate(self.persistent):
            b = self.disposed[:, q]
            kj = kappa[:, j, None, None, None]
            unshaped[..., j] = kj * b[None, None, None, :] + (1.0 - kj) * unshaped[..., j]
        return np.where(self.shaped[None, None, None, :, :], 1.0, unshaped)

    def _build_values(self, x: "_Inputs", unshaped_pass: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        """P(a' | s), docs/model.md, "Phase step 1: values" (every usage and idea of a phase at once)."""
        T, C, m, S = self.n_phases, self.n_usages, self.n_ideas, self.n_states
        steer, gate, drift = x.proxy["steer"][:, None, :], x.proxy["gate"][:, None, :], x.drift[:, None, :]  # (N, 1, k | m)
        trained = self.usages == TRAIN  # (C, k)
        out = np.empty((x.n, T, C, m, S, 2))
        misaligned = ~self.aligned  # (S,)
        for t in range(T):
            p = x.plasticity[:, t, None, None]  # (N, 1, 1)
            # psi[s, j]: the chance a misaligned model in state s passes j at the phase's start (the gate's input)
            psi = np.where(self.shaped, 1.0, self._disposition_or(unshaped_pass[:, 0, t, 0][:, None, :], kappa))  # (N, S, k)
            pull = 1.0 - p * np.maximum(steer, 0.0) * (1.0 - gate * psi)  # (N, S, k)
            keep_m = np.prod(np.where(trained[None, :, None, :], pull[:, None, :, :], 1.0), axis=3)  # (N, C, S)
            keep_a_train = np.prod(np.where(trained[None], 1.0 - p * np.maximum(-steer, 0.0), 1.0), axis=2)  # (N, C)
            up = (1.0 - keep_m)[:, :, None, :]  # (N, C, 1, S)
            down = (1.0 - (1.0 - p * drift) * keep_a_train[:, :, None])[..., None]  # (N, C, m, 1)
            out[:, t, ..., 0] = np.where(misaligned, 1.0 - up, down)
            out[:, t, ..., 1] = np.where(misaligned, up, 1.0 - down)
        return out

    def _disposition_or(self, pi: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        """``(N, S, k)``: ``kappa_j b_j + (1 - kappa_j) pi_j`` for persistent proxies, ``pi_j`` for the others."""
        out = np.broadcast_to(pi, (len(pi), self.n_states, self.n_proxies)).copy()
        for q, j in enumerate(self.persistent):
            kj = kappa[:, j, None]
            out[..., j] = kj * self.disposed[None, :, q] + (1.0 - kj) * out[..., j]
        return out

    def _build_shaping(self, x: "_Inputs") -> np.ndarray:
        """P(h_j' | h_j, a'), docs/model.md, "Phase step 2: shaping" (every phase, usage and proxy at once)."""
        T, C, k, p = self.n_phases, self.n_usages, self.n_proxies, x.proxy
        # term[c, l]: proxy l's own pressure from its usage; the transfer: the share of l's that acts on j
        term = p["incentive"][:, None, :] * (self.usages == TRAIN) - p["anti_strength"][:, None, :] * (self.usages == ANTI)  # (N, C, k)
        pressure = p["native"][:, None, :] + term  # (N, C, k)
        for j, others in enumerate(self._transfers):
            for other in others:
                pressure[..., j] = pressure[..., j] + x.transfer[:, j, other, None] * term[..., other]
        capability, plasticity = x.capability, x.plasticity  # (N, T)
        onset = np.ones((x.n, T, k))
        for j in np.flatnonzero(~np.isnan(p["obfuscation_difficulty"][0])):
            onset[:, :, j] = sigmoid(p["sharpness"][:, j, None] * (capability - p["obfuscation_difficulty"][:, j, None]))
        gamma = p["faking_when_set"]
        faking = np.stack([(1.0 - plasticity[:, :, None]) ** gamma[:, None, :], np.ones((x.n, T, k))], axis=-1)  # (N, T, k, a')
        proximity = np.stack([p["proximity"], p["aligned_proximity"]], axis=-1)  # (N, k, a')
        wash = p["wash_out"][:, None, :, None]
        rise, fall = sigmoid(pressure)[..., None], sigmoid(-pressure)[..., None]  # (N, C, k, 1)
        # (N, T, C, k, a') in the order of the formula: proximity * sigmoid(pressure) * faking * onset
        on = (proximity[:, None, None] * rise[:, None]) * faking[:, :, None] * onset[:, :, None, :, None]
        off = np.broadcast_to(((proximity[:, None] * fall) * wash)[:, None], on.shape)
        out = np.empty((x.n, T, C, k, 2, 2, 2))
        out[..., 0, 0], out[..., 0, 1] = 1.0 - on, on
        out[..., 1, 0], out[..., 1, 1] = off, 1.0 - off
        return out

    def _build_dispositions(self, unshaped_pass: np.ndarray) -> np.ndarray:
        """P(b' | b, a, a'), docs/model.md, "Phase step 3: dispositions": ``(N, T, 3, T, q, a, a', b, b')``."""
        T, q_count = self.n_phases, len(self.persistent)
        out = np.zeros((len(unshaped_pass), T, 3, T, q_count, 2, 2, 2, 2))
        if not q_count:
            return out
        pi = unshaped_pass[..., self.persistent]  # (N, 2, T+1, T+1, q)
        t, u, n = np.arange(T)[:, None, None], np.arange(3)[None, :, None], np.arange(T)[None, None, :]
        # (N, T, 3, T, q, a): pi at the phase's start (before) and at its checkpoint (after, by the new alignment)
        before = np.moveaxis(pi[:, :, t, n], 1, -1)
        after = np.moveaxis(pi[:, :, t + 1, n + (u == ANTI)], 1, -1)
        for a in (0, 1):
            # values changed: the disposition is drawn afresh
            fresh = after[..., 1 - a, None]
            out[..., a, 1 - a, :, 1] = fresh
            out[..., a, 1 - a, :, 0] = 1.0 - fresh
            # values kept: a rise in pi gains passers among non-passers, a fall loses them among passers
            b, f = before[..., a], after[..., a]
            rises = f >= b
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(b >= 1.0, 0.0, (f - b) / (1.0 - b))
                loss = (b - f) / b
            d = out[..., a, a, :, :]
            d[..., 0, 0], d[..., 0, 1] = np.where(rises, 1.0 - gain, 1.0), np.where(rises, gain, 0.0)
            d[..., 1, 0], d[..., 1, 1] = np.where(rises, 0.0, loss), np.where(rises, 1.0, 1.0 - loss)
        return out

    def _build_transition(self, values: np.ndarray, shaping: np.ndarray, dispositions: np.ndarray) -> np.ndarray:
        """The dense ``S x S`` matrices of every phase, usage code, idea and anti-training key (:meth:`anti_key`):
        ``(N, T, C, m, A, S, S)``, one key at a time."""
        shaped = self._shaping_matrices(shaping)[:, :, :, None]  # (N, T, C, 1, S, S)
        values = self._values_matrices(values)  # (N, T, C, m, S, S)
        out = np.empty(values.shape[:4] + (self.n_anti_keys,) + values.shape[4:])
        u, qq = self.usages[:, self.persistent], np.arange(len(self.persistent))  # (C, q), (q,)
        for key in range(self.n_anti_keys):
            part = shaped
            if len(self.persistent):
                counts = self._key_counts(key)[self.persistent]  # (q,)
                part = shaped * self._disposition_matrices(dispositions[:, :, u, counts, qq])[:, :, :, None]
            out[:, :, :, :, key] = values * part
        return out

    # The three factors of a phase's S x S matrices (docs/model.md, "A phase"): each from its table's last axes,
    # the leading ones (phase, usage, ... or none) kept.
    def _values_matrices(self, values: np.ndarray) -> np.ndarray:
        """``(..., S, S)``: P(a' of s2 | s), from ``values`` ``(..., S, 2)`` (step 1)."""
        return values[..., np.arange(self.n_states)[:, None], self.aligned.astype(int)[None, :]]

    def _shaping_matrices(self, shaping: np.ndarray) -> np.ndarray:
        """``(..., S, S)``: the product over proxies of P(h_j of s2 | h_j of s, a' of s2), from ``shaping``
        ``(..., k, 2, 2, 2)`` (step 2)."""
        a_to = self.aligned.astype(int)[None, :, None]
        h_from, h_to = self.shaped[:, None, :].astype(int), self.shaped[None, :, :].astype(int)
        return np.prod(shaping[..., np.arange(self.n_proxies)[None, None, :], a_to, h_from, h_to], axis=-1)

    def _disposition_matrices(self, dispositions: np.ndarray) -> np.ndarray:
        """``(..., S, S)``: the product over persistent proxies of P(b_q of s2 | b_q of s, a of s, a' of s2), from the
        dispositions of one usage and anti-training count per proxy ``(..., q, 2, 2, 2, 2)`` (step 3)."""
        a_from, a_to = self.aligned.astype(int)[:, None, None], self.aligned.astype(int)[None, :, None]
        b_from, b_to = self.disposed[:, None, :].astype(int), self.disposed[None, :, :].astype(int)
        qq = np.arange(len(self.persistent))[None, None, :]
        return np.prod(dispositions[..., qq, a_from, a_to, b_from, b_to], axis=-1)

    def _key_counts(self, key) -> np.ndarray:
        """``(..., k)``: the anti-training count of each proxy that anti-training key(s) ``key`` stand for (0 where
        it does not matter)."""
        key = np.asarray(key)
        counts = np.zeros(key.shape + (self.n_proxies,), dtype=np.int64)
        counts[..., self.anti_proxies] = (key[..., None] // self.n_phases ** np.arange(len(self.anti_proxies))) % self.n_phases
        return counts

    def _stacked_matrix(self, phase: int, code: int, idea: int, key: int) -> np.ndarray:
        """``(batch, S, S)``: a stack's transition matrices of one phase, usage code, idea and anti-training key."""
        slot = (int(phase), int(code), int(idea), int(key))
        if slot not in self._matrices:
            part = self._shaping_matrices(self.shaping[:, phase, code])
            if len(self.persistent):
                q = self.persistent
                chosen = self.dispositions[:, phase, self.usages[code, q], self._key_counts(key)[q], np.arange(len(q))]
                part = part * self._disposition_matrices(chosen)
            self._matrices[slot] = self._values_matrices(self.values[:, phase, code, idea]) * part
        return self._matrices[slot]

    def anti_key(self, n_anti) -> "int | np.ndarray":
        """The key of the transition that follows anti-training counts ``n_anti`` ``(..., k)`` (the run's
        anti-trained phases of each proxy before the phase; None: none): 0 when no count matters."""
        if n_anti is None or self.n_anti_keys == 1:
            return 0
        # (a count reaches T only after the last phase, where no transition follows: clipped, it stays a key)
        key = np.minimum(np.asarray(n_anti, dtype=np.int64), self.n_phases - 1) @ self._anti_weights
        return int(key) if np.ndim(key) == 0 else key

    # -- queries -----------------------------------------------------------------
    def usage_code(self, usage):
        """The code ``sum_j u_j 3^j`` of usage vector(s) ``(..., k)`` (RESERVE, TRAIN or ANTI per proxy):
        an int for one vector, an array for several. ``usages[code]`` gives the vector back."""
        code = np.asarray(usage, dtype=np.int64) @ self.usage_weights
        return int(code) if np.ndim(code) == 0 else code

    def result_code(self, results):
        """The code ``sum_j [proxy j passed] 2^j`` of pass/fail vector(s) ``(..., k)`` (True: pass): an int
        for one vector, an array for several. ``results[code]`` gives the vector back."""
        code = np.asarray(results, dtype=np.int64) @ self.result_weights
        return int(code) if np.ndim(code) == 0 else code

    def initial(self, rho: np.ndarray | float, world: "np.ndarray | int" = 0) -> np.ndarray:
        """Distribution over states at a run's start for base rate(s) rho in world(s) ``world`` (the same
        shape, or one for all): shape ``rho.shape + (S,)`` (a stack: ``(batch, V, S)`` for rho ``(V,)`` or
        ``(batch, V)``).

        ``a ~ Bernoulli(rho)``, nothing shaped, and each persistent proxy's disposition
        ``b_j ~ Bernoulli(pi_j(a, 0, 0))`` (docs/model.md, "Run start"), all in the world's own states.
        """
        rho = np.asarray(rho, dtype=np.float64)
        if self.n_worlds > 1:
            world = np.broadcast_to(np.asarray(world, dtype=np.int64), rho.shape)
            out = np.zeros(rho.shape + (self.n_states,))
            for w, d in enumerate(self.world_dynamics):
                at = world == w
                out[at, w * self.inner_states : (w + 1) * self.inner_states] = d.initial(rho[at])
            return out
        if self.batch is not None:
            rho = np.broadcast_to(rho, (self.batch, rho.shape[-1]))
        out = np.zeros(rho.shape + (self.n_states,))
        if not len(self.persistent):
            out[..., 0] = 1.0 - rho
            out[..., 1] = rho
            return out
        unshaped = ~self.shaped.any(axis=1)
        for s in np.flatnonzero(unshaped):
            a = int(self.aligned[s])
            weight = rho if a else 1.0 - rho
            for q, j in enumerate(self.persistent):
                pi = self.unshaped_pass[a, 0, 0, j] if self.batch is None else self.unshaped_pass[:, a, 0, 0, j, None]
                weight = weight * (pi if self.disposed[s, q] else 1.0 - pi)
            out[..., s] = weight
        return out

    def advance(self, dist: np.ndarray, phase, usage_code, idea, n_anti=None) -> np.ndarray:
        """One phase applied to distribution(s) over states ``(..., S)``: a new array of the same shape.

        ``phase`` (0-based), ``usage_code`` and ``idea`` are one for all, or one per row of the
        first axis ``(n,)``; ``n_anti`` (the run's anti-trained phases of each proxy before this
        phase) is ``(k,)`` or ``(n, k)``, and is read only where the phase depends on it. A stack takes one
        phase, usage, idea and ``n_anti`` for all, and ``dist`` ``(batch, ..., S)``.
        """
        if self.batch is not None:
            return np.matmul(dist, self._stacked_matrix(phase, usage_code, idea, self.anti_key(n_anti)))
        if self.transition is not None:
            return np.matmul(dist, self.transition[phase, usage_code, idea, self.anti_key(n_anti)])
        dist = np.asarray(dist, dtype=np.float64)
        if self.n_worlds > 1:  # each world's block of states by its own dynamics (a run never changes world)
            out = np.empty(dist.shape)
            inner = self.inner_states
            # per-row arguments over a (n, S) batch: each row its own phase (the worlds' dense tables then
            # need a middle axis to stay row by row)
            rowwise = dist.ndim == 2 and any(np.ndim(x) > 0 for x in (phase, usage_code, idea))
            for w, d in enumerate(self.world_dynamics):
                block = slice(w * inner, (w + 1) * inner)
                part = np.ascontiguousarray(dist[:, None, block] if rowwise else dist[..., block])
                moved = d.advance(part, phase, usage_code, idea, n_anti)
                out[..., block] = moved[:, 0] if rowwise else moved
            return out
        return self._advance_by_bits(dist, phase, usage_code, idea, n_anti)

    def transition_rows(self, phase, usage_code, idea, n_anti, state) -> np.ndarray:
        """``(n, S)``: the distribution after one phase of each of n models in ``state`` ``(n,)``."""
        if self.transition is not None:
            return self.transition[phase, usage_code, idea, self.anti_key(n_anti), state]
        if self.n_worlds > 1:  # each row by the dynamics of its state's world, in that world's block
            state = np.asarray(state)
            out = np.zeros((len(state), self.n_states))
            inner, world = self.inner_states, self.world[state]

            def rows_of(x, rows, ndim=1):  # a per-row argument's rows (``ndim``: the dimensions of one for all)
                return x if x is None or np.ndim(x) < ndim else np.asarray(x)[rows]

            for w, d in enumerate(self.world_dynamics):
                rows = np.flatnonzero(world == w)
                if len(rows):
                    out[rows, w * inner : (w + 1) * inner] = d.transition_rows(
                        rows_of(phase, rows), rows_of(usage_code, rows), rows_of(idea, rows),
                        rows_of(n_anti, rows, ndim=2), state[rows] - w * inner)
            return out
        one_hot = np.zeros((len(state), self.n_states))
        one_hot[np.arange(len(state)), state] = 1.0
        return self.advance(one_hot, phase, usage_code, idea, n_anti)

    def _advance_by_bits(self, dist, phase, usage_code, idea, n_anti) -> np.ndarray:
        """:meth:`advance`, as the product of the per-bit steps (docs/model.md, "One phase, bit by bit")."""
        phase, code, idea = np.asarray(phase), np.asarray(usage_code), np.asarray(idea)
        n_anti = np.zeros(self.n_proxies, dtype=np.int64) if n_anti is None else np.asarray(n_anti, dtype=np.int64)
        rows = max(phase.size, code.size, idea.size, n_anti.size // max(self.n_proxies, 1))
        lead = dist.shape[:-1]
        x = dist.reshape((rows, -1) + (2,) * self.n_bits)  # row, rest, bit B-1 .. bit 0
        phase, code, idea = (np.broadcast_to(v, (rows,)) for v in (phase, code, idea))
        n_anti = np.broadcast_to(n_anti, (rows, self.n_proxies))
        letters = [chr(ord("a") + i) for i in range(self.n_bits)]  # letters[i]: bit i
        dims = "NR" + "".join(reversed(letters))
        # step 1, values: a new axis Z for a', weighted by P(a' | s)
        values = self.values[phase, code, idea].reshape((rows,) + (2,) * self.n_bits + (2,))
        y = x[..., None] * values[:, None]
        dims_z = dims + "Z"

        def step(y, bit: int, factor: np.ndarray, given: str) -> np.ndarray:
            # replace bit's axis by its new value, given the axes named in ``given``
            old = letters[bit]
            return np.einsum(f"{dims_z},N{given}{old}Y->{dims_z.replace(old, 'Y')}", y, factor)

        for j in range(self.n_proxies):  # step 2, shaping, given a'
            y = step(y, 1 + j, self.shaping[phase, code, j], "Z")
        for q, j in enumerate(self.persistent):  # step 3, dispositions, given a and a'
            u = self.usages[code, j]
            y = step(y, 1 + self.n_proxies + q, self.dispositions[phase, u, n_anti[:, j], q], letters[0] + "Z")
        # a is summed out and a' takes its place as bit 0 (the last bit axis)
        return y.sum(axis=-2).reshape(lead + (self.n_states,))

    def pass_matrix(self, t: int, n_anti: np.ndarray) -> np.ndarray:
        """``(S, k)``: P(proxy j passes at checkpoint t+1 | state), given anti-training counts (a stack: ``(batch, S, k)``)."""
        if self.batch is not None:
            return np.moveaxis(self.pass_prob[:, t, np.asarray(n_anti), :, np.arange(self.n_proxies)], 0, -1)
        return self.pass_prob[t, np.asarray(n_anti), :, np.arange(self.n_proxies)].T

    def test_likelihood(self, phase, n_anti: np.ndarray, results: np.ndarray) -> np.ndarray:
        """``(n, S)``: P(these pass/fail results at the checkpoint ending ``phase`` | state), for n checkpoints.

        Proxies are tested independently given the state (docs/model.md, "Checkpoint
        tests"). ``phase`` is 0-based, ``(n,)`` or one for all; ``n_anti`` (the run's
        anti-training counts so far) and ``results`` (True: pass) are ``(n, k)``.
        """
        phase, n_anti, results = np.asarray(phase), np.asarray(n_anti), np.asarray(results, dtype=bool)
        out = np.ones((len(n_anti), self.n_states))
        for j in range(self.n_proxies):
            p = self.pass_prob[phase, n_anti[:, j], :, j]  # (n, S)
            out *= np.where(results[:, j, None], p, 1.0 - p)
        return out

    def pass_set_prob(self, t: int, n_anti: np.ndarray, proxies) -> np.ndarray:
        """``(S,)``: P(every proxy in ``proxies`` passes at checkpoint t+1 | state) (a stack: ``(batch, S)``)."""
        p = self.pass_matrix(t, n_anti)
        return np.prod(p[..., list(proxies)], axis=-1)


class _Inputs:
    """The numbers of one or more scenarios of one layout that the dynamics read: one row per scenario.

    ``capability``, ``plasticity``: ``(N, T)``; ``drift``: ``(N, m)``; ``proxy[field]``: ``(N, k)`` for each
    field of PROXY_FIELDS (``aligned_proximity`` the effective one; an unset ``obfuscation_difficulty`` is
    NaN); ``transfer``: ``(N, k, k)``, ``[n, j, l]`` the weight of proxy l's pressure on proxy j (0 where
    none); ``base_rate_values``, ``base_rate_probs``: per idea, ``(N, V)``.
    """

    PROXY_FIELDS = ("sensitivity", "false_pass", "steer", "incentive", "native", "anti_strength", "anti_damage",
                    "proximity", "aligned_proximity", "difficulty", "sharpness", "persistence", "gate",
                    "faking_when_set", "obfuscation_difficulty", "wash_out")

    def __init__(self, scenarios: list[Scenario]):
        self.n = len(scenarios)
        phase, proxy = operator.attrgetter("capability", "plasticity"), operator.attrgetter(*self.PROXY_FIELDS)
        phases = np.array([[phase(ph) for ph in sc.phases] for sc in scenarios], dtype=np.float64)  # (N, T, 2)
        self.capability, self.plasticity = phases[..., 0].copy(), phases[..., 1].copy()
        self.drift = np.array([[idea.drift for idea in sc.ideas] for sc in scenarios], dtype=np.float64)
        # (N, k, fields); an unset obfuscation_difficulty (None) reads as NaN
        proxies = np.array([[proxy(p) for p in sc.proxies] for sc in scenarios], dtype=np.float64)
        self.proxy = {f: proxies[..., i].copy() for i, f in enumerate(self.PROXY_FIELDS)}
        names = scenarios[0].proxy_names
        self.transfer = np.zeros((self.n, len(names), len(names)))
        for r, sc in enumerate(scenarios):
            for j, proxy in enumerate(sc.proxies):
                for other, weight in proxy.transfer.items():
                    self.transfer[r, j, names.index(other)] = weight
        supports = [[idea.support for idea in sc.ideas] for sc in scenarios]
        m = len(scenarios[0].ideas)
        self.base_rate_values = [np.array([s[i][0] for s in supports], dtype=np.float64) for i in range(m)]
        self.base_rate_probs = [np.array([s[i][1] for s in supports], dtype=np.float64) for i in range(m)]
