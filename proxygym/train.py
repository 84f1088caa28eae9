"""Training a Stable-Baselines3 agent on a scenario: ``python train.py`` and ``proxygym train``.

    python train.py                                  # PPO on sticky_values, a few minutes on 2 cores
    python train.py --algo maskable_ppo --scenario protocol_wins -n 200000 --seed 1
    python train.py --algo dqn --hyperparams learning_rate:1e-3 exploration_fraction:0.5
    python train.py --trained-agent logs/ppo/sticky_values_1/model.zip -n 50000   # resume

The command-line habits are rl-baselines3-zoo's. Hyperparameters come from
``agents/hyperparams/<algo>.yml`` (the scenario's entry over ``default``), then
``--hyperparams key:value`` overrides. Everything lands in a numbered run folder
``<log-folder>/<algo>/<scenario>_<n>/``: ``model.zip`` (final), ``best_model.zip`` (best
evaluation), ``checkpoints/``, ``args.yml``, ``config.yml`` (the hyperparameters used) and
``evaluation.json``. TensorBoard gets SB3's scalars plus, at every evaluation, what the
agent does with each proxy (``alignment/*``, ``policy/*``, a heatmap, a text summary).
At the end the agent is compared with every heuristic strategy on the scenario.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from proxygym.agents.bench import optimal_value, run_pair
from proxygym.agents.files import write_text_atomic
from proxygym.agents.models import load_for_scenario, save_model_atomic
from proxygym.agents.report import comparison_table
from proxygym.agents.summary import BEST_EPISODES, BEST_SEED, heuristic_results, summarize
from proxygym.agents.training import ALGOS, HYPERPARAMS_DIR, POLICIES, algo_class
from proxygym.args import OneLineParser
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import load_scenario

DEFAULT_SCENARIO = "sticky_values"


def build_parser() -> argparse.ArgumentParser:

    # OneLineParser: a usage error in one line, and no option matched by a prefix (--env is not --env-kwargs)
    p = OneLineParser(prog="train.py", description="Train an SB3 agent on a ProxyGym scenario.")
    p.add_argument("--algo", default="ppo", help=f"one of {', '.join(ALGOS)} (default ppo)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="a shipped scenario's name or a path to a YAML file")
    p.add_argument("-n", "--n-timesteps", type=int, default=None, help="training steps (default: the hyperparameter file's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=None, help="parallel training envs (default: the hyperparameter file's)")
    p.add_argument("--observation", choices=("history", "belief"), default=None, help="default: the hyperparameter file's")
    p.add_argument("-tb", "--tensorboard-log", default="logs/tensorboard", help="TensorBoard folder ('' to disable)")
    p.add_argument("-f", "--log-folder", default="logs", help="where the numbered run folder goes")
    p.add_argument("--eval-freq", type=int, default=10_000, help="evaluate every N steps (0 to disable)")
    p.add_argument("--eval-episodes", type=int, default=200, help="episodes per evaluation")
    p.add_argument("--save-freq", type=int, default=0, help="save a checkpoint every N steps (0: none)")
    p.add_argument("--hyperparams", nargs="+", default=[], metavar="KEY:VALUE", help="override hyperparameters")
    p.add_argument("--env-kwargs", nargs="+", default=[], metavar="KEY:VALUE", help="extra arguments of the env")
    p.add_argument("-i", "--trained-agent", default="", metavar="PATH", help="resume from a saved model (.zip)")
    p.add_argument("--final-episodes", type=int, default=1000, help="episodes of the final comparison")
    p.add_argument("-P", "--progress", action="store_true", default=None,
                   help="show SB3's progress bar (default: when standard error is a terminal)")
    p.add_argument("--no-progress", action="store_false", dest="progress", help="no progress bar")
    return p


def parse_key_values(items: list[str], option: str) -> dict:
    """``["lr:0.001", "net:[64, 64]"]`` -> ``{"lr": 0.001, "net": [64, 64]}`` (values read as YAML)."""

    out = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise ProxyGymError(f"{option} {item!r}: write KEY:VALUE, e.g. learning_rate:0.001")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ProxyGymError(f"{option} {item!r}: the value {value!r} is not a valid YAML scalar or list") from None
    return out


def load_hyperparams(algo: str, scenario: str, overrides: dict) -> dict:
    """The scenario's entry over ``default`` in ``agents/hyperparams/<algo>.yml``, then the overrides."""
    table = yaml.safe_load((HYPERPARAMS_DIR / f"{algo}.yml").read_text()) or {}
    params = dict(table.get("default", {}))
    params.update(table.get(scenario, {}))
    params.update(overrides)
    return params


def next_run_folder(root: Path, algo: str, scenario: str) -> Path:
    """``root/algo/scenario_<n>`` with n one more than the largest there (rl-baselines3-zoo's habit)."""
    parent = root / algo
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{scenario}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    folder = parent / f"{scenario}_{max(taken, default=0) + 1}"
    folder.mkdir()
    return folder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        return train(args)
    except ProxyGymError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


def train(args: argparse.Namespace) -> int:

    # -- arguments ----------------------------------------------------------------------
    if args.algo not in ALGOS:
        raise ProxyGymError(f"unknown algorithm {args.algo!r}; choose one of {', '.join(ALGOS)}")
    scenario = load_scenario(args.scenario)
    overrides = parse_key_values(args.hyperparams, "--hyperparams")
    env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    if "scenario" in env_kwargs or "observation" in env_kwargs:
        raise ProxyGymError("--env-kwargs: give the scenario with --scenario and the observation with --observation")
    if args.trained_agent and not Path(args.trained_agent).is_file():
        raise ProxyGymError(f"--trained-agent {args.trained_agent!r}: no such file")
    for flag, value in (("-n", args.n_timesteps), ("--n-envs", args.n_envs)):
        if value is not None and value < 1:
            raise ProxyGymError(f"{flag} must be at least 1, got {value}")
    if args.eval_episodes < 2 or args.final_episodes < 2:
        raise ProxyGymError("--eval-episodes and --final-episodes must be at least 2")

    if args.trained_agent and overrides:
        raise ProxyGymError("--hyperparams cannot change a --trained-agent: it resumes with the hyperparameters it was saved with")
    params = load_hyperparams(args.algo, scenario.name, overrides)
    for key, value in (("n_timesteps", args.n_timesteps), ("n_envs", args.n_envs)):
        if value is not None:
            params[key] = value
    n_timesteps, n_envs = (_whole(params.pop(key, default), key) for key, default in (("n_timesteps", None), ("n_envs", 1)))
    env_kwargs = {**(params.pop("env_kwargs", None) or {}), **env_kwargs}
    if args.observation is not None:
        env_kwargs["observation"] = args.observation
    observation = env_kwargs.pop("observation", "belief")
    policy = params.pop("policy", POLICIES.get(args.algo, "MlpPolicy"))

    # -- setup (torch and SB3 load here, once the arguments are known to be good) --------
    import torch
    from stable_baselines3.common.callbacks import CheckpointCallback

    from proxygym.agents.callback import AlignmentEvalCallback
    from proxygym.agents.vec_env import make_vec_env

    torch.set_num_threads(1)  # small MLPs: one thread is faster than two here
    model = None
    if args.trained_agent:
        # the shared loader checks which algorithm saved the file and that its spaces fit the scenario
        model, _, saved_observation = load_for_scenario(args.trained_agent, scenario, args.algo)
        if args.observation is not None and args.observation != saved_observation:
            raise ProxyGymError(
                f"--trained-agent {args.trained_agent!r} observes {saved_observation!r}, not {args.observation!r}"
            )
        observation = saved_observation
    if observation not in ("history", "belief"):
        raise ProxyGymError(f"observation must be history or belief, got {observation!r}")
    tb = args.tensorboard_log or None
    try:
        # the n_envs programs in one batched env (agents/vec_env.py), seeded by --seed
        # a resumed model acts in the action space it was saved with (the env's own, for one trained on the bare env;
        # MultiDiscrete without the one-choice idea, for one saved before the flat action space)
        action_space = None if model is None else model.action_space
        vec_env = make_vec_env(scenario, args.algo, n_envs, observation, seed=args.seed, action_space=action_space,
                               **env_kwargs)
        if model is not None:
            if model.n_envs != n_envs:  # SB3 continues a model only with the number of envs it was saved with
                raise ProxyGymError(
                    f"--trained-agent {args.trained_agent!r} was saved with {model.n_envs} envs; resume it with"
                    f" --n-envs {model.n_envs}, not {n_envs}"
                )
            model.set_env(vec_env)
            model.tensorboard_log = tb
        else:
            model = algo_class(args.algo)(policy, vec_env, seed=args.seed, verbose=0, tensorboard_log=tb, **params)
    except ProxyGymError:
        raise
    except (TypeError, ValueError, AssertionError, IndexError, KeyError) as err:
        what = "--env-kwargs / --hyperparams" if env_kwargs else "--hyperparams"
        raise ProxyGymError(f"{what} rejected by {args.algo}: {(str(err).splitlines() or [type(err).__name__])[0]}") from None

    folder = next_run_folder(Path(args.log_folder), args.algo, scenario.name)
    # TensorBoard's run: the scenario, the algorithm and the seed (SB3 appends _1, _2, ... for repeats)
    run_name = f"{scenario.name}_{args.algo}_seed{args.seed}"
    write_text_atomic(folder / "args.yml", yaml.safe_dump(vars(args), sort_keys=False))
    config = dict(
        n_timesteps=n_timesteps, n_envs=n_envs, policy=policy, env_kwargs=dict(observation=observation, **env_kwargs), **params
    )
    write_text_atomic(folder / "config.yml", yaml.safe_dump(config, sort_keys=False))

    optimum = optimal_value(scenario)  # None when the scenario is too large to solve exactly
    callbacks = []
    if args.save_freq > 0:
        callbacks.append(CheckpointCallback(max(args.save_freq // n_envs, 1), str(folder / "checkpoints"), name_prefix="model"))
    if args.eval_freq > 0:
        callbacks.append(
            AlignmentEvalCallback(
                scenario=scenario, algo=args.algo, observation=observation,
                eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, seed=10_000 + args.seed,
                hparams=dict(algo=args.algo, scenario=scenario.name, observation=observation,
                             **{k: v for k, v in config.items() if np.isscalar(v)}),
                best_model_path=folder / "best_model.zip",
                optimal_return=optimum,
            )
        )

    # -- train --------------------------------------------------------------------------
    print(f"training {args.algo} on {scenario.name} for {n_timesteps} steps ({n_envs} envs, {observation} observation)")
    print(f"run folder: {folder}", flush=True)
    model_path = folder / "model.zip"
    interrupted = False
    try:
        model.learn(
            total_timesteps=n_timesteps, callback=callbacks, tb_log_name=run_name,
            reset_num_timesteps=not args.trained_agent,
            progress_bar=sys.stderr.isatty() if args.progress is None else args.progress,
        )
    except KeyboardInterrupt:
        interrupted = True
    save_model_atomic(model, model_path)
    if interrupted:
        print(f"\ninterrupted at step {model.num_timesteps}: saved the model to {model_path}")
        return 130

    # -- report -------------------------------------------------------------------------
    summary = summarize(
        model, args.algo, scenario, observation, args.final_episodes, seed=20_000 + args.seed, optimal_return=optimum
    )
    write_text_atomic(folder / "evaluation.json", json.dumps(summary.to_dict(), indent=2) + "\n")
    print(f"\nmodel:       {model_path}  ({model.num_timesteps} steps in all)")
    if tb:
        print(f"tensorboard: tensorboard --logdir {tb}")
    print()
    strategies = list(heuristic_results(scenario))  # already run for the evaluations' reference line
    if optimum is not None:
        strategies.append(run_pair(scenario, "optimal", BEST_EPISODES, BEST_SEED))
    print(comparison_table(scenario, args.algo, summary, strategies))
    return 0


def _whole(value, key: str) -> int:
    """A hyperparameter that counts something (steps, envs): a whole number of at least 1."""

    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ProxyGymError(f"{key} must be a whole number of at least 1, got {value!r}")
    return int(value)
