"""ProxyAlignment-v0: an organization decides how to use alignment proxies across training runs."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.belief import BeliefFilter
from envs.dynamics import ANTI, USAGE_LETTERS, Dynamics
from envs.observation import ObservationLayout
from envs.scenario import Scenario, load_scenario

CONTINUE, DISCARD, DEPLOY = 0, 1, 2


# The decision protocol's table (docs/model.md, "One episode"), by kind of decision point:
# 0 a run's start (d = 0), 1 an early checkpoint (0 < d < T), 2 the final checkpoint (d = T).
START, EARLY, FINAL = 0, 1, 2
#: ALLOWED[kind, verdict]: is the verdict allowed there.
ALLOWED = np.array([[True, False, False], [True, True, False], [False, True, True]])
#: NEAREST[kind, verdict]: the allowed verdict a verdict stands for (itself when allowed).
NEAREST = np.array([[CONTINUE, CONTINUE, CONTINUE], [CONTINUE, DISCARD, CONTINUE], [DEPLOY, DISCARD, DEPLOY]])


def decision_kind(checkpoint, n_phases: int):
    """START, EARLY or FINAL for decision point(s) ``checkpoint`` (scalars or arrays alike)."""
    return (checkpoint > 0) * 1 + (checkpoint == n_phases)  # * 1: arrays of bools would add as "or"


def verdict_mask(checkpoint, n_phases: int) -> np.ndarray:
    """``checkpoint.shape + (3,)``: which verdicts (continue, discard, deploy) are allowed at decision point(s) ``checkpoint``."""
    return ALLOWED[decision_kind(checkpoint, n_phases)]


def nearest_allowed(verdict, checkpoint, n_phases: int):
    """Map a verdict that is not allowed here to the one that stands for it (scalars or arrays alike).

    Checkpoint 0: continue; the final checkpoint: continue is read as deploy; otherwise
    deploy is read as continue.
    """
    out = NEAREST[decision_kind(checkpoint, n_phases), verdict]
    return int(out) if np.ndim(out) == 0 else out


class ProxyAlignmentEnv(gym.Env):
    """
    ## Description
    An organization trains models and wants to deploy an aligned one. It has imperfect
    tests of alignment (proxies) and, in each phase of each training run, decides for
    every proxy whether to train on it, hold it out as a test (reserve) or anti-train on
    it; at each checkpoint it sees every proxy's result and keeps, discards or deploys.
    Training on a proxy can raise the base rate of aligned models (while values are
    still plastic) but makes the proxy a worse test (misaligned models get shaped to
    pass it); capable models may circumvent a test outright; discarding a run costs one
    of a finite budget of runs. The reward is the TRUE alignment of the deployed model.

    This is the essay "When is it Better to Train on the Alignment Proxy?" made into a
    game: base rate, likelihood ratio, sticky values, circumvention and budget are all
    parameters of a scenario file (see ``docs/model.md`` for every formula).

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
    A flat ``Box(0, 1, (n,), float32)``, see :class:`envs.observation.ObservationLayout`
    for every named slice. ``observation="history"``: the decision point, runs left, the
    current run's idea, usages and test results so far, and per idea the passes and
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
    - Termination: a model is deployed, or a run is discarded with no budget left.
    - Truncation: none; an episode has at most ``budget * (T + 1)`` steps.

    ## Information
    Every step: ``p_aligned`` (exact posterior that the current model is aligned; 0.0
    at a run's start), ``runs_used``, ``checkpoint``, ``invalid_action``. At the end,
    also ``deployed`` (bool), ``aligned`` (the deployed model's true alignment, for
    logging only; False when nothing is deployed) and ``abstained`` (bool).

    ## Arguments
    ```python
    import gymnasium as gym
    import envs  # registers ProxyAlignment-v0
    env = gym.make("ProxyAlignment-v0", scenario="sticky_values", observation="belief",
                   render_mode="ansi")
    ```
    - ``scenario="sticky_values"``: a shipped scenario's name, a path to a YAML file, or
      a loaded :class:`envs.scenario.Scenario`.
    - ``observation="history"``: ``"history"`` or ``"belief"``.
    - ``render_mode=None``: ``"ansi"`` returns a small text table of the program.

    ## References
    - "When is it Better to Train on the Alignment Proxy?" (LessWrong, 2025-03-11).
    - ``docs/model.md`` in this repository.

    ## Version History
    - v0: initial version.
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
        self.dynamics = Dynamics(self.scenario)
        self.layout = ObservationLayout(self.dynamics, observation)
        self.observation_mode = observation
        self.render_mode = render_mode
        d = self.dynamics
        self.n_phases, self.n_proxies, self.n_ideas = d.n_phases, d.n_proxies, d.n_ideas
        self.budget = self.scenario.budget
        self.action_space = spaces.MultiDiscrete([3] + [3] * self.n_proxies + [self.n_ideas])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.layout.size,), dtype=np.float32)
        self.belief = BeliefFilter(d)
        self._reward = self.scenario.reward
        self._ended = True

    # -- gym API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        d = self.dynamics
        # Each idea's base rate for this whole program (hidden).
        self._rho = np.array(
            [self.np_random.choice(v, p=p) for v, p in zip(d.base_rate_values, d.base_rate_probs)]
        )
        self._runs_used = 0
        self._idea_runs = np.zeros(self.n_ideas, dtype=np.int64)
        self._idea_passes = np.zeros((self.n_ideas, self.n_proxies), dtype=np.int64)
        self._idea_fails = np.zeros((self.n_ideas, self.n_proxies), dtype=np.int64)
        self._history: list[dict] = []  # finished runs, for render()
        self._start_program_point()
        self.belief.reset()
        self._ended = False
        return self._obs(), self._info(invalid=False)

    def step(self, action):
        if self._ended:
            raise RuntimeError("step() called after the episode ended; call reset()")
        action = np.asarray(action).reshape(-1)
        if not self.action_space.contains(action.astype(np.int64)):
            raise ValueError(f"action {action.tolist()} is outside the action space {self.action_space}")
        verdict = int(action[0])
        usage = action[1 : 1 + self.n_proxies].astype(int)
        idea = int(action[1 + self.n_proxies])
        mapped = nearest_allowed(verdict, self._checkpoint, self.n_phases)
        invalid = mapped != verdict
        reward = 0.0
        end: dict = {}

        if self._checkpoint == 0:
            reward -= self._reward.run_cost
            self._start_run(idea)
            self._run_phase(usage)
        elif mapped == CONTINUE:
            self._run_phase(usage)
        elif mapped == DEPLOY:
            aligned = bool(self.dynamics.aligned[self._state])
            reward += self._reward.aligned if aligned else self._reward.misaligned
            end = {"deployed": True, "aligned": aligned, "abstained": False}
        else:  # DISCARD
            self._end_run("discarded")
            if self._runs_used >= self.budget:
                reward += self._reward.abstain
                end = {"deployed": False, "aligned": False, "abstained": True}
            else:
                self._start_program_point()

        terminated = bool(end)
        info = self._info(invalid=invalid)
        if terminated:
            self._ended = True
            info.update(end)
        return self._obs(), float(reward), terminated, False, info

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over ``action_space.nvec`` (verdict, usages, idea)."""
        rest = np.ones(3 * self.n_proxies + self.n_ideas, dtype=bool)
        return np.concatenate([verdict_mask(self._checkpoint, self.n_phases), rest])

    def render(self):
        if self.render_mode != "ansi":
            return None
        sc = self.scenario
        names = sc.proxy_names
        lines = [
            f"ProxyAlignment-v0 | {sc.name} | runs started {self._runs_used}/{self.budget}"
            f" | checkpoint {self._checkpoint}/{self.n_phases}"
        ]
        for run in self._history:
            lines.append(f"  run {run['run']} ({run['idea']}): {run['summary']} -> {run['end']}")
        if self._checkpoint > 0:
            lines.append(f"  run {self._runs_used} (idea {sc.idea_names[self._idea]}), under way:")
            width = max(len(p.name) for p in sc.phases)
            lines.append("    " + "phase".ljust(width) + "  " + "  ".join(n.ljust(max(len(n), 9)) for n in names))
            for t, phase in enumerate(sc.phases):
                cells = []
                for j, n in enumerate(names):
                    if t < self._checkpoint:
                        u = USAGE_LETTERS[self._usage[t, j]]
                        r = "pass" if self._results[t, j] else "fail"
                        cell = f"{u} {r}"
                    else:
                        cell = "."
                    cells.append(cell.ljust(max(len(n), 9)))
                lines.append("    " + phase.name.ljust(width) + "  " + "  ".join(cells))
            lines.append(f"  P(aligned | history) = {self.belief.p_aligned:.3f}")
        return "\n".join(lines) + "\n"

    # -- rules -------------------------------------------------------------------
    def _start_program_point(self) -> None:
        """Checkpoint 0 of the next run: nothing trained yet."""
        self._checkpoint = 0
        self._idea = -1
        self._state = -1
        self._usage = np.zeros((self.n_phases, self.n_proxies), dtype=np.int64)
        self._results = np.zeros((self.n_phases, self.n_proxies), dtype=bool)
        self._n_anti = np.zeros(self.n_proxies, dtype=np.int64)

    def _start_run(self, idea: int) -> None:
        self._runs_used += 1
        self._idea = idea
        # a ~ Bernoulli(rho); nothing shaped: the state index is a (docs/model.md, "Run start")
        self._state = int(self.np_random.random() < self._rho[idea])
        self.belief.start_run(idea)

    def _run_phase(self, usage: np.ndarray) -> None:
        """One phase under ``usage``, then the checkpoint's tests."""
        t = self._checkpoint
        d = self.dynamics
        code = d.usage_code(usage)
        row = d.transition[t, code, self._idea, self._state]
        # u * total < total = cum[-1], so the index found is a state of positive probability
        cum = np.cumsum(row)
        self._state = int(np.searchsorted(cum, self.np_random.random() * cum[-1], side="right"))
        self._n_anti += usage == ANTI
        p = d.pass_prob[t, self._n_anti, self._state, np.arange(self.n_proxies)]
        results = self.np_random.random(self.n_proxies) < p
        self._usage[t] = usage
        self._results[t] = results
        self.belief.advance(t, code)
        self.belief.observe(t, self._n_anti, results)
        self._checkpoint = t + 1

    def _end_run(self, how: str) -> None:
        done = self._checkpoint
        self._idea_runs[self._idea] += 1
        self._idea_passes[self._idea] += self._results[:done].sum(axis=0)
        self._idea_fails[self._idea] += (~self._results[:done]).sum(axis=0)
        summary = " ".join(
            "".join(USAGE_LETTERS[u] for u in self._usage[t])
            + ":"
            + "".join("+" if r else "-" for r in self._results[t])
            for t in range(done)
        )
        self._history.append(
            {"run": self._runs_used, "idea": self.scenario.idea_names[self._idea], "summary": summary, "end": how}
        )
        self.belief.end_run()

    # -- read-outs ---------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        values = self.layout.history(
            np.array([self._checkpoint]),
            np.array([self._runs_used]),
            np.array([self._idea]),
            self._usage[None],
            self._results[None],
            self._idea_runs[None],
            self._idea_passes[None],
            self._idea_fails[None],
            self.budget,
        )
        if self.layout.mode == "belief":
            b = self.belief.batch
            values.update(p_aligned=b.p_aligned[:, None], p_shaped=b.p_shaped, base_rate=b.mean_base_rates)
        return self.layout.encode(values)[0]

    def _info(self, invalid: bool) -> dict:
        return {
            "p_aligned": self.belief.p_aligned,
            "runs_used": self._runs_used,
            "checkpoint": self._checkpoint,
            "invalid_action": bool(invalid),
        }
