"""The rules of the game, written once over a batch of programs.

:class:`Programs` holds N independent programs of one scenario (each organization's hidden
base rates and current model, and what it has observed) and applies the decision protocol
of docs/model.md ("One episode") to all of them at once. ``ProxyAlignmentEnv`` is its
N = 1 case and ``ProxyAlignmentVectorEnv`` its batch, as the belief filter is written once
for both: every transition and test probability is read from
:class:`proxygym.envs.dynamics.Dynamics`, the posterior from
:class:`proxygym.envs.belief.BatchBeliefFilter`, the observation from
:class:`proxygym.envs.observation.ObservationLayout`, the action from
:class:`proxygym.envs.actions.ActionLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, ActionLayout, nearest_allowed
from proxygym.envs.belief import BatchBeliefFilter, padded_support
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import ANTI
from proxygym.envs.scenario import Scenario


def sample_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The index drawn from each distribution along the last axis of ``probs`` by the uniforms ``u`` (inverse CDF).

    ``u`` has the shape of ``probs`` less its last axis. ``u * total < total``, so the
    index found always has positive probability.
    """
    cum = np.cumsum(probs, axis=-1)
    return np.count_nonzero(cum <= u[..., None] * cum[..., -1:], axis=-1)


@dataclass
class StepOutcome:
    """What one step did to each program: its reward, whether its episode ended and how."""

    reward: np.ndarray  # (N,) float64
    invalid: np.ndarray  # (N,) bool: the verdict was not allowed and was mapped to the nearest allowed one
    deployed: np.ndarray  # (N,) bool
    aligned: np.ndarray  # (N,) bool: the deployed model is truly aligned
    abstained: np.ndarray  # (N,) bool: the last run was discarded with no budget left

    @property
    def terminated(self) -> np.ndarray:
        return self.deployed | self.abstained


class Programs:
    """N programs of one scenario, stepped at once.

    Hidden, per program: ``rho`` (each idea's base rate) and ``state`` (the latent state of
    the current model, -1 at a run's start). Observable: ``checkpoint`` (the decision point
    d of the current run, 0 at its start), ``runs_used``, the current run's ``idea``,
    ``usage`` and ``results`` so far, and per idea the runs, passes and fails of finished
    runs. ``rng`` is the owner's generator (the env's ``np_random``), set before use.
    """

    def __init__(self, scenario: Scenario, num_envs: int, observation: str = "history"):
        self.scenario = scenario
        self.dynamics = d = Dynamics.of(scenario)
        self.layout = ObservationLayout(d, observation)
        self.actions = ActionLayout.of(scenario)
        self.num_envs = N = int(num_envs)
        self.n_phases, self.n_proxies, self.n_ideas = T, k, m = d.n_phases, d.n_proxies, d.n_ideas
        self.budget = scenario.budget
        self.reward = scenario.reward
        self.belief = BatchBeliefFilter(d, N)
        self.rng: np.random.Generator | None = None
        self._support_values, self._support_probs = padded_support(d)

        self.rho = np.zeros((N, m))
        self.runs_used = np.zeros(N, dtype=np.int64)
        self.idea_runs = np.zeros((N, m), dtype=np.int64)
        self.idea_passes = np.zeros((N, m, k), dtype=np.int64)
        self.idea_fails = np.zeros((N, m, k), dtype=np.int64)
        self.checkpoint = np.zeros(N, dtype=np.int64)
        self.idea = np.full(N, -1, dtype=np.int64)
        self.state = np.full(N, -1, dtype=np.int64)
        self.usage = np.zeros((N, T, k), dtype=np.int64)
        self.results = np.zeros((N, T, k), dtype=bool)
        self.n_anti = np.zeros((N, k), dtype=np.int64)

    # -- the rules (each over the programs ``rows``) ---------------------------------
    def reset(self, rows: np.ndarray) -> None:
        """New programs: each idea's base rate drawn from its prior (hidden), the whole budget left."""
        n = len(rows)
        if n == 0:
            return
        m = self.n_ideas
        probs = np.broadcast_to(self._support_probs, (n,) + self._support_probs.shape)
        drawn = sample_rows(probs, self.rng.random((n, m)))
        self.rho[rows] = self._support_values[np.arange(m), drawn]
        self.runs_used[rows] = 0
        self.idea_runs[rows] = 0
        self.idea_passes[rows] = 0
        self.idea_fails[rows] = 0
        self._next_run(rows)
        self.belief.reset(rows)

    def step(self, actions: np.ndarray, live: np.ndarray) -> StepOutcome:
        """Apply one action to each program where ``live`` (the others are left as they are)."""
        verdict, usage, idea = self.actions.decode(actions)
        mapped = nearest_allowed(verdict, self.checkpoint, self.n_phases)
        N = self.num_envs
        out = StepOutcome(
            reward=np.zeros(N),
            invalid=live & (mapped != verdict),
            deployed=np.zeros(N, dtype=bool),
            aligned=np.zeros(N, dtype=bool),
            abstained=np.zeros(N, dtype=bool),
        )
        r = self.reward

        # checkpoint 0: continue starts a run (charged) and runs phase 1
        rows = np.flatnonzero(live & (self.checkpoint == 0))
        out.reward[rows] -= r.run_cost
        self._start_run(rows, idea[rows])
        rows = np.flatnonzero(live & (mapped == CONTINUE))
        self._run_phase(rows, usage[rows])

        rows = np.flatnonzero(live & (mapped == DEPLOY))
        truth = self.dynamics.aligned[self.state[rows]]
        out.reward[rows] += np.where(truth, r.aligned, r.misaligned)
        out.deployed[rows] = True
        out.aligned[rows] = truth

        rows = np.flatnonzero(live & (mapped == DISCARD))
        self._end_run(rows)
        spent = self.runs_used[rows] >= self.budget
        out.reward[rows[spent]] += r.abstain
        out.abstained[rows[spent]] = True
        self._next_run(rows[~spent])
        return out

    def _next_run(self, rows: np.ndarray) -> None:
        """Checkpoint 0 of the next run: nothing trained yet."""
        self.checkpoint[rows] = 0
        self.idea[rows] = -1
        self.state[rows] = -1
        self.usage[rows] = 0
        self.results[rows] = False
        self.n_anti[rows] = 0

    def _start_run(self, rows: np.ndarray, idea: np.ndarray) -> None:
        self.runs_used[rows] += 1
        self.idea[rows] = idea
        # a ~ Bernoulli(rho); nothing shaped: the state index is a (docs/model.md, "Run start")
        self.state[rows] = self.rng.random(len(rows)) < self.rho[rows, idea]
        self.belief.start_run(idea, rows)

    def _run_phase(self, rows: np.ndarray, usage: np.ndarray) -> None:
        """One phase under ``usage`` ``(n, k)``, then the checkpoint's tests."""
        if len(rows) == 0:
            return
        d, k = self.dynamics, self.n_proxies
        t = self.checkpoint[rows]
        code = d.usage_code(usage)
        trans = d.transition[t, code, self.idea[rows], self.state[rows]]  # (n, S)
        state = sample_rows(trans, self.rng.random(len(rows)))
        n_anti = self.n_anti[rows] + (usage == ANTI)
        p = d.pass_prob[t[:, None], n_anti, state[:, None], np.arange(k)[None, :]]  # (n, k)
        results = self.rng.random((len(rows), k)) < p
        self.state[rows] = state
        self.n_anti[rows] = n_anti
        self.usage[rows, t] = usage
        self.results[rows, t] = results
        self.belief.advance(t, code, rows)
        self.belief.observe(t, n_anti, results, rows)
        self.checkpoint[rows] = t + 1

    def _end_run(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        reached = (np.arange(self.n_phases)[None, :] < self.checkpoint[rows, None])[:, :, None]
        results = self.results[rows]
        idea = self.idea[rows]
        self.idea_runs[rows, idea] += 1
        self.idea_passes[rows, idea] += (results & reached).sum(axis=1)
        self.idea_fails[rows, idea] += (~results & reached).sum(axis=1)
        self.belief.end_run(rows)

    # -- read-outs (every program) -----------------------------------------------------
    def observe(self) -> np.ndarray:
        """``(N, n)`` float32 observations."""
        values = self.layout.history(
            self.checkpoint,
            self.runs_used,
            self.idea,
            self.usage,
            self.results,
            self.idea_runs,
            self.idea_passes,
            self.idea_fails,
            self.budget,
        )
        if self.layout.mode == "belief":
            b = self.belief
            values.update(p_aligned=b.p_aligned[:, None], p_shaped=b.p_shaped, base_rate=b.mean_base_rates)
        return self.layout.encode(values)

    def masks(self) -> np.ndarray:
        """``(N, 3 + 3k + m)`` allowed choices (verdict, usages, idea) of each program."""
        return self.actions.masks(self.checkpoint, self.n_phases)
