"""Speed of ``proxygym sweep``: a grid of exact analyses, next to CartPole-v1 random play timed in the same run.

    python benchmarks/bench_sweep.py [--points 200] [--rounds 3] [--workers N]

Times :func:`proxygym.agents.sweep.sweep` on ``sticky_values`` over a ``--points`` x ``--points``
grid of ``proxies.honesty_eval.steer`` (-1..1) and ``phases.pretrain.plasticity`` (0..1) with two
regimens (``T,R,R`` and ``R``), the sweep's default parallelism (every local core) unless
``--workers`` says otherwise. The issue's target: a 200 x 200 grid in under 10 s on 2 cores.
Between rounds, CartPole-v1 plays random actions for 2 s (one Python call per step); the
reference printed is the number of CartPole-v1 steps the machine makes in the grid's median
time, so a shared, slowed machine shows in both numbers. Medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_solver import cartpole_steps_per_second  # noqa: E402
from proxygym.agents.sweep import parse_vary, sweep  # noqa: E402
from proxygym.envs.scenario import load_scenario  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=200, help="grid points per parameter (default 200)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="processes (default: every local core)")
    args = p.parse_args(argv)
    sc = load_scenario("sticky_values")
    n = args.points
    axes = [parse_vary(sc, f"proxies.honesty_eval.steer=-1:1:{n}"), parse_vary(sc, f"phases.pretrain.plasticity=0:1:{n}")]
    plans = ["T,R,R", "R"]
    seconds, rates = [], []
    for r in range(args.rounds):
        rates.append(cartpole_steps_per_second())
        start = time.perf_counter()
        rows = sweep(sc, axes, plans, workers=args.workers)
        seconds.append(time.perf_counter() - start)
        print(f"round {r + 1}: {len(rows):,} analyses in {seconds[-1]:.2f} s", flush=True)
    rates.append(cartpole_steps_per_second())
    t, rate = statistics.median(seconds), statistics.median(rates)
    workers = args.workers or os.cpu_count()
    print(f"\n{n} x {n} grid, {len(plans)} regimens, {workers} workers: {t:.2f} s (median of {args.rounds}),"
          f" {len(rows) / t:,.0f} analyses/s")
    print(f"reference: CartPole-v1 random play, {rate:,.0f} steps/s in the same run;"
          f" the grid took as long as {t * rate:,.0f} CartPole-v1 steps")
    print(f"target: under 10 s on 2 cores: {'met' if t < 10 else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
