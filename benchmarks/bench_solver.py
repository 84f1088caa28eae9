"""Solve time of the exact Bayes-optimal solver on every shipped scenario (or those named).

    python benchmarks/bench_solver.py [--scenario NAME ...] [--repeat 3] [--persistence KAPPA]

For each scenario: the optimal value, the best wall time over ``--repeat`` solves, the
program states (runs left, base-rate posterior) and belief states evaluated, the size
guard's upper bound on the work, and, for comparison, the best fixed-regimen strategy's
exact value. The target is under 10 seconds per shipped scenario. ``--persistence`` gives
every proxy that persistence (world model v1: one more latent bit per proxy), the case the
solver must also handle in well under 10 seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from proxygym.agents.solver import solve
from proxygym.agents.strategies import STRATEGIES
from proxygym.envs.analysis import analyze
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios


def best_fixed(scenario) -> tuple[float, str]:
    """The best exact expected return among the named strategies that are fixed regimens."""
    layout = ObservationLayout.of(scenario, "belief")
    best = (float("-inf"), "")
    for name, cls in STRATEGIES.items():
        if name == "optimal":
            continue
        regimen = cls(scenario, layout).regimen()
        if regimen is not None:
            best = max(best, (analyze(scenario, regimen).expected_return, name))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", action="append", help="a scenario name or YAML path (repeatable; default: every shipped one)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="solves per scenario; the best time is shown")
    parser.add_argument("--persistence", type=float, default=None, help="set every proxy's persistence (0..1)")
    args = parser.parse_args(argv)

    def load(name: str):
        sc = load_scenario(name)  # a fresh object each time: a scenario caches its solution
        if args.persistence is None:
            return sc
        data = sc.model_dump(exclude={"expect"})
        for proxy in data["proxies"]:
            proxy["persistence"] = args.persistence
        return parse_scenario(data, source=f"{name} with persistence {args.persistence}")

    names = args.scenario or shipped_scenarios()
    print(
        f"{'scenario':<20}{'optimal':>9}{'seconds':>9}{'program':>9}{'belief states':>15}{'guard work':>12}"
        "   best fixed strategy"
    )
    total = 0.0
    slowest = 0.0
    for name in names:
        times = []
        for _ in range(max(1, args.repeat)):
            sc = load(name)
            start = time.perf_counter()
            sol = solve(sc)
            times.append(time.perf_counter() - start)
        seconds = min(times)
        total += seconds
        slowest = max(slowest, seconds)
        value, strategy = best_fixed(sc)
        print(
            f"{sc.name:<20}{sol.value:>9.4f}{seconds:>9.3f}{sol.program_states:>9}{sol.states:>15,}"
            f"{sol.estimate.work:>12.3g}   {value:.4f} {strategy}"
        )
    cart = cartpole_steps_per_second()
    print(f"total {total:.3f} s, slowest {slowest:.3f} s (target: under 10 s each)")
    print(f"reference, measured now: CartPole-v1 random play {cart:,.0f} steps/s; the slowest solve takes as long as"
          f" {slowest * cart:,.0f} CartPole steps (the 10 s target: {10 * cart:,.0f})")
    return 0


def cartpole_steps_per_second(seconds: float = 2.0) -> float:
    """Random play in CartPole-v1, timed in the same run as the solves (the machine's speed now)."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    raise SystemExit(main())
