"""The dynamics of one training run, defined once, as arrays.

Everything that simulates or reasons about a run (the env, the Bayesian filter, the
exact analysis, the vector env and the solver) reads these arrays;
none of them re-derives a transition or a test probability. The formulas are stated
in ``docs/model.md``; each one below cites its section there.

Latent state of a model under training (docs/model.md, "Latent state"): ``a`` (1 if
aligned) and ``h_j`` for each proxy (1 if the weights sit in the basin that passes
proxy j whatever the model's values). It is packed into one index
``s = a + 2 * sum_j h_j * 2**j``, so there are ``2**(k+1)`` states.
"""

from __future__ import annotations

import itertools

import numpy as np

from proxygym.envs.regimen import ANTI, TRAIN
from proxygym.envs.scenario import Scenario


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


class Dynamics:
    """The scenario compiled into the arrays that define a run.

    Attributes:
        n_phases, n_proxies, n_ideas: T, k and m of the scenario.
        n_states: number of latent states, ``2**(k+1)``.
        aligned: ``(S,)`` bool, whether state s is aligned.
        shaped: ``(S, k)`` bool, whether state s is shaped to pass proxy j.
        usages: ``(3**k, k)`` the usage of each proxy for each usage code;
            the code of a usage vector u is ``sum_j u_j * 3**j`` (:meth:`usage_code`).
        results: ``(2**k, k)`` whether each proxy passed, for each result code
            ``sum_j [proxy j passed] 2**j`` (:meth:`result_code`).
        transition: ``(T, 3**k, m, S, S)``; ``transition[t, c, i, s, s2]`` is the
            probability that phase t+1 (0-based t) under usage code c, with idea i,
            moves the model from state s to s2.
        pass_prob: ``(T, T+1, S, k)``; ``pass_prob[t, n, s, j]`` is the probability
            that proxy j passes at checkpoint t+1 for a model in state s whose run
            has anti-trained proxy j in n phases so far.
        base_rate_values, base_rate_probs: per idea, the support of its base rate and
            the prior over it (one value with probability 1 when the rate is known).
    """

    @classmethod
    def of(cls, scenario: Scenario) -> "Dynamics":
        """The scenario's dynamics, compiled once per scenario object and shared by every consumer."""
        return scenario.cached("dynamics", cls)

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.n_phases = len(scenario.phases)
        self.n_proxies = len(scenario.proxies)
        self.n_ideas = len(scenario.ideas)
        self.n_states = 2 ** (self.n_proxies + 1)
        self.n_usages = 3**self.n_proxies

        states = np.arange(self.n_states)
        bits = (states[:, None] >> np.arange(self.n_proxies + 1)[None, :]) & 1
        self.aligned = bits[:, 0].astype(bool)
        self.shaped = bits[:, 1:].astype(bool)
        # usage code c -> usage of each proxy: digit j of c in base 3
        self.usages = np.array(list(itertools.product(range(3), repeat=self.n_proxies)))[:, ::-1].copy()
        self._usage_weights = 3 ** np.arange(self.n_proxies, dtype=np.int64)
        # result code r -> whether each proxy passed: bit j of r
        self.results = ((np.arange(2**self.n_proxies)[:, None] >> np.arange(self.n_proxies)[None, :]) & 1).astype(bool)
        self._result_weights = 2 ** np.arange(self.n_proxies, dtype=np.int64)

        self.base_rate_values = [np.array(idea.support[0], dtype=np.float64) for idea in scenario.ideas]
        self.base_rate_probs = [np.array(idea.support[1], dtype=np.float64) for idea in scenario.ideas]

        self.transition = self._build_transition()
        self.pass_prob = self._build_pass_prob()
        self.transition.setflags(write=False)
        self.pass_prob.setflags(write=False)

    # -- construction ------------------------------------------------------------
    def _build_transition(self) -> np.ndarray:
        sc = self.scenario
        T, C, m, S, k = self.n_phases, self.n_usages, self.n_ideas, self.n_states, self.n_proxies
        steer = np.array([p.steer for p in sc.proxies])
        out = np.empty((T, C, m, S, S))
        a_from, a_to = self.aligned[:, None].astype(int), self.aligned[None, :].astype(int)
        h_from, h_to = self.shaped[:, None, :].astype(int), self.shaped[None, :, :].astype(int)
        for t, phase in enumerate(sc.phases):
            p = phase.plasticity
            for c in range(C):
                u = self.usages[c]
                trained = u == TRAIN
                # docs/model.md, "Phase step 1: values"
                keep_m = np.prod(np.where(trained, 1.0 - p * np.maximum(steer, 0.0), 1.0))
                keep_a_train = np.prod(np.where(trained, 1.0 - p * np.maximum(-steer, 0.0), 1.0))
                # docs/model.md, "Phase step 2: shaping"
                h = self._shaping(u)  # (k, 2, 2)
                h_part = np.prod(h[np.arange(k)[None, None, :], h_from, h_to], axis=-1)  # (S, S)
                for i, idea in enumerate(sc.ideas):
                    up = 1.0 - keep_m
                    down = 1.0 - (1.0 - p * idea.drift) * keep_a_train
                    v = np.array([[1.0 - up, up], [down, 1.0 - down]])
                    out[t, c, i] = v[a_from, a_to] * h_part
        return out

    def _shaping(self, usage: np.ndarray) -> np.ndarray:
        """Per proxy, the 2x2 chain of the shaped bit h_j under this usage (docs/model.md, step 2)."""
        sc = self.scenario
        out = np.empty((self.n_proxies, 2, 2))
        for j, proxy in enumerate(sc.proxies):
            pressure = (
                proxy.native
                + proxy.incentive * (usage[j] == TRAIN)
                - proxy.anti_strength * (usage[j] == ANTI)
            )
            on = proxy.proximity * sigmoid(pressure)
            off = proxy.proximity * sigmoid(-pressure)
            out[j] = [[1.0 - on, on], [off, 1.0 - off]]
        return out

    def _build_pass_prob(self) -> np.ndarray:
        # docs/model.md, "Checkpoint tests"
        sc = self.scenario
        T, S, k = self.n_phases, self.n_states, self.n_proxies
        out = np.empty((T, T + 1, S, k))
        n_anti = np.arange(T + 1)
        for j, proxy in enumerate(sc.proxies):
            aligned_pass = proxy.sensitivity * (1.0 - proxy.anti_damage) ** n_anti  # (T+1,)
            for t, phase in enumerate(sc.phases):
                circumvent = sigmoid(proxy.sharpness * (phase.capability - proxy.difficulty))
                misaligned_pass = proxy.false_pass + (1.0 - proxy.false_pass) * circumvent
                unshaped = np.where(self.aligned[None, :], aligned_pass[:, None], misaligned_pass)
                out[t, :, :, j] = np.where(self.shaped[None, :, j], 1.0, unshaped)
        return out

    # -- queries -----------------------------------------------------------------
    def usage_code(self, usage):
        """The code ``sum_j u_j 3^j`` of usage vector(s) ``(..., k)`` (RESERVE, TRAIN or ANTI per proxy):
        an int for one vector, an array for several. ``usages[code]`` gives the vector back."""
        code = np.asarray(usage, dtype=np.int64) @ self._usage_weights
        return int(code) if np.ndim(code) == 0 else code

    def result_code(self, results):
        """The code ``sum_j [proxy j passed] 2^j`` of pass/fail vector(s) ``(..., k)`` (True: pass): an int
        for one vector, an array for several. ``results[code]`` gives the vector back."""
        code = np.asarray(results, dtype=np.int64) @ self._result_weights
        return int(code) if np.ndim(code) == 0 else code

    def initial(self, rho: np.ndarray | float) -> np.ndarray:
        """Distribution over states at a run's start for base rate(s) rho: shape ``rho.shape + (S,)``."""
        rho = np.asarray(rho, dtype=np.float64)
        out = np.zeros(rho.shape + (self.n_states,))
        out[..., 0] = 1.0 - rho
        out[..., 1] = rho
        return out

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
