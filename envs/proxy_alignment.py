"""ProxyAlignment-v0: an organization decides how to use alignment proxies across training runs."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from proxygym.envs.actions import DISCARD, nearest_allowed
from proxygym.envs.core import Program
from proxygym.envs.regimen import usage_letters
from proxygym.envs.scenario import Scenario, load_scenario


class ProxyAlignmentEnv(gym.Env):
    """
    ## Description
    An organization trains models and wants to deploy an aligned one. It has imperfect
    tests of alignment (proxies) and, in each phase of each training run, decides for
    every proxy whether to train on it, hold it out as a test (reserve) or anti-train on
    it; at each checkpoint it sees every proxy's result and keeps, discards or deploys.
    Training on a proxy can raise the base rate of aligned models (while values are
    still plastic) but makes the proxy a worse test (misaligned models get shaped to
    pass it); capable models may circumvent a test outright, and a model's test behaviour
    can be a lasting trait rather than a fresh coin; discarding a run costs one of a finite
    budget of runs and, where the scenario sets one, the compute spent so far. The reward is
    the TRUE alignment of the deployed model.

    This is the essay "When is it Better to Train on the Alignment Proxy?" made into a
    game: base rate, likelihood ratio, sticky values, circumvention, persistence and budget
    are all parameters of a scenario file (see ``docs/model.md`` for every formula).

    ## Action Space
    ``MultiDiscrete([3] + [3] * k + [m])`` for k proxies and m ideas:

    - ``action[0]``, the verdict: 0 continue, 1 discard, 2 deploy
    - ``action[1 + j]``, the usage of proxy j in the next phase: 0 reserve, 1 train, 2 anti
    - ``action[1 + k]``, the idea of the run being started

    At a run's start (checkpoint 0) only continue is allowed; it starts the run with the
    chosen idea and runs phase 1 with the chosen usages. At checkpoints 1..T-1 the
    verdict is continue (run the next phase) or discard; at the final checkpoint T it is
    deploy or discard. ``action_masks()`` returns the allowed choices as a flat boolean
    array (for sb3-contrib's MaskablePPO). A verdict that is not allowed is mapped to
    the nearest allowed one (checkpoint 0: continue; checkpoint T: continue means
    deploy; otherwise deploy means continue) and ``info["invalid_action"]`` is True.
    Usages at checkpoint T and the idea after checkpoint 0 are ignored.

    ## Observation Space
    A flat ``Box(0, 1, (n,), float32)``, see :class:`proxygym.envs.observation.ObservationLayout`
    for every named slice. ``observation="history"``: the decision point, runs left (and
    compute left, where the scenario sets ``compute``), the current run's idea, usages and test results so far, and per idea the passes and
    fails seen in earlier runs. ``observation="belief"`` adds the exact Bayesian
    posterior: P(current model aligned), P(shaped) per proxy, each idea's posterior mean
    base rate. The hidden state (alignment, shaping, the ideas' true base rates) is
    never part of the observation.

    ## Starting State
    At reset each idea's base rate is drawn from its prior (or is the fixed number the
    scenario gives). The program starts at checkpoint 0 of its first run with the whole
    budget left.

    ## Rewards
    ``-reward.run_cost`` when a run starts; at the end, ``reward.aligned`` if the
    deployed model is truly aligned, ``reward.misaligned`` if it is not, and
    ``reward.abstain`` if the last run is discarded and nothing is deployed.

    ## Episode End
    - Termination: a model is deployed, or a run is discarded when no other run can start
      (``budget`` runs started, or, with a compute budget, less than one full run's compute left).
    - Truncation: none; an episode has at most ``budget * (T + 1)`` steps.

    ## Information
    Every step: ``p_aligned`` (exact posterior that the current model is aligned; 0.0
    at a run's start), ``runs_used``, ``checkpoint``, ``invalid_action``, and with a compute
    budget ``compute_left``. At the end,
    also ``deployed`` (bool), ``aligned`` (the deployed model's true alignment, for
    logging only; False when nothing is deployed) and ``abstained`` (bool).

    ## Arguments
    ```python
    import gymnasium as gym
    import proxygym  # registers ProxyAlignment-v0
    env = gym.make("ProxyAlignment-v0", scenario="sticky_values", observation="belief",
                   render_mode="ansi")
    ```
    - ``scenario="sticky_values"``: a shipped scenario's name, a path to a YAML file, or
      a loaded :class:`proxygym.envs.scenario.Scenario`.
    - ``observation="history"``: ``"history"`` or ``"belief"``.
    - ``render_mode=None``: ``"ansi"`` returns a small text table of the program.

    ## References
    - "When is it Better to Train on the Alignment Proxy?" (LessWrong, 2025-03-11).
    - ``docs/model.md`` in this repository.

    ## Version History
    - v0: initial version. The world model's later fields (persistence, gates, faking,
      transfer, phase costs and a compute budget) extend it: each defaults to the initial
      behaviour, so every v0 scenario plays exactly as before.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        scenario: "str | Path | Scenario" = "sticky_values",
        observation: str = "history",
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.scenario = load_scenario(scenario)
        self.program = Program(self.scenario, observation)
        self.dynamics = self.program.dynamics
        self.layout = self.program.layout
        self.observation_mode = observation
        self.render_mode = render_mode
        self.n_phases, self.n_proxies, self.n_ideas = self.program.n_phases, self.program.n_proxies, self.program.n_ideas
        self.budget = self.scenario.budget
        self.action_space = self.program.actions.space()
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        self._nvec = self.action_space.nvec.tolist()
        self._history: list[dict] = []  # finished runs, for render()
        self._ended = True

    # -- gym API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.program.rng = self.np_random
        self.program.reset()
        self._history = []
        self._ended = False
        return self.program.obs.copy(), self._info(invalid=False)

    def step(self, action):
        if self._ended:
            raise RuntimeError("step() called after the episode ended; call reset()")
        values = np.asarray(action).reshape(-1).astype(np.int64).tolist()
        nvec = self._nvec
        # action_space.contains, for the int64 cast of a flat action: its shape, then each entry's range
        if len(values) != len(nvec) or not all(0 <= a < n for a, n in zip(values, nvec)):
            raise ValueError(f"action {np.asarray(action).tolist()} is outside the action space {self.action_space}")
        pg = self.program
        if self.render_mode == "ansi" and nearest_allowed(values[0], pg.checkpoint, self.n_phases) == DISCARD:
            self._history.append(self._run_summary("discarded"))
        reward, invalid, deployed, aligned, abstained = pg.step(values[0], values[1:-1], values[-1])
        info = self._info(invalid)
        terminated = deployed or abstained
        if terminated:
            self._ended = True
            info.update(deployed=deployed, aligned=aligned, abstained=abstained)
        return pg.obs.copy(), reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over ``action_space.nvec`` (verdict, usages, idea)."""
        return self.program.masks()

    def render(self):
        if self.render_mode != "ansi":
            return None
        sc, pg = self.scenario, self.program
        names = sc.proxy_names
        d = pg.checkpoint
        lines = [
            f"ProxyAlignment-v0 | {sc.name} | runs started {pg.runs_used}/{self.budget}"
            f" | checkpoint {d}/{self.n_phases}"
        ]
        for run in self._history:
            lines.append(f"  run {run['run']} ({run['idea']}): {run['summary']} -> {run['end']}")
        if d > 0:
            lines.append(f"  run {pg.runs_used} (idea {sc.idea_names[pg.idea]}), under way:")
            width = max(len(p.name) for p in sc.phases)
            lines.append("    " + "phase".ljust(width) + "  " + "  ".join(n.ljust(max(len(n), 9)) for n in names))
            for t, phase in enumerate(sc.phases):
                cells = []
                for j, n in enumerate(names):
                    if t < d:
                        u = usage_letters([pg.usage[t][j]])
                        r = "pass" if pg.results[t][j] else "fail"
                        cell = f"{u} {r}"
                    else:
                        cell = "."
                    cells.append(cell.ljust(max(len(n), 9)))
                lines.append("    " + phase.name.ljust(width) + "  " + "  ".join(cells))
            lines.append(f"  P(aligned | history) = {pg.p_aligned:.3f}")
        return "\n".join(lines) + "\n"

    # -- read-outs ---------------------------------------------------------------
    def _run_summary(self, how: str) -> dict:
        """The current run, as render() lists a finished one."""
        pg = self.program
        done = pg.checkpoint
        summary = " ".join(
            usage_letters(pg.usage[t]) + ":" + "".join("+" if r else "-" for r in pg.results[t])
            for t in range(done)
        )
        idea = self.scenario.idea_names[pg.idea]
        return {"run": pg.runs_used, "idea": idea, "summary": summary, "end": how}

    def _info(self, invalid: bool) -> dict:
        return self.program.info(invalid)
