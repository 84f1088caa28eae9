"""ProxyAlignment-v0 over a batch: N organizations' programs stepped at once with numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.belief import BatchBeliefFilter, padded_support
from envs.dynamics import ANTI, Dynamics
from envs.observation import ObservationLayout
from envs.proxy_alignment import (
    CONTINUE,
    DEPLOY,
    DISCARD,
    nearest_allowed,
    verdict_mask,
)
from envs.scenario import Scenario, load_scenario


def sample_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The index drawn from each distribution along the last axis of ``probs`` by the uniforms ``u`` (inverse CDF).

    ``u`` has the shape of ``probs`` less its last axis. ``u * total < total``, so the
    index found always has positive probability (as the single env's ``searchsorted``).
    """
    cum = np.cumsum(probs, axis=-1)
    return np.count_nonzero(cum <= u[..., None] * cum[..., -1:], axis=-1)


class ProxyAlignmentVectorEnv(VectorEnv):
    """
    ## Description
    The batched twin of :class:`envs.proxy_alignment.ProxyAlignmentEnv` (as Gymnasium's
    ``CartPoleVectorEnv`` is of ``CartPole``): ``num_envs`` independent programs of the
    same scenario, each with its own hidden base rates and models, stepped at once. The
    rules are the single env's, written over arrays: every transition and test probability
    is read from :class:`envs.dynamics.Dynamics`, the verdict rules are the helpers of
    ``envs.proxy_alignment``, the observation is built by the same helper from the same
    :class:`envs.observation.ObservationLayout`, and the posterior comes from
    :class:`envs.belief.BatchBeliefFilter`, of which the single env's filter is the N = 1 case.

    ## Action Space
    ``MultiDiscrete`` of shape ``(num_envs, 2 + k)``: per program, the single env's action
    (verdict, a usage per proxy, idea); ``single_action_space`` is that of one program.
    ``action_masks()`` returns ``(num_envs, 3 + 3k + m)`` allowed choices.

    ## Observation Space
    ``Box(0, 1, (num_envs, n), float32)``: per program, the single env's observation, in
    either mode (``"history"`` or ``"belief"``).

    ## Starting State
    As the single env: each program draws its ideas' base rates from their priors and
    starts at checkpoint 0 of its first run.

    ## Rewards
    As the single env, per program (float64).

    ## Episode End
    As the single env. Autoreset is ``NEXT_STEP`` (``metadata["autoreset_mode"]``): the
    step after a program's episode ends resets that program, whatever its action, and
    returns reward 0, ``terminated`` False and its first observation.

    ## Information
    Gymnasium's vector format: each key holds an array over programs and ``_key`` a mask
    of the programs it is set for. Every step: ``p_aligned``, ``runs_used``,
    ``checkpoint``, ``invalid_action`` (all programs; a program that autoresets reports its
    reset values). Where an episode ends: ``deployed``, ``aligned``, ``abstained``.

    ## Arguments
    ```python
    import gymnasium as gym
    import envs  # registers ProxyAlignment-v0 and its vector entry point
    envs_ = gym.make_vec("ProxyAlignment-v0", num_envs=2000, vectorization_mode="vector_entry_point",
                         scenario="sticky_values", observation="belief")
    ```
    - ``num_envs=1``: the number of programs.
    - ``scenario``, ``observation``: as the single env.
    - ``render_mode=None``: no rendering (render one program with the single env).

    ``reset(seed=s)`` makes the batch reproducible: the same seed and actions give the same
    trajectories. The random stream is not the single env's, but every program's
    outcomes have the single env's distribution. ``reset(options={"reset_mask": mask})``
    resets only the programs where ``mask`` is True.

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        scenario: "str | Path | Scenario" = "sticky_values",
        observation: str = "history",
        render_mode: str | None = None,
    ):
        if render_mode is not None:
            raise ValueError(f"the vector env does not render; render_mode must be None, got {render_mode!r}")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.scenario = load_scenario(scenario)
        self.dynamics = d = Dynamics(self.scenario)
        self.layout = ObservationLayout(d, observation)
        self.observation_mode = observation
        self.n_phases, self.n_proxies, self.n_ideas = d.n_phases, d.n_proxies, d.n_ideas
        self.budget = self.scenario.budget
        self._reward = self.scenario.reward

        self.single_action_space = spaces.MultiDiscrete([3] + [3] * self.n_proxies + [self.n_ideas])
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        self.belief = BatchBeliefFilter(d, self.num_envs)
        self._support_values, self._support_probs = padded_support(d)
        # The usage code is linear in the usages (Dynamics.usage_code): the code of each unit usage.
        self._code_weights = np.array([d.usage_code(e) for e in np.eye(self.n_proxies, dtype=np.int64)])

        N, T, k, m = self.num_envs, self.n_phases, self.n_proxies, self.n_ideas
        self._rho = np.zeros((N, m))
        self._runs_used = np.zeros(N, dtype=np.int64)
        self._idea_runs = np.zeros((N, m), dtype=np.int64)
        self._idea_passes = np.zeros((N, m, k), dtype=np.int64)
        self._idea_fails = np.zeros((N, m, k), dtype=np.int64)
        self._checkpoint = np.zeros(N, dtype=np.int64)
        self._idea = np.full(N, -1, dtype=np.int64)
        self._state = np.full(N, -1, dtype=np.int64)
        self._usage = np.zeros((N, T, k), dtype=np.int64)
        self._results = np.zeros((N, T, k), dtype=bool)
        self._n_anti = np.zeros((N, k), dtype=np.int64)
        self._autoreset = np.zeros(N, dtype=bool)  # programs whose episode ended at the last step
        self._was_reset = False

    # -- gym API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mask = None if options is None else options.get("reset_mask")
        if mask is None:
            rows = np.arange(self.num_envs)
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != bool:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask!r}")
            rows = np.flatnonzero(mask)
        self._reset_programs(rows)
        self._autoreset[rows] = False
        self._was_reset = True
        invalid = np.zeros(self.num_envs, dtype=bool)
        return self._obs(), self._info(invalid, shown=None if mask is None else mask)

    def step(self, actions):
        if not self._was_reset:
            raise RuntimeError("step() called before reset()")
        actions = np.asarray(actions)
        if not self.action_space.contains(actions):
            raise ValueError(
                f"actions must be integers of shape {self.action_space.shape} within {self.single_action_space}, "
                f"got shape {actions.shape} and dtype {actions.dtype}"
            )
        k = self.n_proxies
        verdict, usage, idea = actions[:, 0], actions[:, 1 : 1 + k], actions[:, 1 + k]
        live = ~self._autoreset
        mapped = nearest_allowed(verdict, self._checkpoint, self.n_phases)
        invalid = live & (mapped != verdict)
        reward = np.zeros(self.num_envs)
        deployed = np.zeros(self.num_envs, dtype=bool)
        aligned = np.zeros(self.num_envs, dtype=bool)
        abstained = np.zeros(self.num_envs, dtype=bool)

        # checkpoint 0: continue starts a run (charged) and runs phase 1
        rows = np.flatnonzero(live & (self._checkpoint == 0))
        reward[rows] -= self._reward.run_cost
        self._start_run(rows, idea[rows])
        rows = np.flatnonzero(live & (mapped == CONTINUE))
        self._run_phase(rows, usage[rows])

        rows = np.flatnonzero(live & (mapped == DEPLOY))
        truth = self.dynamics.aligned[self._state[rows]]
        reward[rows] += np.where(truth, self._reward.aligned, self._reward.misaligned)
        deployed[rows] = True
        aligned[rows] = truth

        rows = np.flatnonzero(live & (mapped == DISCARD))
        self._end_run(rows)
        spent = self._runs_used[rows] >= self.budget
        reward[rows[spent]] += self._reward.abstain
        abstained[rows[spent]] = True
        self._start_program_point(rows[~spent])

        terminated = deployed | abstained
        self._reset_programs(np.flatnonzero(self._autoreset))  # next-step autoreset
        self._autoreset = terminated.copy()
        info = self._info(invalid)
        if terminated.any():
            for key, value in (("deployed", deployed), ("aligned", aligned), ("abstained", abstained)):
                info[key], info[f"_{key}"] = value, terminated.copy()
        return self._obs(), reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def action_masks(self) -> np.ndarray:
        """``(num_envs, 3 + 3k + m)`` boolean masks over ``single_action_space.nvec`` (verdict, usages, idea)."""
        rest = np.ones((self.num_envs, 3 * self.n_proxies + self.n_ideas), dtype=bool)
        return np.concatenate([verdict_mask(self._checkpoint, self.n_phases), rest], axis=1)

    # -- rules (each over the programs ``rows``) ------------------------------------
    def _reset_programs(self, rows: np.ndarray) -> None:
        """A new program: each idea's base rate drawn from its prior (hidden), the whole budget left."""
        n = len(rows)
        if n == 0:
            return
        m = self.n_ideas
        drawn = sample_rows(np.broadcast_to(self._support_probs, (n,) + self._support_probs.shape), self.np_random.random((n, m)))
        self._rho[rows] = self._support_values[np.arange(m), drawn]
        self._runs_used[rows] = 0
        self._idea_runs[rows] = 0
        self._idea_passes[rows] = 0
        self._idea_fails[rows] = 0
        self._start_program_point(rows)
        self.belief.reset(rows)

    def _start_program_point(self, rows: np.ndarray) -> None:
        """Checkpoint 0 of the next run: nothing trained yet."""
        self._checkpoint[rows] = 0
        self._idea[rows] = -1
        self._state[rows] = -1
        self._usage[rows] = 0
        self._results[rows] = False
        self._n_anti[rows] = 0

    def _start_run(self, rows: np.ndarray, idea: np.ndarray) -> None:
        self._runs_used[rows] += 1
        self._idea[rows] = idea
        # a ~ Bernoulli(rho); nothing shaped: the state index is a (docs/model.md, "Run start")
        self._state[rows] = self.np_random.random(len(rows)) < self._rho[rows, idea]
        self.belief.start_run(idea, rows)

    def _run_phase(self, rows: np.ndarray, usage: np.ndarray) -> None:
        """One phase under ``usage`` ``(n, k)``, then the checkpoint's tests."""
        if len(rows) == 0:
            return
        d, k = self.dynamics, self.n_proxies
        t = self._checkpoint[rows]
        code = usage @ self._code_weights
        trans = d.transition[t, code, self._idea[rows], self._state[rows]]  # (n, S)
        state = sample_rows(trans, self.np_random.random(len(rows)))
        n_anti = self._n_anti[rows] + (usage == ANTI)
        p = d.pass_prob[t[:, None], n_anti, state[:, None], np.arange(k)[None, :]]  # (n, k)
        results = self.np_random.random((len(rows), k)) < p
        self._state[rows] = state
        self._n_anti[rows] = n_anti
        self._usage[rows, t] = usage
        self._results[rows, t] = results
        self.belief.advance(t, code, rows)
        self.belief.observe(t, n_anti, results, rows)
        self._checkpoint[rows] = t + 1

    def _end_run(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        reached = (np.arange(self.n_phases)[None, :] < self._checkpoint[rows, None])[:, :, None]
        results = self._results[rows]
        idea = self._idea[rows]
        self._idea_runs[rows, idea] += 1
        self._idea_passes[rows, idea] += (results & reached).sum(axis=1)
        self._idea_fails[rows, idea] += (~results & reached).sum(axis=1)
        self.belief.end_run(rows)

    # -- read-outs ---------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        values = self.layout.history(
            self._checkpoint,
            self._runs_used,
            self._idea,
            self._usage,
            self._results,
            self._idea_runs,
            self._idea_passes,
            self._idea_fails,
            self.budget,
        )
        if self.layout.mode == "belief":
            b = self.belief
            values.update(p_aligned=b.p_aligned[:, None], p_shaped=b.p_shaped, base_rate=b.mean_base_rates)
        return self.layout.encode(values)

    def _info(self, invalid: np.ndarray, shown: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The every-step keys, for every program (or those ``shown``), in Gymnasium's vector info format."""
        mask = np.ones(self.num_envs, dtype=bool) if shown is None else shown
        info: dict[str, np.ndarray] = {}
        for key, value in (
            ("p_aligned", self.belief.p_aligned),
            ("runs_used", self._runs_used.copy()),
            ("checkpoint", self._checkpoint.copy()),
            ("invalid_action", invalid),
        ):
            info[key], info[f"_{key}"] = value, mask.copy()
        return info
