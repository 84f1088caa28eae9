"""Experiments: every (scenario, algorithm, seed) trained, evaluated, scored, and aggregated with rliable.

``proxygym experiment`` plans one run per combination (:func:`plan_runs`); each run is
``train.py`` itself (:func:`train_run` calls :func:`proxygym.train.main` in a temporary folder:
the hyperparameter file's settings, ``-n``, the seed, no intermediate evaluations, then the
final evaluation of the deterministic policy over ``eval_episodes`` episodes). Runs go through
:mod:`proxygym.agents.parallel` (every local core by default, or Ray). Each finished run is
recorded in ``OUT/runs/<scenario>-<algo>-<observation>-seed<N>/``: its model, its evaluation and
its config, then ``record.json``, written last and atomically; a run whose record is there is
not trained again, so a stopped experiment resumes where it stopped.

A run's score is the normalized score of the trained-agent table in benchmarks/README.md
(:func:`proxygym.agents.report.normalized_score`: 0 is first_model's exact return, 1 the exact
optimum, :func:`proxygym.agents.summary.score_references`). :func:`aggregate` gives, per
(algorithm, observation), the interquartile mean of the scores over every scenario and seed, and
per scenario over its seeds, each with a stratified-bootstrap 95% interval (rliable);
:func:`profile_plot` draws rliable's performance profiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from proxygym.agents.files import write_bytes_atomic, write_text_atomic
from proxygym.agents.parallel import run_jobs
from proxygym.agents.report import normalized_score
from proxygym.agents.summary import score_references
from proxygym.agents.training import ALGOS
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import OBSERVATION_MODES
from proxygym.envs.scenario import Scenario, load_scenario, shipped_scenarios

#: What to install for the aggregation.
RLIABLE_EXTRA = "pip install 'proxygym[experiment]'"
#: The file that marks a finished run.
RECORD = "record.json"
#: The keys of a run in the JSON output.
RUN_KEYS = ("scenario", "algo", "seed", "observation", "frame_stack", "mean_return", "normalized_score")


@dataclass(frozen=True)
class RunSpec:
    """One run: what train.py is given, and the scenario's YAML (so a worker on another machine needs no file)."""

    scenario: str
    algo: str
    observation: str
    seed: int
    n_timesteps: int
    eval_episodes: int
    scenario_text: str
    hyperparams_text: str = ""  # the algorithm's hyperparameter entry for the scenario, as resolved (sorted YAML)
    frame_stack: int = 1  # the observations the agent sees side by side (rl-baselines3-zoo's frame_stack)

    @property
    def key(self) -> str:
        frames = f"-stack{self.frame_stack}" if self.frame_stack > 1 else ""
        return f"{self.scenario}-{self.algo}-{self.observation}{frames}-seed{self.seed}"

    def settings(self) -> dict:
        """What must match for a recorded run to stand for this one: the budgets, and digests of the scenario
        file and of the hyperparameters (an edited file, or another file of the same name, is another run)."""
        return {"n_timesteps": self.n_timesteps, "eval_episodes": self.eval_episodes,
                "scenario_sha256": hashlib.sha256(self.scenario_text.encode()).hexdigest(),
                "hyperparams_sha256": hashlib.sha256(self.hyperparams_text.encode()).hexdigest()}


def parse_seeds(items: list[str]) -> list[int]:
    """``["0-4"]`` -> ``[0, 1, 2, 3, 4]``; ``["3", "7"]`` -> ``[3, 7]``: whole numbers and inclusive ranges A-B."""
    seeds: list[int] = []
    for item in items:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ProxyGymError(f"--seeds {item!r}: give whole numbers of at least 0 or ranges A-B with A <= B,"
                                " e.g. --seeds 0-4 or --seeds 0 1 7")
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else int(m.group(2))
        if hi - lo >= 10_000:
            raise ProxyGymError(f"--seeds {item!r}: at most 10,000 seeds")
        seeds += range(lo, hi + 1)
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ProxyGymError(f"--seeds: seed {twice[0]} is given twice")
    return seeds


def check_rliable() -> None:
    """Fail in one line, before any work, if rliable (the aggregation) is not installed."""
    try:
        import rliable.library  # noqa: F401
    except ImportError:
        raise ProxyGymError(f"proxygym experiment aggregates with rliable, which is not installed: {RLIABLE_EXTRA}") from None


def plan_runs(scenarios: list[str], algos: list[str], seeds: list[int], n_timesteps: int | None = None,
              observation: str | None = None, eval_episodes: int = 2000,
              frame_stack: int | None = None) -> tuple[list[RunSpec], dict[str, Scenario]]:
    """Every combination as a :class:`RunSpec` (scenario, then algorithm, then seed), and the scenarios by name.

    ``n_timesteps``, ``observation`` and ``frame_stack`` default to each algorithm's hyperparameter file (its
    scenario's entry; no ``frame_stack`` there is 1); ``scenarios`` may say ``all`` (every shipped scenario). Bad
    names and values are one-line errors."""
    from proxygym.train import _whole, load_hyperparams  # (imported when used: train.py imports SB3 and torch)

    names = list(dict.fromkeys(shipped_scenarios() if scenarios == ["all"] else scenarios))
    algos = list(dict.fromkeys(algos))
    for algo in algos:
        if algo not in ALGOS:
            raise ProxyGymError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    if n_timesteps is not None and n_timesteps < 1:
        raise ProxyGymError(f"-n must be at least 1, got {n_timesteps}")
    if eval_episodes < 2:
        raise ProxyGymError(f"--eval-episodes must be at least 2 (for an interval), got {eval_episodes}")
    if frame_stack is not None and frame_stack < 1:
        raise ProxyGymError(f"--frame-stack must be at least 1, got {frame_stack}")
    loaded: dict[str, Scenario] = {}
    for ref in names:
        sc = load_scenario(ref)
        if sc.name in loaded:
            raise ProxyGymError(f"--scenarios: two scenarios are named {sc.name!r}")
        loaded[sc.name] = sc
    specs = []
    for sc in loaded.values():
        text = Path(sc.source).read_text(encoding="utf-8")
        for algo in algos:
            params = load_hyperparams(algo, sc.name, {} if frame_stack is None else {"frame_stack": frame_stack})
            obs = observation or (params.get("env_kwargs") or {}).get("observation", "belief")
            if obs not in OBSERVATION_MODES:
                raise ProxyGymError(f"observation must be one of {', '.join(OBSERVATION_MODES)}, got {obs!r}")
            steps = n_timesteps or params["n_timesteps"]
            frames = _whole(params.get("frame_stack", 1), "frame_stack")  # (as train.py reads it)
            if frames == 1:
                params.pop("frame_stack", None)  # the same run as one whose file says nothing of it
            entry = yaml.safe_dump(params, sort_keys=True)
            specs += [RunSpec(sc.name, algo, obs, seed, int(steps), eval_episodes, text, entry, frames) for seed in seeds]
    return specs, loaded


def references(scenarios: dict[str, Scenario]) -> dict[str, tuple[float, float]]:
    """``{name: (first_model's return, optimum)}``; a scenario without a normalized score is a one-line error."""
    out = {}
    for name, sc in scenarios.items():
        first, optimum = score_references(sc)
        if normalized_score(0.0, first, optimum) is None:
            why = "it is too large to solve exactly" if optimum is None else "its optimum is first_model's return"
            raise ProxyGymError(f"scenario {name!r} has no normalized score: {why}")
        out[name] = (first, optimum)
    return out


# -- the runs ---------------------------------------------------------------------------------------
def run_folder(out: Path, spec: RunSpec) -> Path:
    return Path(out) / "runs" / spec.key


def recorded(out: Path, spec: RunSpec) -> dict | None:
    """The record of a finished run of ``spec`` in ``out``, or None; a record trained with other settings is an error."""
    path = run_folder(out, spec) / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ProxyGymError(f"{path}: cannot be read ({err}); delete it to train this run again") from None
    mine = spec.settings()
    theirs = {k: record.get(k) for k in mine}
    if theirs != mine:
        if (theirs["n_timesteps"], theirs["eval_episodes"]) != (spec.n_timesteps, spec.eval_episodes):
            raise ProxyGymError(
                f"{path.parent} was trained with -n {theirs['n_timesteps']} and --eval-episodes {theirs['eval_episodes']},"
                f" not -n {spec.n_timesteps} and --eval-episodes {spec.eval_episodes}: give those or another --out"
            )
        what = "the scenario file" if theirs["scenario_sha256"] != mine["scenario_sha256"] else "the hyperparameters"
        raise ProxyGymError(f"{path.parent} was trained with another version of {what}: delete it or give another --out")
    return record


def train_run(spec: RunSpec) -> dict:
    """Train and evaluate one run with train.py in a temporary folder (in a worker process or a Ray task):
    its evaluation, config and model, for the caller to record."""
    from proxygym import train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="proxygym-run-") as tmp:
        scenario_file = Path(tmp) / f"{spec.scenario}.yaml"
        scenario_file.write_text(spec.scenario_text, encoding="utf-8")
        logs = Path(tmp) / "logs"
        argv = ["--algo", spec.algo, "--scenario", str(scenario_file), "--seed", str(spec.seed),
                "--observation", spec.observation, "-n", str(spec.n_timesteps),
                "--final-episodes", str(spec.eval_episodes), "--eval-freq", "0",
                "--log-folder", str(logs), "--tensorboard-log", "", "--no-progress",
                "--hyperparams", f"frame_stack:{spec.frame_stack}"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train.main(argv)
        if code != 0:
            lines = err.getvalue().strip().splitlines() or [f"train.py exited {code}"]
            raise ProxyGymError(f"run {spec.key}: {lines[-1].removeprefix('train.py: error: ')}")
        folder = logs / spec.algo / f"{spec.scenario}_1"
        return {
            "evaluation": (folder / "evaluation.json").read_text(),
            "config": (folder / "config.yml").read_text(),
            "model": (folder / "model.zip").read_bytes(),
            "seconds": time.perf_counter() - start,
        }


def save_run(out: Path, spec: RunSpec, result: dict) -> dict:
    """Write a trained run's files, then its record (last: the record marks the run done)."""
    folder = run_folder(out, spec)
    write_bytes_atomic(folder / "model.zip", result["model"])
    write_text_atomic(folder / "evaluation.json", result["evaluation"])
    write_text_atomic(folder / "config.yml", result["config"])
    evaluation = json.loads(result["evaluation"])
    record = {"scenario": spec.scenario, "algo": spec.algo, "observation": spec.observation,
              "frame_stack": spec.frame_stack, "seed": spec.seed,
              **spec.settings(), "mean_return": evaluation["mean_return"], "ci95": evaluation["ci95"],
              "ci95_low": evaluation.get("ci95_low"), "ci95_high": evaluation.get("ci95_high"), "seconds": round(result["seconds"], 3)}
    write_text_atomic(folder / RECORD, json.dumps(record, indent=1) + "\n")
    return record


def run_all(specs: list[RunSpec], out: Path, workers: int | None = None, ray_address: str | None = None,
            progress: bool | None = None, on_start=None) -> tuple[list[dict], int]:
    """The record of every run (in ``specs``' order), training those not recorded in ``out`` yet; and how many
    were trained. ``on_start(done, todo)`` is called before training (the counts)."""
    records = {s.key: recorded(out, s) for s in specs}
    todo = [s for s in specs if records[s.key] is None]
    if on_start is not None:
        on_start(len(specs) - len(todo), len(todo))
    for i, result in run_jobs(train_run, todo, workers=workers, ray_address=ray_address, progress=progress,
                              desc="runs", unit="run"):
        records[todo[i].key] = save_run(out, todo[i], result)
    return [records[s.key] for s in specs], len(todo)


def scored_runs(records: list[dict], refs: dict[str, tuple[float, float]]) -> list[dict]:
    """The JSON's runs: each record's keys of :data:`RUN_KEYS`, its normalized score added (``frame_stack`` 1 for a
    record written before runs had it)."""
    return [{k: r.get(k, 1) if k == "frame_stack" else r[k] for k in RUN_KEYS[:-1]}
            | {"normalized_score": normalized_score(r["mean_return"], *refs[r["scenario"]])} for r in records]


# -- the aggregate ----------------------------------------------------------------------------------
def agent_of(run: dict) -> tuple[str, str, int]:
    """The agent a run trained: (algorithm, observation, frames stacked)."""
    return run["algo"], run["observation"], run.get("frame_stack", 1)


def score_matrices(runs: list[dict]) -> tuple[dict[tuple[str, str, int], np.ndarray], list[str]]:
    """Per agent (:func:`agent_of`), the normalized scores as rliable reads them: ``(seeds, scenarios)``;
    and the scenarios' order (the columns)."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    out = {}
    for group in dict.fromkeys(agent_of(r) for r in runs):
        mine = [r for r in runs if agent_of(r) == group]
        seeds = sorted({r["seed"] for r in mine})
        m = np.full((len(seeds), len(scenarios)), np.nan)
        for r in mine:
            m[seeds.index(r["seed"]), scenarios.index(r["scenario"])] = r["normalized_score"]
        out[group] = m
    return out, scenarios


def mean_returns(runs: list[dict]) -> dict[tuple[tuple[str, str, int], str], float]:
    """``{(agent, scenario): the mean return over its seeds}`` (:func:`agent_of`)."""
    sums: dict = {}
    for r in runs:
        key = (agent_of(r), r["scenario"])
        total, n = sums.get(key, (0.0, 0))
        sums[key] = (total + r["mean_return"], n + 1)
    return {key: total / n for key, (total, n) in sums.items()}


def agent_label(group: tuple[str, str, int]) -> str:
    """``ppo (belief)``; ``ppo (history, 4 frames)`` for an agent of stacked frames."""
    algo, observation, frames = group
    return f"{algo} ({observation}" + (f", {frames} frames)" if frames > 1 else ")")


def aggregate(runs: list[dict], reps: int = 2000, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Overall and per scenario, per agent (algorithm, observation, frames): the interquartile mean of the normalized scores
    and its stratified-bootstrap 95% interval (rliable, ``reps`` resamples seeded by ``seed``)."""
    from rliable import metrics

    def iqm(scores):
        return np.array([metrics.aggregate_iqm(scores)])

    def estimate(m: np.ndarray) -> dict:
        point, ci = _interval_estimates({"x": m}, iqm, reps, rng)
        return {"iqm": float(point["x"][0]), "ci": [float(ci["x"][0][0]), float(ci["x"][1][0])]}

    matrices, scenarios = score_matrices(runs)
    rng = np.random.RandomState(seed)
    overall, per = [], []
    for (algo, obs, frames), m in matrices.items():
        agent = {"algo": algo, "observation": obs, "frame_stack": frames}
        overall.append({**agent, **estimate(m)})
        per += [{"scenario": name, **agent, **estimate(m[:, [j]])} for j, name in enumerate(scenarios)]
    return overall, per


def _interval_estimates(score_dict: dict, func, reps: int, rng: np.random.RandomState):
    """rliable's ``get_interval_estimates`` (stratified bootstrap, percentile intervals), seeded by ``rng``."""
    from rliable import library as rly

    with warnings.catch_warnings():  # rliable seeds arch's bootstrap the way arch now calls deprecated
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
        return rly.get_interval_estimates(score_dict, func, reps=reps, random_state=rng)


def profile_plot(runs: list[dict], fmt: str = "png", reps: int = 2000, seed: int = 0) -> bytes:
    """rliable's performance profiles (the share of runs scoring above each threshold, with stratified-bootstrap
    95% bands), one line per agent (:func:`agent_label`), as ``fmt`` (png, pdf or svg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from rliable import library as rly
    from rliable import plot_utils

    matrices, scenarios = score_matrices(runs)
    scores = np.concatenate([m.ravel() for m in matrices.values()])
    tau = np.linspace(min(0.0, float(scores.min())), max(1.0, float(scores.max())), 101)
    named = {agent_label(g): m for g, m in matrices.items()}
    # rliable's create_performance_profile, with the bootstrap seeded so the picture is the same every time
    profiles, cis = _interval_estimates(named, lambda s: rly.score_distributions(s, tau), reps, np.random.RandomState(seed))
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    plot_utils.plot_performance_profiles(profiles, tau, performance_profile_cis=cis, ax=ax,
                                         xlabel=r"normalized score $\tau$", ylabel=r"share of runs scoring above $\tau$",
                                         labelsize="medium", ticklabelsize="small", legend=True, legendsize="small")
    ax.axvline(1.0, color="gray", lw=0.8, ls=":")  # the optimum
    seeds = max(len(m) for m in matrices.values())
    ax.set_title(f"performance profiles: {len(scenarios)} scenarios x {seeds} seeds (1 = the exact optimum,"
                 " 0 = first_model)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    return buf.getvalue()


def experiment_json(runs: list[dict], overall: list[dict], per: list[dict]) -> str:
    return json.dumps({"runs": runs, "aggregate": overall, "per_scenario": per}, indent=1) + "\n"
