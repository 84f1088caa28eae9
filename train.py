"""Train a Stable-Baselines3 agent on a ProxyGym scenario.

    python train.py                       # PPO on sticky_values, a few minutes on 2 cores
    python train.py --algo a2c --scenario blueprint -n 20000 --seed 1

The run folder ``<log-folder>/<algo>/<scenario>_<n>/`` holds the final model and the
arguments; TensorBoard logs go to ``--tensorboard-log``. At the end the trained agent is
played for ``--eval-episodes`` episodes and its mean return (with a 95% interval) is
printed beside the exact expected return of the basic fixed regimens on the scenario.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ALGOS = ("ppo", "a2c")
DEFAULT_SCENARIO = "sticky_values"
DEFAULT_TIMESTEPS = 60_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description="Train an SB3 agent on a ProxyGym scenario.")
    p.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="a shipped scenario's name or a YAML path")
    p.add_argument("-n", "--n-timesteps", type=int, default=DEFAULT_TIMESTEPS, help="training steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--observation", default="belief", choices=("history", "belief"))
    p.add_argument("--tensorboard-log", default="logs/tb", help="TensorBoard folder ('' to disable)")
    p.add_argument("--log-folder", default="logs", help="where the numbered run folder goes")
    p.add_argument("--eval-episodes", type=int, default=2000, help="episodes to evaluate the trained agent")
    return p


def next_run_folder(root: Path, algo: str, scenario: str) -> Path:
    """``root/algo/scenario_<n>`` with n one more than the largest there (rl-baselines3-zoo's habit)."""
    parent = root / algo
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{scenario}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    folder = parent / f"{scenario}_{max(taken, default=0) + 1}"
    folder.mkdir()
    return folder


def write_json_atomic(path: Path, data) -> None:
    from proxygym.files import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_atomic(model, path: Path) -> None:
    """Save an SB3 model so that ``path`` is either the old file or the complete new one."""
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)


def evaluate(model, env, episodes: int, seed: int) -> dict:
    """Play the model's deterministic policy; mean return with a 95% normal interval, outcome shares."""
    returns, aligned, misaligned, abstained, runs = [], 0, 0, 0, []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
        aligned += info.get("deployed", False) and info["aligned"]
        misaligned += info.get("deployed", False) and not info["aligned"]
        abstained += info.get("abstained", False)
        runs.append(info["runs_used"])
    r = np.asarray(returns)
    return {
        "mean_return": float(r.mean()),
        "ci95": float(1.96 * r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else float("nan"),
        "p_deploy_aligned": aligned / episodes,
        "p_deploy_misaligned": misaligned / episodes,
        "p_abstain": abstained / episodes,
        "mean_runs": float(np.mean(runs)),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from envs.scenario import ProxyGymError

    try:
        return _train(args)
    except ProxyGymError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from envs.analysis import analyze, make_regimen
    from envs.proxy_alignment import ProxyAlignmentEnv
    from envs.scenario import ProxyGymError, load_scenario

    if args.algo not in ALGOS:
        raise ProxyGymError(f"unknown algorithm {args.algo!r}; choose one of {', '.join(ALGOS)}")
    if args.n_timesteps < 1 or args.eval_episodes < 2:
        raise ProxyGymError("-n must be >= 1 and --eval-episodes >= 2")
    scenario = load_scenario(args.scenario)

    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)  # a small MLP: one thread is faster than two on this size
    algo_cls = {"ppo": PPO, "a2c": A2C}[args.algo]
    folder = next_run_folder(Path(args.log_folder), args.algo, scenario.name)
    write_json_atomic(folder / "args.json", vars(args))

    env_kwargs = {"scenario": scenario, "observation": args.observation}
    vec_env = make_vec_env(ProxyAlignmentEnv, n_envs=4, seed=args.seed, env_kwargs=env_kwargs)
    model = algo_cls(
        "MlpPolicy",
        vec_env,
        seed=args.seed,
        verbose=0,
        tensorboard_log=args.tensorboard_log or None,
    )
    print(f"training {args.algo.upper()} on {scenario.name} for {args.n_timesteps} steps ...", flush=True)
    model.learn(total_timesteps=args.n_timesteps, tb_log_name=f"{scenario.name}_{folder.name.rsplit('_', 1)[1]}")
    model_path = folder / "model.zip"
    save_atomic(model, model_path)

    eval_env = ProxyAlignmentEnv(scenario, observation=args.observation)
    result = evaluate(model, eval_env, args.eval_episodes, seed=10_000 + args.seed)
    write_json_atomic(folder / "evaluation.json", result)

    print(f"\nmodel:       {model_path}")
    if args.tensorboard_log:
        print(f"tensorboard: tensorboard --logdir {args.tensorboard_log}")
    print(f"\n{scenario.name}: {scenario.title}")
    print(f"{'policy':<40} {'return':>16}  kind")
    print(f"{'trained ' + args.algo.upper():<40} {result['mean_return']:>8.4f} +- {result['ci95']:.4f}  {args.eval_episodes} episodes")
    references = [
        ("always reserve (plan R, test all)", "R", None),
        ("always train (plan T, test all)", "T", None),
        ("first model (plan R, no test)", "R", "none"),
    ]
    for label, plan, test in references:
        value = analyze(scenario, make_regimen(scenario, plan, test=test)).expected_return
        print(f"{label:<40} {value:>8.4f}            exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
