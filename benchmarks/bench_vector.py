"""Steps per second of ProxyAlignment-v0's vector env, in both observation modes, next to CartPole-v1's vector env, measured in the same run.

    python benchmarks/bench_vector.py [--num-envs 4096] [--rounds 5] [--steps 500] [--scenario sticky_values]
                                      [--small-sizes 1 8 16 17 32 64] [--small-steps 2000]

Every env is built by ``gym.make_vec(..., vectorization_mode="vector_entry_point")``
(CartPole-v1's is Gymnasium's ``CartPoleVectorEnv``). Before timing, a pool of random action
batches is drawn for each env (ProxyAlignment: every component uniform over
``single_action_space.nvec``, so a verdict that is not allowed at a program's checkpoint is
carried out as the nearest allowed one, as the env documents; CartPole: a uniform 0 or 1), and
the timed loop only cycles through that pool: what is timed is ``env.step`` alone. Programs
that end autoreset inside the loop, as the vector API does. A step of a vector env advances
every sub-env, so steps per second counts sub-env steps.

The envs are timed in interleaved rounds, the order rotating each round, so a machine shared
with other jobs slows them alike; each env's steps/s is the median over rounds and each ratio
to CartPole-v1 the median of the per-round ratios.

A second table does the same at a few small sizes, one CartPole vector env of that size
beside them: it shows where the vector env switches engines (``proxygym.envs.core.SMALL_BATCH``:
up to that many programs a list of single programs, ``ProgramList``; more, numpy arrays over
the batch, ``Programs``).
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

import proxygym  # noqa: E402,F401  (registers ProxyAlignment-v0)
from proxygym.envs.core import SMALL_BATCH  # noqa: E402

POOL = 64  # action batches drawn before timing, cycled through


def step_loop(env, pool: list[np.ndarray], steps: int, seed: int) -> Callable[[], float]:
    """A timed round of ``steps`` vector steps cycling through ``pool``; returns sub-env steps/s."""
    env.reset(seed=seed)

    def run() -> float:
        step, n = env.step, len(pool)
        start = time.perf_counter()
        for i in range(steps):
            step(pool[i % n])
        return env.num_envs * steps / (time.perf_counter() - start)

    return run


def proxy_loop(num_envs: int, mode: str, scenario: str, steps: int, seed: int):
    env = gym.make_vec("ProxyAlignment-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                       scenario=scenario, observation=mode)
    nvec = np.asarray(env.single_action_space.nvec, dtype=np.int64)
    rng = np.random.default_rng(seed)
    pool = [np.floor(rng.random((num_envs, len(nvec))) * nvec).astype(np.int64) for _ in range(POOL)]
    return env, step_loop(env, pool, steps, seed)


def cartpole_loop(num_envs: int, steps: int, seed: int):
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(seed)
    pool = [rng.integers(0, 2, size=num_envs) for _ in range(POOL)]
    return env, step_loop(env, pool, steps, seed)


def interleaved(loops: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """One warm-up call each, then ``rounds`` rounds calling every loop once, the order rotating."""
    names = list(loops)
    for name in names:
        loops[name]()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            rates[name].append(loops[name]())
    return rates


def ratio(xs: list[float], refs: list[float]) -> float:
    return statistics.median(x / c for x, c in zip(xs, refs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500, help="vector steps per env per round at --num-envs")
    parser.add_argument("--scenario", default="sticky_values")
    parser.add_argument("--small-sizes", type=int, nargs="*", default=[1, 8, 16, 17, 32, 64],
                        help="the small sizes of the second table (none: skip it)")
    parser.add_argument("--small-steps", type=int, default=2000, help="vector steps per env per round at a small size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    N = args.num_envs
    envs, loops = [], {}
    for mode in ("history", "belief"):
        env, loops[f"ProxyAlignment {mode}"] = proxy_loop(N, mode, args.scenario, args.steps, args.seed)
        envs.append(env)
    env, loops["CartPole-v1"] = cartpole_loop(N, args.steps, args.seed)
    envs.append(env)
    rates = interleaved(loops, args.rounds)
    cart = rates["CartPole-v1"]
    print(f"scenario {args.scenario}, num_envs={N}: {args.rounds} interleaved rounds of {args.steps} vector steps per env"
          f" (median sub-env steps/s; ratio: median over rounds of env / CartPole-v1)")
    for name, xs in rates.items():
        print(f"  {name:24s} {statistics.median(xs):14,.0f} steps/s   ratio to CartPole-v1 {ratio(xs, cart):6.3f}")
    for env in envs:
        env.close()

    if not args.small_sizes:
        return
    print(f"\nsmall batches: {args.rounds} interleaved rounds of {args.small_steps} vector steps per env and size"
          f" (engine switch at SMALL_BATCH = {SMALL_BATCH})")
    print(f"  {'N':>4}  {'engine':<12}{'history':>14}{'belief':>14}{'CartPole-v1':>14}   ratios history, belief")
    for n in args.small_sizes:
        loops, envs = {}, []
        for mode in ("history", "belief"):
            env, loops[mode] = proxy_loop(n, mode, args.scenario, args.small_steps, args.seed)
            envs.append(env)
        env, loops["cartpole"] = cartpole_loop(n, args.small_steps, args.seed)
        envs.append(env)
        rates = interleaved(loops, args.rounds)
        engine = type(envs[0].unwrapped.programs).__name__
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"  {n:>4}  {engine:<12}{med['history']:>14,.0f}{med['belief']:>14,.0f}{med['cartpole']:>14,.0f}"
              f"   {ratio(rates['history'], rates['cartpole']):.3f}, {ratio(rates['belief'], rates['cartpole']):.3f}")
        for env in envs:
            env.close()


if __name__ == "__main__":
    main()
