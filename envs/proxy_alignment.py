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

#: The colours of :meth:`ProxyAlignmentEnv.image` (RGB), and of a usage by its code (reserve, train, anti).
COLOURS = {
    "pass": (40, 160, 60), "fail": (150, 20, 20), "discarded": (0, 0, 0), "deployed": (230, 180, 0),
    "under way": (255, 255, 255), "not run": (255, 255, 255), "aligned": (40, 160, 60),
}
USAGE_COLOURS = ((200, 200, 200), (40, 90, 200), (210, 60, 50))


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
    - ``render_mode=None``: ``"ansi"`` returns a small text table of the program;
      ``"rgb_array"`` an image of it (:meth:`render`), for videos and TensorBoard; ``"human"``
      prints the text table.

    ## References
    - "When is it Better to Train on the Alignment Proxy?" (LessWrong, 2025-03-11).
    - ``docs/model.md`` in this repository.

    ## Version History
    - v0: initial version. The world model's later fields (persistence, gates, faking,
      transfer, phase costs and a compute budget) extend it: each defaults to the initial
      behaviour, so every v0 scenario plays exactly as before.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}
    #: The image of ``rgb_array``: the latest runs shown, and the side of one cell in pixels.
    IMAGE_RUNS = 16
    CELL = 12

    def __init__(
        self,
        scenario: "str | Path | Scenario" = "sticky_values",
        observation: str = "history",
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None, 'ansi', 'rgb_array' or 'human', got {render_mode!r}")
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
        if self.render_mode is not None and nearest_allowed(values[0], pg.checkpoint, self.n_phases) == DISCARD:
            self._history.append(self._run_summary("discarded"))
        reward, invalid, deployed, aligned, abstained = pg.step(values[0], values[1:-1], values[-1])
        info = self._info(invalid)
        terminated = deployed or abstained
        if terminated:
            self._ended = True
            info.update(deployed=deployed, aligned=aligned, abstained=abstained)
            if self.render_mode is not None and deployed:
                self._history.append(self._run_summary("deployed"))
        return pg.obs.copy(), reward, terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over ``action_space.nvec`` (verdict, usages, idea)."""
        return self.program.masks()

    def render(self):
        """``ansi``: a text table of the program; ``rgb_array``: :meth:`image`; ``human``: the text table printed (as
        rl-baselines3-zoo's ``enjoy`` renders by default); else None."""
        if self.render_mode == "rgb_array":
            return self.image()
        if self.render_mode == "human":
            print(self._text(), flush=True)
            return None
        if self.render_mode != "ansi":
            return None
        return self._text()

    def _text(self) -> str:
        """The text table of ``ansi`` (and ``human``)."""
        sc, pg = self.scenario, self.program
        names = sc.proxy_names
        d = pg.checkpoint
        lines = [
            f"ProxyAlignment-v0 | {sc.name} | runs started {pg.runs_used}/{self.budget}"
            f" | checkpoint {d}/{self.n_phases}"
        ]
        for run in self._history:
            lines.append(f"  run {run['run']} ({run['idea']}): {run['summary']} -> {run['end']}")
        if d > 0 and not self._ended:
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

    def image(self) -> np.ndarray:
        """The program as an ``(H, W, 3)`` uint8 image of a fixed size for a scenario.

        A row per run (the latest ``IMAGE_RUNS``, the one under way at the bottom), a column per
        phase and proxy: the cell's upper half is the usage (grey reserve, blue train, red anti),
        its lower half the checkpoint's result (green pass, dark red fail); a phase not run is
        white. The first column says how a finished run ended (black discarded, gold deployed).
        The strip on top is P(aligned | history) of the run under way, as a green bar.
        """
        T, k, c = self.n_phases, self.n_proxies, self.CELL
        width = c * (1 + T * k) + (T + 1)  # a one-pixel gap before each phase
        out = np.full((c * (1 + self.IMAGE_RUNS), width, 3), 255, dtype=np.uint8)
        pg = self.program
        under_way = pg.checkpoint > 0 and not self._ended
        current = [self._run_summary("under way")] if under_way else []
        runs = (self._history + current)[-self.IMAGE_RUNS:]
        if under_way:
            out[2 : c - 2, 1 : 1 + round(pg.p_aligned * (width - 2))] = COLOURS["aligned"]
        for row, run in enumerate(runs):
            y = c * (1 + row)
            out[y : y + c - 1, 0 : c - 1] = COLOURS.get(run["end"], COLOURS["not run"])
            for t in range(run["done"]):
                for j in range(k):
                    x = c * (1 + t * k + j) + t + 1
                    out[y : y + c // 2, x : x + c - 1] = USAGE_COLOURS[run["usage"][t][j]]
                    out[y + c // 2 : y + c - 1, x : x + c - 1] = COLOURS["pass" if run["results"][t][j] else "fail"]
        return out

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
        usage = [[int(u) for u in pg.usage[t]] for t in range(done)]
        results = [[bool(r) for r in pg.results[t]] for t in range(done)]
        return {"run": pg.runs_used, "idea": idea, "summary": summary, "end": how, "done": done, "usage": usage,
                "results": results}

    def _info(self, invalid: bool) -> dict:
        return self.program.info(invalid)
