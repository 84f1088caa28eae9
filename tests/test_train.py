"""train.py as a user runs it: a short real SB3 training run in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT


def test_short_training_run_saves_a_model_that_loads_and_plays(tmp_path):
    from stable_baselines3 import PPO

    from envs.proxy_alignment import ProxyAlignmentEnv

    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-n", "2048", "--eval-episodes", "50",
         "--log-folder", str(tmp_path / "logs"), "--tensorboard-log", str(tmp_path / "tb")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "logs" / "ppo" / "sticky_values_1"
    assert (folder / "model.zip").is_file()
    assert json.loads((folder / "args.json").read_text())["n_timesteps"] == 2048
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert abs(evaluation["p_deploy_aligned"] + evaluation["p_deploy_misaligned"] + evaluation["p_abstain"] - 1) < 1e-9
    assert "trained PPO" in res.stdout and "exact" in res.stdout and "tensorboard --logdir" in res.stdout
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))

    model = PPO.load(folder / "model.zip")
    env = ProxyAlignmentEnv("sticky_values", observation="belief")
    obs, _ = env.reset(seed=0)
    for _ in range(100):
        action, _ = model.predict(obs, deterministic=True)
        assert env.action_space.contains(np.asarray(action))
        obs, _, terminated, _, _ = env.step(action)
        if terminated:
            break
    assert terminated


def test_bad_arguments_exit_2(tmp_path):
    for args, fragment in ((["--algo", "sac"], "unknown algorithm 'sac'"),
                           (["--scenario", "nope"], "unknown scenario 'nope'")):
        res = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "--log-folder", str(tmp_path)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert res.returncode == 2 and fragment in res.stderr and "Traceback" not in res.stderr
