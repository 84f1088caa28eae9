"""The benchmark: every strategy on every scenario, with honest error bars, and the exact value where there is one.

Each (scenario, strategy) pair plays ``episodes`` independent programs at once in
:class:`proxygym.envs.vector.ProxyAlignmentVectorEnv` (belief observations, so every strategy can
read what it needs). Its random stream is seeded from the user's seed and the two names,
so a pair gives the same numbers bit for bit whether it runs alone or with all others.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from proxygym.agents.files import write_bytes_atomic, write_text_atomic
from proxygym.agents.regimen import play_batch
from proxygym.agents.strategies import STRATEGIES, make_strategy
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import Scenario, load_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv

Z95 = 1.959963984540054
Z999 = 3.29  # two-sided 99.9%: the claims' intervals


@dataclass
class BenchResult:
    """One (scenario, strategy) row; the JSON keys of ``proxygym bench --json``."""

    scenario: str
    strategy: str
    episodes: int
    mean_return: float
    ci95: float  # half-width of the 95% interval of mean_return
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    mean_runs: float
    exact_return: float | None  # None where the strategy has no exact value (not a fixed regimen, not optimal)
    # not in the JSON:
    runs_ci95: float = 0.0  # half-width of the 95% interval of mean_runs
    optimal_return: float | None = None  # the scenario's optimum (proxygym.agents.solver), where it can be solved

    @property
    def optimality_gap(self) -> float | None:
        return None if self.optimal_return is None else self.optimal_return - self.mean_return

    def interval(self, metric: str, z: float = Z95) -> tuple[float, float]:
        """(value, half-width) of a metric: the mean return's interval, or a binomial one for a share."""
        if metric in ("expected_return", "mean_return"):
            return self.mean_return, self.ci95 * z / Z95
        if metric in ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain"):
            p = getattr(self, metric)
            return p, z * math.sqrt(max(p * (1 - p), 1e-12) / self.episodes)
        if metric in ("expected_runs", "mean_runs"):
            return self.mean_runs, self.runs_ci95 * z / Z95
        raise ProxyGymError(
            f"the benchmark measures expected_return, p_deploy_aligned, p_deploy_misaligned, p_abstain and"
            f" expected_runs; {metric!r} is only defined for fixed regimens (use the exact analysis)"
        )


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
    deployed = last["deployed"].astype(bool)
    aligned = last["aligned"].astype(bool)
    runs = last["runs_used"].astype(np.float64)
    n = episodes
    result = BenchResult(
        scenario=scenario.name,
        strategy=strategy,
        episodes=n,
        mean_return=float(total.mean()),
        ci95=float(Z95 * total.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        p_deploy_aligned=float(np.mean(deployed & aligned)),
        p_deploy_misaligned=float(np.mean(deployed & ~aligned)),
        p_abstain=float(np.mean(last["abstained"].astype(bool))),
        mean_runs=float(runs.mean()),
        exact_return=agent.exact_return(),
        runs_ci95=float(Z95 * runs.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
        optimal_return=optimal_value(scenario),
    )
    return result


_OPTIMA: dict[str, float | None] = {}


def optimal_value(scenario: Scenario) -> float | None:
    """The scenario's optimal expected return by the exact solver, or None when it is too large to solve."""
    key = scenario.model_dump_json()
    if key not in _OPTIMA:
        from proxygym.agents.solver import solve

        try:
            _OPTIMA[key] = solve(scenario).value
        except ProxyGymError:
            _OPTIMA[key] = None
    return _OPTIMA[key]


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
    if episodes < 2:
        raise ProxyGymError(f"--episodes must be at least 2 (for an interval), got {episodes}")
    out = []
    total = len(scenarios) * len(strategies)
    for sc in scenarios:
        for strategy in strategies:
            if strategy == "optimal" and not explicit and optimal_value(sc) is None:
                total -= 1
                continue  # too large to solve exactly; asked for by name, the solver says so
            if progress:
                _progress(len(out), total, f"{sc.name} / {strategy}")
            out.append(run_pair(sc, strategy, episodes, seed))
    if progress:
        _progress(total, total, "done")
        sys.stderr.write("\n")
    return out


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<50.50}")
    sys.stderr.flush()


# -- output ---------------------------------------------------------------------------
def best_index(rows: list[BenchResult]) -> int:
    return int(np.argmax([r.mean_return for r in rows]))


def format_tables(results: list[BenchResult]) -> str:
    """A readable table per scenario; '*' marks the strategy with the highest mean return, 'gap' is the optimum less it."""
    lines = []
    by_scenario: dict[str, list[BenchResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, []).append(r)
    for name, rows in by_scenario.items():
        best = best_index(rows)
        sc = load_scenario(name)
        lines.append(f"{name}: {sc.title}  ({rows[0].episodes} episodes each)")
        lines.append(
            f"  {'strategy':<27}{'return':>8} {'+-95%':>7} {'P(al.)':>7} {'P(mis.)':>7} {'P(abst.)':>8} {'runs':>6}"
            f" {'exact':>8} {'gap':>7}"
        )
        for i, r in enumerate(rows):
            mark = "*" if i == best else " "
            exact = "" if r.exact_return is None else f"{r.exact_return:.4f}"
            gap = "" if r.optimality_gap is None else f"{r.optimality_gap:.4f}"
            lines.append(
                f"{mark} {r.strategy:<27}{r.mean_return:>8.4f} {r.ci95:>7.4f} {r.p_deploy_aligned:>7.3f}"
                f" {r.p_deploy_misaligned:>7.3f} {r.p_abstain:>8.3f} {r.mean_runs:>6.2f} {exact:>8} {gap:>7}"
            )
        if rows[0].optimal_return is not None:
            lines.append(f"  gap: the optimum ({rows[0].optimal_return:.4f}, proxygym solve {name}) less the mean return")
        lines.append("")
    return "\n".join(lines)


def format_markdown(results: list[BenchResult]) -> str:
    """One Markdown table: a row per scenario, a column per strategy (mean return +- 95%), best in bold."""
    strategies = list(dict.fromkeys(r.strategy for r in results))
    by_scenario: dict[str, dict[str, BenchResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, {})[r.strategy] = r
    out = ["| scenario | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for name, rows in by_scenario.items():
        best = max(rows.values(), key=lambda r: r.mean_return).strategy
        cells = []
        for s in strategies:
            r = rows[s]
            cell = f"{r.mean_return:.3f} ± {r.ci95:.3f}"
            cells.append(f"**{cell}**" if s == best else cell)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


JSON_KEYS = ("scenario", "strategy", "episodes", "mean_return", "ci95", "p_deploy_aligned", "p_deploy_misaligned",
             "p_abstain", "mean_runs", "exact_return")


def to_records(results: list[BenchResult]) -> list[dict]:
    return [{k: v for k, v in asdict(r).items() if k in JSON_KEYS} for r in results]


def write_json(results: list[BenchResult], path: str) -> None:
    write_text_atomic(path, json.dumps(to_records(results), indent=2) + "\n")


def write_csv(results: list[BenchResult], path: str) -> None:
    records = to_records(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]))
    writer.writeheader()
    for rec in records:
        writer.writerow({k: "" if v is None else v for k, v in rec.items()})
    write_text_atomic(path, buf.getvalue())


def write_plot(results: list[BenchResult], path: str) -> None:
    """A PNG: one panel per scenario, strategies as bars with their 95% intervals, exact values as diamonds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.scenario for r in results))
    cols = min(3, len(names))
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.6 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names):
        rows = [r for r in results if r.scenario == name]
        x = np.arange(len(rows))
        best = best_index(rows)
        colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(rows))]
        ax.bar(x, [r.mean_return for r in rows], yerr=[r.ci95 for r in rows], color=colors, capsize=2)
        exact = [(i, r.exact_return) for i, r in enumerate(rows) if r.exact_return is not None]
        if exact:
            ax.scatter(*zip(*exact), marker="D", color="black", s=14, zorder=3, label="exact")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels([r.strategy for r in rows], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("mean return", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
