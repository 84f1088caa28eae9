"""Stable-Baselines3 agents on ProxyAlignment-v0: the algorithms, the env each needs, and playing a trained model.

``train.py`` (the CLI), the TensorBoard summaries and ``proxygym inspect`` all play models
through this module (:func:`play_model`, batched in the vector env), so the action space a model
acts in (one ``Discrete`` index per action: :func:`model_space`; or the one a saved model has) and an
algorithm's quirks (MaskablePPO's masks, RecurrentPPO's LSTM state) are handled in one place.
Training itself steps a batch of programs in :mod:`proxygym.agents.vec_env`; :func:`make_env` is
the single env, for what needs one (SB3's env checker, rl-baselines3-zoo, the checks of a saved
model's spaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from proxygym.agents.regimen import play_batch
from proxygym.envs.actions import CONTINUE, DISCARD, ActionLayout, nearest_allowed
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.outcomes import Outcomes, measure
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import Scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo", "recurrent_ppo")
#: The training envs train.py may step (``--vec-env``, :func:`proxygym.agents.vec_env.make_vec_env`): its batched one,
#: and rl-baselines3-zoo's choices, SB3's DummyVecEnv and SubprocVecEnv of single envs.
VEC_ENVS = ("batched", "dummy", "subproc")
DEVICES = ("cpu", "auto", "cuda")
POLICIES = {"recurrent_ppo": "MlpLstmPolicy"}  # every other algorithm: "MlpPolicy"


# -- hyperparameter files (rl-baselines3-zoo's format) ----------------------------------------------
#: The zoo's keys of a file that train.py does not apply (each a wrapper or a callback around the zoo's own envs).
ZOO_UNSUPPORTED = {
    "normalize": "VecNormalize (observations are already in [0, 1]; the reward is the deployed model's alignment)",
    "vec_env_wrapper": "a VecEnv wrapper", "callback": "callbacks from the file", "monitor_kwargs": "Monitor arguments",
    "noise_type": "action noise (continuous actions only)", "noise_std": "action noise (continuous actions only)",
    "replay_buffer_class": "another replay buffer",
}
#: The hyperparameters rl-baselines3-zoo reads as ``lin_<x>``, a schedule from x down to 0 over training.
SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")
#: The hyperparameters rl-baselines3-zoo reads as Python when they are strings (``"dict(net_arch=[64, 64])"``).
PYTHON_VALUED = ("policy_kwargs", "replay_buffer_kwargs")


def hyperparams_file(algo: str) -> Path:
    """The shipped hyperparameter file of ``algo``: ``agents/hyperparams/<algo>.yml``."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def entry_keys(scenario_name: str) -> tuple[str, ...]:
    """The keys of a hyperparameter file that apply to a scenario, later over earlier: ``default``, the env's id
    ``ProxyAlignment-v0``, the scenario's name, and a shipped scenario's own env id ``ProxyAlignment-<name>-v0``
    (the key rl-baselines3-zoo reads for that id)."""
    from proxygym.envs import ENV_ID, scenario_env_id, shipped_scenarios

    keys = ["default", ENV_ID, scenario_name]
    if scenario_name in shipped_scenarios():
        keys.append(scenario_env_id(scenario_name))
    return tuple(keys)


def read_hyperparams(path: "str | Path", scenario_name: str) -> dict:
    """A scenario's hyperparameters from a file in rl-baselines3-zoo's format (one algorithm; entries keyed by env id
    or ``default``): every entry of :func:`entry_keys` found, merged key by key, later over earlier. YAML's merge
    key (``<<: *default``) works, as the zoo needs it: the zoo takes the one entry of its env id and nothing else."""
    import yaml

    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ProxyGymError(f"hyperparameter file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ProxyGymError(f"hyperparameter file {path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ProxyGymError(f"hyperparameter file {path}: write a mapping of entries (default, or an env id) to hyperparameters")
    keys = entry_keys(scenario_name)
    if not any(k in table for k in keys):
        raise ProxyGymError(f"hyperparameter file {path} has no entry for scenario {scenario_name!r}: give one of {', '.join(keys)}")
    params: dict = {}
    for key in keys:
        params.update(table.get(key) or {})
    return params


def python_value(text: str, what: str):
    """A Python expression of rl-baselines3-zoo's hyperparameter files read without running it: literals, lists,
    tuples, dicts, ``dict(key=value, ...)``, and classes named from torch (``nn.ReLU``, ``th.optim.Adam``)."""
    import ast

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            if all(kw.arg is not None for kw in node.keywords):
                return {kw.arg: value(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Attribute):
            return torch_name(ast.unparse(node))
        raise ValueError(ast.unparse(node))

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError) as err:
        raise ProxyGymError(
            f"{what} {text!r}: cannot read {err.args[0] if isinstance(err, ValueError) else 'it'!r}; write numbers,"
            " lists, dict(key=value, ...) and torch classes (nn.ReLU)"
        ) from None


def torch_name(name: str):
    """The torch object a dotted name gives, rooted at ``nn``, ``th`` or ``torch`` (the zoo's aliases)."""
    import torch

    root, *rest = name.split(".")
    roots = {"nn": torch.nn, "th": torch, "torch": torch}
    if root not in roots or not rest:
        raise ValueError(name)
    obj = roots[root]
    for part in rest:
        if part.startswith("_") or not hasattr(obj, part):
            raise ValueError(name)
        obj = getattr(obj, part)
    return obj


def zoo_repr(value) -> str:
    """The inverse of :func:`python_value`: ``{"net_arch": [64], "activation_fn": nn.ReLU}`` ->
    ``"dict(net_arch=[64], activation_fn=nn.ReLU)"``, as rl-baselines3-zoo's files write ``policy_kwargs``."""
    import torch

    if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
        return "dict(" + ", ".join(f"{k}={zoo_repr(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(zoo_repr(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(zoo_repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, type) and getattr(torch.nn, value.__name__, None) is value:
        return f"nn.{value.__name__}"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    raise ProxyGymError(f"cannot write {value!r} in a hyperparameter file")


def model_kwargs(params: dict) -> dict:
    """Hyperparameters as a file of rl-baselines3-zoo's format writes them, as the algorithm's class takes them:
    ``lin_<x>`` schedules, Python-valued strings (:data:`PYTHON_VALUED`), ``train_freq`` lists as tuples; the zoo's
    keys train.py does not apply (:data:`ZOO_UNSUPPORTED`) refused, and ``env_wrapper`` accepted only where it is
    :class:`ModelAction` (train.py's agents act in its space anyway). ``params`` holds no ``n_timesteps``, ``n_envs``,
    ``frame_stack``, ``env_kwargs`` or ``policy`` any more."""
    from stable_baselines3.common.utils import LinearSchedule

    out = {}
    for key, value in params.items():
        if key in ZOO_UNSUPPORTED:
            if key == "normalize" and value is False:
                continue
            raise ProxyGymError(f"hyperparameter {key}: train.py does not apply {ZOO_UNSUPPORTED[key]}")
        if key == "env_wrapper":
            check_env_wrapper(value)
            continue
        if key in SCHEDULED and isinstance(value, str):
            kind, _, start = value.partition("_")
            try:
                if kind != "lin":
                    raise ValueError
                value = LinearSchedule(float(start), 0.0, 1.0)
            except ValueError:
                raise ProxyGymError(f"hyperparameter {key} {value!r}: write a number or lin_<number>") from None
        elif key in PYTHON_VALUED and isinstance(value, str):
            value = python_value(value, key)
        elif key == "train_freq" and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def check_env_wrapper(value) -> None:
    """Refuse an ``env_wrapper`` that is not :class:`ModelAction` (the zoo's forms: a name, ``{name: kwargs}``, a list)."""
    for item in value if isinstance(value, list) else [value]:
        name = next(iter(item)) if isinstance(item, dict) and len(item) == 1 else item
        if name != ModelAction.NAME:
            raise ProxyGymError(
                f"hyperparameter env_wrapper {item!r}: train.py steps its own envs and applies only {ModelAction.NAME}"
            )


def algo_class(name: str):
    """The SB3 (or sb3-contrib) class of an algorithm name."""
    if name not in ALGOS:
        raise ProxyGymError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGOS)}")
    if name in ("maskable_ppo", "recurrent_ppo"):
        import sb3_contrib

        return {"maskable_ppo": sb3_contrib.MaskablePPO, "recurrent_ppo": sb3_contrib.RecurrentPPO}[name]
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[name]


class ModelAction(gym.ActionWrapper):
    """Show the env's action as a learning agent is given it: ``ActionLayout.model_space()`` (by default one
    ``Discrete`` index per distinct action, read as the mixed-radix number whose digits are the verdict, the
    usage of each proxy and the idea, first digit most significant), or another space a model may act in.

    SB3 builds one categorical distribution per component of a ``MultiDiscrete``; a single one over every
    action is cheaper while there are few (``ActionLayout.FLAT_MAX``), and DQN needs a ``Discrete`` anyway.
    Nothing else changes: the same observations, rewards and info. ``action_masks()`` gives the masks over
    the model's choices (``ActionLayout.model_masks``). ``ModelAction(env, algo="dqn")`` is the space
    train.py's agents of that algorithm act in (:func:`model_space`); rl-baselines3-zoo wraps its envs so
    from a hyperparameter file (``env_wrapper: {proxygym.agents.training.ModelAction: {algo: dqn}}``).
    """

    #: Its name in a hyperparameter file (rl-baselines3-zoo's ``env_wrapper``).
    NAME = "proxygym.agents.training.ModelAction"

    def __init__(self, env: gym.Env, action_space: "spaces.Space | None" = None, algo: str | None = None):
        super().__init__(env)
        self.actions = env.unwrapped.program.actions
        # algo: the space train.py's agents of algo act in (model_space: flat for DQN whatever its size), for a tool
        # that wraps the env by a wrapper's name and keyword arguments (rl-baselines3-zoo's env_wrapper)
        self.action_space = model_space(algo, self.actions) if action_space is None else action_space
        if not self.actions.fits_model(self.action_space):
            raise ValueError(f"{self.action_space} is not an action space a model may act in here")

    def action(self, action) -> np.ndarray:
        return self.actions.from_model(action, self.action_space)[0]

    def action_masks(self) -> np.ndarray:
        return self.actions.model_masks(self.env.unwrapped.action_masks(), self.action_space)


def silent_logger():
    """An SB3 logger that writes nothing, for a model trained without TensorBoard (SB3's own would make an empty
    ``SB3-<date>`` folder in the temp folder for every model)."""
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


def model_space(algo: str | None, layout: ActionLayout) -> spaces.Space:
    """The action space train.py's agents of ``algo`` act in: ``layout.model_space()``, flat for DQN whatever its size."""
    return layout.model_space(flat=True if algo == "dqn" else None)


def make_env(
    scenario: "str | Path | Scenario", algo: str, observation: str = "belief", action_space: "spaces.Space | None" = None,
    **env_kwargs,
) -> gym.Env:
    """One single env for ``algo``, in the action space train.py's agents of ``algo`` act in (:func:`model_space`,
    through :class:`ModelAction`) or in ``action_space`` (a resumed model's); train.py trains in
    :func:`proxygym.agents.vec_env.make_vec_env` instead, which batches ``n_envs`` programs by default."""
    env = ProxyAlignmentEnv(scenario=scenario, observation=observation, **env_kwargs)
    return ModelAction(env, action_space, algo=algo)


@dataclass
class Rollouts:
    """What a played policy did, step by step and episode by episode."""

    n_phases: int
    n_proxies: int
    n_ideas: int
    # per episode
    returns: list[float] = field(default_factory=list)
    deployed: list[bool] = field(default_factory=list)
    aligned: list[bool] = field(default_factory=list)
    abstained: list[bool] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # steps (decision points) of each episode
    # per step: the decision point, the verdict as the env applied it, the usages, the idea
    checkpoint: list[int] = field(default_factory=list)
    verdict: list[int] = field(default_factory=list)
    usage: list[np.ndarray] = field(default_factory=list)
    idea: list[int] = field(default_factory=list)
    scenario: Scenario | None = None  # what an episode can return (the mean return's interval), when given

    def record(self, checkpoint: int, action: np.ndarray) -> None:
        """One step: the decision point it was taken at and the action (the verdict as the env applies it)."""
        self.record_batch(np.array([checkpoint]), np.asarray(action).reshape(1, -1))

    def record_batch(self, checkpoint: np.ndarray, actions: np.ndarray) -> None:
        """Steps of several programs at once: their decision points ``(n,)`` and actions ``(n, 2 + k)``."""
        verdict, usage, idea = ActionLayout(self.n_proxies, self.n_ideas).decode(actions)
        checkpoint = np.asarray(checkpoint, dtype=np.int64)
        self.checkpoint.extend(checkpoint.tolist())
        self.verdict.extend(np.asarray(nearest_allowed(verdict, checkpoint, self.n_phases)).reshape(-1).tolist())
        self.usage.extend(np.asarray(usage, dtype=np.int64).reshape(len(checkpoint), self.n_proxies))
        self.idea.extend(np.asarray(idea, dtype=np.int64).reshape(-1).tolist())

    def outcomes(self) -> Outcomes:
        """How the episodes ended (:func:`proxygym.envs.outcomes.measure`)."""
        return measure(self.returns, self.deployed, self.aligned, self.abstained, self.runs, self.scenario)

    def usage_shares(self) -> np.ndarray:
        """``(T, k, 3)``: per phase and proxy, the share of reserve, train, anti among the runs that ran the phase."""
        T, k = self.n_phases, self.n_proxies
        out = np.zeros((T, k, 3))
        d = np.asarray(self.checkpoint)
        v = np.asarray(self.verdict)
        u = np.asarray(self.usage).reshape(-1, k)
        for t in range(T):
            ran = (d == t) & (v == CONTINUE)  # at checkpoint t, continue runs phase t+1
            if ran.any():
                for j in range(k):
                    out[t, j] = np.bincount(u[ran, j], minlength=3)[:3] / ran.sum()
        return out

    def discard_shares(self) -> np.ndarray:
        """``(T,)``: at each checkpoint 1..T, the share of the runs reaching it that were discarded there."""
        d = np.asarray(self.checkpoint)
        v = np.asarray(self.verdict)
        out = np.zeros(self.n_phases)
        for t in range(1, self.n_phases + 1):
            at = d == t
            out[t - 1] = float(np.mean(v[at] == DISCARD)) if at.any() else 0.0
        return out

    def idea_shares(self) -> np.ndarray:
        """``(m,)``: the share of runs started with each idea."""
        d = np.asarray(self.checkpoint)
        ideas = np.asarray(self.idea)[d == 0]
        return np.bincount(ideas, minlength=self.n_ideas)[: self.n_ideas] / max(len(ideas), 1)


def frames_of(observation_space: spaces.Space, single: spaces.Box) -> int | None:
    """How many observations of ``single`` (one program's) a model's ``observation_space`` holds side by side:
    1 for the observation itself, n for SB3's ``VecFrameStack`` of n of them (rl-baselines3-zoo's ``frame_stack``:
    the last n observations, oldest first, those before the episode's first one zeros); None if it holds neither."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1 or single.shape[0] == 0:
        return None
    n, rest = divmod(observation_space.shape[0], single.shape[0])
    if rest or n < 1 or observation_space.dtype != single.dtype:
        return None
    same = np.array_equal(observation_space.low, np.repeat(single.low, n)) and np.array_equal(
        observation_space.high, np.repeat(single.high, n))  # VecFrameStack's bounds (np.repeat)
    return n if same else None


class ModelAgent:
    """A trained model's deterministic policy as an agent of a batch: ``agent(obs) -> (N, 2 + k)`` actions.

    It passes each program's action mask to MaskablePPO, and keeps RecurrentPPO's LSTM state
    with the episode start of each program (a program at its first decision point: a run's
    start with the whole budget left). A model trained on stacked frames (``frame_stack``, whose
    observation space holds n observations) is given them as it was in training: SB3's own
    ``StackedObservations`` (what ``VecFrameStack`` keeps), restarted at each program's episode start.
    """

    def __init__(self, model, algo: str, env: ProxyAlignmentVectorEnv):
        self.model, self.algo, self.env = model, algo, env
        self.state = None
        # the space the model was saved with: the model space, MultiDiscrete(model_nvec) (large scenarios, and
        # every model saved before the flat one) or the env's own (trained on the bare env, as rl-baselines3-zoo trains)
        self.space = model.action_space
        single = env.single_observation_space
        n = frames_of(model.observation_space, single)
        if n is None:
            raise ProxyGymError(f"the model observes {model.observation_space}, which is not one or more of {single}")
        self.frames = None
        if n > 1:
            from stable_baselines3.common.vec_env.stacked_observations import StackedObservations

            self.frames = StackedObservations(env.num_envs, n, single)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        kwargs = {}
        actions = self.env.programs.actions
        starts = self.env.layout.episode_start(obs) if self.algo == "recurrent_ppo" or self.frames is not None else None
        if self.algo == "maskable_ppo":
            kwargs["action_masks"] = actions.model_masks(self.env.action_masks(), self.space)
        if self.algo == "recurrent_ppo":
            kwargs.update(state=self.state, episode_start=starts)
        seen = obs if self.frames is None else self._stack(obs, starts)
        action, self.state = self.model.predict(seen, deterministic=True, **kwargs)
        return actions.from_model(action, self.space)

    def _stack(self, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        # a program at its episode's start (every program at the first call) has its frames cleared, as VecFrameStack
        # clears an env's when it is done; the terminal observation given is only there because SB3 warns without
        # one (it stacks it for an info that is not used here)
        infos = [{"terminal_observation": obs[i]} if start else {} for i, start in enumerate(starts.tolist())]
        stacked, _ = self.frames.update(obs, starts, infos)
        return stacked


def play_model(model, algo: str, scenario: Scenario, observation: str, episodes: int, seed: int = 0) -> Rollouts:
    """Play a trained model's deterministic policy for ``episodes`` episodes, all at once.

    The episodes are those of one :class:`~proxygym.envs.vector.ProxyAlignmentVectorEnv` of
    ``episodes`` programs reset with ``seed``, played by :func:`proxygym.agents.regimen.play_batch`
    (each program's first episode counted, so the sample is unbiased, long episodes included)
    with one batched ``model.predict`` per step (:class:`ModelAgent`). Episode ``i`` of the
    result is program ``i``'s.
    """
    env = ProxyAlignmentVectorEnv(episodes, scenario=scenario, observation=observation)
    out = Rollouts(env.n_phases, env.n_proxies, env.n_ideas, scenario=env.scenario)
    counted = _FirstEpisodeSteps(env)
    total, last = play_batch(counted, ModelAgent(model, algo, env), seed=seed, record=out.record_batch)
    out.lengths.extend(counted.steps.tolist())
    deployed = last["deployed"].astype(bool)
    out.returns.extend(total.tolist())
    out.deployed.extend(deployed.tolist())
    out.aligned.extend((deployed & last["aligned"].astype(bool)).tolist())
    out.abstained.extend(last["abstained"].astype(bool).tolist())
    out.runs.extend(last["runs_used"].astype(int).tolist())
    return out


class _FirstEpisodeSteps(gym.vector.VectorWrapper):
    """Counts the steps of each program's first episode (the episodes :func:`play_batch` counts) in ``steps``."""

    def reset(self, **kwargs):
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self._ended = np.zeros(self.num_envs, dtype=bool)
        return self.env.reset(**kwargs)

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.steps[~self._ended] += 1
        self._ended |= terminated | truncated
        return obs, reward, terminated, truncated, info
