"""What a trained agent does on a scenario, in numbers, a table, a picture and TensorBoard.

A :class:`PolicySummary` is computed from a model played deterministically in the single
env (:func:`proxygym.agents.training.play_model`): its outcomes (return with a 95% interval,
P(deploy aligned), P(deploy misaligned), P(abstain), runs used), its policy (the usage of
each proxy in each phase, the share of runs discarded at each checkpoint, the ideas it
starts runs with) and the reference it is judged against: the best of the named strategies
of :mod:`proxygym.agents.strategies` on the same scenario (and, once the exact solver fills it in,
the optimal return).

The same summary is written three ways: :func:`format_text` (Markdown, what
``proxygym inspect`` prints and TensorBoard's TEXT tab shows), :func:`heatmap` (an RGB
image) and :func:`write_summary` (TensorBoard scalars, image and text).
:class:`AlignmentEvalCallback` writes it during training; :func:`inspect_model` for a saved
model.

TensorBoard tags (one name per concept, as in ``docs/model.md``)::

    alignment/mean_return, alignment/p_deploy_aligned, alignment/p_deploy_misaligned,
    alignment/p_abstain, alignment/mean_runs, alignment/best_strategy_return,
    alignment/optimal_return, alignment/optimality_gap        (the last two when known)
    policy/<phase>/<proxy>/{train,reserve,anti}                usage shares
    policy/discard/<phase>                                     discarded at the checkpoint after the phase
    policy/idea/<idea>                                         share of runs started with the idea
    policy/heatmap                                             image
    summary                                                    Markdown text (format_text)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from proxygym.agents.training import ALGOS, algo_class, make_env, play_model
from proxygym.envs.actions import CONTINUE
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import OBSERVATION_MODES
from proxygym.envs.regimen import ANTI, RESERVE, TRAIN, USAGE_LETTERS, USAGE_NAMES
from proxygym.envs.scenario import Scenario, load_scenario

Z95 = 1.959963984540054
#: The best-strategy reference: every strategy, this many episodes, this seed (the README's benchmark).
BEST_EPISODES = 2000
BEST_SEED = 0
#: Keys of the SB3 logger's other outputs that must not receive text, images or per-cell shares.
_NOT_CONSOLE = ("stdout", "log")
_TENSORBOARD_ONLY = ("stdout", "log", "json", "csv")


@dataclass
class PolicySummary:
    """A played policy on one scenario: outcomes, policy, and the references it is judged against.

    ``usage_shares[t, j]`` is (reserve, train, anti) for proxy ``j`` in phase ``t``, as shares of
    the runs that ran phase ``t`` (``phase_runs[t]`` of them; all zeros when none did).
    ``discard_shares[t]`` is the share of the runs reaching checkpoint ``t + 1`` (the one after
    phase ``t``) that were discarded there; ``idea_shares[i]`` the share of runs started with idea ``i``.
    """

    scenario: str
    title: str
    claim: str
    algo: str
    observation: str
    episodes: int
    seed: int
    mean_return: float
    ci95: float  # half-width of the 95% interval of mean_return
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    mean_runs: float
    phases: list[str]
    proxies: list[str]
    ideas: list[str]
    usage_shares: np.ndarray  # (T, k, 3)
    phase_runs: np.ndarray  # (T,)
    discard_shares: np.ndarray  # (T,)
    idea_shares: np.ndarray  # (m,)
    best_strategy: str
    best_strategy_return: float
    best_strategy_ci95: float
    optimal_return: float | None = None  # from the exact solver, when it has run

    @property
    def optimality_gap(self) -> float | None:
        """``optimal_return - mean_return`` (0 for an optimal policy), or None when the optimum is unknown."""
        return None if self.optimal_return is None else self.optimal_return - self.mean_return

    def to_dict(self) -> dict:
        """The fields as JSON-ready values (arrays as nested lists, non-finite numbers as None)."""

        def clean(v):
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, list):
                return [clean(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        out = {k: clean(v) for k, v in asdict(self).items()}
        out["optimality_gap"] = self.optimality_gap
        return out


# -- the reference: the best named strategy -----------------------------------------------
_HEURISTICS_CACHE: dict[str, list] = {}


def heuristic_results(scenario: Scenario) -> list:
    """Every heuristic strategy of :data:`proxygym.agents.strategies.STRATEGIES` benchmarked on ``scenario``
    (:data:`BEST_EPISODES` episodes, seed :data:`BEST_SEED`, the numbers of the README's table),
    once per process: the scenario does not change during training, so neither do these. The
    optimum is not among them: it has its own reference line (alignment/optimal_return)."""
    from proxygym.agents.bench import run_pair
    from proxygym.agents.strategies import STRATEGIES

    key = scenario.model_dump_json()  # by content: two files may share a name
    if key not in _HEURISTICS_CACHE:
        _HEURISTICS_CACHE[key] = [
            run_pair(scenario, name, BEST_EPISODES, BEST_SEED) for name in STRATEGIES if name != "optimal"
        ]
    return _HEURISTICS_CACHE[key]


def best_strategy(scenario: Scenario) -> tuple[str, float, float]:
    """(name, mean return, 95% half-width) of the heuristic strategy with the highest mean return on ``scenario``."""
    best = max(heuristic_results(scenario), key=lambda r: r.mean_return)
    return best.strategy, best.mean_return, best.ci95


# -- the summary ------------------------------------------------------------------------------
def summarize(
    model,
    algo: str,
    scenario: "str | Path | Scenario",
    observation: str = "belief",
    episodes: int = 200,
    seed: int = 0,
    optimal_return: float | None = None,
) -> PolicySummary:
    """Play ``model``'s deterministic policy for ``episodes`` episodes (seeds ``seed..seed+episodes-1``) and summarize it."""
    if episodes < 2:
        raise ProxyGymError(f"episodes must be at least 2 (for an interval), got {episodes}")
    scenario = load_scenario(scenario)
    roll = play_model(model, algo, scenario, observation, episodes, seed=seed)
    returns = np.asarray(roll.returns, dtype=np.float64)
    deployed = np.asarray(roll.deployed, dtype=bool)
    aligned = np.asarray(roll.aligned, dtype=bool)
    d = np.asarray(roll.checkpoint)
    v = np.asarray(roll.verdict)
    n_phases = len(scenario.phases)
    # at decision point t (0 = a run's start), continue runs phase t + 1
    phase_runs = np.array([np.sum((d == t) & (v == CONTINUE)) for t in range(n_phases)], dtype=np.int64)
    name, best_return, best_ci = best_strategy(scenario)
    return PolicySummary(
        scenario=scenario.name,
        title=scenario.title,
        claim=" ".join(scenario.claim.split()),
        algo=algo,
        observation=observation,
        episodes=episodes,
        seed=seed,
        mean_return=float(returns.mean()),
        ci95=float(Z95 * returns.std(ddof=1) / math.sqrt(episodes)),
        p_deploy_aligned=float(np.mean(deployed & aligned)),
        p_deploy_misaligned=float(np.mean(deployed & ~aligned)),
        p_abstain=float(np.mean(roll.abstained)),
        mean_runs=float(np.mean(roll.runs)),
        phases=[p.name for p in scenario.phases],
        proxies=scenario.proxy_names,
        ideas=scenario.idea_names,
        usage_shares=roll.usage_shares(),
        phase_runs=phase_runs,
        discard_shares=roll.discard_shares(),
        idea_shares=roll.idea_shares(),
        best_strategy=name,
        best_strategy_return=float(best_return),
        best_strategy_ci95=float(best_ci),
        optimal_return=None if optimal_return is None else float(optimal_return),
    )


def _percent(x: float) -> str:
    return "<1%" if 0 < x < 0.005 else f"{100 * x:.0f}%"


def usage_cell(shares: np.ndarray) -> str:
    """``"T 80% / R 20%"``: the usages a cell's runs got, most frequent first (zero shares left out)."""
    order = sorted((u for u in (TRAIN, RESERVE, ANTI) if shares[u] > 0), key=lambda u: -shares[u])
    return " / ".join(f"{USAGE_LETTERS[u]} {_percent(shares[u])}" for u in order) or "-"


def format_text(summary: PolicySummary) -> str:
    """A short Markdown report: the claim, the outcomes, the reference, and the policy as a table."""
    s = summary
    lines = [
        f"## {s.scenario}: {s.title}",
        "",
        f"> {s.claim}",
        "",
        f"**{s.algo}** ({s.observation} observation), deterministic policy, {s.episodes} episodes (seeds {s.seed}..{s.seed + s.episodes - 1})",
        "",
        "| outcome | value |",
        "|---|---|",
        f"| mean return (95% interval) | {s.mean_return:.4f} ± {s.ci95:.4f} |",
        f"| P(deploy aligned) | {s.p_deploy_aligned:.3f} |",
        f"| P(deploy misaligned) | {s.p_deploy_misaligned:.3f} |",
        f"| P(abstain) | {s.p_abstain:.3f} |",
        f"| mean runs used | {s.mean_runs:.2f} |",
        f"| best strategy: {s.best_strategy} | {s.best_strategy_return:.4f} ± {s.best_strategy_ci95:.4f}"
        f" ({BEST_EPISODES} episodes) |",
    ]
    if s.optimal_return is not None:
        lines.append(f"| optimal return (exact) | {s.optimal_return:.4f} (gap {s.optimality_gap:.4f}) |")
    lines += [
        "",
        "Policy: the usage of each proxy in each phase (T train, R reserve, A anti), as shares of the"
        " runs that ran the phase; and the share of the runs reaching the checkpoint after the phase"
        " that were discarded there.",
        "",
        "| phase | runs | " + " | ".join(s.proxies) + " | discarded |",
        "|---|---:|" + "---|" * len(s.proxies) + "---:|",
    ]
    for t, phase in enumerate(s.phases):
        if s.phase_runs[t] == 0:
            cells = ["not run"] * len(s.proxies) + ["-"]
        else:
            cells = [usage_cell(s.usage_shares[t, j]) for j in range(len(s.proxies))]
            cells.append(_percent(s.discard_shares[t]))
        lines.append(f"| {phase} | {int(s.phase_runs[t])} | " + " | ".join(cells) + " |")
    ideas = ", ".join(f"{name} {_percent(share)}" for name, share in zip(s.ideas, s.idea_shares) if share > 0)
    lines += ["", f"Ideas (share of runs started with each): {ideas or '-'}", ""]
    return "\n".join(lines)


#: Colours of the usages in the heatmap; a cell is their mix weighted by the usage shares,
#: so a 50/50 train/anti cell (purple) does not look like a reserved one (grey).
USAGE_COLOURS = np.array(
    [
        [0.86, 0.86, 0.86],  # reserve: grey, the proxy is kept as a test
        [0.19, 0.45, 0.80],  # train: blue
        [0.84, 0.27, 0.22],  # anti: red
    ]
)


def heatmap(summary: PolicySummary, scenario: "Scenario | None" = None) -> np.ndarray:
    """An RGB ``uint8`` image ``(H, W, 3)``: phases x proxies coloured by usage, and the discard rate per checkpoint.

    ``scenario`` (optional) adds each phase's plasticity to its label.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    s = summary
    T, k = len(s.phases), len(s.proxies)
    fig = Figure(figsize=(max(5.0, 2.2 + 1.55 * k + 0.9), 1.9 + 0.62 * T), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[k, 0.6])
    ax = fig.add_subplot(grid[0])
    ax_d = fig.add_subplot(grid[1], sharey=ax)

    ran = s.phase_runs > 0
    rgb = np.einsum("tju,uc->tjc", s.usage_shares, USAGE_COLOURS)
    rgb[~ran] = 1.0
    ax.imshow(rgb, aspect="auto", vmin=0, vmax=1)
    for t in range(T):
        for j in range(k):
            if not ran[t]:
                ax.text(j, t, "not run", ha="center", va="center", fontsize=8, color="0.45")
                continue
            dark = rgb[t, j] @ np.array([0.299, 0.587, 0.114]) < 0.55  # perceived brightness
            text = usage_cell(s.usage_shares[t, j]).replace(" / ", "\n")
            ax.text(j, t, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(s.proxies, rotation=20 if k > 2 else 0, ha="right" if k > 2 else "center", fontsize=8)
    ax.set_yticks(range(T))
    if scenario is not None:
        ylabels = [f"{p.name}\n(plasticity {p.plasticity:g})" for p in scenario.phases]
    else:
        ylabels = list(s.phases)
    ax.set_yticklabels(ylabels, fontsize=8)
    ax.set_xlabel("proxy", fontsize=9)
    ax.set_ylabel("phase", fontsize=9)
    ax.set_title("usage (share of the runs that ran the phase)" if k > 1 else "usage", fontsize=9)

    discard = np.where(ran, s.discard_shares, np.nan)[:, None]
    ax_d.imshow(np.ma.masked_invalid(discard), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    for t in range(T):
        label = _percent(s.discard_shares[t]) if ran[t] else "-"
        ax_d.text(0, t, label, ha="center", va="center", fontsize=8, color="white" if ran[t] and s.discard_shares[t] > 0.6 else "black")
    ax_d.set_xticks([0])
    ax_d.set_xticklabels(["at the checkpoint\nafter the phase"], fontsize=8)
    ax_d.tick_params(axis="y", left=False, labelleft=False)
    ax_d.set_title("discarded", fontsize=9)

    fig.suptitle(
        f"{s.scenario}: {s.algo} policy, return {s.mean_return:.3f} ± {s.ci95:.3f}\n"
        f"best strategy {s.best_strategy} {s.best_strategy_return:.3f}",
        fontsize=10,
    )
    handles = [Patch(color=USAGE_COLOURS[u], label=f"{USAGE_LETTERS[u]} {USAGE_NAMES[u]}") for u in (TRAIN, RESERVE, ANTI)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# -- TensorBoard ----------------------------------------------------------------------------------
def summary_scalars(summary: PolicySummary) -> dict[str, float]:
    """Every scalar tag of :func:`write_summary` and its value."""
    s = summary
    out = {
        "alignment/mean_return": s.mean_return,
        "alignment/p_deploy_aligned": s.p_deploy_aligned,
        "alignment/p_deploy_misaligned": s.p_deploy_misaligned,
        "alignment/p_abstain": s.p_abstain,
        "alignment/mean_runs": s.mean_runs,
        "alignment/best_strategy_return": s.best_strategy_return,
    }
    if s.optimal_return is not None:
        out["alignment/optimal_return"] = s.optimal_return
        out["alignment/optimality_gap"] = s.optimality_gap
    for t, phase in enumerate(s.phases):
        for j, proxy in enumerate(s.proxies):
            for u, usage in enumerate(USAGE_NAMES):
                out[f"policy/{phase}/{proxy}/{usage}"] = float(s.usage_shares[t, j, u])
    for t, phase in enumerate(s.phases):
        out[f"policy/discard/{phase}"] = float(s.discard_shares[t])
    for i, idea in enumerate(s.ideas):
        out[f"policy/idea/{idea}"] = float(s.idea_shares[i])
    return {k: float(v) for k, v in out.items()}


def write_summary(target, summary: PolicySummary, scenario: "Scenario | None", step: int) -> None:
    """Write the summary's scalars, heatmap (``policy/heatmap``) and text (``summary``) at ``step``.

    ``target`` is one of:

    - an SB3 logger (``model.logger`` or ``self.logger`` in a callback): the values are
      recorded and dumped at ``step``, as SB3's ``EvalCallback`` does. The console shows the
      ``alignment/*`` scalars only; image and text go to TensorBoard only.
    - a ``torch.utils.tensorboard.SummaryWriter``: written and flushed, left open.
    - a directory (str or path): a writer is opened there, written and closed.
    """
    from stable_baselines3.common.logger import Image, Logger
    from torch.utils.tensorboard import SummaryWriter

    scalars = summary_scalars(summary)
    image = heatmap(summary, scenario)
    text = format_text(summary)
    if isinstance(target, Logger):
        for tag, value in scalars.items():
            target.record(tag, value, exclude=None if tag.startswith("alignment/") else _NOT_CONSOLE)
        target.record("policy/heatmap", Image(image, "HWC"), exclude=_TENSORBOARD_ONLY)
        target.record("summary", text, exclude=_TENSORBOARD_ONLY)  # SB3 writes a str with add_text
        target.dump(step)
        return
    if isinstance(target, (str, os.PathLike)):
        writer = SummaryWriter(log_dir=str(target))
        try:
            write_summary(writer, summary, scenario, step)
        finally:
            writer.close()
        return
    if not isinstance(target, SummaryWriter):
        raise TypeError(f"write_summary writes to an SB3 Logger, a SummaryWriter or a directory, got {type(target).__name__}")
    for tag, value in scalars.items():
        target.add_scalar(tag, value, step)
    target.add_image("policy/heatmap", image, step, dataformats="HWC")
    target.add_text("summary", text, step)
    target.flush()


# -- during training -------------------------------------------------------------------------------
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


def _hparam_value(v):
    """A value TensorBoard's HPARAMS tab accepts (bool, number or string)."""
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return str(v)


class AlignmentEvalCallback(BaseCallback):
    """Every ``eval_freq`` environment steps, play the model and write its :class:`PolicySummary` to TensorBoard.

    ``eval_freq`` counts environment steps over all the training envs (SB3's ``EvalCallback``
    counts calls, i.e. steps per env; here the division by ``n_envs`` is done for you). Every
    evaluation plays the same ``eval_episodes`` seeds (``seed..``), so two evaluations differ
    only by the policy. The model with the best mean return so far is saved to
    ``best_model_path`` (if given), atomically. At the end of training, after a last evaluation
    if the final model has not been evaluated, the hyperparameters go to the HPARAMS tab with the
    final ``alignment/mean_return`` and ``alignment/p_deploy_aligned``.

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
        self.best_mean_return = -math.inf
        self.last_summary: PolicySummary | None = None
        self.best_summary: PolicySummary | None = None
        self.evaluations: list[tuple[int, PolicySummary]] = []
        self._calls_per_eval = 1

    def _init_callback(self) -> None:
        mode = fitting_observation(self.model.observation_space, self.model.action_space, self.scenario, self.algo)
        if mode != self.observation:
            found = "no observation mode" if mode is None else f"observation={mode!r}"
            raise ProxyGymError(
                f"the model's spaces fit {found} of scenario {self.scenario.name!r}, not observation={self.observation!r}"
            )
        self._calls_per_eval = max(self.eval_freq // self.model.n_envs, 1)

    def _on_step(self) -> bool:
        if self.n_calls % self._calls_per_eval == 0:
            self._evaluate()
        return True

    def _evaluate(self) -> PolicySummary:
        summary = summarize(
            self.model, self.algo, self.scenario, self.observation, self.eval_episodes, self.seed, self.optimal_return
        )
        if self.verbose >= 1:
            print(
                f"eval num_timesteps={self.num_timesteps}: return {summary.mean_return:.4f} ± {summary.ci95:.4f},"
                f" P(deploy aligned) {summary.p_deploy_aligned:.3f}"
                f" (best strategy {summary.best_strategy}: {summary.best_strategy_return:.4f})"
            )
        write_summary(self.logger, summary, self.scenario, self.num_timesteps)
        self.last_summary = summary
        self.evaluations.append((self.num_timesteps, summary))
        if summary.mean_return > self.best_mean_return:
            self.best_mean_return = summary.mean_return
            self.best_summary = summary
            if self.best_model_path is not None:
                path = save_model_atomic(self.model, self.best_model_path)
                if self.verbose >= 1:
                    print(f"new best mean return; saved {path}")
        return summary

    def _on_training_end(self) -> None:
        from stable_baselines3.common.logger import HParam

        if not self.evaluations or self.evaluations[-1][0] != self.num_timesteps:
            self._evaluate()
        final = self.last_summary
        hparams = {"algo": self.algo, "scenario": self.scenario.name, "observation": self.observation}
        hparams.update(self.hparams)
        metrics = {"alignment/mean_return": final.mean_return, "alignment/p_deploy_aligned": final.p_deploy_aligned}
        self.logger.record(
            "hparams",
            HParam({k: _hparam_value(v) for k, v in hparams.items()}, metrics),
            exclude=_TENSORBOARD_ONLY,
        )
        self.logger.dump(self.num_timesteps)


# -- a saved model ------------------------------------------------------------------------------------
def fitting_observation(observation_space, action_space, scenario: Scenario, algo: str) -> str | None:
    """The observation mode (``"history"`` or ``"belief"``) whose env has these spaces for ``algo``, or None."""
    for mode in OBSERVATION_MODES:
        env = make_env(scenario, algo, mode)
        if observation_space == env.observation_space and action_space == env.action_space:
            return mode
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


def load_for_scenario(model_path: "str | Path", scenario: Scenario, algo: str | None = None):
    """``(model, algo, observation)``: a saved model, loaded with its class, whose spaces fit ``scenario``."""
    from stable_baselines3.common.save_util import load_from_zip_file

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
    observation = fitting_observation(obs_space, act_space, scenario, algo)
    if observation is None:
        sizes = " or ".join(f"{_describe(make_env(scenario, algo, m).observation_space)} ({m})" for m in OBSERVATION_MODES)
        raise ProxyGymError(
            f"{path} does not fit scenario {scenario.name!r}: the model observes {_describe(obs_space)} and acts in"
            f" {act_space}; {scenario.name} gives {sizes} and acts in {make_env(scenario, algo).action_space}"
            f" (was it trained on another scenario?)"
        )
    model = algo_class(algo).load(path, device="cpu")
    return model, algo, observation


def inspect_model(
    model_path: "str | Path",
    scenario: "str | Path | Scenario",
    algo: str | None = None,
    episodes: int = 200,
    tensorboard_log: "str | Path | None" = None,
    seed: int = 0,
    optimal_return: float | None = None,
) -> PolicySummary:
    """Load a saved model, check it fits ``scenario``, play it and summarize it, with its gap to
    the optimum (``optimal_return``, by default the exact solver's value when the scenario can be solved).

    ``algo`` is detected from the file when not given; the observation mode (history or
    belief) from the model's observation space. With ``tensorboard_log``, the summary is
    written at step 0 (the tags of :func:`write_summary`) to a new run folder in it,
    ``inspect_<model file stem>_<n>`` (numbered as SB3 numbers training runs), so that
    inspections do not pile up in one run and sit beside the training runs. Every problem is a
    :class:`~proxygym.envs.scenario.ProxyGymError` with a one-line message.
    """
    scenario = load_scenario(scenario)
    if episodes < 2:
        raise ProxyGymError(f"--episodes must be at least 2 (for an interval), got {episodes}")
    model, algo, observation = load_for_scenario(model_path, scenario, algo)
    if optimal_return is None:
        from proxygym.agents.bench import optimal_value

        optimal_return = optimal_value(scenario)
    summary = summarize(model, algo, scenario, observation, episodes, seed, optimal_return)
    if tensorboard_log:
        from stable_baselines3.common.utils import get_latest_run_id

        name = f"inspect_{Path(model_path).stem}"
        run = Path(tensorboard_log) / f"{name}_{get_latest_run_id(str(tensorboard_log), name) + 1}"
        write_summary(run, summary, scenario, step=0)
    return summary


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``proxygym inspect``: print the Markdown summary (or JSON). A ProxyGymError propagates to the CLI."""
    summary = inspect_model(
        args.model, args.scenario, algo=args.algo, episodes=args.episodes, tensorboard_log=args.tensorboard_log, seed=args.seed
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    sys.stdout.write(format_text(summary))
    if args.tensorboard_log:
        print(f"\ntensorboard: tensorboard --logdir {args.tensorboard_log}")
    return 0


__all__ = [
    "AlignmentEvalCallback",
    "PolicySummary",
    "best_strategy",
    "fitting_observation",
    "format_text",
    "heatmap",
    "inspect_model",
    "load_for_scenario",
    "run_inspect",
    "save_model_atomic",
    "summarize",
    "summary_scalars",
    "write_summary",
]
