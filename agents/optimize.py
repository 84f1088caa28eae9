"""Hyperparameter search with Optuna, as rl-baselines3-zoo does it (``train.py --optimize``).

Each trial samples hyperparameters with the zoo's own sampler of the algorithm
(:data:`ZOO_SAMPLERS`: ``rl_zoo3.hyperparams_opt``), trains a fresh model on them from the
hyperparameter file's entry for ``n_timesteps`` steps, and is scored by the mean return of
its deterministic policy (:func:`proxygym.agents.training.play_model`, the same seeded
episodes for every trial), reported every ``eval_freq`` steps so a pruner may stop it early.
The sampler (TPE or random) and the pruner (median or none) are the zoo's, set up as the zoo
sets them up. The best trial's hyperparameters are written as a hyperparameter file
(:func:`best_entry`) that ``train.py -conf`` and ``python -m rl_zoo3.train --conf-file`` read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from proxygym.agents.training import PYTHON_VALUED, algo_class, model_kwargs, play_model, silent_logger, zoo_repr
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import Scenario

#: The rl-baselines3-zoo sampler (``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``) of each of our algorithms:
#: MaskablePPO has PPO's hyperparameters, RecurrentPPO is the zoo's ``ppo_lstm``.
ZOO_SAMPLERS = {"ppo": "ppo", "a2c": "a2c", "dqn": "dqn", "maskable_ppo": "ppo", "recurrent_ppo": "ppo_lstm"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


@dataclass
class Setup:
    """What every trial shares: the scenario, the algorithm, the file's hyperparameters and how to train and score."""

    scenario: Scenario
    algo: str
    params: dict  # the file's entry with the overrides, as written (no n_timesteps, n_envs, frame_stack, env_kwargs, policy)
    policy: str
    n_timesteps: int
    n_envs: int
    observation: str
    env_kwargs: dict
    vec_env: str = "batched"
    device: str = "cpu"
    seed: int = 0
    eval_freq: int = 10_000
    eval_episodes: int = 200
    frame_stack: int = 1


def zoo_modules():
    """``(optuna, rl_zoo3.hyperparams_opt)``, or a one-line error naming the extra that installs them."""
    try:
        import optuna
        from rl_zoo3 import hyperparams_opt
    except ImportError as err:
        raise ProxyGymError(f"--optimize needs rl_zoo3 and optuna ({err}); pip install 'proxygym[zoo]'") from None
    return optuna, hyperparams_opt


def make_study(sampler: str, pruner: str, seed: int, n_startup_trials: int, n_evaluations: int):
    """An Optuna study maximizing the mean return, with the zoo's sampler and pruner (``ExperimentManager``'s)."""
    optuna, _ = zoo_modules()
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise ProxyGymError(f"sampler must be one of {', '.join(SAMPLERS)} and pruner one of {', '.join(PRUNERS)}")
    if sampler == "tpe":
        chosen = optuna.samplers.TPESampler(n_startup_trials=n_startup_trials, seed=seed, multivariate=True)
    else:
        chosen = optuna.samplers.RandomSampler(seed=seed)
    if pruner == "median":
        pruning = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_evaluations // 3)
    else:
        pruning = optuna.pruners.NopPruner()
    return optuna.create_study(sampler=chosen, pruner=pruning, direction="maximize")


def sample(trial, setup: Setup) -> dict:
    """The zoo's sample of the algorithm's hyperparameters for a trial, as the model's class takes them."""
    _, hyperparams_opt = zoo_modules()
    sampler = hyperparams_opt.HYPERPARAMS_SAMPLER[ZOO_SAMPLERS[setup.algo]]
    return sampler(trial, 0, setup.n_envs, {"using_her_replay_buffer": False, "her_kwargs": {}})


def best_hyperparams(trial, algo: str) -> dict:
    """A finished trial's hyperparameters as the zoo converts its sampled values (``HYPERPARAMS_CONVERTER``)."""
    _, hyperparams_opt = zoo_modules()
    return hyperparams_opt.HYPERPARAMS_CONVERTER[ZOO_SAMPLERS[algo]](dict(trial.params))


def check_setup(setup: Setup) -> None:
    """Build one model from the file's hyperparameters and the overrides alone, before any trial: a key or value
    the algorithm refuses there is the user's (one line), not a sampled combination to prune."""
    from proxygym.agents.vec_env import make_vec_env

    env = make_vec_env(setup.scenario, setup.algo, setup.n_envs, setup.observation, seed=setup.seed,
                       vec_env=setup.vec_env, frame_stack=setup.frame_stack,
                       **setup.env_kwargs)
    try:
        algo_class(setup.algo)(setup.policy, env, seed=setup.seed, verbose=0, device=setup.device,
                               **model_kwargs(setup.params))
    except (TypeError, ValueError, AssertionError) as err:
        raise ProxyGymError(f"--hyperparams rejected by {setup.algo}: {(str(err).splitlines() or [type(err).__name__])[0]}") from None
    finally:
        env.close()


def objective(trial, setup: Setup) -> float:
    """Train one trial's model and return its last evaluation's mean return (pruned on the way if the pruner says so)."""
    import optuna
    from stable_baselines3.common.callbacks import BaseCallback

    from proxygym.agents.vec_env import make_vec_env

    kwargs = model_kwargs(setup.params)
    kwargs.update(sample(trial, setup))
    env = make_vec_env(setup.scenario, setup.algo, setup.n_envs, setup.observation, seed=setup.seed,
                       vec_env=setup.vec_env, frame_stack=setup.frame_stack,
                       **setup.env_kwargs)
    try:
        model = algo_class(setup.algo)(setup.policy, env, seed=setup.seed, verbose=0, device=setup.device, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:  # a sampled combination the algorithm refuses
        env.close()
        raise optuna.TrialPruned(f"rejected by {setup.algo}: {(str(err).splitlines() or [type(err).__name__])[0]}") from None
    model.set_logger(silent_logger())

    scores: list[tuple[int, float]] = []

    def evaluate() -> float:
        roll = play_model(model, setup.algo, setup.scenario, setup.observation, setup.eval_episodes,
                          seed=10_000 + setup.seed)
        mean = float(sum(roll.returns) / len(roll.returns))
        scores.append((model.num_timesteps, mean))
        trial.report(mean, len(scores) - 1)
        return mean

    class Report(BaseCallback):
        """Every ``eval_freq`` steps (over all envs): evaluate, report to the trial, stop if it is to be pruned."""

        def _on_step(self) -> bool:
            if self.n_calls % max(setup.eval_freq // setup.n_envs, 1) == 0:
                evaluate()
                return not trial.should_prune()
            return True

    try:
        model.learn(setup.n_timesteps, callback=Report() if setup.eval_freq > 0 else None)
    except (AssertionError, ValueError) as err:  # sampled hyperparameters may diverge (NaN), as the zoo prunes them
        raise optuna.TrialPruned(str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    finally:
        env.close()
    if scores and trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {scores[-1][0]}")
    if not scores or scores[-1][0] != model.num_timesteps:
        evaluate()
    value = scores[-1][1]
    if not math.isfinite(value):
        raise optuna.TrialPruned("the mean return is not finite")
    return value


def best_entry(study, setup: Setup, base: dict) -> dict:
    """The best trial's hyperparameter file entry: ``base`` (the file's entry as written, with n_timesteps, n_envs,
    env_kwargs and policy) under the trial's hyperparameters, Python-valued ones written as the zoo writes them."""
    tuned = best_hyperparams(study.best_trial, setup.algo)
    entry = dict(base)
    for key, value in tuned.items():
        entry[key] = zoo_repr(value) if key in PYTHON_VALUED else value
    return entry


def completed(study) -> int:
    """How many trials finished (neither pruned nor failed)."""
    import optuna

    return len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


def run(setup: Setup, n_trials: int, n_jobs: int, sampler: str, pruner: str, n_startup_trials: int):
    """The study after ``n_trials`` trials (``n_jobs`` at a time, in threads, as Optuna and the zoo run them)."""
    n_evaluations = setup.n_timesteps // setup.eval_freq if setup.eval_freq > 0 else 1
    study = make_study(sampler, pruner, setup.seed, n_startup_trials, max(n_evaluations, 1))
    try:
        study.optimize(lambda trial: objective(trial, setup), n_trials=n_trials, n_jobs=n_jobs, gc_after_trial=True)
    except KeyboardInterrupt:  # as the zoo: Ctrl-C ends the search, and the trials that finished are reported
        pass
    if completed(study) == 0:
        raise ProxyGymError(f"no trial of {n_trials} finished (all pruned); try more trials or more steps (-n)")
    return study


def write_report(study, folder: Path, key: str, entry: dict) -> Path:
    """``best_hyperparams.yml`` (``{key: entry}``) and ``trials.csv`` (every trial, Optuna's table) in ``folder``."""
    import yaml

    from proxygym.agents.files import write_text_atomic

    best = folder / "best_hyperparams.yml"
    trial = study.best_trial
    header = (f"# The best of {len(study.trials)} trials (trial {trial.number}: mean return {trial.value:.4f}),"
              f" rl-baselines3-zoo's format: train.py -conf FILE, python -m rl_zoo3.train --conf-file FILE\n")
    write_text_atomic(best, header + yaml.safe_dump({key: entry}, sort_keys=False))
    write_text_atomic(folder / "trials.csv", study.trials_dataframe().to_csv(index=False))
    return best
