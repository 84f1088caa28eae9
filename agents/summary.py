"""What a trained agent does on a scenario: its outcomes, its policy, and the references it is judged against.

A :class:`PolicySummary` is computed from a model played deterministically
(:func:`proxygym.agents.training.play_model`): its outcomes (:class:`proxygym.envs.outcomes.Outcomes`),
its policy (the usage of each proxy in each phase, the share of runs discarded at each
checkpoint, the ideas it starts runs with) and the reference it is judged against: the best
of the named strategies of :mod:`proxygym.agents.strategies` on the same scenario, and the
exact optimum where the scenario can be solved. The summary is written out by
:mod:`proxygym.agents.report` (Markdown), :mod:`proxygym.agents.plots` (the heatmap) and
:mod:`proxygym.agents.tensorboard`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from proxygym.agents.bench import BenchResult, optimal_value, run_pair
from proxygym.agents.strategies import STRATEGIES
from proxygym.agents.training import Rollouts, play_model
from proxygym.envs.actions import CONTINUE
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes
from proxygym.envs.scenario import Scenario, load_scenario

#: The best-strategy reference: every strategy, this many episodes, this seed (the README's benchmark).
BEST_EPISODES = 2000
BEST_SEED = 0


@dataclass
class PolicySummary:
    """A played policy on one scenario: outcomes, policy, and the references it is judged against.

    ``usage_shares[t, j]`` is (reserve, train, anti) for proxy ``j`` in phase ``t``, as shares of
    the runs that ran phase ``t`` (``phase_runs[t]`` of them; all zeros when none did).
    ``discard_shares[t]`` is the share of the runs reaching checkpoint ``t + 1`` (the one after
    phase ``t``) that were discarded there; ``idea_shares[i]`` the share of runs started with idea ``i``.
    """

    scenario: str
    title: str
    claim: str
    algo: str
    observation: str
    seed: int
    outcomes: Outcomes
    phases: list[str]
    proxies: list[str]
    ideas: list[str]
    usage_shares: np.ndarray  # (T, k, 3)
    phase_runs: np.ndarray  # (T,)
    discard_shares: np.ndarray  # (T,)
    idea_shares: np.ndarray  # (m,)
    best_strategy: str
    best_strategy_outcomes: Outcomes
    optimal_return: float | None = None  # from the exact solver, where the scenario can be solved

    @property
    def optimality_gap(self) -> float | None:
        """``optimal_return - mean_return`` (0 for an optimal policy), or None when the optimum is unknown."""
        return None if self.optimal_return is None else self.optimal_return - self.outcomes.mean_return

    def to_dict(self) -> dict:
        """The summary as JSON-ready values: the outcomes at the top level, arrays as nested lists,
        non-finite numbers as None."""

        def clean(v):
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, list):
                return [clean(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        fields = {k: v for k, v in asdict(self).items() if k not in ("outcomes", "best_strategy_outcomes")}
        best = self.best_strategy_outcomes
        out = {**fields, **self.outcomes.to_dict(),
               "best_strategy_return": best.mean_return, "best_strategy_ci95": best.ci95,
               "best_strategy_ci95_low": best.ci95_low, "best_strategy_ci95_high": best.ci95_high,
               "optimality_gap": self.optimality_gap}
        return {k: clean(v) for k, v in out.items()}


# -- the reference: the best named strategy -----------------------------------------------
def heuristic_results(scenario: Scenario) -> list[BenchResult]:
    """Every heuristic strategy of :data:`proxygym.agents.strategies.STRATEGIES` benchmarked on ``scenario``
    (:data:`BEST_EPISODES` episodes, seed :data:`BEST_SEED`, the numbers of the README's table),
    once per scenario object. The optimum is not among them: it has its own reference line."""
    return scenario.cached(
        "heuristic_results",
        lambda sc: [run_pair(sc, name, BEST_EPISODES, BEST_SEED) for name in STRATEGIES if name != "optimal"],
    )


def best_strategy(scenario: Scenario) -> BenchResult:
    """The heuristic strategy with the highest mean return on ``scenario``."""
    return max(heuristic_results(scenario), key=lambda r: r.outcomes.mean_return)


def score_references(scenario: Scenario) -> tuple[float | None, float | None]:
    """The two ends of the normalized score (:func:`proxygym.agents.report.normalized_score`): first_model's exact
    return (its 0; exact, so two episodes played suffice) and the exact optimum (its 1; None where the scenario is too large
    to solve)."""
    return run_pair(scenario, "first_model", 2, BEST_SEED).exact_return, optimal_value(scenario)


# -- the summary ------------------------------------------------------------------------------
def summarize(
    model,
    algo: str,
    scenario: "str | Path | Scenario",
    observation: str = "belief",
    episodes: int = 200,
    seed: int = 0,
    optimal_return: float | None = None,
) -> PolicySummary:
    """Play ``model``'s deterministic policy for ``episodes`` episodes (all at once, one per program of a vector env
    reset with ``seed``: :func:`~proxygym.agents.training.play_model`) and summarize it."""
    if episodes < 2:
        raise ProxyGymError(f"episodes must be at least 2 (for an interval), got {episodes}")
    scenario = load_scenario(scenario)
    roll = play_model(model, algo, scenario, observation, episodes, seed=seed)
    return summarize_rollouts(roll, algo, scenario, observation, seed, optimal_return)


def summarize_rollouts(
    roll: Rollouts, algo: str, scenario: Scenario, observation: str, seed: int, optimal_return: float | None = None
) -> PolicySummary:
    """The summary of episodes already played (:func:`~proxygym.agents.training.play_model`'s ``roll``)."""
    d = np.asarray(roll.checkpoint)
    v = np.asarray(roll.verdict)
    n_phases = len(scenario.phases)
    # at decision point t (0 = a run's start), continue runs phase t + 1
    phase_runs = np.array([np.sum((d == t) & (v == CONTINUE)) for t in range(n_phases)], dtype=np.int64)
    best = best_strategy(scenario)
    return PolicySummary(
        scenario=scenario.name,
        title=scenario.title,
        claim=" ".join(scenario.claim.split()),
        algo=algo,
        observation=observation,
        seed=seed,
        outcomes=roll.outcomes(),
        phases=[p.name for p in scenario.phases],
        proxies=scenario.proxy_names,
        ideas=scenario.idea_names,
        usage_shares=roll.usage_shares(),
        phase_runs=phase_runs,
        discard_shares=roll.discard_shares(),
        idea_shares=roll.idea_shares(),
        best_strategy=best.strategy,
        best_strategy_outcomes=best.outcomes,
        optimal_return=None if optimal_return is None else float(optimal_return),
    )
