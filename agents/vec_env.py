"""Stable-Baselines3's ``VecEnv`` API over a batch of programs.

SB3 steps ``n_envs`` environments at once through a ``VecEnv``; its usual one,
``DummyVecEnv``, loops in Python over single envs, each under its own wrappers.
:class:`ProxyAlignmentSB3VecEnv` hands SB3 the rules' engine for ``num_envs`` programs
(:func:`proxygym.envs.core.make_programs`, as :class:`~proxygym.envs.vector.ProxyAlignmentVectorEnv`
steps them) with SB3's conventions:

- **autoreset**: SB3 expects a finished episode to be reset in the *same* step (the Gymnasium
  vector env resets it at the next one). When a program's episode ends, the adapter resets it
  at once (no step is wasted), returns the first observation of its next episode as
  ``obs[i]``, the real last observation in ``infos[i]["terminal_observation"]`` and
  ``infos[i]["TimeLimit.truncated"]`` (always False: episodes end only by termination). The
  reset's info goes to ``reset_infos[i]``.
- **infos**: one dict per program, as the single env gives them (``p_aligned``,
  ``runs_used``, ``checkpoint``, ``invalid_action``, ``compute_left`` with a compute budget,
  and at an episode's end ``deployed``, ``aligned``, ``abstained``), as Python scalars.
- **actions**: the model's action of each program in the space train.py's agents of ``algo`` act in
  (:func:`proxygym.agents.training.model_space`: one ``Discrete`` index per distinct action, as the
  single env's ``ModelAction``), or in another space a model may act in (``action_space``: a resumed
  model's), turned into the env's actions by :meth:`proxygym.envs.actions.ActionLayout.from_model`.
- **masks**: ``env_method("action_masks")`` (what sb3-contrib's ``MaskablePPO`` calls) gives
  each program's mask over the model's choices (:meth:`~proxygym.envs.actions.ActionLayout.model_masks`).
- **seeding**: ``seed(s)`` (which SB3 calls with the model's ``seed``) seeds the batch's one
  random stream at the next ``reset()``; the same seed and actions give the same trajectories.

Use :func:`make_vec_env` for a training env: the adapter under SB3's ``VecMonitor`` (the
episode returns and lengths of ``rollout/ep_rew_mean``, and the run's Monitor CSV file), or SB3's
``DummyVecEnv`` / ``SubprocVecEnv`` of single envs, as rl-baselines3-zoo's ``--vec-env`` chooses.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecMonitor

from proxygym.agents.training import VEC_ENVS, make_env, model_space
from proxygym.envs.core import make_programs
from proxygym.envs.scenario import Scenario, load_scenario

#: The info keys set only where an episode ends.
END_KEYS = ("deployed", "aligned", "abstained")


class ProxyAlignmentSB3VecEnv(VecEnv):
    """``num_envs`` programs of one scenario as an SB3 ``VecEnv`` (same-step autoreset), for ``algo``.

    The programs are stepped by the rules' engine (:func:`proxygym.envs.core.make_programs`, the
    one :class:`ProxyAlignmentVectorEnv` steps too, which adds Gymnasium's conventions instead).
    ``get_attr`` reads an attribute of the adapter, else of its ``programs`` (one value for the
    whole batch, repeated per program); ``set_attr`` sets one on ``programs`` (for every program at
    once); ``env_method("action_masks")`` gives each program's mask, any other method is called
    once on ``programs`` and its result given to each program. Nothing is wrapped
    (``env_is_wrapped`` is False) and nothing renders.
    """

    def __init__(
        self,
        scenario: "str | Path | Scenario",
        algo: str = "ppo",
        num_envs: int = 1,
        observation: str = "belief",
        render_mode: str | None = None,
        full_actions: bool = False,
        action_space: spaces.Space | None = None,
    ):
        if render_mode is not None:
            raise ValueError(f"the batched env does not render; render_mode must be None, got {render_mode!r}")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs!r}")
        self.scenario = load_scenario(scenario)
        self.programs = make_programs(self.scenario, int(num_envs), observation)
        self.layout, self.dynamics, self.actions = self.programs.layout, self.programs.dynamics, self.programs.actions
        self.n_phases, self.budget = self.programs.n_phases, self.scenario.budget
        self.algo = algo
        self.render_mode = None
        self.single_action_space = self.actions.space()  # the env's own action of one program
        self.observation_mode = observation
        # the model's action space: algo's (model_space), or a given one (a resumed model's: ``full_actions`` is the
        # env's own, for a model trained on the bare env as rl-baselines3-zoo trains)
        if action_space is None:
            action_space = self.single_action_space if full_actions else model_space(algo, self.actions)
        if not self.actions.fits_model(action_space) or (algo == "dqn" and not isinstance(action_space, spaces.Discrete)):
            raise ValueError(f"{action_space} is not an action space {algo} may act in on scenario {self.scenario.name!r}")
        self.full_actions = action_space == self.single_action_space
        observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        super().__init__(int(num_envs), observation_space, action_space)
        self._actions: np.ndarray | None = None
        self._all = np.ones(self.num_envs, dtype=bool)
        self._no = np.zeros(self.num_envs, dtype=bool)
        self._rng: np.random.Generator | None = None

    # -- the VecEnv API ----------------------------------------------------------------
    def reset(self) -> np.ndarray:
        # seed() sets one seed per env (seed + i); the batch has one random stream, seeded by the first,
        # as Gymnasium seeds an env (the same stream as the single env's reset(seed=...))
        seed = self._seeds[0] if self._seeds else None
        if seed is not None or self._rng is None:
            self._rng = seeding.np_random(seed)[0]
        self.programs.rng = self._rng
        self._reset_seeds()
        self._reset_options()
        self.programs.reset(np.arange(self.num_envs))
        self.reset_infos = self._infos(self._no)
        return self.programs.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        pg = self.programs
        actions = self.actions.from_model(self._actions, self.action_space)
        if len(actions) != self.num_envs:
            raise ValueError(f"{len(actions)} actions of {self.action_space} for {self.num_envs} programs")
        out = pg.step(actions, self._all)
        obs = pg.observe()
        dones = out.terminated
        infos = self._infos(out.invalid)
        if dones.any():
            rows = np.flatnonzero(dones)
            for i, deployed, aligned, abstained in zip(
                rows.tolist(), out.deployed[rows].tolist(), out.aligned[rows].tolist(), out.abstained[rows].tolist()
            ):
                infos[i].update(deployed=deployed, aligned=aligned, abstained=abstained,
                                terminal_observation=obs[i], **{"TimeLimit.truncated": False})
            # same-step autoreset: the finished programs start their next episode now, not at the next step
            pg.reset(rows)
            obs = pg.observe()  # a new array: the terminal observations above stay as they were
            fresh = self._infos(self._no)
            for i in rows.tolist():
                self.reset_infos[i] = fresh[i]
        return obs, out.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name) if hasattr(self, attr_name) else getattr(self.programs, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError(f"set_attr({attr_name!r}): the programs share one env; set it for all of them (indices=None)")
        setattr(self.programs, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in rows]
        result = getattr(self.programs, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def action_masks(self) -> np.ndarray:
        """Each program's allowed choices in the action space the model is given (``ActionLayout.model_masks``)."""
        return self.actions.model_masks(self.programs.masks(), self.action_space)

    def _infos(self, invalid: np.ndarray) -> list[dict[str, Any]]:
        """One info dict per program, of Python scalars, as the single env gives them every step."""
        return self.programs.infos(invalid)


def make_vec_env(
    scenario: "str | Path | Scenario",
    algo: str,
    n_envs: int = 1,
    observation: str = "belief",
    seed: int | None = None,
    vec_env: str = "batched",
    monitor_dir: "str | Path | None" = None,
    action_space: spaces.Space | None = None,
    frame_stack: int = 1,
    **env_kwargs,
) -> "VecMonitor | VecFrameStack":
    """The training env of ``algo``: ``n_envs`` programs seeded with ``seed``, under SB3's ``VecMonitor`` (episode
    returns and lengths for SB3's logger, and with ``monitor_dir`` the file ``monitor_dir/monitor.csv`` that SB3's
    ``load_results`` and rl-baselines3-zoo's plots read, with each episode's ``deployed``, ``aligned`` and
    ``abstained`` besides its return ``r``, length ``l`` and time ``t``).

    ``vec_env``: ``"batched"`` (one :class:`ProxyAlignmentSB3VecEnv`), or rl-baselines3-zoo's choices, SB3's
    ``"dummy"`` (``DummyVecEnv``: single envs stepped in turn in this process) and ``"subproc"``
    (``SubprocVecEnv``: a process per env), each env a :func:`proxygym.agents.training.make_env`.

    ``frame_stack`` n > 1: the monitored env under SB3's ``VecFrameStack`` (each program's last n observations side by
    side, as rl-baselines3-zoo's ``frame_stack`` wraps its envs); :class:`proxygym.agents.training.ModelAgent` gives a
    model trained so the same frames when it is played.
    """
    if vec_env not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {', '.join(VEC_ENVS)}, got {vec_env!r}")
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, int) or frame_stack < 1:
        raise ValueError(f"frame_stack must be a whole number of at least 1, got {frame_stack!r}")
    if vec_env == "batched":
        env = ProxyAlignmentSB3VecEnv(scenario, algo, n_envs, observation, action_space=action_space, **env_kwargs)
    else:
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        # a copy without the loaded scenario's compiled dynamics and solutions: that is all a subprocess is sent
        one = partial(make_env, copy.copy(load_scenario(scenario)), algo, observation, action_space, **env_kwargs)
        one().close()  # a bad argument fails here, in this process, not in a subprocess
        env = (DummyVecEnv if vec_env == "dummy" else SubprocVecEnv)([one] * int(n_envs))
    if seed is not None:
        env.seed(seed)
    monitored = VecMonitor(env, filename=None if monitor_dir is None else str(monitor_dir), info_keywords=END_KEYS)
    return monitored if frame_stack == 1 else VecFrameStack(monitored, frame_stack)
