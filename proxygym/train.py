"""Training a Stable-Baselines3 agent on a scenario: ``python train.py`` and ``proxygym train``.

    python train.py                                  # PPO on sticky_values, a few minutes on 2 cores
    python train.py --algo maskable_ppo --scenario protocol_wins -n 200000 --seed 1
    python train.py --algo dqn --hyperparams learning_rate:1e-3 exploration_fraction:0.5
    python train.py --trained-agent logs/ppo/sticky_values_1/model.zip -n 50000   # resume

    python train.py --algo dqn -conf my_hyperparams.yml --vec-env subproc --device cpu
    python train.py --algo dqn --optimize --n-trials 50 --n-jobs 2 --sampler tpe --pruner median -n 20000

The command-line habits are rl-baselines3-zoo's. Hyperparameters come from
``agents/hyperparams/<algo>.yml`` or the file given by ``-conf`` (the zoo's format: the entries
``default``, ``ProxyAlignment-v0``, the scenario's name and its env id ``ProxyAlignment-<scenario>-v0``
that exist, merged in that order), then ``--hyperparams key:value`` overrides. Everything lands in a
numbered run folder ``<log-folder>/<algo>/<scenario>_<n>/``: ``model.zip`` (final), ``best_model.zip``
(best evaluation), ``checkpoints/``, ``args.yml``, ``config.yml`` (the hyperparameters used),
``evaluation.json``, and what the zoo writes, which its plot scripts read: ``monitor.csv`` (SB3's
Monitor format: every training episode's return, length and time) and ``evaluations.npz`` (SB3's
EvalCallback format: every evaluation episode's return and length). TensorBoard gets SB3's scalars
plus, at every evaluation, what the agent does with each proxy (``alignment/*``, ``policy/*``, a
heatmap, a text summary). At the end the agent is compared with every heuristic strategy on the scenario.

``--optimize`` searches hyperparameters with Optuna instead (:mod:`proxygym.agents.optimize`) and writes
the best trial's as a file for ``-conf`` in ``<log-folder>/optimize/<algo>/<scenario>_<n>/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from proxygym.agents.bench import optimal_value, run_pair
from proxygym.agents.files import check_folder, write_text_atomic
from proxygym.agents.models import load_for_scenario, save_model_atomic
from proxygym.agents.optimize import PRUNERS, SAMPLERS
from proxygym.agents.parallel import show_progress
from proxygym.agents.report import comparison_table
from proxygym.agents.summary import BEST_EPISODES, BEST_SEED, heuristic_results, summarize
from proxygym.agents.training import (
    ALGOS,
    DEVICES,
    POLICIES,
    VEC_ENVS,
    algo_class,
    frames_of,
    hyperparams_file,
    make_env,
    model_kwargs,
    read_hyperparams,
    silent_logger,
)
from proxygym.args import OneLineParser
from proxygym.envs import ENV_ID, scenario_env_id
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import load_scenario, shipped_scenarios

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
    p.add_argument("-conf", "--conf-file", default=None, metavar="FILE",
                   help="hyperparameter file in rl-baselines3-zoo's format (default: agents/hyperparams/<algo>.yml)")
    p.add_argument("--vec-env", choices=VEC_ENVS, default="batched",
                   help="the training env: batched (default: every program in one numpy env), or the zoo's dummy"
                        " (SB3's DummyVecEnv) or subproc (SubprocVecEnv, a process per env)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="PyTorch device (default cpu)")
    o = p.add_argument_group("hyperparameter search (rl-baselines3-zoo's, with Optuna)")
    o.add_argument("-optimize", "--optimize", "--optimize-hyperparameters", action="store_true", dest="optimize",
                   help="search hyperparameters instead of training one model; each trial trains -n steps")
    o.add_argument("--n-trials", type=int, default=10, help="trials (default 10)")
    o.add_argument("--n-jobs", type=int, default=1, help="trials run at once (default 1)")
    o.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default tpe")
    o.add_argument("--pruner", choices=PRUNERS, default="median", help="default median")
    o.add_argument("--n-startup-trials", type=int, default=10,
                   help="trials sampled at random, and never pruned, before TPE and the pruner take over (default 10)")
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


def load_hyperparams(algo: str, scenario: str, overrides: dict, conf: "str | Path | None" = None) -> dict:
    """The scenario's hyperparameters in ``conf`` (default ``agents/hyperparams/<algo>.yml``; its entries as
    :func:`proxygym.agents.training.read_hyperparams` merges them), then the overrides."""
    params = read_hyperparams(hyperparams_file(algo) if conf is None else conf, scenario)
    params.update(overrides)
    return params


def next_run_folder(root: Path, algo: str, scenario: str) -> Path:
    """``root/algo/scenario_<n>`` with n one more than the largest there (rl-baselines3-zoo's habit)."""
    parent = root / algo
    try:
        parent.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{scenario}_*") if p.name.rsplit("_", 1)[1].isdigit()]
        folder = parent / f"{scenario}_{max(taken, default=0) + 1}"
        folder.mkdir()
    except OSError as err:
        raise ProxyGymError(f"cannot make a run folder in {parent}: {err.strerror or err}") from None
    return folder


def remove_run_folder(folder: Path, root: Path, keep_root: bool) -> None:
    """Undo :func:`next_run_folder` for a run that did not start: the folder, and the parents it left empty up to
    ``root`` (``root`` too, unless ``keep_root``: it was there before)."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == (root if keep_root else root.parent):
            break
        try:
            parent.rmdir()  # only an empty folder
        except OSError:
            break


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
    for option, folder in (("--log-folder", args.log_folder), ("--tensorboard-log", args.tensorboard_log)):
        if folder:  # a folder that cannot be written is refused now, not after the training
            check_folder(folder, option)
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
    for flag, value, least in (("--n-trials", args.n_trials, 1), ("--n-jobs", args.n_jobs, 1),
                               ("--n-startup-trials", args.n_startup_trials, 0)):
        if value < least:
            raise ProxyGymError(f"{flag} must be at least {least}, got {value}")
    if args.optimize and args.trained_agent:
        raise ProxyGymError("--optimize trains new models; it takes no --trained-agent")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ProxyGymError("--device cuda: PyTorch sees no CUDA device here; use --device cpu (or auto)")

    if args.trained_agent and overrides:
        raise ProxyGymError("--hyperparams cannot change a --trained-agent: it resumes with the hyperparameters it was saved with")
    params = load_hyperparams(args.algo, scenario.name, overrides, args.conf_file)
    for key, value in (("n_timesteps", args.n_timesteps), ("n_envs", args.n_envs)):
        if value is not None:
            params[key] = value
    n_timesteps, n_envs, frame_stack = (
        _whole(params.pop(key, default), key) for key, default in (("n_timesteps", None), ("n_envs", 1), ("frame_stack", 1))
    )
    env_kwargs = {**(params.pop("env_kwargs", None) or {}), **env_kwargs}
    if args.observation is not None:
        env_kwargs["observation"] = args.observation
    observation = env_kwargs.pop("observation", "belief")
    policy = params.pop("policy", POLICIES.get(args.algo, "MlpPolicy"))
    if observation not in ("history", "belief"):
        raise ProxyGymError(f"observation must be history or belief, got {observation!r}")
    kwargs = model_kwargs(params)  # the zoo's forms read (schedules, policy_kwargs), its unsupported keys refused

    # -- setup (torch and SB3 load here, once the arguments are known to be good) --------
    import torch
    from stable_baselines3.common.callbacks import CheckpointCallback

    from proxygym.agents.callback import AlignmentEvalCallback
    from proxygym.agents.vec_env import make_vec_env

    torch.set_num_threads(1)  # small MLPs: one thread is faster than two here
    if args.optimize:
        return optimize(args, scenario, params, policy, n_timesteps, n_envs, observation, env_kwargs, frame_stack)
    model = None
    if args.trained_agent:
        # the shared loader checks which algorithm saved the file and that its spaces fit the scenario
        model, _, observation = load_for_scenario(args.trained_agent, scenario, args.algo, device=args.device,
                                                  observation=args.observation)
        # a resumed model sees what it was trained on: its own number of stacked frames, whatever the file says
        frame_stack = frames_of(model.observation_space, make_env(scenario, args.algo, observation).observation_space)
    tb = args.tensorboard_log or None
    had_root = Path(args.log_folder).is_dir()
    folder = next_run_folder(Path(args.log_folder), args.algo, scenario.name)
    vec_env = None
    try:
        # the n_envs programs in one batched env (agents/vec_env.py) or the zoo's DummyVecEnv / SubprocVecEnv of
        # single envs, seeded by --seed, under a VecMonitor that writes folder/monitor.csv
        # a resumed model acts in the action space it was saved with (the env's own, for one trained on the bare env;
        # MultiDiscrete without the one-choice idea, for one saved before the flat action space)
        action_space = None if model is None else model.action_space
        vec_env = make_vec_env(scenario, args.algo, n_envs, observation, seed=args.seed, vec_env=args.vec_env,
                               monitor_dir=folder, action_space=action_space, frame_stack=frame_stack, **env_kwargs)
        if model is not None:
            if model.n_envs != n_envs:  # SB3 continues a model only with the number of envs it was saved with
                raise ProxyGymError(
                    f"--trained-agent {args.trained_agent!r} was saved with {model.n_envs} envs; resume it with"
                    f" --n-envs {model.n_envs}, not {n_envs}"
                )
            model.set_env(vec_env)
            model.tensorboard_log = tb
        else:
            model = algo_class(args.algo)(policy, vec_env, seed=args.seed, verbose=0, tensorboard_log=tb,
                                          device=args.device, **kwargs)
        if tb is None:
            model.set_logger(silent_logger())
    except BaseException as err:
        # nothing is left of a run that did not start: its env's subprocesses, its folder (and the monitor file in it)
        if vec_env is not None:
            vec_env.close()
        remove_run_folder(folder, Path(args.log_folder), had_root)
        if isinstance(err, (TypeError, ValueError, AssertionError, IndexError, KeyError)):
            what = "--env-kwargs / --hyperparams" if env_kwargs else "--hyperparams"
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise ProxyGymError(f"{what} rejected by {args.algo}: {reason}") from None
        raise

    # TensorBoard's run: the scenario, the algorithm and the seed (SB3 appends _1, _2, ... for repeats)
    run_name = f"{scenario.name}_{args.algo}_seed{args.seed}"
    write_text_atomic(folder / "args.yml", yaml.safe_dump(vars(args), sort_keys=False))
    config = file_entry(n_timesteps, n_envs, policy, observation, env_kwargs, frame_stack, params)
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
                log_path=folder,  # evaluations.npz, as SB3's EvalCallback writes it
                verbose=1,  # a line per evaluation: what a log shows while it trains, with or without the bar
            )
        )

    # -- train --------------------------------------------------------------------------
    frames = f", the last {frame_stack} stacked" if frame_stack > 1 else ""
    print(f"training {args.algo} on {scenario.name} for {n_timesteps} steps ({n_envs} envs, {observation} observation{frames})")
    print(f"run folder: {folder}", flush=True)
    model_path = folder / "model.zip"
    interrupted = False
    try:
        model.learn(
            total_timesteps=n_timesteps, callback=callbacks, tb_log_name=run_name,
            reset_num_timesteps=not args.trained_agent,
            progress_bar=show_progress(args.progress),
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        vec_env.close()  # the subprocesses of --vec-env subproc; the monitor file
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


def file_entry(n_timesteps: int, n_envs: int, policy: str, observation: str, env_kwargs: dict, frame_stack: int,
               params: dict) -> dict:
    """A run's hyperparameters as an entry of a file in rl-baselines3-zoo's format (``config.yml``, and the best
    trial's file of ``--optimize``): what train.py took out of the entry put back (``frame_stack`` only above 1)."""
    frames = {"frame_stack": frame_stack} if frame_stack > 1 else {}
    return dict(n_timesteps=n_timesteps, n_envs=n_envs, policy=policy,
                env_kwargs=dict(observation=observation, **env_kwargs), **frames, **params)


def _whole(value, key: str) -> int:
    """A hyperparameter that counts something (steps, envs): a whole number of at least 1."""

    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ProxyGymError(f"{key} must be a whole number of at least 1, got {value!r}")
    return int(value)


def optimize(args, scenario, params: dict, policy: str, n_timesteps: int, n_envs: int, observation: str,
             env_kwargs: dict, frame_stack: int = 1) -> int:
    """``--optimize``: an Optuna study of ``--n-trials`` trials (:mod:`proxygym.agents.optimize`); the best trial's
    hyperparameters are written as a hyperparameter file for ``-conf``."""
    from proxygym.agents import optimize as search

    search.zoo_modules()  # rl_zoo3 and optuna installed, before a folder is made
    setup = search.Setup(
        scenario=scenario, algo=args.algo, params=params, policy=policy, n_timesteps=n_timesteps, n_envs=n_envs,
        observation=observation, env_kwargs=env_kwargs, vec_env=args.vec_env, device=args.device, seed=args.seed,
        eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, frame_stack=frame_stack,
    )
    search.check_setup(setup)  # a misspelt --hyperparams key is one line, not every trial pruned
    had_root = Path(args.log_folder).is_dir()
    folder = next_run_folder(Path(args.log_folder) / "optimize", args.algo, scenario.name)
    print(f"optimizing {args.algo} on {scenario.name}: {args.n_trials} trials of {n_timesteps} steps"
          f" ({n_envs} envs, {observation} observation; {args.sampler} sampler, {args.pruner} pruner, {args.n_jobs} at once)")
    print(f"folder: {folder}", flush=True)
    try:
        study = search.run(setup, args.n_trials, args.n_jobs, args.sampler, args.pruner, args.n_startup_trials)
    except BaseException:
        remove_run_folder(folder, Path(args.log_folder), had_root)
        raise
    # the entry of the shipped scenario's env id, else of ProxyAlignment-v0 (a file is given to the zoo by
    # --env ProxyAlignment-v0 --env-kwargs scenario:...): the keys rl-baselines3-zoo reads, as train.py does
    shipped = args.scenario == scenario.name and scenario.name in shipped_scenarios()
    key = scenario_env_id(scenario.name) if shipped else ENV_ID
    base = file_entry(n_timesteps, n_envs, policy, observation, env_kwargs, frame_stack, params)
    entry = search.best_entry(study, setup, base)
    path = search.write_report(study, folder, key, entry)
    best = study.best_trial
    print(f"\n{search.completed(study)} of {len(study.trials)} trials finished; the best, trial {best.number},"
          f" had mean return {best.value:.4f} with:")
    for name, value in entry.items():
        if name not in base or base[name] != value:
            print(f"  {name}: {value}")
    print(f"\nhyperparameters: {path}  (trials: {folder / 'trials.csv'})")
    print(f"train with them: python train.py --algo {args.algo} --scenario {args.scenario} -conf {path}")
    return 0
