"""The benchmark: every strategy on every scenario, with honest error bars, and the exact value where there is one.

Each (scenario, strategy) pair plays ``episodes`` independent programs at once in
:class:`proxygym.envs.vector.ProxyAlignmentVectorEnv` (belief observations, so every strategy can
read what it needs). Its random stream is seeded from the user's seed and the two names,
so a pair gives the same numbers bit for bit whether it runs alone or with all others.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from proxygym.agents.regimen import play_batch
from proxygym.agents.solver import optimum
from proxygym.agents.strategies import STRATEGIES, make_strategy
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes, measure
from proxygym.envs.scenario import Scenario, load_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv


@dataclass
class BenchResult:
    """One (scenario, strategy) row: the strategy's measured outcomes and the exact values beside them."""

    scenario: str
    title: str
    strategy: str
    outcomes: Outcomes
    exact_return: float | None  # None where the strategy has no exact value (not a fixed regimen, not optimal)
    optimal_return: float | None = None  # the scenario's optimum (proxygym.agents.solver), where it can be solved

    @property
    def optimality_gap(self) -> float | None:
        return None if self.optimal_return is None else self.optimal_return - self.outcomes.mean_return

    def record(self) -> dict:
        """The row as ``proxygym bench --json`` writes it (the keys of :data:`JSON_KEYS`)."""
        o = self.outcomes
        return dict(
            scenario=self.scenario, strategy=self.strategy, episodes=o.episodes, mean_return=o.mean_return, ci95=o.ci95,
            ci95_low=o.ci95_low, ci95_high=o.ci95_high, p_deploy_aligned=o.p_deploy_aligned, p_deploy_misaligned=o.p_deploy_misaligned, p_abstain=o.p_abstain,
            mean_runs=o.mean_runs, exact_return=self.exact_return, optimal_return=self.optimal_return,
            optimality_gap=self.optimality_gap,
        )


JSON_KEYS = ("scenario", "strategy", "episodes", "mean_return", "ci95", "ci95_low", "ci95_high", "p_deploy_aligned", "p_deploy_misaligned",
             "p_abstain", "mean_runs", "exact_return", "optimal_return", "optimality_gap")


def pair_seed(seed: int, scenario: str, strategy: str) -> int:
    """A seed for one pair, from the user's seed and the two names (independent of which other pairs run)."""
    ss = np.random.SeedSequence([seed, zlib.crc32(scenario.encode()), zlib.crc32(strategy.encode())])
    return int(ss.generate_state(1)[0])


def run_pair(scenario: Scenario, strategy: str, episodes: int, seed: int) -> BenchResult:
    """Play ``episodes`` programs of one strategy on one scenario."""
    s = pair_seed(seed, scenario.name, strategy)
    env = ProxyAlignmentVectorEnv(num_envs=episodes, scenario=scenario, observation="belief")
    agent = make_strategy(strategy, scenario, env.layout, seed=s)
    total, last = play_batch(env, agent, seed=s)
    outcomes = measure(total, last["deployed"], last["aligned"], last["abstained"], last["runs_used"], scenario)
    return BenchResult(
        scenario=scenario.name,
        title=scenario.title,
        strategy=strategy,
        outcomes=outcomes,
        exact_return=agent.exact_return(),
        optimal_return=optimal_value(scenario),
    )


def optimal_value(scenario: Scenario) -> float | None:
    """The scenario's optimal expected return by the exact solver, or None when it is too large to solve."""
    solution = optimum(scenario)
    return None if solution is None else solution.value


def resolve_names(scenarios: list[str] | None, strategies: list[str] | None) -> tuple[list[Scenario], list[str]]:
    """Check the names a user gave; an unknown one is a one-line error listing the valid ones."""
    loaded = [load_scenario(name) for name in (scenarios or shipped_scenarios())]
    for name in strategies or []:
        if name not in STRATEGIES:
            raise ProxyGymError(f"unknown strategy {name!r}; strategies are {', '.join(STRATEGIES)}")
    return loaded, list(strategies or STRATEGIES)


def run_bench(
    scenarios: list[Scenario], strategies: list[str], episodes: int, seed: int, progress: bool = False,
    explicit: bool = False,
) -> list[BenchResult]:
    """Every (scenario, strategy) pair. ``optimal`` is left out where the scenario is too large to
    solve, unless ``explicit`` (the user named it), when the solver's one-line error stands."""
    check_episodes(episodes)
    # the optimum is left out where the scenario is too large to solve; asked for by name, the solver says so
    pairs = [(sc, name) for sc in scenarios for name in strategies
             if not (name == "optimal" and not explicit and optimal_value(sc) is None)]
    out = []
    with tqdm(total=len(pairs), disable=not progress, unit="pair", file=sys.stderr) as bar:
        for sc, strategy in pairs:
            bar.set_description(f"{sc.name} / {strategy}")
            out.append(run_pair(sc, strategy, episodes, seed))
            bar.update()
    return out


def check_episodes(episodes: int) -> None:
    """A benchmark needs at least 2 episodes per pair, for an interval; fewer is a one-line error."""
    if episodes < 2:
        raise ProxyGymError(f"--episodes must be at least 2 (for an interval), got {episodes}")


def best_index(rows: list[BenchResult]) -> int:
    """The row with the highest mean return."""
    return int(np.argmax([r.outcomes.mean_return for r in rows]))
