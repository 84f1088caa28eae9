"""Stable-Baselines3 agents on ProxyAlignment-v0: the algorithms, the env each needs, and playing a trained model.

``train.py`` (the CLI), the TensorBoard summaries and ``proxygym inspect`` all build
environments and play models through this module, so an algorithm's quirks (DQN's
Discrete actions, MaskablePPO's masks, RecurrentPPO's LSTM state) are handled in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from proxygym.envs.actions import CONTINUE, DISCARD, ActionLayout, nearest_allowed
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes, measure
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import Scenario

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo", "recurrent_ppo")
POLICIES = {"recurrent_ppo": "MlpLstmPolicy"}  # every other algorithm: "MlpPolicy"


def algo_class(name: str):
    """The SB3 (or sb3-contrib) class of an algorithm name."""
    if name not in ALGOS:
        raise ProxyGymError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGOS)}")
    if name in ("maskable_ppo", "recurrent_ppo"):
        import sb3_contrib

        return {"maskable_ppo": sb3_contrib.MaskablePPO, "recurrent_ppo": sb3_contrib.RecurrentPPO}[name]
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[name]


class FlattenAction(gym.ActionWrapper):
    """Expose the env's ``MultiDiscrete([3] + [3]*k + [m])`` action as one ``Discrete(3 * 3**k * m)``.

    DQN needs a Discrete action space. Action ``a`` is the mixed-radix number whose digits are
    (verdict, usage of each proxy, idea), first digit most significant:
    ``np.unravel_index(a, nvec)`` gives them back. Nothing else changes: the same
    observations, rewards and info.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.actions = env.unwrapped.programs.actions
        self.action_space = spaces.Discrete(self.actions.n_flat)

    def action(self, action) -> np.ndarray:
        return self.actions.unflatten(int(action))


def make_env(scenario: "str | Path | Scenario", algo: str, observation: str = "belief", **env_kwargs) -> gym.Env:
    """One training env for ``algo`` (DQN's is wrapped in :class:`FlattenAction`)."""
    env = ProxyAlignmentEnv(scenario=scenario, observation=observation, **env_kwargs)
    return FlattenAction(env) if algo == "dqn" else env


def env_action(algo: str, env: ProxyAlignmentEnv, action) -> np.ndarray:
    """A model's action as the env's MultiDiscrete action."""
    if algo == "dqn":
        return env.programs.actions.unflatten(int(np.asarray(action).reshape(-1)[0]))
    return np.asarray(action, dtype=np.int64).reshape(-1)


@dataclass
class Rollouts:
    """What a played policy did, step by step and episode by episode."""

    n_phases: int
    n_proxies: int
    n_ideas: int
    # per episode
    returns: list[float] = field(default_factory=list)
    deployed: list[bool] = field(default_factory=list)
    aligned: list[bool] = field(default_factory=list)
    abstained: list[bool] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    # per step: the decision point, the verdict as the env applied it, the usages, the idea
    checkpoint: list[int] = field(default_factory=list)
    verdict: list[int] = field(default_factory=list)
    usage: list[np.ndarray] = field(default_factory=list)
    idea: list[int] = field(default_factory=list)

    def record(self, checkpoint: int, action: np.ndarray) -> None:
        verdict, usage, idea = ActionLayout(self.n_proxies, self.n_ideas).decode(action)
        self.checkpoint.append(checkpoint)
        self.verdict.append(nearest_allowed(int(verdict), checkpoint, self.n_phases))
        self.usage.append(np.asarray(usage))
        self.idea.append(int(idea))

    def outcomes(self) -> Outcomes:
        """How the episodes ended (:func:`proxygym.envs.outcomes.measure`)."""
        return measure(self.returns, self.deployed, self.aligned, self.abstained, self.runs)

    def usage_shares(self) -> np.ndarray:
        """``(T, k, 3)``: per phase and proxy, the share of reserve, train, anti among the runs that ran the phase."""
        T, k = self.n_phases, self.n_proxies
        out = np.zeros((T, k, 3))
        d = np.asarray(self.checkpoint)
        v = np.asarray(self.verdict)
        u = np.asarray(self.usage).reshape(-1, k)
        for t in range(T):
            ran = (d == t) & (v == CONTINUE)  # at checkpoint t, continue runs phase t+1
            if ran.any():
                for j in range(k):
                    out[t, j] = np.bincount(u[ran, j], minlength=3)[:3] / ran.sum()
        return out

    def discard_shares(self) -> np.ndarray:
        """``(T,)``: at each checkpoint 1..T, the share of the runs reaching it that were discarded there."""
        d = np.asarray(self.checkpoint)
        v = np.asarray(self.verdict)
        out = np.zeros(self.n_phases)
        for t in range(1, self.n_phases + 1):
            at = d == t
            out[t - 1] = float(np.mean(v[at] == DISCARD)) if at.any() else 0.0
        return out

    def idea_shares(self) -> np.ndarray:
        """``(m,)``: the share of runs started with each idea."""
        d = np.asarray(self.checkpoint)
        ideas = np.asarray(self.idea)[d == 0]
        return np.bincount(ideas, minlength=self.n_ideas)[: self.n_ideas] / max(len(ideas), 1)


def play_model(model, algo: str, scenario: Scenario, observation: str, episodes: int, seed: int = 0) -> Rollouts:
    """Play a trained model's deterministic policy for ``episodes`` episodes in the single env."""
    env = ProxyAlignmentEnv(scenario=scenario, observation=observation)
    out = Rollouts(env.n_phases, env.n_proxies, env.n_ideas)
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        state, start, total, done = None, True, 0.0, False
        while not done:
            kwargs = {}
            if algo == "maskable_ppo":
                kwargs["action_masks"] = env.action_masks()
            if algo == "recurrent_ppo":
                kwargs.update(state=state, episode_start=np.array([start]))
            action, state = model.predict(obs, deterministic=True, **kwargs)
            action = env_action(algo, env, action)
            out.record(info["checkpoint"], action)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            start, done = False, terminated or truncated
        out.returns.append(total)
        out.deployed.append(bool(info["deployed"]))
        out.aligned.append(bool(info["deployed"] and info["aligned"]))
        out.abstained.append(bool(info["abstained"]))
        out.runs.append(int(info["runs_used"]))
    return out
