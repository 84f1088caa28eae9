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

import numpy as np

from proxygym.envs.regimen import ANTI, TRAIN
from proxygym.envs.scenario import Scenario

#: The largest dense transition table materialised; above it a phase is applied bit by bit.
DENSE_LIMIT_BYTES = 128 * 2**20


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


class Dynamics:
    """The scenario compiled into the arrays that define a run.

    Attributes:
        n_phases, n_proxies, n_ideas: T, k and m of the scenario.
        persistent: the proxies (indices) with ``persistence > 0``, each with a ``b`` bit.
        n_bits, n_states: bits of the latent state (``1 + k + len(persistent)``) and ``S = 2**n_bits``.
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
    """

    @classmethod
    def of(cls, scenario: Scenario) -> "Dynamics":
        """The scenario's dynamics, compiled once per scenario object and shared by every consumer."""
        return scenario.cached("dynamics", cls)

    def __init__(self, scenario: Scenario, persistent=None, anti_proxies=None):
        """``persistent`` and ``anti_proxies`` (proxy indices) give the state a ``b`` bit, and the transitions
        an anti-training key, for proxies that need none in this scenario (a world's dynamics takes the
        union over the worlds, so that every world has the same latent states)."""
        self.scenario = scenario
        worlds = scenario.world_scenarios
        if persistent is None:
            persistent = [j for j in range(len(scenario.proxies)) if any(w.proxies[j].persistence > 0 for w in worlds)]
        if anti_proxies is None:
            anti_proxies = [j for j in persistent if any(w.proxies[j].anti_damage > 0 for w in worlds)]
        if scenario.worlds:
            self._compose([Dynamics(w, persistent, anti_proxies) for w in worlds], scenario.world_weights)
            return
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
        self.kappa = np.array([p.persistence for p in proxies])

        self.base_rate_values = [np.array(idea.support[0], dtype=np.float64) for idea in scenario.ideas]
        self.base_rate_probs = [np.array(idea.support[1], dtype=np.float64) for idea in scenario.ideas]
        self.support_world = [np.zeros(len(v), dtype=np.int64) for v in self.base_rate_values]

        self.unshaped_pass = self._build_unshaped_pass()
        # P(s | a) at a run's start: what is drawn after a (the dispositions of persistent proxies)
        self.start_given_aligned = self.initial(np.array([0.0, 1.0]))
        self.pass_prob = self._build_pass_prob()
        self.values = self._build_values()
        self.shaping = self._build_shaping()
        self.dispositions = self._build_dispositions()
        self._set_anti_keys(anti_proxies)
        dense_bytes = T * self.n_usages * self.n_ideas * self.n_anti_keys * self.n_states**2 * 8
        self.transition = None if dense_bytes > DENSE_LIMIT_BYTES else self._build_transition()
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

    # -- construction ------------------------------------------------------------
    def _build_unshaped_pass(self) -> np.ndarray:
        # docs/model.md, "Checkpoint tests": pi_j(a, c, n)
        sc = self.scenario
        T, k = self.n_phases, self.n_proxies
        capability = np.array([sc.phases[0].capability] + [p.capability for p in sc.phases])  # checkpoint 0..T
        out = np.empty((2, T + 1, T + 1, k))
        n_anti = np.arange(T + 1)
        for j, proxy in enumerate(sc.proxies):
            out[1, :, :, j] = (proxy.sensitivity * (1.0 - proxy.anti_damage) ** n_anti)[None, :]
            circumvent = sigmoid(proxy.sharpness * (capability - proxy.difficulty))
            out[0, :, :, j] = (proxy.false_pass + (1.0 - proxy.false_pass) * circumvent)[:, None]
        return out

    def _build_pass_prob(self) -> np.ndarray:
        # docs/model.md, "Checkpoint tests": shaped passes; else a lasting disposition or a fresh draw
        a = self.aligned.astype(np.int64)
        unshaped = self.unshaped_pass[a, 1:].transpose(1, 2, 0, 3).copy()  # (T, T+1, S, k): checkpoint t+1, n, state, proxy
        for q, j in enumerate(self.persistent):
            b = self.disposed[:, q]
            unshaped[..., j] = self.kappa[j] * b[None, None, :] + (1.0 - self.kappa[j]) * unshaped[..., j]
        return np.where(self.shaped[None, None, :, :], 1.0, unshaped)

    def _build_values(self) -> np.ndarray:
        """P(a' | s), docs/model.md, "Phase step 1: values" (every usage and idea of a phase at once)."""
        sc = self.scenario
        T, C, m, S = self.n_phases, self.n_usages, self.n_ideas, self.n_states
        steer = np.array([p.steer for p in sc.proxies])
        gate = np.array([p.gate for p in sc.proxies])
        drift = np.array([idea.drift for idea in sc.ideas])
        trained = self.usages == TRAIN  # (C, k)
        out = np.empty((T, C, m, S, 2))
        misaligned = self.aligned[None, None, :] == 0  # (1, 1, S)
        for t, phase in enumerate(sc.phases):
            p = phase.plasticity
            # psi[s, j]: the chance a misaligned model in state s passes j at the phase's start (the gate's input)
            psi = np.where(self.shaped, 1.0, self._disposition_or(self.unshaped_pass[0, t, 0][None, :]))  # (S, k)
            pull = 1.0 - p * np.maximum(steer, 0.0)[None, :] * (1.0 - gate[None, :] * psi)  # (S, k)
            keep_m = np.prod(np.where(trained[:, None, :], pull[None, :, :], 1.0), axis=2)  # (C, S)
            keep_a_train = np.prod(np.where(trained, 1.0 - p * np.maximum(-steer, 0.0)[None, :], 1.0), axis=1)  # (C,)
            up = (1.0 - keep_m)[:, None, :]  # (C, 1, S)
            down = (1.0 - (1.0 - p * drift)[None, :] * keep_a_train[:, None])[:, :, None]  # (C, m, 1)
            out[t, :, :, :, 0] = np.where(misaligned, 1.0 - up, down)
            out[t, :, :, :, 1] = np.where(misaligned, up, 1.0 - down)
        return out

    def _disposition_or(self, pi: np.ndarray) -> np.ndarray:
        """``(S, k)``: ``kappa_j b_j + (1 - kappa_j) pi_j`` for persistent proxies, ``pi_j`` for the others."""
        out = np.broadcast_to(pi, (self.n_states, self.n_proxies)).copy()
        for q, j in enumerate(self.persistent):
            out[:, j] = self.kappa[j] * self.disposed[:, q] + (1.0 - self.kappa[j]) * out[:, j]
        return out

    def _build_shaping(self) -> np.ndarray:
        """P(h_j' | h_j, a'), docs/model.md, "Phase step 2: shaping" (every phase, usage and proxy at once)."""
        sc = self.scenario
        T, C, k = self.n_phases, self.n_usages, self.n_proxies
        names = sc.proxy_names
        incentive = np.array([p.incentive for p in sc.proxies])
        anti = np.array([p.anti_strength for p in sc.proxies])
        # term[c, l]: proxy l's own pressure from its usage; weight[j, l]: the share of l's that acts on j (1 on j itself)
        term = incentive[None, :] * (self.usages == TRAIN) - anti[None, :] * (self.usages == ANTI)  # (C, k)
        pressure = np.array([p.native for p in sc.proxies])[None, :] + term  # (C, k)
        for j, proxy in enumerate(sc.proxies):
            for other, weight in proxy.transfer.items():
                pressure[:, j] = pressure[:, j] + weight * term[:, names.index(other)]
        capability = np.array([ph.capability for ph in sc.phases])  # (T,)
        plasticity = np.array([ph.plasticity for ph in sc.phases])
        onset = np.ones((T, k))
        for j, proxy in enumerate(sc.proxies):
            if proxy.obfuscation_difficulty is not None:
                onset[:, j] = sigmoid(proxy.sharpness * (capability - proxy.obfuscation_difficulty))
        gamma = np.array([p.faking_when_set for p in sc.proxies])
        faking = np.stack([(1.0 - plasticity[:, None]) ** gamma[None, :], np.ones((T, k))], axis=0)  # (2, T, k) by a'
        proximity = np.array([[p.proximity for p in sc.proxies], [p.aligned_proximity for p in sc.proxies]])  # (2, k)
        wash = np.array([p.wash_out for p in sc.proxies])
        rise, fall = sigmoid(pressure), sigmoid(-pressure)  # (C, k)
        # (T, C, k, a') in the order of the formula: proximity * sigmoid(pressure) * faking * onset
        on = (proximity.T[None, None, :, :] * rise[None, :, :, None]) * faking.transpose(1, 2, 0)[:, None, :, :] \
            * onset[:, None, :, None]
        off = np.broadcast_to((proximity.T[None, :, :] * fall[:, :, None]) * wash[None, :, None], on.shape)
        out = np.empty((T, C, k, 2, 2, 2))
        out[..., 0, 0], out[..., 0, 1] = 1.0 - on, on
        out[..., 1, 0], out[..., 1, 1] = off, 1.0 - off
        return out

    def _build_dispositions(self) -> np.ndarray:
        """P(b' | b, a, a'), docs/model.md, "Phase step 3: dispositions"."""
        T, q_count = self.n_phases, len(self.persistent)
        out = np.zeros((T, 3, T, q_count, 2, 2, 2, 2))
        pi = self.unshaped_pass
        for t in range(T):
            for u in range(3):
                for n in range(T):
                    n_after = n + (u == ANTI)
                    for q, j in enumerate(self.persistent):
                        for a in (0, 1):
                            for a2 in (0, 1):
                                d = out[t, u, n, q, a, a2]
                                if a2 != a:  # values changed: the disposition is drawn afresh
                                    after = pi[a2, t + 1, n_after, j]
                                    d[:, 1] = after
                                    d[:, 0] = 1.0 - after
                                    continue
                                before, after = pi[a, t, n, j], pi[a, t + 1, n_after, j]
                                if after >= before:
                                    gain = 0.0 if before >= 1.0 else (after - before) / (1.0 - before)
                                    d[0] = [1.0 - gain, gain]
                                    d[1] = [0.0, 1.0]
                                else:
                                    loss = (before - after) / before
                                    d[0] = [1.0, 0.0]
                                    d[1] = [loss, 1.0 - loss]
        return out

    def _build_transition(self) -> np.ndarray:
        """The dense ``S x S`` matrices: step 1 times the product of the per-proxy steps 2 and 3, for every
        anti-training key (:meth:`anti_key`)."""
        S, k, T = self.n_states, self.n_proxies, self.n_phases
        a_to = self.aligned.astype(int)
        h_from, h_to = self.shaped[:, None, :].astype(int), self.shaped[None, :, :].astype(int)
        jj = np.arange(k)[None, None, :]
        shaped = np.prod(self.shaping[:, :, jj, a_to[None, :, None], h_from, h_to], axis=-1)  # (T, C, S, S)
        values = self.values[:, :, :, np.arange(S)[:, None], a_to[None, :]]  # (T, C, m, S, S)
        out = np.empty(values.shape[:3] + (self.n_anti_keys,) + values.shape[3:])
        for key in range(self.n_anti_keys):
            part = shaped
            if len(self.persistent):
                # the anti-training count of each persistent proxy this key stands for (0 where it does not matter)
                counts = np.zeros(k, dtype=np.int64)
                counts[self.anti_proxies] = (key // T ** np.arange(len(self.anti_proxies))) % T
                a_from = self.aligned.astype(int)[:, None, None]
                b_from, b_to = self.disposed[:, None, :].astype(int), self.disposed[None, :, :].astype(int)
                u = self.usages[:, self.persistent]  # (C, q)
                qq = np.arange(len(self.persistent))[None, None, :]
                n = counts[self.persistent][None, None, :]
                d = self.dispositions[:, u[:, None, None, :], n, qq, a_from, a_to[None, :, None], b_from, b_to]  # (T, C, S, S, q)
                part = shaped * np.prod(d, axis=-1)
            out[:, :, :, key] = values * part[:, :, None]
        return out

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
        shape, or one for all): shape ``rho.shape + (S,)``.

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
                pi = self.unshaped_pass[a, 0, 0, j]
                weight = weight * (pi if self.disposed[s, q] else 1.0 - pi)
            out[..., s] = weight
        return out

    def advance(self, dist: np.ndarray, phase, usage_code, idea, n_anti=None) -> np.ndarray:
        """One phase applied to distribution(s) over states ``(..., S)``: a new array of the same shape.

        ``phase`` (0-based), ``usage_code`` and ``idea`` are one for all, or one per row of the
        first axis ``(n,)``; ``n_anti`` (the run's anti-trained phases of each proxy before this
        phase) is ``(k,)`` or ``(n, k)``, and is read only where the phase depends on it.
        """
        if self.transition is not None:
            return np.matmul(dist, self.transition[phase, usage_code, idea, self.anti_key(n_anti)])
        dist = np.asarray(dist, dtype=np.float64)
        if self.n_worlds > 1:  # each world's block of states by its own dynamics (a run never changes world)
            out = np.empty(np.broadcast_shapes(dist.shape, dist.shape))
            inner = self.inner_states
            for w, d in enumerate(self.world_dynamics):
                block = slice(w * inner, (w + 1) * inner)
                out[..., block] = d.advance(np.ascontiguousarray(dist[..., block]), phase, usage_code, idea, n_anti)
            return out
        return self._advance_by_bits(dist, phase, usage_code, idea, n_anti)

    def transition_rows(self, phase, usage_code, idea, n_anti, state) -> np.ndarray:
        """``(n, S)``: the distribution after one phase of each of n models in ``state`` ``(n,)``."""
        if self.transition is not None:
            return self.transition[phase, usage_code, idea, self.anti_key(n_anti), state]
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
        """``(S, k)``: P(proxy j passes at checkpoint t+1 | state), given anti-training counts."""
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
        """``(S,)``: P(every proxy in ``proxies`` passes at checkpoint t+1 | state)."""
        p = self.pass_matrix(t, n_anti)
        return np.prod(p[:, list(proxies)], axis=1)
