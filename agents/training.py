"""Stable-Baselines3 agents on ProxyAlignment-v0: the algorithms, the env each needs, and playing a trained model.

``train.py`` (the CLI), the TensorBoard summaries and ``proxygym inspect`` all play models
through this module (:func:`play_model`, batched in the vector env), so the action space a model
acts in (one ``Discrete`` index per action: :func:`model_space`; or the one a saved model has) and an
algorithm's quirks (MaskablePPO's masks, RecurrentPPO's LSTM state) are handled in one place.
Training itself steps a batch of programs in :mod:`proxygym.agents.vec_env`; :func:`make_env` is
the single env, for what needs one (SB3's env checker, rl-baselines3-zoo, the checks of a saved
model's spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from proxygym.agents.regimen import play_batch
from proxygym.envs.actions import CONTINUE, DISCARD, ActionLayout, nearest_allowed
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes, measure
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import Scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv

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


class ModelAction(gym.ActionWrapper):
    """Show the env's action as a learning agent is given it: ``ActionLayout.model_space()`` (by default one
    ``Discrete`` index per distinct action, read as the mixed-radix number whose digits are the verdict, the
    usage of each proxy and the idea, first digit most significant), or another space a model may act in.

    SB3 builds one categorical distribution per component of a ``MultiDiscrete``; a single one over every
    action is cheaper while there are few (``ActionLayout.FLAT_MAX``), and DQN needs a ``Discrete`` anyway.
    Nothing else changes: the same observations, rewards and info. ``action_masks()`` gives the masks over
    the model's choices (``ActionLayout.model_masks``).
    """

    def __init__(self, env: gym.Env, action_space: "spaces.Space | None" = None):
        super().__init__(env)
        self.actions = env.unwrapped.program.actions
        self.action_space = self.actions.model_space() if action_space is None else action_space
        if not self.actions.fits_model(self.action_space):
            raise ValueError(f"{self.action_space} is not an action space a model may act in here")

    def action(self, action) -> np.ndarray:
        return self.actions.from_model(action, self.action_space)[0]

    def action_masks(self) -> np.ndarray:
        return self.actions.model_masks(self.env.unwrapped.action_masks(), self.action_space)


def model_space(algo: str, layout: ActionLayout) -> spaces.Space:
    """The action space train.py's agents of ``algo`` act in: ``layout.model_space()``, flat for DQN whatever its size."""
    return layout.model_space(flat=True if algo == "dqn" else None)


def make_env(scenario: "str | Path | Scenario", algo: str, observation: str = "belief", **env_kwargs) -> gym.Env:
    """One single env for ``algo``, in the action space train.py's agents of ``algo`` act in (:func:`model_space`,
    through :class:`ModelAction`); train.py trains in :func:`proxygym.agents.vec_env.make_vec_env` instead, which
    batches ``n_envs`` programs."""
    env = ProxyAlignmentEnv(scenario=scenario, observation=observation, **env_kwargs)
    return ModelAction(env, model_space(algo, env.program.actions))


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
        """One step: the decision point it was taken at and the action (the verdict as the env applies it)."""
        self.record_batch(np.array([checkpoint]), np.asarray(action).reshape(1, -1))

    def record_batch(self, checkpoint: np.ndarray, actions: np.ndarray) -> None:
        """Steps of several programs at once: their decision points ``(n,)`` and actions ``(n, 2 + k)``."""
        verdict, usage, idea = ActionLayout(self.n_proxies, self.n_ideas).decode(actions)
        checkpoint = np.asarray(checkpoint, dtype=np.int64)
        self.checkpoint.extend(checkpoint.tolist())
        self.verdict.extend(np.asarray(nearest_allowed(verdict, checkpoint, self.n_phases)).reshape(-1).tolist())
        self.usage.extend(np.asarray(usage, dtype=np.int64).reshape(len(checkpoint), self.n_proxies))
        self.idea.extend(np.asarray(idea, dtype=np.int64).reshape(-1).tolist())

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


class ModelAgent:
    """A trained model's deterministic policy as an agent of a batch: ``agent(obs) -> (N, 2 + k)`` actions.

    It passes each program's action mask to MaskablePPO, and keeps RecurrentPPO's LSTM state
    with the episode start of each program (a program at its first decision point: a run's
    start with the whole budget left).
    """

    def __init__(self, model, algo: str, env: ProxyAlignmentVectorEnv):
        self.model, self.algo, self.env = model, algo, env
        self.state = None
        # the space the model was saved with: the model space, MultiDiscrete(model_nvec) (large scenarios, and
        # every model saved before the flat one) or the env's own (trained on the bare env, as rl-baselines3-zoo trains)
        self.space = model.action_space

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        kwargs = {}
        actions = self.env.programs.actions
        if self.algo == "maskable_ppo":
            kwargs["action_masks"] = actions.model_masks(self.env.action_masks(), self.space)
        if self.algo == "recurrent_ppo":
            kwargs.update(state=self.state, episode_start=self.env.layout.episode_start(obs))
        action, self.state = self.model.predict(obs, deterministic=True, **kwargs)
        return actions.from_model(action, self.space)


def play_model(model, algo: str, scenario: Scenario, observation: str, episodes: int, seed: int = 0) -> Rollouts:
    """Play a trained model's deterministic policy for ``episodes`` episodes, all at once.

    The episodes are those of one :class:`~proxygym.envs.vector.ProxyAlignmentVectorEnv` of
    ``episodes`` programs reset with ``seed``, played by :func:`proxygym.agents.regimen.play_batch`
    (each program's first episode counted, so the sample is unbiased, long episodes included)
    with one batched ``model.predict`` per step (:class:`ModelAgent`). Episode ``i`` of the
    result is program ``i``'s.
    """
    env = ProxyAlignmentVectorEnv(episodes, scenario=scenario, observation=observation)
    out = Rollouts(env.n_phases, env.n_proxies, env.n_ideas)
    total, last = play_batch(env, ModelAgent(model, algo, env), seed=seed, record=out.record_batch)
    deployed = last["deployed"].astype(bool)
    out.returns.extend(total.tolist())
    out.deployed.extend(deployed.tolist())
    out.aligned.extend((deployed & last["aligned"].astype(bool)).tolist())
    out.abstained.extend(last["abstained"].astype(bool).tolist())
    out.runs.extend(last["runs_used"].astype(int).tolist())
    return out
