"""Steps per second of the single ProxyAlignment-v0 env, in both observation modes, next to CartPole-v1's, measured in the same run.

    python benchmarks/bench_single_env.py [--rounds 9] [--steps 20000] [--scenario sticky_values]
                                          [--reference-tree DIR]

Every env is the bare class (``gym.make(...).unwrapped``: no checker or order-enforcing
wrappers), driven by random valid actions: each step asks ``action_masks()`` and plays a
verdict uniform over the allowed ones, usages and idea uniform (CartPole: a uniform 0 or 1).
Episodes that end are reset inside the timed loop. The envs are timed in interleaved
rounds (the order rotating each round), so a machine shared with other jobs slows them
alike; each env's steps/s is the median over rounds, and each ratio to CartPole-v1 is the
median of the per-round ratios.

``--reference-tree DIR`` also times the single env of an older checkout whose envs are the
top-level package ``envs`` (the layout up to commit 153e8d9), in the same rounds, e.g.

    git archive 153e8d9 | (mkdir -p /tmp/proxygym-153e8d9 && tar -x -C /tmp/proxygym-153e8d9)
    python benchmarks/bench_single_env.py --reference-tree /tmp/proxygym-153e8d9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxygym.envs.proxy_alignment import ProxyAlignmentEnv  # noqa: E402


def proxy_loop(env, steps: int, seed: int) -> Callable[[], float]:
    """A timed round of ``steps`` random valid steps of a ProxyAlignment env; returns its steps/s."""
    nvec = np.asarray(env.action_space.nvec, dtype=np.int64)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def run() -> float:
        actions = np.floor(rng.random((steps, len(nvec))) * nvec).astype(np.int64)
        verdict_u = rng.random((steps, 3))
        start = time.perf_counter()
        for i in range(steps):
            a = actions[i]
            a[0] = (verdict_u[i] * env.action_masks()[:3]).argmax()
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)

    return run


def cartpole_loop(steps: int, seed: int) -> Callable[[], float]:
    env = gym.make("CartPole-v1").unwrapped
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def run() -> float:
        actions = rng.integers(0, 2, size=steps).tolist()
        start = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i])
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)

    return run


def reference_env_class(tree: Path):
    """The single env of an older checkout with top-level ``envs`` and ``scenarios`` packages."""
    sys.path.insert(0, str(tree))
    try:
        from envs.proxy_alignment import ProxyAlignmentEnv as Old  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tree))
    return Old


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20000, help="steps per env per round")
    parser.add_argument("--scenario", default="sticky_values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-tree", type=Path, default=None,
                        help="an older checkout (top-level envs package) whose single env is timed too")
    args = parser.parse_args(argv)

    loops: dict[str, Callable[[], float]] = {"CartPole-v1": cartpole_loop(args.steps, args.seed)}
    for mode in ("history", "belief"):
        loops[f"ProxyAlignment {mode}"] = proxy_loop(
            ProxyAlignmentEnv(args.scenario, observation=mode), args.steps, args.seed
        )
    if args.reference_tree is not None:
        Old = reference_env_class(args.reference_tree.resolve())
        for mode in ("history", "belief"):
            loops[f"reference {mode}"] = proxy_loop(Old(args.scenario, observation=mode), args.steps, args.seed)

    names = list(loops)
    for name in names:  # warm-up (caches, first allocations), not timed
        loops[name]()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            rates[name].append(loops[name]())

    cart = rates["CartPole-v1"]
    print(f"scenario {args.scenario}: {args.rounds} interleaved rounds of {args.steps:,} steps per env"
          f" (median steps/s; ratio: median over rounds of env / CartPole-v1)")
    for name in names:
        median = statistics.median(rates[name])
        ratio = statistics.median(x / c for x, c in zip(rates[name], cart))
        print(f"  {name:28s} {median:12,.0f} steps/s   ratio to CartPole-v1 {ratio:6.3f}")
    if args.reference_tree is not None:
        for mode in ("history", "belief"):
            speedup = statistics.median(
                x / y for x, y in zip(rates[f"ProxyAlignment {mode}"], rates[f"reference {mode}"])
            )
            print(f"  {mode}: this tree / reference = {speedup:.3f}")


if __name__ == "__main__":
    main()
