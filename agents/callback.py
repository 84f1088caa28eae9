"""The SB3 callback that evaluates the agent during training and writes what it does to TensorBoard."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

from proxygym.agents.files import write_bytes_atomic
from proxygym.agents.models import fitting_observations, save_model_atomic
from proxygym.agents.summary import PolicySummary, summarize_rollouts
from proxygym.agents.tensorboard import TENSORBOARD_ONLY, hparam_value, write_summary
from proxygym.agents.training import ALGOS, play_model
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import OBSERVATION_MODES
from proxygym.envs.scenario import Scenario, load_scenario


class AlignmentEvalCallback(BaseCallback):
    """Every ``eval_freq`` environment steps, play the model and write its :class:`PolicySummary` to TensorBoard.

    ``eval_freq`` counts environment steps over all the training envs (SB3's ``EvalCallback``
    counts calls, i.e. steps per env; here the division by ``n_envs`` is done for you). Every
    evaluation plays the same ``eval_episodes`` episodes (one vector env reset with ``seed``), so two evaluations differ
    only by the policy. The model with the best mean return so far is saved to
    ``best_model_path`` (if given), atomically. At the end of training, after a last evaluation
    if the final model has not been evaluated, the hyperparameters go to the HPARAMS tab with the
    final ``alignment/mean_return`` and ``alignment/p_deploy_aligned``.

    With ``log_path`` (a folder), every evaluation also rewrites ``log_path/evaluations.npz`` as SB3's
    ``EvalCallback`` writes it (rl-baselines3-zoo's plots read it): ``timesteps`` ``(n_evaluations,)``, and
    ``results`` and ``ep_lengths`` ``(n_evaluations, eval_episodes)``, each episode's return and steps.

    Attributes after training: ``last_summary``, ``best_summary``, ``best_mean_return``,
    ``evaluations`` (a list of ``(num_timesteps, PolicySummary)``).
    """

    def __init__(
        self,
        scenario: "str | Path | Scenario",
        algo: str,
        observation: str = "belief",
        eval_freq: int = 10_000,
        eval_episodes: int = 200,
        seed: int = 0,
        hparams: dict | None = None,
        best_model_path: "str | Path | None" = None,
        optimal_return: float | None = None,
        log_path: "str | Path | None" = None,
        verbose: int = 0,
    ):
        super().__init__(verbose=verbose)
        if algo not in ALGOS:
            raise ProxyGymError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
        if observation not in OBSERVATION_MODES:
            raise ProxyGymError(f"observation must be one of {', '.join(OBSERVATION_MODES)}, got {observation!r}")
        if eval_freq < 1 or eval_episodes < 2:
            raise ProxyGymError(f"eval_freq must be >= 1 and eval_episodes >= 2, got {eval_freq} and {eval_episodes}")
        self.scenario = load_scenario(scenario)
        self.algo = algo
        self.observation = observation
        self.eval_freq = eval_freq
        self.eval_episodes = eval_episodes
        self.seed = seed
        self.hparams = dict(hparams or {})
        self.best_model_path = None if best_model_path is None else Path(best_model_path)
        self.optimal_return = optimal_return
        self.log_path = None if log_path is None else Path(log_path)
        self._episodes: list[tuple[int, list[float], list[int]]] = []  # (timesteps, returns, lengths) per evaluation
        self.best_mean_return = -math.inf
        self.last_summary: PolicySummary | None = None
        self.best_summary: PolicySummary | None = None
        self.evaluations: list[tuple[int, PolicySummary]] = []
        self._calls_per_eval = 1

    def _init_callback(self) -> None:
        modes = fitting_observations(self.model.observation_space, self.model.action_space, self.scenario, self.algo)
        if self.observation not in modes:
            found = "no observation mode" if not modes else " and ".join(f"observation={m!r}" for m in modes)
            raise ProxyGymError(
                f"the model's spaces fit {found} of scenario {self.scenario.name!r}, not observation={self.observation!r}"
            )
        self._calls_per_eval = max(self.eval_freq // self.model.n_envs, 1)

    def _on_step(self) -> bool:
        if self.n_calls % self._calls_per_eval == 0:
            self._evaluate()
        return True

    def _evaluate(self) -> PolicySummary:
        roll = play_model(self.model, self.algo, self.scenario, self.observation, self.eval_episodes, seed=self.seed)
        summary = summarize_rollouts(roll, self.algo, self.scenario, self.observation, self.seed, self.optimal_return)
        self._episodes.append((self.num_timesteps, roll.returns, roll.lengths))
        if self.log_path is not None:
            self._write_evaluations()
        o = summary.outcomes
        write_summary(self.logger, summary, self.scenario, self.num_timesteps)
        self.last_summary = summary
        self.evaluations.append((self.num_timesteps, summary))
        best = o.mean_return > self.best_mean_return
        if best:
            self.best_mean_return = o.mean_return
            self.best_summary = summary
            if self.best_model_path is not None:
                save_model_atomic(self.model, self.best_model_path)
        if self.verbose >= 1:  # one line per evaluation
            print(
                f"eval at {self.num_timesteps} steps: return {o.return_text()},"
                f" P(deploy aligned) {o.p_deploy_aligned:.3f}"
                f" (best strategy {summary.best_strategy}: {summary.best_strategy_outcomes.mean_return:.4f})"
                + ("; the best so far" + (", saved" if self.best_model_path is not None else "") if best else ""),
                flush=True,
            )
        return summary

    def _write_evaluations(self) -> None:
        """``evaluations.npz`` in SB3 EvalCallback's format, written whole (:func:`write_bytes_atomic`)."""
        timesteps, returns, lengths = zip(*self._episodes)
        buffer = io.BytesIO()
        np.savez(buffer, timesteps=np.array(timesteps), results=np.array(returns), ep_lengths=np.array(lengths))
        write_bytes_atomic(self.log_path / "evaluations.npz", buffer.getvalue())

    def _on_training_end(self) -> None:
        if not self.evaluations or self.evaluations[-1][0] != self.num_timesteps:
            self._evaluate()
        final = self.last_summary
        hparams = {"algo": self.algo, "scenario": self.scenario.name, "observation": self.observation}
        hparams.update(self.hparams)
        metrics = {"alignment/mean_return": final.outcomes.mean_return,
                   "alignment/p_deploy_aligned": final.outcomes.p_deploy_aligned}
        self.logger.record(
            "hparams",
            HParam({k: hparam_value(v) for k, v in hparams.items()}, metrics),
            exclude=TENSORBOARD_ONLY,
        )
        self.logger.dump(self.num_timesteps)
