"""proxygym experiment: real short trainings (2 scenarios x PPO x 2 seeds) on local processes, then resumed, then
one run trained again on a local Ray instance; and sweep --optimal on that Ray instance.

The checks are computed apart from the command: each normalized score from the exact solver's optimum and
first_model's exact return; each mean return by playing the saved model again; the interquartile means by
scipy's trimmed mean; the retrained run against the first training of the same seed.
"""

from __future__ import annotations

import json
import sys

import pytest
from scipy.stats import trim_mean

from proxygym.agents.bench import run_pair
from proxygym.agents.solver import solve
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import ROOT, error_line, hand_scenario, run_cli, run_cli_here

SCENARIOS = ("sticky_values", "budget_of_one")
ARGS = ("experiment", "--scenarios", *SCENARIOS, "--algos", "ppo", "--seeds", "0-1", "-n", "64", "--eval-episodes", "60",
        "--reps", "500", "--no-progress")
RUN_KEYS = {"scenario", "algo", "seed", "observation", "frame_stack", "mean_return", "normalized_score"}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The experiment as a user runs it (a subprocess), on 2 local processes: its folder, output and JSON."""
    d = tmp_path_factory.mktemp("experiment")
    res = run_cli(*ARGS, "--out", str(d / "out"), "--json", str(d / "first.json"), "--plot", str(d / "profile.pdf"),
                  "--workers", "2")
    assert res.returncode == 0, res.stderr
    return d, res.stdout, json.loads((d / "first.json").read_text())


def _records(d):
    """Each run's record file and (inode, mtime): a run trained again is recorded anew by an atomic rename."""
    return {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (d / "out" / "runs").glob("*/record.json")}


def test_runs_scores_and_aggregates(first):
    d, stdout, data = first
    assert "0 recorded already, 4 to train in 2 local processes" in stdout
    assert set(data) == {"runs", "aggregate", "per_scenario"}
    runs = data["runs"]
    assert [(r["scenario"], r["seed"]) for r in runs] == [(s, seed) for s in SCENARIOS for seed in (0, 1)]
    for r in runs:
        assert set(r) == RUN_KEYS and (r["algo"], r["observation"], r["frame_stack"]) == ("ppo", "belief", 1)
        sc = load_scenario(r["scenario"])
        first_model = run_pair(sc, "first_model", 2, 0).exact_return
        assert r["normalized_score"] == pytest.approx((r["mean_return"] - first_model) / (solve(sc).value - first_model))

    # the saved model of one run, played again over the same 60 evaluation episodes (train.py's seed 20000 + seed)
    from proxygym.agents.models import load_for_scenario
    from proxygym.agents.training import play_model

    sc = load_scenario("budget_of_one")
    model, algo, obs = load_for_scenario(d / "out" / "runs" / "budget_of_one-ppo-belief-seed1" / "model.zip", sc)
    played = play_model(model, algo, sc, obs, 60, seed=20_001).returns
    assert sum(played) / 60 == pytest.approx(runs[3]["mean_return"])

    (agg,) = data["aggregate"]
    scores = [r["normalized_score"] for r in runs]
    assert (agg["algo"], agg["observation"]) == ("ppo", "belief")
    assert agg["iqm"] == pytest.approx(trim_mean(scores, 0.25))  # of 4 scores: the mean of the middle two
    assert agg["iqm"] == pytest.approx(sum(sorted(scores)[1:3]) / 2)
    assert agg["ci"][0] <= agg["iqm"] <= agg["ci"][1]
    for row in data["per_scenario"]:
        mine = [r["normalized_score"] for r in runs if r["scenario"] == row["scenario"]]
        assert row["iqm"] == pytest.approx(trim_mean(mine, 0.25)) and row["ci"][0] <= row["iqm"] <= row["ci"][1]
        # two seeds: the bootstrap's resamples average two draws of them, so its extremes are the two scores
        assert row["ci"] == pytest.approx(sorted(mine))
    assert (d / "profile.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_rerun_trains_nothing(first):
    d, _, data = first
    before = _records(d)
    assert len(before) == 4
    res = run_cli_here(*ARGS, "--out", str(d / "out"), "--json", str(d / "again.json"))
    assert res.returncode == 0, res.stderr
    assert "4 recorded already, 0 to train" in res.stdout
    assert _records(d) == before
    assert json.loads((d / "again.json").read_text()) == data
    # runs recorded with other settings do not stand for these: refused before any work
    res = run_cli_here(*ARGS, "-n", "65", "--out", str(d / "out"), "--json", str(d / "other.json"))
    assert "was trained with -n 64 and --eval-episodes 60, not -n 65" in error_line(res.returncode, res.stdout, res.stderr)
    assert _records(d) == before and not (d / "other.json").exists()


@pytest.fixture(scope="module")
def local_ray():
    """Ray started by the first --ray-address local of this module, shut down at its end."""
    yield
    import ray

    ray.shutdown()


def test_sweep_optimal_on_ray_matches_the_serial_solves(local_ray):
    """Ray's path through agents/parallel.py (the one experiment's runs take with --ray-address too; a trained
    run in a Ray worker would add half a minute of imports to the suite): the optimum's solves on a local Ray
    instance are the serial ones, in grid order."""
    from proxygym.agents.sweep import parse_vary, sweep

    hand = parse_scenario(hand_scenario())
    axis = parse_vary(hand, "proxies.ask.steer=-0.5:0.5:3")
    on_ray = sweep(hand, [axis], ["R", "T"], optimal=True, ray_address="local")
    serial = sweep(hand, [axis], ["R", "T"], optimal=True, workers=1)
    assert on_ray == serial and [r["params"]["proxies.ask.steer"] for r in on_ray if r["plan"] == "optimal"] == [-0.5, 0, 0.5]
    for v in axis.values:
        at = {r["plan"]: r["expected_return"] for r in on_ray if r["params"]["proxies.ask.steer"] == v}
        assert at["optimal"] >= max(at["R"], at["T"]) - 1e-9


def test_each_algorithm_gets_its_hyperparameter_files_observation_and_budget():
    """agents/hyperparams: PPO observes the belief and RecurrentPPO the history; PPO trains 400,000 steps on
    idea_screening (its own entry) and 100,000 elsewhere, RecurrentPPO 100,000 everywhere."""
    from proxygym.experiment import plan_runs

    specs, _ = plan_runs(["sticky_values", "idea_screening"], ["ppo", "recurrent_ppo"], [3, 5])
    budget = {("sticky_values", "ppo"): 100_000, ("sticky_values", "recurrent_ppo"): 100_000,
              ("idea_screening", "ppo"): 400_000, ("idea_screening", "recurrent_ppo"): 100_000}
    seen = {"ppo": "belief", "recurrent_ppo": "history"}
    assert [(r.scenario, r.algo, r.observation, r.seed, r.n_timesteps) for r in specs] == [
        (s, a, seen[a], seed, budget[s, a]) for s in ("sticky_values", "idea_screening") for a in ("ppo", "recurrent_ppo")
        for seed in (3, 5)]


def test_frame_stacked_runs_are_their_own_agent():
    """--frame-stack N: runs of their own (their key, their hyperparameters' digest) and their own row of the
    aggregate, labelled with the frames; --frame-stack 1 is the file's agent itself (a run recorded without it stands)."""
    from proxygym.experiment import agent_label, aggregate, plan_runs

    plain, _ = plan_runs(["sticky_values"], ["ppo"], [0], observation="history")
    one, _ = plan_runs(["sticky_values"], ["ppo"], [0], observation="history", frame_stack=1)
    four, _ = plan_runs(["sticky_values"], ["ppo"], [0], observation="history", frame_stack=4)
    assert one == plain and plain[0].frame_stack == 1 and four[0].frame_stack == 4
    assert (plain[0].key, four[0].key) == ("sticky_values-ppo-history-seed0", "sticky_values-ppo-history-stack4-seed0")
    assert plain[0].settings()["hyperparams_sha256"] != four[0].settings()["hyperparams_sha256"]
    runs = [{"scenario": "a", "algo": "ppo", "observation": "history", "frame_stack": k, "seed": s,
             "normalized_score": k + s / 10} for k in (1, 4) for s in range(4)]
    overall, _ = aggregate(runs, reps=50)
    # four scores k, k + 0.1, k + 0.2, k + 0.3: the interquartile mean is the mean of the middle two
    assert [(r["frame_stack"], round(r["iqm"], 12)) for r in overall] == [(1, 1.15), (4, 4.15)]
    assert [agent_label(("ppo", "history", k)) for k in (1, 4)] == ["ppo (history)", "ppo (history, 4 frames)"]


@pytest.mark.parametrize("args, fragment", [
    (("--scenarios", "nowhere", "--algos", "ppo", "--seeds", "0"), "unknown scenario 'nowhere'"),
    (("--scenarios", "sticky_values", "--algos", "ppo2", "--seeds", "0"), "unknown algorithm 'ppo2'; choose one of ppo"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0-x"), "--seeds '0-x': give whole numbers"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "4-2"), "ranges A-B with A <= B"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0-2", "2"), "seed 2 is given twice"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "-n", "0"), "-n must be at least 1"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "--plot", "p.gif"), "must end in .png, .pdf, .svg"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "--workers", "0"), "--workers must be at least 1"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "--frame-stack", "0"), "--frame-stack must be at least 1"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "--ray-address", "head"),
     "--ray-address 'head': give local, auto, HOST:PORT or ray://HOST:PORT"),
    (("--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", "--ray-address", "127.0.0.1:1"),
     "--ray-address '127.0.0.1:1': cannot connect to Ray (Connection refused)"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    res = run_cli_here("experiment", *args, "--out", str(tmp_path / "out"), "--json", str(tmp_path / "x.json"))
    assert fragment in error_line(res.returncode, res.stdout, res.stderr, args)
    assert list(tmp_path.iterdir()) == []


def test_ray_address_without_ray_names_the_extra(tmp_path):
    """In a fresh interpreter where ``import ray`` fails, as where Ray is not installed."""
    code = ("import sys; sys.modules['ray'] = None; from proxygym.cli import main; sys.exit(main(sys.argv[1:]))")
    common = ("--out", str(tmp_path / "out"), "--json", str(tmp_path / "x.json"), "--ray-address", "auto")
    for args in (("experiment", "--scenarios", "sticky_values", "--algos", "ppo", "--seeds", "0", *common),
                 ("sweep", "sticky_values", "--vary", "budget=1:2:2", "--optimal", *common[2:])):
        import subprocess

        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
        assert "needs Ray, which is not installed: pip install 'proxygym[ray]'" in error_line(
            res.returncode, res.stdout, res.stderr, args)
    assert list(tmp_path.iterdir()) == []


def test_help_names_every_option():
    res = run_cli_here("experiment", "--help")
    assert res.returncode == 0 and res.stderr == ""
    for option in ("--scenarios", "--algos", "--seeds", "-n", "--observation", "--frame-stack", "--json", "--plot",
                   "--ray-address", "--out"):
        assert option in res.stdout, option


def test_a_record_of_another_version_of_the_scenario_or_hyperparameters_is_refused(tmp_path):
    """A recorded run stands for a planned one only if the scenario file and the hyperparameter entry are the
    same: an edited file of the same name is another run (refused in one line, never silently reused)."""
    import yaml

    from proxygym.envs.scenario import SCENARIO_DIR
    from proxygym.experiment import plan_runs, recorded, run_folder

    mine = tmp_path / "sticky_values.yaml"
    mine.write_text((SCENARIO_DIR / "sticky_values.yaml").read_text())
    (spec,), _ = plan_runs([str(mine)], ["ppo"], [0], n_timesteps=64, eval_episodes=60)
    folder = run_folder(tmp_path / "out", spec)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({**spec.settings(), "mean_return": 0.5}))
    assert recorded(tmp_path / "out", spec)["mean_return"] == 0.5
    data = yaml.safe_load(mine.read_text())
    data["budget"] = 4
    mine.write_text(yaml.safe_dump(data))
    (edited,), _ = plan_runs([str(mine)], ["ppo"], [0], n_timesteps=64, eval_episodes=60)
    with pytest.raises(ProxyGymError, match="another version of the scenario file"):
        recorded(tmp_path / "out", edited)
    (other,), _ = plan_runs([str(mine)], ["recurrent_ppo"], [0], n_timesteps=64, eval_episodes=60, observation="belief")
    assert other.settings()["hyperparams_sha256"] != edited.settings()["hyperparams_sha256"]


def _slow_or_failing(job):
    import time

    if job == "fail":
        raise ValueError("this job fails")
    time.sleep(job)
    return job


def test_a_failed_job_keeps_the_results_of_those_running():
    """On local processes, a job that fails first does not lose the work of one running beside it: its result
    is yielded (an experiment records it) before the failure is raised."""
    from proxygym.agents.parallel import run_jobs

    seen = []
    with pytest.raises(ValueError, match="this job fails"):
        for i, result in run_jobs(_slow_or_failing, ["fail", 1.0], workers=2, progress=False):
            seen.append((i, result))
    assert seen == [(1, 1.0)]


def test_the_benchmark_table_is_made_from_experiment_files(tmp_path):
    """benchmarks/experiment_table.py: two files of two agents, written by hand; the table's cells are theirs (the
    mean return averaged over the seeds by hand), and --readme replaces only what is between the markers."""
    import subprocess

    def run(scenario, agent, seed, ret):
        return {"scenario": scenario, "algo": "ppo", "observation": agent[0], "frame_stack": agent[1], "seed": seed,
                "mean_return": ret, "normalized_score": 0.0}

    def row(agent, iqm, lo, hi, scenario=None):
        return {**({"scenario": scenario} if scenario else {}), "algo": "ppo", "observation": agent[0],
                "frame_stack": agent[1], "iqm": iqm, "ci": [lo, hi]}

    belief, stacked = ("belief", 1), ("history", 4)
    files = {
        "a.json": {"runs": [run("x", belief, 0, 0.5), run("x", belief, 1, 0.75), run("y", belief, 0, 0.25)],
                   "aggregate": [row(belief, 0.9, 0.8, 1.0)],
                   "per_scenario": [row(belief, 0.95, 0.9, 1.0, "x"), row(belief, 0.85, 0.7, 0.99, "y")]},
        "b.json": {"runs": [run("x", stacked, 0, 0.125)], "aggregate": [row(stacked, 0.5, 0.25, 0.75)],
                   "per_scenario": [row(stacked, 0.5, 0.25, 0.75, "x")]},
    }
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- experiment-table:start -->\nold\n<!-- experiment-table:end -->\nafter\n")
    script = str(ROOT / "benchmarks" / "experiment_table.py")
    res = subprocess.run([sys.executable, script, "a.json", "b.json", "--readme", "README.md"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert readme.read_text() == (
        "before\n<!-- experiment-table:start -->\n"
        "| scenario | ppo (belief): IQM [95%] | mean return | ppo (history, 4 frames): IQM [95%] | mean return |\n"
        "|---|---|---|---|---|\n"
        "| x | 0.950 [0.900, 1.000] | 0.6250 | 0.500 [0.250, 0.750] | 0.1250 |\n"
        "| y | 0.850 [0.700, 0.990] | 0.2500 | - | - |\n"
        "| **all** | **0.900 [0.800, 1.000]** |  | **0.500 [0.250, 0.750]** |  |\n"
        "<!-- experiment-table:end -->\nafter\n")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "short.json").write_text(json.dumps({**files["b.json"], "aggregate": [{"algo": "ppo"}]}))
    for args, fragment in ((["missing.json"], "missing.json: not the JSON of proxygym experiment --json"),
                           (["list.json"], "list.json: not the JSON of proxygym experiment --json"),
                           (["short.json"], "a row of aggregate lacks one of algo, observation, iqm, ci"),
                           (["b.json", "b.json"], "b.json: ppo (history, 4 frames) is in b.json too")):
        res = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=tmp_path)
        assert fragment in error_line(res.returncode, res.stdout, res.stderr, args)
