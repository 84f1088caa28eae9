"""The full default benchmark's episodes per second, next to CartPole-v1's vector env playing the same number of episodes the same way, interleaved in the same run.

    python benchmarks/bench_speed.py [--rounds 5] [--episodes 2000] [--seed 0]

The benchmark is ``proxygym bench``'s default: every shipped scenario x every strategy
(``optimal`` left out where a scenario is too large to solve, as ``agents.bench.run_bench``
does), 2,000 episodes per pair, each pair played as one batch of 2,000 programs in the vector
env (``agents.bench.run_pair``). Each scenario is loaded afresh every round, so its exact
solve (the optimum ``bench`` prints) is timed too, as in the command.

The reference is like for like: random play in CartPole-v1's vector env
(``gym.make_vec(..., vectorization_mode="vector_entry_point")``) with as many parallel episodes
as a pair plays, each sub-env's first episode counted, by the same loop (``agents.regimen.play_batch``),
as many batches as the scenario has pairs. A round alternates a scenario's chunk of the
benchmark with a reference chunk of as many episodes (which goes first alternates too), so a
machine shared with other jobs slows both alike. Printed: the full benchmark's wall time and
episodes/s and the reference's (medians over rounds), the median of the per-round ratios, and
the five slowest pairs (median seconds; a scenario's exact solve is its own line). The target
for the wall time is under a minute on 2 cores.

Why the earlier figure (10.5x CartPole) was misleading: its reference was measured once, after
the benchmark, so a change in the machine's load between the two went straight into the ratio;
and it set the benchmark's episodes, played 2,000 at a time with numpy, against CartPole episodes
played one at a time in the single env, a Python call per step. The ratio measured batching
against no batching, not ProxyGym against CartPole. Played the same way, CartPole-v1 plays
more episodes per second than the benchmark (the ratio is below 1: see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxygym.agents.bench import optimal_value, resolve_names, run_pair  # noqa: E402
from proxygym.agents.regimen import play_batch  # noqa: E402
from proxygym.envs.scenario import load_scenario  # noqa: E402


def benchmark_chunk(name: str, strategies: list[str], episodes: int, seed: int) -> tuple[float, int, dict[str, float]]:
    """One scenario's pairs of the benchmark: seconds, episodes played, and seconds per pair (and per solve)."""
    parts: dict[str, float] = {}
    start = time.perf_counter()
    sc = load_scenario(name)  # a fresh object: a scenario caches its solution
    solvable = optimal_value(sc) is not None  # run_bench's filter; the solve is cached for the optimal pair
    parts[f"{name} / (exact solve)"] = time.perf_counter() - start
    played = 0
    for strategy in strategies:
        if strategy == "optimal" and not solvable:
            continue
        t = time.perf_counter()
        run_pair(sc, strategy, episodes, seed)
        parts[f"{name} / {strategy}"] = time.perf_counter() - t
        played += episodes
    return time.perf_counter() - start, played, parts


def reference_chunk(env, batches: int, rng: np.random.Generator) -> tuple[float, int]:
    """``batches`` batches of random CartPole-v1 play, each sub-env's first episode counted: seconds, episodes."""
    n = env.num_envs
    start = time.perf_counter()
    for _ in range(batches):
        play_batch(env, lambda obs: rng.integers(0, 2, size=n), seed=int(rng.integers(2**31)))
    return time.perf_counter() - start, batches * n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per (scenario, strategy) pair, as bench's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--without", nargs="+", default=[], metavar="SCENARIO",
                        help="shipped scenarios to leave out (to compare with a checkout that lacks them)")
    args = parser.parse_args(argv)

    scenarios, strategies = resolve_names(None, None)
    names = [sc.name for sc in scenarios]
    unknown = sorted(set(args.without) - set(names))
    if unknown:
        parser.error(f"--without: {', '.join(unknown)} is not a shipped scenario; they are {', '.join(names)}")
    names = [name for name in names if name not in args.without]
    env = gym.make_vec("CartPole-v1", num_envs=args.episodes, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(args.seed)
    benchmark_chunk(names[0], strategies, args.episodes, args.seed)  # warm-up: imports, first allocations
    reference_chunk(env, 1, rng)

    ours, cart, walls, ratios = [], [], [], []
    pair_seconds: dict[str, list[float]] = {}
    for r in range(args.rounds):
        b_sec = b_eps = c_sec = c_eps = 0.0
        for i, name in enumerate(names):
            for which in ((0, 1) if (r + i) % 2 == 0 else (1, 0)):
                if which == 0:
                    seconds, played, parts = benchmark_chunk(name, strategies, args.episodes, args.seed)
                    b_sec, b_eps = b_sec + seconds, b_eps + played
                    for key, value in parts.items():
                        pair_seconds.setdefault(key, []).append(value)
                else:
                    seconds, played = reference_chunk(env, len(strategies), rng)
                    c_sec, c_eps = c_sec + seconds, c_eps + played
        walls.append(b_sec)
        ours.append(b_eps / b_sec)
        cart.append(c_eps / c_sec)
        ratios.append(ours[-1] / cart[-1])
        print(f"round {r + 1}: benchmark {b_sec:.2f} s, {ours[-1]:,.0f} episodes/s; CartPole-v1 vector env"
              f" {cart[-1]:,.0f} episodes/s; ratio {ratios[-1]:.3f}", flush=True)
    env.close()

    print(f"\nfull benchmark: {len(names)} scenarios x {len(strategies)} strategies x {args.episodes} episodes"
          f" = {int(b_eps):,} episodes; median of {args.rounds} interleaved rounds")
    print(f"full benchmark wall time:                  {statistics.median(walls):10.2f} s")
    print(f"ProxyGym benchmark:                        {statistics.median(ours):10,.0f} episodes/s")
    print(f"CartPole-v1 vector env, random play:       {statistics.median(cart):10,.0f} episodes/s"
          f" ({args.episodes} parallel episodes a batch)")
    print(f"ratio ProxyGym / CartPole (median of rounds): {statistics.median(ratios):7.3f}")
    print("slowest pairs (median seconds):")
    slowest = sorted(((statistics.median(v), k) for k, v in pair_seconds.items()), reverse=True)[:5]
    for seconds, key in slowest:
        print(f"  {seconds:6.3f} s  {key}")


if __name__ == "__main__":
    main()
