"""PPO training speed (environment steps per second) on ProxyAlignment-v0, SB3's DummyVecEnv against the batched env, next to CartPole-v1 and a do-nothing env with ProxyAlignment's spaces.

    python benchmarks/bench_train_fps.py [--rounds 5] [--steps 20000] [--n-envs 8] [--scenario sticky_values]

Four setups train PPO from scratch for ``--steps`` steps (PPO rounds up to whole rollouts)
with the same settings, those of ``agents/hyperparams/ppo.yml``'s ``default`` entry
(MlpPolicy, n_steps 256, batch 256, 10 epochs, ...), one torch thread, and ``--n-envs`` envs:

- ``old``: ProxyAlignment-v0 as SB3's ``make_vec_env`` builds it, a ``DummyVecEnv`` of single
  envs (``agents.training.make_env``) each under a ``Monitor`` (what train.py used before);
- ``new``: ProxyAlignment-v0 in the batched adapter train.py uses (``agents.vec_env.make_vec_env``:
  one ``ProxyAlignmentVectorEnv`` of ``--n-envs`` programs under a ``VecMonitor``);
- ``cartpole``: CartPole-v1 in SB3's ``make_vec_env`` (a DummyVecEnv), the reference;
- ``spaces``: a do-nothing Gymnasium env (:class:`SpacesOnly`: a constant observation, reward 0,
  an episode every 5 steps) with exactly the observation and action spaces train.py's PPO sees
  (those of the batched env ``agents.vec_env`` builds, the same as ``agents.training.make_env``'s),
  in SB3's ``make_vec_env``. It is the ceiling those spaces alone allow: a wider first layer for a
  longer observation, a categorical over the flat action's ``ActionLayout.n_flat`` choices (or, past
  ``ActionLayout.FLAT_MAX``, one categorical per MultiDiscrete component) cost PPO time whatever
  the env does.

Only ``model.learn`` is timed (no evaluation). The setups are timed in interleaved rounds,
the order rotating each round, so a machine shared with other jobs slows them alike; each
setup's fps is the median over rounds and each ratio the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxygym.agents.training import HYPERPARAMS_DIR, make_env, model_kwargs  # noqa: E402

SETUPS = ("old", "new", "cartpole", "spaces")


class SpacesOnly(gym.Env):
    """An env that does nothing, with given observation and action spaces (the ``spaces`` setup)."""

    EPISODE_STEPS = 5

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self._obs = np.zeros(observation_space.shape, dtype=observation_space.dtype)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action):
        self._t += 1
        return self._obs.copy(), 0.0, self._t >= self.EPISODE_STEPS, False, {}


def spaces_env(scenario: str) -> gym.Env:
    """A :class:`SpacesOnly` with the spaces train.py's PPO sees (those of its batched env, ``agents.vec_env``)."""
    from proxygym.agents.vec_env import ProxyAlignmentSB3VecEnv

    env, single = ProxyAlignmentSB3VecEnv(scenario, "ppo", 1, "belief"), make_env(scenario, "ppo", "belief")
    assert (env.observation_space, env.action_space) == (single.observation_space, single.action_space)  # the old setup's
    return SpacesOnly(env.observation_space, env.action_space)


def ppo_settings() -> dict:
    """The PPO keyword arguments of ppo.yml's default entry (without what is not PPO's: model_kwargs drops the
    env_wrapper, which names the action space every setup here acts in already)."""
    params = dict(yaml.safe_load((HYPERPARAMS_DIR / "ppo.yml").read_text())["default"])
    for key in ("n_timesteps", "n_envs", "env_kwargs", "policy"):
        params.pop(key, None)
    return model_kwargs(params)


def build_env(setup: str, scenario: str, n_envs: int, seed: int):
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    from proxygym.agents.vec_env import make_vec_env

    if setup == "old":
        return sb3_make_vec_env(make_env, n_envs=n_envs, seed=seed,
                                env_kwargs=dict(scenario=scenario, algo="ppo", observation="belief"))
    if setup == "new":
        return make_vec_env(scenario, "ppo", n_envs, "belief", seed=seed)
    if setup == "spaces":
        return sb3_make_vec_env(spaces_env, n_envs=n_envs, seed=seed, env_kwargs=dict(scenario=scenario))
    return sb3_make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)


def train_fps(setup: str, scenario: str, n_envs: int, steps: int, seed: int) -> float:
    """Train PPO from scratch in ``setup``'s env; its environment steps per second of ``model.learn``."""
    from stable_baselines3 import PPO

    env = build_env(setup, scenario, n_envs, seed)
    model = PPO("MlpPolicy", env, seed=seed, verbose=0, **ppo_settings())
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000, help="training steps per run (PPO rounds up to whole rollouts)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--scenario", default="sticky_values")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as train.py
    for setup in SETUPS:  # warm-up: imports, first allocations
        train_fps(setup, args.scenario, args.n_envs, args.n_envs * ppo_settings()["n_steps"], args.seed)
    fps: dict[str, list[float]] = {s: [] for s in SETUPS}
    for r in range(args.rounds):
        order = SETUPS[r % len(SETUPS):] + SETUPS[: r % len(SETUPS)]
        for setup in order:
            fps[setup].append(train_fps(setup, args.scenario, args.n_envs, args.steps, args.seed))
        print(f"round {r + 1}: " + ", ".join(f"{s} {fps[s][-1]:,.0f}" for s in SETUPS), flush=True)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(fps[a], fps[b]))

    med = {s: statistics.median(v) for s, v in fps.items()}
    print(f"\nPPO, {args.steps} steps, {args.n_envs} envs, median of {args.rounds} interleaved rounds (steps/s of model.learn)")
    labels = {
        "old": f"ProxyAlignment-v0 ({args.scenario}), DummyVecEnv of single envs (old)",
        "new": f"ProxyAlignment-v0 ({args.scenario}), batched vector env (new)",
        "cartpole": "CartPole-v1, DummyVecEnv (cartpole)",
        "spaces": "do-nothing env with ProxyAlignment's spaces, DummyVecEnv (spaces)",
    }
    width = max(map(len, labels.values()))
    for setup in SETUPS:
        print(f"{labels[setup] + ':':<{width + 1}} {med[setup]:10,.0f}")
    print(f"ratio new / old:                {ratio('new', 'old'):8.3f}")
    print(f"ratio ProxyGym old / CartPole:  {ratio('old', 'cartpole'):8.3f}")
    print(f"ratio ProxyGym new / CartPole:  {ratio('new', 'cartpole'):8.3f}")
    print(f"ratio spaces / CartPole:        {ratio('spaces', 'cartpole'):8.3f}   (the ceiling ProxyAlignment's spaces allow)")
    print(f"ratio ProxyGym new / spaces:    {ratio('new', 'spaces'):8.3f}")


if __name__ == "__main__":
    main()
