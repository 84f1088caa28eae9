"""Times the full default benchmark (every scenario x every strategy x 2,000 episodes) and
prints its episodes per second next to CartPole-v1's random-play episodes per second,
measured in the same run (the same machine, the same moment).

    python benchmarks/bench_speed.py [--episodes 2000]

The target is a full default benchmark in under a minute on 2 cores. What dominates is
printed as the five slowest (scenario, strategy) pairs.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from proxygym.agents.bench import resolve_names, run_pair


def cartpole_episodes_per_second(seconds: float = 5.0, seed: int = 0) -> float:
    """Random play in the plain (single) CartPole-v1, the Gymnasium reference every user has."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    episodes, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            env.reset()
            episodes += 1
    return episodes / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    scenarios, strategies = resolve_names(None, None)
    timings = []
    start = time.perf_counter()
    for sc in scenarios:
        for name in strategies:
            t = time.perf_counter()
            run_pair(sc, name, args.episodes, args.seed)
            timings.append((time.perf_counter() - t, sc.name, name))
    total = time.perf_counter() - start
    n_episodes = len(timings) * args.episodes
    cart = cartpole_episodes_per_second(seed=args.seed)
    ours = n_episodes / total
    print(f"full benchmark: {len(scenarios)} scenarios x {len(strategies)} strategies x {args.episodes} episodes"
          f" = {n_episodes:,} episodes in {total:.1f} s")
    print(f"ProxyGym benchmark:          {ours:12,.0f} episodes/s")
    print(f"CartPole-v1 random play:     {cart:12,.0f} episodes/s")
    print(f"ratio ProxyGym / CartPole:   {ours / cart:12.2f}")
    print("slowest pairs:")
    for seconds, sc, name in sorted(timings, reverse=True)[:5]:
        print(f"  {seconds:6.2f} s  {sc} / {name}")


if __name__ == "__main__":
    main()
