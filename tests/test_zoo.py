"""rl-baselines3-zoo as a client, and train.py speaking the zoo's habits.

The zoo's own commands run as a user runs them (real subprocesses, short budgets): training with our
hyperparameter files on a scenario's env id (the belief observation and the scenario's entry kept), DQN,
``rl_zoo3.enjoy``, and the zoo's plot scripts on both the zoo's runs and train.py's. train.py's Monitor CSV and
evaluations.npz are read back with SB3's readers and checked against an independent count of the episodes;
``--optimize`` against the zoo's conversion of the best trial worked by hand; ``--vec-env`` by the same episodes
from SB3's two VecEnvs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

import train
from proxygym.agents.training import algo_class, make_env, model_kwargs, play_model, read_hyperparams
from proxygym.envs import scenario_env_id, shipped_scenarios
from proxygym.envs.scenario import load_scenario
from tests.helpers import ROOT, run_concurrently

# one torch thread (as train.py sets for itself) and no display for the plots
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
PPO_ID, STICKY_ID = scenario_env_id("idea_screening"), scenario_env_id("sticky_values")
ENV_ID = "ProxyAlignment-v0"
WINDOW = 5  # plot_train's rolling window


def run(*args: str) -> subprocess.CompletedProcess:
    """A command as the README gives it, from the repository's root (its relative paths), with a short budget added."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600, env=ENV)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """One log folder for the zoo's runs and train.py's, as a user keeps them (the plot scripts read both)."""
    return tmp_path_factory.mktemp("zoo") / "logs"


@pytest.fixture(scope="module")
def zoo_runs(logs):
    """PPO on a scenario's env id with our ppo.yml (the scenario has its own entry); DQN with our dqn.yml on
    ProxyAlignment-v0 given a scenario file, with the observation given beside it (--env-kwargs replaces the file's)."""
    ppo, dqn = run_concurrently([
        lambda: run("-m", "rl_zoo3.train", "--algo", "ppo", "--env", PPO_ID, "--gym-packages", "proxygym",
                    "--conf-file", "agents/hyperparams/ppo.yml",
                    "-n", "512", "-params", "n_envs:2", "--eval-freq", "256", "--eval-episodes", "5", "--seed", "0",
                    "-f", str(logs)),
        lambda: run("-m", "rl_zoo3.train", "--algo", "dqn", "--env", ENV_ID, "--gym-packages", "proxygym",
                    "--conf-file", "agents/hyperparams/dqn.yml",
                    "--env-kwargs", "scenario:'scenarios/sticky_values.yaml'", "observation:'belief'",
                    "-n", "300", "-params", "learning_starts:100", "--eval-freq", "-1", "--seed", "0", "-f", str(logs)),
    ], workers=2)
    for res in (ppo, dqn):
        assert res.returncode == 0, res.stderr[-3000:]
    return {"ppo": logs / "ppo" / f"{PPO_ID}_1", "dqn": logs / "dqn" / f"{ENV_ID}_1"}


@pytest.fixture(scope="module")
def ours(logs):
    """train.py's PPO run in the same log folder, every episode the training env ended counted as it ended it:
    ``(return, length)`` of each, from the rewards and dones of every step of the batched env."""
    from proxygym.agents.vec_env import ProxyAlignmentSB3VecEnv

    ended: list[tuple[float, int]] = []
    step_wait = ProxyAlignmentSB3VecEnv.step_wait

    def counted(self):
        obs, rewards, dones, infos = step_wait(self)
        if not hasattr(self, "_counts"):
            self._counts = (np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=int))
        returns, lengths = self._counts
        returns += rewards
        lengths += 1
        for i in np.flatnonzero(dones):
            ended.append((float(returns[i]), int(lengths[i])))
            returns[i], lengths[i] = 0.0, 0
        return obs, rewards, dones, infos

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProxyAlignmentSB3VecEnv, "step_wait", counted)
        code = train.main(["-n", "1024", "--n-envs", "4", "--hyperparams", "n_steps:128", "batch_size:128",
                           "--eval-freq", "256", "--eval-episodes", "10", "--final-episodes", "20",
                           "-f", str(logs), "-tb", str(logs.parent / "tb")])
    assert code == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(logs.parent / "tb" / "sticky_values_ppo_seed0_1")).Reload()
    return {"folder": logs / "ppo" / "sticky_values_1", "ended": ended, "tb": tb.Scalars("alignment/mean_return")}


#: The zoo's two plot scripts, run as ``python -m rl_zoo3.plots.plot_train ARGS`` and ``python -m
#: rl_zoo3.plots.all_plots ARGS`` run them (their functions, with those argv), in one interpreter: plot_train only shows
#: its figure, so the figure is read here (its plt.show() does nothing without a display), and all_plots saves its
#: numbers with -o.
PLOTS = """
import json, sys
from matplotlib import pyplot as plt
from rl_zoo3.plots.all_plots import all_plots
from rl_zoo3.plots.plot_train import plot_train
folder, window, out = sys.argv[1:]
sys.argv = ["plot_train", "-a", "ppo", "-e", "idea_screening", "sticky_values", "-f", folder, "-w", window]
plot_train()
lines = {line.get_label(): [line.get_xdata().tolist(), line.get_ydata().tolist()] for line in plt.gca().lines}
sys.argv = ["all_plots", "-a", "ppo", "-e", "idea_screening", "sticky_values", "-f", folder, "--no-display",
            "--no-million", "-o", out]
all_plots()
print(json.dumps(lines))
"""


@pytest.fixture(scope="module")
def zoo_tools(logs, zoo_runs, ours):
    """The zoo's enjoy on its PPO run, and its two plot scripts on the folder of the zoo's runs and train.py's."""
    enjoy, plots = run_concurrently([
        lambda: run("-m", "rl_zoo3.enjoy", "--algo", "ppo", "--env", PPO_ID, "--gym-packages", "proxygym",
                    "-f", str(logs), "-n", "40"),
        lambda: run("-c", PLOTS, str(logs), str(WINDOW), str(logs.parent / "all_plots")),
    ], workers=2)
    for res in (enjoy, plots):
        assert res.returncode == 0, res.stderr[-3000:]
    return {"enjoy": enjoy, "plot_train": json.loads(plots.stdout.splitlines()[-1]),
            "all_plots": pickle.loads((logs.parent / "all_plots.pkl").read_bytes()), "table": plots.stdout}


# -- train.py writes what the zoo writes ----------------------------------------------------------
def test_monitor_csv_holds_every_episode_the_env_ended(ours):
    from stable_baselines3.common.monitor import load_results

    frame = load_results(str(ours["folder"]))
    ended = ours["ended"]
    assert len(frame) == len(ended) > 50
    assert sorted(zip(frame.r.round(5), frame.l)) == sorted((round(r, 5), n) for r, n in ended)
    # sticky_values pays 1 for a deployed aligned model and nothing else: the return is whether it was
    assert (frame.r == frame.aligned.astype(float)).all() and (frame.deployed | ~frame.aligned).all()
    # every episode ends with a run deployed at the last of its 4 decision points, or 5 runs discarded
    assert frame.l.between(4, 5 * 4).all()


def test_evaluations_npz_holds_each_evaluations_episodes(ours):
    evaluations = np.load(ours["folder"] / "evaluations.npz")
    logged = ours["tb"]  # TensorBoard's alignment/mean_return, read by TensorBoard's reader
    assert evaluations["timesteps"].tolist() == [e.step for e in logged] == [256, 512, 768, 1024]
    assert evaluations["results"].shape == evaluations["ep_lengths"].shape == (4, 10)
    assert evaluations["results"].mean(axis=1) == pytest.approx([e.value for e in logged], abs=1e-6)
    assert set(np.unique(evaluations["results"])) <= {0.0, 1.0}
    assert ((evaluations["ep_lengths"] >= 4) & (evaluations["ep_lengths"] <= 20)).all()
    # best_model.zip is the policy of the first evaluation with the highest mean: played again over the same
    # episodes (train.py's evaluation seed, 10000 + --seed), it gives that evaluation's returns and lengths
    best = int(np.argmax(evaluations["results"].mean(axis=1)))
    model = algo_class("ppo").load(ours["folder"] / "best_model.zip")
    replay = play_model(model, "ppo", load_scenario("sticky_values"), "belief", episodes=10, seed=10_000)
    assert evaluations["results"][best].tolist() == replay.returns
    assert evaluations["ep_lengths"][best].tolist() == replay.lengths


# -- the zoo itself -----------------------------------------------------------------------------------
def test_scenario_ids_default_to_the_belief_observation():
    """The zoo's --env-kwargs replaces a file's env_kwargs: on a scenario's id, the belief observation stays, being
    the id's own default, whatever else is passed."""
    for name in shipped_scenarios():
        assert gym.spec(scenario_env_id(name)).kwargs == {"scenario": name, "observation": "belief"}
    env = gym.make(PPO_ID, render_mode="ansi")
    assert env.observation_space == make_env("idea_screening", "ppo", "belief").observation_space
    assert env.observation_space != make_env("idea_screening", "ppo", "history").observation_space


def test_zoo_trains_on_belief_with_the_scenarios_entry(zoo_runs):
    folder = zoo_runs["ppo"]
    with open(folder / PPO_ID / "config.yml") as f:  # as the zoo reads its own file
        config = yaml.load(f, Loader=yaml.UnsafeLoader)
    # idea_screening's entry (400000 steps) over ppo.yml's default (n_steps, gamma), and the belief observation
    assert config["n_timesteps"] == 400000 and config["n_steps"] == 256 and config["gamma"] == 1.0
    assert config["env_kwargs"] == {"observation": "belief"}
    model = algo_class("ppo").load(folder / f"{PPO_ID}.zip")
    belief = make_env("idea_screening", "ppo", "belief")
    assert model.observation_space == belief.observation_space and model.action_space == belief.action_space
    assert model.num_timesteps >= 512
    from stable_baselines3.common.monitor import load_results

    assert len(load_results(str(folder))) > 0  # the zoo's own Monitor files, one per env
    assert np.load(folder / "evaluations.npz")["timesteps"].tolist() == [256, 512]


def test_zoo_trains_dqn_in_the_flat_action_space(zoo_runs):
    model = algo_class("dqn").load(zoo_runs["dqn"] / f"{ENV_ID}.zip")
    flat = make_env("sticky_values", "dqn", "belief")
    assert isinstance(model.action_space, gym.spaces.Discrete) and model.action_space == flat.action_space
    assert model.observation_space == flat.observation_space
    assert model.num_timesteps >= 300 and model._n_updates > 0  # it learned after learning_starts
    played = play_model(model, "dqn", load_scenario("sticky_values"), "belief", episodes=5)
    assert len(played.returns) == 5


def test_zoo_enjoy_plays_and_renders(zoo_tools):
    out = zoo_tools["enjoy"].stdout
    rewards = [float(line.split(":")[1]) for line in out.splitlines() if line.startswith("Episode Reward:")]
    assert rewards and set(rewards) <= {0.0, 1.0}  # idea_screening: 1 for an aligned model deployed, else 0
    assert f"{len(rewards)} Episodes" in out and f"Mean reward: {np.mean(rewards):.2f}" in out
    assert "ProxyAlignment-v0 | idea_screening | runs started" in out  # the human render mode's table


def test_zoo_plot_train_reads_both_runs(zoo_tools, zoo_runs, ours):
    from stable_baselines3.common.monitor import load_results

    lines = zoo_tools["plot_train"]
    assert set(lines) == {zoo_runs["ppo"].name, ours["folder"].name}
    x, _ = lines[ours["folder"].name]
    # x: training steps at each episode's end (the rolling window drops the first WINDOW - 1)
    assert len(x) == len(ours["ended"]) - WINDOW + 1 and x[-1] == sum(n for _, n in ours["ended"])
    x, _ = lines[zoo_runs["ppo"].name]
    assert len(x) == len(load_results(str(zoo_runs["ppo"]))) - WINDOW + 1


def test_zoo_all_plots_reads_both_runs(zoo_tools, ours):
    results = zoo_tools["all_plots"]
    logged = ours["tb"]
    label = next(iter(results["sticky_values"]))
    mine = results["sticky_values"][label]
    assert mine["timesteps"].tolist() == [e.step for e in logged]
    assert mine["mean"] == pytest.approx([e.value for e in logged], abs=1e-6)
    assert results["idea_screening"][label]["timesteps"].tolist() == [256, 512]
    assert "|sticky_values |" in zoo_tools["table"] and "|idea_screening|" in zoo_tools["table"]


# -- train.py's zoo flags -----------------------------------------------------------------------------
def test_hyperparameter_entries_merge_as_the_zoo_keys_them(tmp_path):
    """default < ProxyAlignment-v0 < the scenario's name < its env id, key by key; the zoo's value forms read."""
    path = tmp_path / "h.yml"
    path.write_text(
        "default: {gamma: 0.9, n_steps: 8, batch_size: 8, learning_rate: lin_0.002}\n"
        "ProxyAlignment-v0: {n_steps: 16, ent_coef: 0.1}\n"
        "sticky_values: {batch_size: 16, ent_coef: 0.2}\n"
        "ProxyAlignment-sticky_values-v0: {batch_size: 32, policy_kwargs: 'dict(net_arch=[7], activation_fn=nn.ReLU)'}\n"
        "loss_landscape: {gamma: 0.5}\n"
    )
    params = read_hyperparams(path, "sticky_values")
    assert params == {"gamma": 0.9, "n_steps": 16, "batch_size": 32, "learning_rate": "lin_0.002", "ent_coef": 0.2,
                      "policy_kwargs": "dict(net_arch=[7], activation_fn=nn.ReLU)"}
    assert read_hyperparams(path, "loss_landscape")["gamma"] == 0.5
    import torch

    kwargs = model_kwargs(params)
    assert kwargs["policy_kwargs"] == {"net_arch": [7], "activation_fn": torch.nn.ReLU}
    assert kwargs["learning_rate"](1.0) == pytest.approx(0.002) and kwargs["learning_rate"](0.25) == pytest.approx(0.0005)
    # the shipped file: idea_screening's entry keeps default's keys (YAML's merge key), other scenarios get default
    screening = read_hyperparams(ROOT / "agents" / "hyperparams" / "ppo.yml", "idea_screening")
    assert screening["n_timesteps"] == 400000 and screening["n_steps"] == 256
    assert read_hyperparams(ROOT / "agents" / "hyperparams" / "ppo.yml", "sticky_values")["n_timesteps"] == 100000


def test_vec_env_dummy_and_subproc_play_the_same_episodes(tmp_path):
    """SB3's DummyVecEnv and SubprocVecEnv of the same seeded envs, the same model seed: the same episodes."""
    from stable_baselines3.common.monitor import load_results

    frames = []
    for kind in ("dummy", "subproc"):
        assert train.main(["--vec-env", kind, "--n-envs", "2", "-n", "128", "--hyperparams", "n_steps:64",
                           "batch_size:64", "--eval-freq", "0", "--final-episodes", "2", "-f", str(tmp_path / kind),
                           "-tb", ""]) == 0
        frame = load_results(str(tmp_path / kind / "ppo" / "sticky_values_1"))
        frames.append(sorted(zip(frame.r, frame.l, frame.deployed, frame.aligned, frame.abstained)))
        assert yaml.safe_load((tmp_path / kind / "ppo" / "sticky_values_1" / "args.yml").read_text())["vec_env"] == kind
    assert frames[0] == frames[1] and len(frames[0]) > 10


def test_optimize_writes_the_best_trial_as_a_file_that_trains(tmp_path, capsys):
    import pandas

    assert train.main(["--algo", "dqn", "--optimize", "--n-trials", "2", "--sampler", "tpe", "--pruner", "median",
                       "-n", "200", "--hyperparams", "learning_starts:50", "--eval-freq", "100", "--eval-episodes", "10",
                       "-f", str(tmp_path)]) == 0
    folder = tmp_path / "optimize" / "dqn" / "sticky_values_1"
    trials = pandas.read_csv(folder / "trials.csv")
    assert len(trials) == 2 and (trials.state == "COMPLETE").all()
    best = trials.loc[trials.value.idxmax()]
    assert f"the best, trial {best.number}, had mean return {best.value:.4f}" in capsys.readouterr().out
    entry = yaml.safe_load((folder / "best_hyperparams.yml").read_text())[STICKY_ID]
    # the zoo's DQN sample, converted by hand: gamma = 1 - one_minus_gamma, batch 2^pow, train_freq // subsample
    # gradient steps, the named net
    net = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}[best.params_net_arch]
    assert entry["gamma"] == pytest.approx(1 - best.params_one_minus_gamma)
    assert entry["batch_size"] == 2 ** best.params_batch_size_pow
    assert entry["gradient_steps"] == max(best.params_train_freq // best.params_subsample_steps, 1)
    assert entry["policy_kwargs"] == f"dict(net_arch={net})"
    assert entry["learning_starts"] == 50 and entry["n_timesteps"] == 200 and entry["env_kwargs"] == {"observation": "belief"}

    # the file trains, with what it says
    assert train.main(["--algo", "dqn", "-conf", str(folder / "best_hyperparams.yml"), "--eval-freq", "0",
                       "--final-episodes", "2", "-f", str(tmp_path / "again"), "-tb", ""]) == 0
    model = algo_class("dqn").load(tmp_path / "again" / "dqn" / "sticky_values_1" / "model.zip")
    # DQN collects train_freq steps at a time
    assert 200 <= model.num_timesteps < 200 + entry["train_freq"] and model.gamma == pytest.approx(entry["gamma"])
    assert model.batch_size == entry["batch_size"] and model.gradient_steps == entry["gradient_steps"]
    layers = [m.out_features for m in model.q_net.q_net if hasattr(m, "out_features")]
    assert layers == [*net, model.action_space.n]
