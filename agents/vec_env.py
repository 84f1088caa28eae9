"""Stable-Baselines3's ``VecEnv`` API over the batched :class:`~proxygym.envs.vector.ProxyAlignmentVectorEnv`.

SB3 steps ``n_envs`` environments at once through a ``VecEnv``; its usual one,
``DummyVecEnv``, loops in Python over single envs. :class:`ProxyAlignmentSB3VecEnv` hands SB3
the project's vector env instead, whose ``num_envs`` programs are stepped together with
numpy, and translates between the two conventions:

- **autoreset**: the Gymnasium vector env resets a finished program on the *next* step
  (``NEXT_STEP``); SB3 expects the reset in the *same* step. When a program's episode ends,
  the adapter resets that program at once (``reset(options={"reset_mask": ...})``, so no step
  is wasted), returns the first observation of its next episode as ``obs[i]``, the real last
  observation in ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]``
  (always False: episodes end only by termination). The reset's info goes to ``reset_infos[i]``.
- **infos**: one dict per program, as the single env gives them (``p_aligned``,
  ``runs_used``, ``checkpoint``, ``invalid_action``, ``compute_left`` with a compute budget,
  and at an episode's end ``deployed``, ``aligned``, ``abstained``), as Python scalars.
- **actions**: the model's action of each program in ``ActionLayout.model_space()`` (the
  ``MultiDiscrete`` without a one-choice idea component, as the single env's ``ModelAction``),
  or for DQN (``algo="dqn"``) one ``Discrete(3 * 3**k * m)`` index per program, unflattened by
  :meth:`proxygym.envs.actions.ActionLayout.unflatten` (as the single env's ``FlattenAction``);
  :func:`proxygym.agents.training.model_actions` turns either into the env's actions.
- **masks**: ``env_method("action_masks")`` (what sb3-contrib's ``MaskablePPO`` calls) gives
  each program's flat mask over the components of the model's action space.
- **seeding**: ``seed(s)`` (which SB3 calls with the model's ``seed``) seeds the batch's one
  random stream at the next ``reset()``; the same seed and actions give the same trajectories.

Use :func:`make_vec_env` for a training env: the adapter under SB3's ``VecMonitor`` (the
episode returns and lengths of ``rollout/ep_rew_mean``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from proxygym.agents.training import model_actions
from proxygym.envs.scenario import Scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv

#: The info keys set only where an episode ends.
END_KEYS = ("deployed", "aligned", "abstained")


class ProxyAlignmentSB3VecEnv(VecEnv):
    """``num_envs`` programs of one scenario as an SB3 ``VecEnv`` (same-step autoreset), for ``algo``.

    ``venv`` is the underlying :class:`ProxyAlignmentVectorEnv`. ``get_attr`` reads its
    attributes (one value for the whole batch, repeated per program); ``set_attr`` sets one on
    it (for every program at once); ``env_method("action_masks")`` gives each program's
    mask, any other method is called once on ``venv`` and its result given to each program.
    Nothing is wrapped (``env_is_wrapped`` is False) and nothing renders.
    """

    def __init__(
        self,
        scenario: "str | Path | Scenario",
        algo: str = "ppo",
        num_envs: int = 1,
        observation: str = "belief",
        **env_kwargs,
    ):
        self.venv = ProxyAlignmentVectorEnv(num_envs, scenario=scenario, observation=observation, **env_kwargs)
        self.algo = algo
        self.actions = self.venv.programs.actions
        self.render_mode = None
        action_space = spaces.Discrete(self.actions.n_flat) if algo == "dqn" else self.actions.model_space()
        super().__init__(self.venv.num_envs, self.venv.single_observation_space, action_space)
        self._actions: np.ndarray | None = None

    # -- the VecEnv API ----------------------------------------------------------------
    def reset(self) -> np.ndarray:
        # seed() sets one seed per env (seed + i); the batch has one random stream, seeded by the first
        obs, info = self.venv.reset(seed=self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = self._split(info)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        actions = model_actions(self.algo, self.actions, self._actions, self.num_envs)
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        dones = terminated | truncated
        infos = self._split(info)
        if dones.any():
            rows = np.flatnonzero(dones)
            for i in rows:
                infos[i]["terminal_observation"] = obs[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            # same-step autoreset: the finished programs start their next episode now, not at the next step
            obs, reset_info = self.venv.reset(options={"reset_mask": dones})
            for i, info_i in zip(rows, self._split(reset_info, rows)):
                self.reset_infos[i] = info_i
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError(f"set_attr({attr_name!r}): the programs share one env; set it for all of them (indices=None)")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in rows]
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def action_masks(self) -> np.ndarray:
        """Each program's allowed choices, over the components of the action space the model is given."""
        return self.actions.model_masks(self.venv.action_masks())

    # -- infos ------------------------------------------------------------------------------
    def _split(self, info: dict[str, np.ndarray], rows: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Gymnasium's vector info (arrays and ``_key`` masks) as one dict per program (or per program of
        ``rows``), of Python scalars as the single env gives them."""
        if rows is not None:
            info = {key: value[rows] for key, value in info.items()}
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs if rows is None else len(rows))]
        for key, value in info.items():
            if key.startswith("_"):
                continue
            values, shown = value.tolist(), info[f"_{key}"]
            if shown.all():
                for d, v in zip(out, values):
                    d[key] = v
            else:
                for i in np.flatnonzero(shown):
                    out[i][key] = values[i]
        return out


def make_vec_env(
    scenario: "str | Path | Scenario",
    algo: str,
    n_envs: int = 1,
    observation: str = "belief",
    seed: int | None = None,
    **env_kwargs,
) -> VecMonitor:
    """The training env of ``algo``: ``n_envs`` programs in one :class:`ProxyAlignmentSB3VecEnv`, seeded
    with ``seed``, under SB3's ``VecMonitor`` (episode returns and lengths for SB3's logger)."""
    env = ProxyAlignmentSB3VecEnv(scenario, algo, n_envs, observation, **env_kwargs)
    if seed is not None:
        env.seed(seed)
    return VecMonitor(env)
