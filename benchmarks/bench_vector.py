"""Steps per second of ProxyAlignment-v0's vector env next to CartPole-v1's, measured in the same run.

    python benchmarks/bench_vector.py [--num-envs 2000] [--steps 500] [--scenario sticky_values]

Both envs are built by ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` and
driven by random valid actions drawn with numpy in the timed loop (for ProxyAlignment,
a verdict uniform over the ones ``action_masks()`` allows, usages and idea uniform).
A step of a vector env advances every sub-env, so steps per second counts sub-env steps.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import proxygym  # noqa: F401  (registers ProxyAlignment-v0)


def time_proxy_alignment(num_envs: int, steps: int, scenario: str, seed: int) -> float:
    env = gym.make_vec(
        "ProxyAlignment-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", scenario=scenario
    )
    rng = np.random.default_rng(seed)
    nvec = env.single_action_space.nvec
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        allowed = env.unwrapped.action_masks()[:, :3]
        actions = np.floor(rng.random((num_envs, len(nvec))) * nvec).astype(np.int64)
        actions[:, 0] = np.argmax(rng.random((num_envs, 3)) * allowed, axis=1)
        env.step(actions)
    elapsed = time.perf_counter() - start
    env.close()
    return num_envs * steps / elapsed


def time_cartpole(num_envs: int, steps: int, seed: int) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, 2, size=num_envs))
    elapsed = time.perf_counter() - start
    env.close()
    return num_envs * steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=500, help="vector steps timed per env (after a warm-up)")
    parser.add_argument("--scenario", default="sticky_values")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    time_proxy_alignment(args.num_envs, 20, args.scenario, args.seed)  # warm-up
    time_cartpole(args.num_envs, 20, args.seed)
    ours = max(time_proxy_alignment(args.num_envs, args.steps, args.scenario, args.seed) for _ in range(args.repeats))
    cart = max(time_cartpole(args.num_envs, args.steps, args.seed) for _ in range(args.repeats))
    print(f"num_envs={args.num_envs}, {args.steps} steps, best of {args.repeats}")
    print(f"ProxyAlignment-v0 ({args.scenario}) vector env: {ours:14,.0f} steps/s")
    print(f"CartPole-v1 vector env:                   {cart:14,.0f} steps/s")
    print(f"ratio ProxyAlignment / CartPole:           {ours / cart:14.3f}")


if __name__ == "__main__":
    main()
