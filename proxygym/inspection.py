"""``proxygym inspect``: play a saved agent on a scenario and report what it does with each proxy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stable_baselines3.common.utils import get_latest_run_id

from proxygym.agents.bench import optimal_value
from proxygym.agents.files import check_folder
from proxygym.agents.models import load_for_scenario
from proxygym.agents.report import format_text
from proxygym.agents.summary import PolicySummary, summarize
from proxygym.agents.tensorboard import write_summary
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import Scenario, load_scenario


def inspect_model(
    model_path: "str | Path",
    scenario: "str | Path | Scenario",
    algo: str | None = None,
    episodes: int = 200,
    tensorboard_log: "str | Path | None" = None,
    seed: int = 0,
    optimal_return: float | None = None,
    observation: str | None = None,
) -> PolicySummary:
    """Load a saved model, check it fits ``scenario``, play it and summarize it, with its gap to
    the optimum (``optimal_return``, by default the exact solver's value when the scenario can be solved).

    ``algo`` is detected from the file when not given; the observation mode (history or
    belief), when not given, from the model's observation space (and where stacked frames fit
    both, from the ``config.yml`` beside the model: :func:`load_for_scenario`). With ``tensorboard_log``, the summary is
    written at step 0 (the tags of :func:`write_summary`) to a new run folder in it,
    ``inspect_<model file stem>_<n>`` (numbered as SB3 numbers training runs), so that
    inspections do not pile up in one run and sit beside the training runs. Every problem is a
    :class:`~proxygym.envs.errors.ProxyGymError` with a one-line message.
    """
    scenario = load_scenario(scenario)
    if episodes < 2:
        raise ProxyGymError(f"--episodes must be at least 2 (for an interval), got {episodes}")
    model, algo, observation = load_for_scenario(model_path, scenario, algo, observation=observation)
    if optimal_return is None:
        optimal_return = optimal_value(scenario)
    summary = summarize(model, algo, scenario, observation, episodes, seed, optimal_return)
    if tensorboard_log:
        name = f"inspect_{Path(model_path).stem}"
        run = Path(tensorboard_log) / f"{name}_{get_latest_run_id(str(tensorboard_log), name) + 1}"
        write_summary(run, summary, scenario, step=0)
    return summary


def scenario_beside(model_path: "str | Path") -> str:
    """The scenario a model was trained on, read from the ``args.yml`` train.py wrote beside it (in its run
    folder, or the run folder above ``checkpoints/``); a one-line error when there is none."""
    import yaml

    model_path = Path(model_path)
    for folder in (model_path.parent, model_path.parent.parent):
        path = folder / "args.yml"
        if path.is_file():
            try:
                scenario = (yaml.safe_load(path.read_text()) or {}).get("scenario")
            except (OSError, yaml.YAMLError) as err:
                raise ProxyGymError(f"{path}: cannot be read ({err.__class__.__name__}); give --scenario") from None
            if scenario:
                return str(scenario)
    raise ProxyGymError(f"no args.yml beside {model_path} names its scenario (train.py writes one): give --scenario NAME")


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``proxygym inspect``: print the Markdown summary (or JSON). A ProxyGymError propagates to the CLI.
    Without ``--scenario``, the scenario is the one in the ``args.yml`` beside the model."""
    scenario = args.scenario or scenario_beside(args.model)
    if args.tensorboard_log:
        check_folder(args.tensorboard_log, "--tensorboard-log")  # before the model is played
    summary = inspect_model(
        args.model, scenario, algo=args.algo, episodes=args.episodes, tensorboard_log=args.tensorboard_log, seed=args.seed,
        observation=args.observation,
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    sys.stdout.write(format_text(summary))
    if args.tensorboard_log:
        print(f"\ntensorboard: tensorboard --logdir {args.tensorboard_log}")
    return 0
