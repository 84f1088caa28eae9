"""train.py as a user runs it: real SB3 training, resuming, Ctrl-C, bad arguments (rl-baselines3-zoo: test_zoo.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import train
from proxygym.agents.training import ALGOS, algo_class, play_model
from proxygym.envs.scenario import load_scenario
from tests.helpers import ROOT, error_line, run_concurrently

QUICK = ["-n", "1024", "--eval-freq", "512", "--eval-episodes", "10", "--final-episodes", "20"]


def run_train(tmp_path, *args, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "--log-folder", str(tmp_path / "logs"),
         "--tensorboard-log", str(tmp_path / "tb")],
        capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
    )


def test_default_run_as_a_subprocess(tmp_path):
    res = run_train(tmp_path, *QUICK)
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "logs" / "ppo" / "sticky_values_1"
    for name in ("model.zip", "best_model.zip", "args.yml", "config.yml", "evaluation.json", "monitor.csv", "evaluations.npz"):
        assert (folder / name).is_file(), name
    config = yaml.safe_load((folder / "config.yml").read_text())
    assert config["n_timesteps"] == 1024 and config["gamma"] == 1.0  # from agents/hyperparams/ppo.yml
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["p_deploy_aligned"] + evaluation["p_deploy_misaligned"] + evaluation["p_abstain"] == pytest.approx(1)
    out = res.stdout
    assert "tensorboard --logdir" in out and str(folder / "model.zip") in out
    for name in ("trained ppo", "always_reserve", "idea_screening", "bayes_threshold"):
        assert name in out
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert [e.parent.name for e in events] == ["sticky_values_ppo_seed0_1"]  # the scenario, the algorithm, the seed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent)).Reload()
    steps = [e.step for e in acc.Scalars("alignment/mean_return")]
    total = algo_class("ppo").load(folder / "model.zip").num_timesteps  # PPO rounds up to whole rollouts
    # --eval-freq 512 counts environment steps over all the envs, whatever n_envs is
    assert steps == list(range(512, total + 1, 512)), steps
    # standard error is not a terminal here, so no bar: a line per evaluation says how training goes
    lines = [line for line in out.splitlines() if line.startswith("eval at ")]
    assert [int(line.split()[2]) for line in lines] == steps and res.stderr == "", (out, res.stderr)


def count_adapter_steps(monkeypatch) -> list:
    """Count the steps of the batched SB3 env (agents/vec_env.py) and the programs each advanced."""
    from proxygym.agents.vec_env import ProxyAlignmentSB3VecEnv

    steps, step_wait = [], ProxyAlignmentSB3VecEnv.step_wait

    def counted(self):
        steps.append(self.num_envs)
        return step_wait(self)

    monkeypatch.setattr(ProxyAlignmentSB3VecEnv, "step_wait", counted)
    return steps


@pytest.mark.parametrize("algo", [a for a in ALGOS if a != "ppo"])
def test_every_algorithm_trains_saves_loads_and_plays(tmp_path, algo, monkeypatch):
    import tempfile

    steps = count_adapter_steps(monkeypatch)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the system's temp folder, as SB3's logger finds it
    code = train.main(["--algo", algo, *QUICK, "--n-envs", "2", "--log-folder", str(tmp_path), "--tensorboard-log", ""])
    assert code == 0
    assert not list(temp.glob("SB3-*"))  # without TensorBoard nothing is logged: no empty SB3-<date> folder is left
    assert steps and set(steps) == {2} and 2 * len(steps) >= 1024  # trained in one batched env of 2 programs
    folder = tmp_path / algo / "sticky_values_1"
    model = algo_class(algo).load(folder / "model.zip")
    observation = yaml.safe_load((folder / "config.yml").read_text())["env_kwargs"]["observation"]
    played = play_model(model, algo, load_scenario("sticky_values"), observation, episodes=5)
    assert len(played.returns) == 5 and all(r in (0.0, 1.0) for r in played.returns)


def test_resume_continues_the_step_count(tmp_path, monkeypatch):
    steps = count_adapter_steps(monkeypatch)
    assert train.main([*QUICK, "--progress", "--log-folder", str(tmp_path), "--tensorboard-log", ""]) == 0
    first = tmp_path / "ppo" / "sticky_values_1" / "model.zip"
    assert train.main([*QUICK, "--trained-agent", str(first), "--log-folder", str(tmp_path), "--tensorboard-log", ""]) == 0
    second = algo_class("ppo").load(tmp_path / "ppo" / "sticky_values_2" / "model.zip")
    assert second.num_timesteps >= 2 * 1024
    assert sum(steps) == second.num_timesteps  # every step of both runs taken in the batched env
    assert algo_class("ppo").load(first).num_timesteps < second.num_timesteps


@pytest.mark.parametrize("space", ["bare", "multi"])
def test_resume_a_model_in_the_action_space_it_was_saved_with(tmp_path, capsys, space):
    """A model made on the bare env (its action keeps the one-choice idea, as rl-baselines3-zoo trains), or saved
    with the MultiDiscrete without it (train.py's action before the flat one), resumes: train.py trains it on in
    that action space and it keeps it."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from proxygym.agents.training import ModelAction
    from proxygym.envs.proxy_alignment import ProxyAlignmentEnv

    env = ProxyAlignmentEnv("sticky_values", observation="belief")
    if space == "multi":
        env = ModelAction(env, gym.spaces.MultiDiscrete([3, 3]))
    old = PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)
    old.save(tmp_path / "old.zip")
    assert train.main([*QUICK, "--trained-agent", str(tmp_path / "old.zip"), "--log-folder", str(tmp_path)]) == 2
    assert "saved with 1 envs; resume it with --n-envs 1, not 8" in capsys.readouterr().err
    assert train.main([*QUICK, "--trained-agent", str(tmp_path / "old.zip"), "--n-envs", "1", "--log-folder",
                       str(tmp_path), "--tensorboard-log", ""]) == 0
    resumed = algo_class("ppo").load(tmp_path / "ppo" / "sticky_values_1" / "model.zip")
    assert resumed.action_space == old.action_space and resumed.num_timesteps >= 1024
    assert resumed.action_space != gym.spaces.Discrete(9)  # not the flat action train.py's new agents act in


def test_frame_stack_is_played_as_it_was_trained(tmp_path):
    """rl-baselines3-zoo's frame_stack: trained on the last 4 history observations under SB3's VecFrameStack, the
    model is evaluated on the same frames (each program's first episode as in the training env, VecFrameStack
    over the batched env with the same seed), loaded by inspect and experiment, and resumed with them. On
    uncertain_monitor 4 history frames are as long as 3 belief frames (all in [0, 1]): the run's config.yml, or
    the user, says which."""
    import shutil

    import numpy as np

    from proxygym.agents.models import load_for_scenario
    from proxygym.agents.vec_env import make_vec_env
    from proxygym.envs.errors import ProxyGymError

    args = [*QUICK, "--scenario", "uncertain_monitor", "--observation", "history", "--n-envs", "2",
            "--log-folder", str(tmp_path), "--tensorboard-log", ""]
    assert train.main([*args, "--hyperparams", "frame_stack:4"]) == 0  # evaluated as it trained
    folder = tmp_path / "ppo" / "uncertain_monitor_1"
    assert yaml.safe_load((folder / "config.yml").read_text())["frame_stack"] == 4
    sc = load_scenario("uncertain_monitor")
    sizes = {m: make_vec_env(sc, "ppo", 1, m).observation_space.shape[0] for m in ("history", "belief")}
    assert 4 * sizes["history"] == 3 * sizes["belief"]
    model, algo, observation = load_for_scenario(folder / "model.zip", sc)
    assert (algo, observation, model.observation_space.shape) == ("ppo", "history", (4 * sizes["history"],))
    played = play_model(model, algo, sc, observation, 64, seed=7)
    env = make_vec_env(sc, "ppo", 64, "history", seed=7, frame_stack=4)
    obs, total, done = env.reset(), np.zeros(64), np.zeros(64, dtype=bool)
    while not done.all():
        obs, reward, ended, _ = env.step(model.predict(obs, deterministic=True)[0])
        total[~done] += reward[~done]
        done |= ended
    # (the training env hands SB3 float32 rewards)
    assert total == pytest.approx(played.returns, abs=1e-6) and min(played.lengths) >= 2  # more than one observation
    # away from its run folder only the user can say which observation it was trained on
    shutil.copy(folder / "model.zip", tmp_path / "alone.zip")
    with pytest.raises(ProxyGymError, match="fits both the history and the belief observation .* give --observation"):
        load_for_scenario(tmp_path / "alone.zip", sc)
    assert load_for_scenario(tmp_path / "alone.zip", sc, observation="history")[2] == "history"
    assert train.main([*args, "--trained-agent", str(folder / "model.zip")]) == 0
    resumed = algo_class("ppo").load(tmp_path / "ppo" / "uncertain_monitor_2" / "model.zip")
    assert resumed.observation_space == model.observation_space and resumed.num_timesteps > model.num_timesteps


def test_ctrl_c_saves_a_loadable_model(tmp_path):
    """SIGINT once training is under way: the first periodic checkpoint (--save-freq), written by a
    callback of model.learn, shows it is, whatever the machine's speed."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-n", "10000000", "--eval-freq", "0", "--save-freq", "256",
         "--log-folder", str(tmp_path / "logs"), "--tensorboard-log", ""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        # Ctrl-C as at a terminal: a suite started in the background by a non-interactive shell runs with SIGINT
        # ignored, which the child would inherit (and then never see the signal)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        folder = None
        for line in proc.stdout:
            if line.startswith("run folder:"):
                folder = Path(line.split(":", 1)[1].strip())
                break
        assert folder is not None, proc.stderr.read() if proc.poll() is not None else "no run folder printed"
        deadline = time.monotonic() + 300
        while not list((folder / "checkpoints").glob("model_*_steps.zip")):
            assert proc.poll() is None and time.monotonic() < deadline, "training never reached its first checkpoint"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at step" in out
    model = algo_class("ppo").load(folder / "model.zip")
    assert 256 <= model.num_timesteps < 10_000_000
    assert f"interrupted at step {model.num_timesteps}:" in out


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    import torch

    other = tmp_path / "other"
    no_entry = tmp_path / "no_entry.yml"
    no_entry.write_text("loss_landscape: {gamma: 0.5}\n")
    # a model saved for another scenario (as small as a real run gets: one rollout of 64 steps)
    assert train.main(["--scenario", "loss_landscape", "-n", "64", "--hyperparams", "n_steps:64", "batch_size:64",
                       "--eval-freq", "0", "--final-episodes", "2", "--log-folder", str(other), "--tensorboard-log", ""]) == 0
    mismatched = other / "ppo" / "loss_landscape_1" / "model.zip"
    cases = [
        (["--algo", "sac"], "unknown algorithm 'sac'"),
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--hyperparams", "learning_rate"], "write KEY:VALUE"),
        (["--hyperparams", "no_such_param:1"], "--hyperparams"),
        (["--env-kwargs", "scenario:x"], "--scenario"),
        (["--trained-agent", "missing.zip"], "no such file"),
        (["--trained-agent", str(mismatched)], "does not fit scenario 'sticky_values'"),
        (["--algo", "a2c", "--trained-agent", str(mismatched), "--scenario", "loss_landscape"], "saved by ppo, not a2c"),
        (["--trained-agent", str(mismatched), "--scenario", "loss_landscape", "--hyperparams", "gamma:0.9"],
         "cannot change a --trained-agent"),
        (["--hyperparams", "n_envs:two"], "whole number"),
        (["--hyperparams", "n_envs:0"], "whole number"),
        (["--hyperparams", "learning_rate:abc"], "learning_rate 'abc': write a number or lin_<number>"),
        (["--env-kwargs", "colour:1"], "rejected by ppo"),
        (["--algo", "recurrent_ppo", "--hyperparams", "policy:NoSuchPolicy"], "rejected by recurrent_ppo"),
        (["-conf", "missing.yml"], "No such file"),
        (["-conf", str(no_entry)], "has no entry for scenario 'sticky_values'"),
        (["--hyperparams", "frame_stack:0"], "frame_stack must be a whole number of at least 1"),
        (["--hyperparams", "normalize:true"], "does not apply VecNormalize"),
        (["--hyperparams", "env_wrapper:gymnasium.wrappers.TimeLimit"], "applies only proxygym.agents.training.ModelAction"),
        (["--hyperparams", "learning_rate:exp_0.1"], "lin_<number>"),
        (["--hyperparams", "policy_kwargs:dict(net_arch=__import__('os'))"], "cannot read \"__import__('os')\""),
        (["--vec-env", "threads"], "argument --vec-env: invalid choice"),
        (["--device", "tpu"], "argument --device: invalid choice"),
        (["--optimize", "--trained-agent", str(mismatched)], "takes no --trained-agent"),
        (["--optimize", "--n-trials", "0"], "--n-trials must be at least 1"),
        (["--optimize", "--sampler", "grid"], "argument --sampler: invalid choice"),
        (["--optimize", "--pruner", "halving"], "argument --pruner: invalid choice"),
        (["--optimize", "--algo", "dqn", "--hyperparams", "lerning_rate:0.001"], "--hyperparams rejected by dqn"),
        *([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA device")]),
        (["--env", "observation:history"], "unrecognized arguments: --env"),  # no prefix of --env-kwargs
    ]
    # the first two cases as a user runs them (a subprocess each: the usage error and the message reach the
    # terminal as one line); the rest through train.main in this process, each in its own folder
    folders = [tmp_path / f"case_{i}" for i in range(len(cases))]
    for folder in folders:
        folder.mkdir()
    subprocess_cases = [0, len(cases) - 1]
    results = run_concurrently([lambda i=i: run_train(folders[i], *cases[i][0], *QUICK, timeout=300) for i in subprocess_cases])
    for i, res in zip(subprocess_cases, results):
        assert cases[i][1] in error_line(res.returncode, res.stdout, res.stderr, cases[i][0]), (cases[i][0], res.stderr)
    for i, (args, fragment) in enumerate(cases):
        if i in subprocess_cases:
            continue
        capsys.readouterr()
        try:
            code = train.main([*args, *QUICK, "--log-folder", str(folders[i]), "--tensorboard-log", ""])
        except SystemExit as exit_:  # a usage error, from the parser
            code = exit_.code
        out = capsys.readouterr()
        assert fragment in error_line(code, out.out, out.err, args), (args, out.err)
        assert not any(folders[i].iterdir()), args  # nothing written: no run folder, no monitor file
