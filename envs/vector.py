"""ProxyAlignment-v0 over a batch: N organizations' programs stepped at once with numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from proxygym.envs.core import make_programs
from proxygym.envs.scenario import Scenario, load_scenario


class ProxyAlignmentVectorEnv(VectorEnv):
    """
    ## Description
    The batched twin of :class:`proxygym.envs.proxy_alignment.ProxyAlignmentEnv` (as Gymnasium's
    ``CartPoleVectorEnv`` is of ``CartPole``): ``num_envs`` independent programs of the
    same scenario, each with its own hidden base rates and models, stepped at once. Both
    envs play by the rules of :mod:`proxygym.envs.core`, the same draw for draw in their two
    engines: up to :data:`proxygym.envs.core.SMALL_BATCH` programs are stepped as a list of
    single programs (:class:`proxygym.envs.core.ProgramList`, faster there, each a
    :class:`proxygym.envs.core.Program` as the single env's), more with numpy arrays
    (:class:`proxygym.envs.core.Programs`); this class adds only Gymnasium's vector API
    (autoreset, the vector info format).

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
    of the programs it is set for. Every step, for all programs: ``p_aligned``,
    ``runs_used``, ``checkpoint``, ``invalid_action`` and, with a compute budget,
    ``compute_left`` (a program that autoresets reports its reset values). Where an
    episode ends: ``deployed``, ``aligned``, ``abstained``.

    ## Arguments
    ```python
    import gymnasium as gym
    import proxygym  # registers ProxyAlignment-v0 and its vector entry point
    envs_ = gym.make_vec("ProxyAlignment-v0", num_envs=2000, vectorization_mode="vector_entry_point",
                         scenario="sticky_values", observation="belief")
    ```
    - ``num_envs=1``: the number of programs.
    - ``scenario``, ``observation``: as the single env.
    - ``render_mode=None``: no rendering; ``gym.make_vec(..., vectorization_mode="sync", render_mode="rgb_array")``
      gives a vector env of single envs that render (for Gymnasium's vector ``RecordVideo``).

    ``reset(seed=s)`` makes the batch reproducible: the same seed and actions give the same
    trajectories. With one program it is the single env's stream (the same seed and actions play
    the same episode); with several, every program's outcomes have the single env's distribution. ``reset(options={"reset_mask": mask})``
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
            raise ValueError(
                f"render_mode {render_mode!r}: the batched vector env does not render; for images or videos of several"
                " programs use gym.make_vec(..., vectorization_mode='sync', render_mode=...), one env per program, each"
                " of which renders"
            )
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.scenario = load_scenario(scenario)
        self.programs = make_programs(self.scenario, self.num_envs, observation)
        self.dynamics = self.programs.dynamics
        self.layout = self.programs.layout
        self.observation_mode = observation
        self.n_phases, self.n_proxies, self.n_ideas = self.programs.n_phases, self.programs.n_proxies, self.programs.n_ideas
        self.budget = self.scenario.budget

        self.single_action_space = self.programs.actions.space()
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)  # programs whose episode ended at the last step
        self._bounds = np.tile(self.single_action_space.nvec, (self.num_envs, 1)).astype(np.uint64)
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
        self.programs.rng = self.np_random
        self.programs.reset(rows)
        self._autoreset[rows] = False
        self._was_reset = True
        invalid = np.zeros(self.num_envs, dtype=bool)
        return self.programs.observe(), self._info(invalid, shown=None if mask is None else mask)

    def step(self, actions):
        if not self._was_reset:
            raise RuntimeError("step() called before reset()")
        actions = np.asarray(actions)
        # action_space.contains, cheaply: integers of the batch's shape within [0, nvec) (read as unsigned, a
        # negative integer is above every bound, so one comparison of like types, against every program's
        # bounds laid out as the actions are, checks both ends)
        if not (
            actions.shape == self.action_space.shape and actions.dtype.kind in "iu"
            and (actions.view(unsigned := actions.dtype.str.replace("i", "u")) < self._bounds.astype(unsigned, copy=False)).all()
        ):
            raise ValueError(
                f"actions must be integers of shape {self.action_space.shape} within {self.single_action_space}, "
                f"got shape {actions.shape} and dtype {actions.dtype}"
            )
        out = self.programs.step(actions, live=~self._autoreset)
        terminated = out.terminated
        self.programs.reset(np.flatnonzero(self._autoreset))  # next-step autoreset
        self._autoreset = terminated.copy()
        info = self._info(out.invalid)
        if terminated.any():
            for key in ("deployed", "aligned", "abstained"):
                info[key], info[f"_{key}"] = getattr(out, key), terminated.copy()
        return self.programs.observe(), out.reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def action_masks(self) -> np.ndarray:
        """``(num_envs, 3 + 3k + m)`` boolean masks over ``single_action_space.nvec`` (verdict, usages, idea)."""
        return self.programs.masks()

    # -- read-outs ---------------------------------------------------------------
    def _info(self, invalid: np.ndarray, shown: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The every-step keys, for every program (or those ``shown``), in Gymnasium's vector info format."""
        mask = np.ones(self.num_envs, dtype=bool) if shown is None else shown
        info: dict[str, np.ndarray] = {}
        for key, value in (
            ("p_aligned", self.programs.p_aligned.copy()),
            ("runs_used", self.programs.runs_used.copy()),
            ("checkpoint", self.programs.checkpoint.copy()),
            *((("compute_left", self.programs.compute_left.copy()),) if self.programs.compute is not None else ()),
            ("invalid_action", invalid),
        ):
            info[key], info[f"_{key}"] = value, mask.copy()
        return info
