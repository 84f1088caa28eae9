"""A fixed regimen played in the env: the same object the exact analysis scores.

The regimen (``proxygym.envs.analysis.Regimen``) is decided before anything is observed; the
agent only applies its rules to what the observation shows: discard a run when a
screened proxy fails at an early checkpoint or the test set fails at the final one,
deploy when it passes, and on the last run, with fallback ``deploy``, play on and
deploy whatever the tests show.

The rules are written once, over a batch of observations, so the same agent plays one
episode of ``ProxyAlignmentEnv`` or N at once in ``ProxyAlignmentVectorEnv``.
"""

from __future__ import annotations

import numpy as np

from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, ActionLayout, decision_kind
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import RANDOM_IDEA, Regimen

#: KEEP_VERDICT[kind of decision point, keep]: a run's start is always continued; at an early
#: checkpoint a run is kept by continuing, at the final one by deploying; else it is discarded.
KEEP_VERDICT = np.array([[CONTINUE, CONTINUE], [DISCARD, CONTINUE], [DISCARD, DEPLOY]])


class RegimenAgent:
    """Plays a :class:`~proxygym.envs.analysis.Regimen`; call it with an observation, get an action.

    ``agent(obs)`` takes one observation ``(n,)`` and returns one action, or a batch
    ``(N, n)`` (from a vector env) and returns ``(N, 2 + k)`` actions. With random ideas
    (``RANDOM_IDEA``) each run's idea is drawn uniformly from ``seed``'s stream at its start.
    """

    def __init__(self, regimen: Regimen, layout: ObservationLayout, budget: int, seed=None):
        self.regimen = regimen
        self.rng = np.random.default_rng(seed)
        self.layout = layout
        self.budget = budget
        self.plan = regimen.plan_array
        self.screens = dict(regimen.screen)
        T, k = self.plan.shape
        # must_pass[d, j]: proxy j must pass at checkpoint d for the run to be kept
        # (the screens at early checkpoints, the test set at the final one).
        self.must_pass = np.zeros((T + 1, k), dtype=bool)
        for d, proxies in self.screens.items():
            if 1 <= d < T:
                self.must_pass[d, list(proxies)] = True
        self.must_pass[T, list(regimen.test)] = True
        self.actions = ActionLayout(k, layout.n_ideas)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.ndim == 1:
            return self.act(obs[None, :])[0]
        return self.act(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, 2 + k)`` actions for a batch of observations ``(N, n)``."""
        n = obs.shape[0]
        T, k = self.plan.shape
        d = self.layout.position(obs, self.budget)[0]
        last_run = self.layout.last_chance(obs)  # a discard now would leave no run to start
        results = obs[:, self.layout.slices["results"]].reshape(n, T, k, 2)
        passed = results[np.arange(n), np.maximum(d - 1, 0), :, 0] > 0.5  # (N, k) at checkpoint d
        failed = (self.must_pass[d] & ~passed).any(axis=1)  # nothing must pass at d = 0
        keep = ~failed | (last_run & (self.regimen.fallback == "deploy"))
        verdict = KEEP_VERDICT[decision_kind(d, T), keep.astype(np.int64)]
        idea = self.regimen.idea
        if idea == RANDOM_IDEA:  # read by the env only where a run starts
            idea = self.rng.integers(self.layout.n_ideas, size=n)
        return self.actions.encode(verdict, self.plan[np.minimum(d, T - 1)], idea)


def play_episode(env, agent, seed: int | None = None) -> tuple[float, dict]:
    """Play one episode with ``agent(obs) -> action``; returns the total reward and the last info."""
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(agent(obs))
        total += reward
        done = terminated or truncated
    return total, info


def play_batch(vec_env, agent, seed: int | None = None, record=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Play one episode in every sub-env of a vector env with ``agent(obs_batch) -> actions``.

    Each sub-env counts only its first episode (the ones that autoreset after it are
    ignored), so the N episodes are an unbiased sample, long ones included. Returns
    each episode's total reward ``(N,)`` and, per info key, each episode's last value
    ``(N,)`` (for the keys set only at the end, ``deployed``, ``aligned``, ``abstained``,
    its value at the end). ``record(checkpoint, actions)``, if given, sees every counted step
    before it is taken: the decision points and actions of the sub-envs still in their first episode.
    """
    obs, info = vec_env.reset(seed=seed)
    n = vec_env.num_envs
    total = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    last: dict[str, np.ndarray] = {}
    while not done.all():
        actions = agent(obs)
        live = ~done
        if record is not None:
            record(info["checkpoint"][live], actions[live])
        obs, reward, terminated, truncated, info = vec_env.step(actions)
        total[live] += reward[live]
        for key, value in info.items():
            if key.startswith("_"):
                continue
            if key not in last:
                last[key] = np.zeros(n, dtype=np.asarray(value).dtype)
            fresh = live & info[f"_{key}"]
            last[key][fresh] = value[fresh]
        done |= terminated | truncated
    return total, last
