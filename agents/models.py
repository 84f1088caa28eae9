"""Saved models: writing one atomically, and loading one with the algorithm that saved it, checked against a scenario."""

from __future__ import annotations

import os
from pathlib import Path

from proxygym.agents.training import ALGOS, algo_class, frames_of, make_env
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import OBSERVATION_MODES
from proxygym.envs.scenario import Scenario


def save_model_atomic(model, path: "str | Path") -> Path:
    """Save an SB3 model so that ``path`` is the old file or the complete new one; ``.zip`` is added as SB3 does."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.zip")  # beside it, so the rename is atomic
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def fitting_observations(observation_space, action_space, scenario: Scenario, algo: str) -> list[str]:
    """The observation modes (``"history"``, ``"belief"``) whose env has these spaces for ``algo``, those observed
    whole first: the observation space is the env's, or n of its observations side by side (a model trained with
    ``frame_stack``: :func:`~proxygym.agents.training.frames_of`). Stacked, both modes may fit (n history frames
    as long as m belief frames: every bound is [0, 1]); then only the model's run can tell (:func:`load_for_scenario`).

    The action space is one a model may act in on the scenario (``ActionLayout.fits_model``: the flat one train.py's
    agents act in, ``MultiDiscrete`` without the one-choice idea as train.py's agents acted in before it, or the env's
    own, as rl-baselines3-zoo trains); DQN's is the flat one."""
    found = []
    for mode in OBSERVATION_MODES:
        env = make_env(scenario, algo, mode)
        actions = env.unwrapped.program.actions
        fits = action_space == env.action_space if algo == "dqn" else actions.fits_model(action_space)
        frames = frames_of(observation_space, env.observation_space)
        if fits and frames is not None:
            found.append((frames, mode))
    return [mode for _, mode in sorted(found)]


def observation_beside(model_path: "str | Path") -> str | None:
    """The observation named in the ``config.yml`` train.py wrote beside a model (in its run folder, or the run folder
    above ``checkpoints/``), or None where there is none to read."""
    import yaml

    model_path = Path(model_path)
    for folder in (model_path.parent, model_path.parent.parent):
        path = folder / "config.yml"
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):  # (rl-baselines3-zoo's config.yml is not plain YAML)
                return None
            env_kwargs = config.get("env_kwargs") if isinstance(config, dict) else None
            observation = env_kwargs.get("observation") if isinstance(env_kwargs, dict) else None
            return observation if observation in OBSERVATION_MODES else None
    return None


def _describe(space) -> str:
    shape = getattr(space, "shape", None)
    if type(space).__name__ == "Box" and shape is not None and len(shape) == 1:
        return f"{shape[0]} numbers"
    return str(space)


def _detect_algo(data: dict) -> str | None:
    """The algorithm that saved a model, from its saved policy class (and PPO's clip range).

    Loading with each class in turn is not enough: A2C.load accepts a PPO file and PPO.load
    an A2C or a RecurrentPPO file (same policy base class), so the saved data decides.
    """
    policy = data.get("policy_class")
    if not isinstance(policy, type):
        return None
    depth: dict[str, int] = {}
    for name in ALGOS:
        try:
            cls = algo_class(name)
        except ImportError:  # sb3-contrib not installed: its algorithms cannot have saved it here
            continue
        found = [policy.__mro__.index(p) for p in cls.policy_aliases.values() if p in policy.__mro__]
        if found:
            depth[name] = min(found)
    if not depth:
        return None
    closest = [name for name, dist in depth.items() if dist == min(depth.values())]
    if set(closest) == {"ppo", "a2c"}:
        return "ppo" if "clip_range" in data else "a2c"
    return closest[0] if len(closest) == 1 else None


def _model_file(model_path: "str | Path") -> Path:
    path = Path(model_path)
    if path.is_file():
        return path
    if path.suffix != ".zip" and path.with_name(path.name + ".zip").is_file():  # SB3 adds .zip the same way
        return path.with_name(path.name + ".zip")
    raise ProxyGymError(f"{model_path}: no such model file")


def load_for_scenario(model_path: "str | Path", scenario: Scenario, algo: str | None = None, device: str = "cpu",
                      observation: str | None = None):
    """``(model, algo, observation)``: a saved model, loaded with its class on ``device``, whose spaces fit ``scenario``.

    The observation mode is the one the model's spaces fit (:func:`fitting_observations`), which must be
    ``observation`` when given; where both modes fit (stacked frames), the one the ``config.yml`` beside the model
    names (:func:`observation_beside`), else a one-line error asking for it."""
    from stable_baselines3.common.save_util import load_from_zip_file  # imports torch: only when a model is loaded

    path = _model_file(model_path)
    try:
        data, _, _ = load_from_zip_file(path, load_data=True, device="cpu", print_system_info=False)
    except Exception as err:  # a file that is not an SB3 zip fails in many ways
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ProxyGymError(f"{path}: not a saved Stable-Baselines3 model ({reason})") from None
    if not data or "observation_space" not in data or "action_space" not in data:
        raise ProxyGymError(f"{path}: not a saved Stable-Baselines3 model (no observation and action spaces in it)")
    detected = _detect_algo(data)
    if algo is None:
        if detected is None:
            raise ProxyGymError(f"{path}: cannot tell which algorithm saved this model; give it (one of {', '.join(ALGOS)})")
        algo = detected
    elif algo not in ALGOS:
        raise ProxyGymError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    elif detected is not None and detected != algo:
        raise ProxyGymError(f"{path}: this model was saved by {detected}, not {algo}")
    obs_space, act_space = data["observation_space"], data["action_space"]
    modes = fitting_observations(obs_space, act_space, scenario, algo)
    if not modes:
        sizes = " or ".join(f"{_describe(make_env(scenario, algo, m).observation_space)} ({m})" for m in OBSERVATION_MODES)
        sizes += " (or several of them side by side, from frame_stack)"
        raise ProxyGymError(
            f"{path} does not fit scenario {scenario.name!r}: the model observes {_describe(obs_space)} and acts in"
            f" {act_space}; {scenario.name} gives {sizes} and acts in {make_env(scenario, algo).action_space}"
            f" (was it trained on another scenario?)"
        )
    if observation is not None and observation not in modes:
        raise ProxyGymError(f"{path} observes {' or '.join(map(repr, modes))} of scenario {scenario.name!r}, not {observation!r}")
    if observation is None:
        beside = observation_beside(path) if len(modes) > 1 else None
        if len(modes) > 1 and beside not in modes:
            raise ProxyGymError(
                f"{path} fits both the history and the belief observation of scenario {scenario.name!r} (as stacked"
                " frames) and no config.yml beside it says which it was trained on: give --observation"
            )
        observation = modes[0] if len(modes) == 1 else beside
    model = algo_class(algo).load(path, device=device)
    return model, algo, observation
