"""Policy summaries: a real PPO run with AlignmentEvalCallback, read back with TensorBoard's own reader, and inspect."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import yaml

from proxygym.agents.callback import AlignmentEvalCallback
from proxygym.agents.plots import heatmap
from proxygym.agents.report import format_text
from proxygym.agents.solver import solve
from proxygym.agents.summary import summarize
from proxygym.agents.training import POLICIES, ModelAction, algo_class, make_env
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import load_scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from proxygym.inspection import inspect_model

SCENARIO = "sticky_values"
TIMESTEPS, N_ENVS, EVAL_FREQ, EVAL_EPISODES = 2048, 2, 512, 20
EVAL_STEPS = [512, 1024, 1536, 2048]


def _events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PPO trained for 2048 steps on sticky_values (belief) with the callback; its TensorBoard run and files."""
    import torch
    from stable_baselines3 import PPO

    from proxygym.agents.vec_env import make_vec_env

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("summary")
    scenario = load_scenario(SCENARIO)
    venv = make_vec_env(scenario, "ppo", N_ENVS, "belief", seed=0)  # the batched env train.py uses
    hparams = {"n_steps": 512, "learning_rate": 3e-4, "net_arch": [64, 64]}
    model = PPO("MlpPolicy", venv, n_steps=512, batch_size=128, n_epochs=4, seed=0, tensorboard_log=str(root / "tb"))
    callback = AlignmentEvalCallback(
        scenario, "ppo", "belief", eval_freq=EVAL_FREQ, eval_episodes=EVAL_EPISODES, seed=0,
        hparams=hparams, best_model_path=root / "best_model.zip",
    )
    model.learn(TIMESTEPS, callback=callback, tb_log_name="run")
    model.save(root / "model.zip")
    return SimpleNamespace(root=root, model=model, callback=callback, run=root / "tb" / "run_1", scenario=scenario)


def test_the_tensorboard_run_holds_the_summary_scalars_heatmap_text_and_hparams(trained):
    acc = _events(trained.run)
    tags = acc.Tags()
    alignment = ["mean_return", "p_deploy_aligned", "p_deploy_misaligned", "p_abstain", "mean_runs", "best_strategy_return"]
    policy = [f"policy/{ph}/honesty_eval/{u}" for ph in ("pretrain", "rl", "scale") for u in ("train", "reserve", "anti")]
    policy += [f"policy/discard/{ph}" for ph in ("pretrain", "rl", "scale")] + ["policy/idea/default"]
    assert set(tags["scalars"]) >= {f"alignment/{a}" for a in alignment} | set(policy)
    assert not any(t.startswith("alignment/optimal") for t in tags["scalars"])  # no optimum given

    # one evaluation every 512 environment steps over both envs, at the step it was made
    values = {t: [e.value for e in acc.Scalars(t)] for t in tags["scalars"] if t.startswith(("alignment/", "policy/"))}
    assert [e.step for e in acc.Scalars("alignment/mean_return")] == EVAL_STEPS
    assert [ts for ts, _ in trained.callback.evaluations] == EVAL_STEPS
    for i, (_, s) in enumerate(trained.callback.evaluations):
        assert values["alignment/mean_return"][i] == pytest.approx(s.outcomes.mean_return, abs=1e-6)
        total = sum(values[f"alignment/{a}"][i] for a in ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain"))
        assert total == pytest.approx(1.0, abs=1e-6)
        for ph_i, ph in enumerate(("pretrain", "rl", "scale")):
            shares = sum(values[f"policy/{ph}/honesty_eval/{u}"][i] for u in ("train", "reserve", "anti"))
            assert shares == pytest.approx(1.0 if s.phase_runs[ph_i] else 0.0, abs=1e-6)
    assert len(set(values["alignment/best_strategy_return"])) == 1  # a flat reference line

    images = acc.Images("policy/heatmap")
    assert [e.step for e in images] == EVAL_STEPS
    assert images[-1].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and images[-1].width > 200

    assert "summary/text_summary" in tags["tensors"]
    assert acc.SummaryMetadata("summary/text_summary").plugin_data.plugin_name == "text"
    texts = acc.Tensors("summary/text_summary")
    assert [e.step for e in texts] == EVAL_STEPS
    text = texts[-1].tensor_proto.string_val[0].decode()
    last = trained.callback.last_summary
    assert text == format_text(last)
    assert last.best_strategy in text and "honesty_eval" in text and "P(deploy aligned)" in text

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"alignment/mean_return", "alignment/p_deploy_aligned"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["algo"].string_value == "ppo" and start.hparams["scenario"].string_value == SCENARIO
    assert start.hparams["n_steps"].number_value == 512 and start.hparams["net_arch"].string_value == "[64, 64]"


def test_the_best_model_is_saved_and_replays_the_best_mean_return(trained):
    from stable_baselines3 import PPO

    cb = trained.callback
    assert cb.best_mean_return == max(s.outcomes.mean_return for _, s in cb.evaluations)
    best = PPO.load(trained.root / "best_model.zip", device="cpu")
    again = summarize(best, "ppo", trained.scenario, "belief", EVAL_EPISODES, seed=0)
    assert again.outcomes.mean_return == cb.best_mean_return
    assert not list(trained.root.glob(".best_model*"))  # no temporary file left behind


def _count_by_hand(model, scenario: str, observation: str, episodes: int, seed: int = 0):
    """Play the model as the evaluation does, all the episodes at once in one vector env of ``episodes``
    programs reset with ``seed``, each program's first episode counted, and count what the env applied
    from its own observations and infos."""
    env = ProxyAlignmentVectorEnv(episodes, scenario, observation=observation)
    T, k = env.n_phases, env.n_proxies
    usage = np.zeros((T, k, 3))
    reached, discarded = np.zeros(T + 1), np.zeros(T + 1)
    returns, aligned = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    obs, info = env.reset(seed=seed)
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        before = info["checkpoint"]
        action, _ = model.predict(obs, deterministic=True)  # in the model's action space
        obs, reward, terminated, truncated, info = env.step(env.programs.actions.from_model(action, model.action_space))
        for i in np.flatnonzero(~done):
            d = before[i]
            returns[i] += reward[i]
            reached[d] += d >= 1
            if info["checkpoint"][i] == d + 1 and not terminated[i]:  # phase d + 1 ran: its usage is in the observation
                usage[d] += env.layout.decode(obs[i])["usage"][d]
            elif d >= 1 and not (terminated[i] and info["deployed"][i]):
                discarded[d] += 1
            if terminated[i]:
                aligned[i] = info["deployed"][i] and info["aligned"][i]
        done |= terminated | truncated
    runs = usage.sum(axis=2, keepdims=True)
    shares = np.divide(usage, runs, out=np.zeros_like(usage), where=runs > 0)
    return shares, discarded[1:] / np.maximum(reached[1:], 1), float(np.mean(returns)), float(np.mean(aligned))


def test_inspect_reports_the_usage_the_trained_model_plays(trained, tmp_path):
    episodes = 40
    summary = inspect_model(trained.root / "model.zip", SCENARIO, episodes=episodes, tensorboard_log=tmp_path / "tb")
    assert (summary.algo, summary.observation, summary.outcomes.episodes) == ("ppo", "belief", episodes)
    shares, discards, mean_return, p_aligned = _count_by_hand(trained.model, SCENARIO, "belief", episodes)
    np.testing.assert_allclose(summary.usage_shares, shares, atol=1e-12)
    np.testing.assert_allclose(summary.discard_shares, discards, atol=1e-12)
    assert summary.outcomes.mean_return == pytest.approx(mean_return)
    assert summary.outcomes.p_deploy_aligned == pytest.approx(p_aligned)

    inspect_model(trained.root / "model.zip", SCENARIO, episodes=episodes, tensorboard_log=tmp_path / "tb")
    runs = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert runs == ["inspect_model_1", "inspect_model_2"]  # one run folder per inspection, as SB3 numbers runs
    acc = _events(tmp_path / "tb" / "inspect_model_1")
    assert [(e.step, e.value) for e in acc.Scalars("policy/pretrain/honesty_eval/train")] == [
        (0, pytest.approx(shares[0, 0, 1], abs=1e-6))
    ]
    assert [e.step for e in acc.Images("policy/heatmap")] == [0]
    assert acc.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode() == format_text(summary)


@pytest.mark.parametrize(
    "scenario,observation,seed,space",
    [(SCENARIO, "belief", 3, "flat"), ("loss_landscape", "history", 2, "flat"), (SCENARIO, "history", 0, "bare"),
     ("loss_landscape", "belief", 2, "multi")],
)
def test_inspect_reports_the_usage_of_a_mixed_policy(tmp_path, scenario, observation, seed, space):
    # Untrained networks with these seeds mix usages within a phase and discard at several
    # checkpoints, so every share is checked away from 0 and 1. ``space``: train.py's flat action; the env's own
    # (a model made on the env itself, whose action keeps the one-choice idea, as rl-baselines3-zoo trains); or the
    # MultiDiscrete without the one-choice idea, which train.py's agents acted in before the flat action.
    from stable_baselines3 import PPO

    env = make_env(scenario, "ppo", observation)
    actions = env.unwrapped.program.actions
    if space == "bare":
        env = ProxyAlignmentEnv(scenario, observation=observation)
    elif space == "multi":
        env = ModelAction(env.unwrapped, gym.spaces.MultiDiscrete(actions.nvec[:-1]))  # one idea: left out
    assert env.action_space == {"flat": gym.spaces.Discrete(actions.n_flat), "bare": actions.space(),
                                "multi": gym.spaces.MultiDiscrete([3] * (actions.size - 1))}[space]
    model = PPO("MlpPolicy", env, seed=seed)
    model.save(tmp_path / "m.zip")
    summary = inspect_model(tmp_path / "m.zip", scenario, episodes=40)
    assert summary.observation == observation
    shares, discards, mean_return, p_aligned = _count_by_hand(model, scenario, observation, 40)
    assert ((shares > 0) & (shares < 1)).any() and (discards > 0).sum() >= 2  # the case is not trivial
    np.testing.assert_allclose(summary.usage_shares, shares, atol=1e-12)
    np.testing.assert_allclose(summary.discard_shares, discards, atol=1e-12)
    assert summary.outcomes.mean_return == pytest.approx(mean_return)
    assert summary.outcomes.p_deploy_aligned == pytest.approx(p_aligned)


def test_the_inspect_command_prints_the_text_or_json(trained, capsys):
    from proxygym.cli import build_parser

    parser = build_parser()
    model = str(trained.root / "model")  # without .zip, as SB3 accepts it
    args = parser.parse_args(["inspect", model, "--scenario", SCENARIO, "--episodes", "10", "--json"])
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"] == SCENARIO and data["algo"] == "ppo"
    assert data["optimal_return"] == pytest.approx(solve(SCENARIO).value)  # inspect reports the gap to the optimum
    assert np.asarray(data["usage_shares"]).shape == (3, 1, 3) and data["best_strategy"]
    args = parser.parse_args(["inspect", model, "--scenario", SCENARIO, "--episodes", "10"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == format_text(inspect_model(model, SCENARIO, episodes=10))


def test_inspect_reads_the_scenario_from_the_run_folder(trained, tmp_path, capsys):
    """Without --scenario, inspect reads it from the args.yml train.py writes beside the model (also for a
    checkpoint one folder down); with none there, it asks for --scenario in one line."""
    import shutil

    from proxygym.cli import build_parser
    from proxygym.envs.errors import ProxyGymError

    run = tmp_path / "ppo" / "run_1"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained.root / "model.zip", run / "checkpoints" / "model_512_steps.zip")
    parser = build_parser()
    args = parser.parse_args(["inspect", str(run / "checkpoints" / "model_512_steps.zip"), "--episodes", "10", "--json"])
    with pytest.raises(ProxyGymError, match="give --scenario NAME"):
        args.func(args)
    (run / "args.yml").write_text(yaml.safe_dump({"algo": "ppo", "scenario": SCENARIO, "seed": 0}))
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["scenario"] == SCENARIO


def test_format_text_and_heatmap(trained):
    s = trained.callback.last_summary
    s.optimal_return = s.best_strategy_outcomes.mean_return + 0.01
    try:
        text = format_text(s)
        assert " ".join(trained.scenario.claim.split()) in text
        assert f"best strategy: {s.best_strategy}" in text and "optimal return (exact)" in text
        assert f"gap {s.optimality_gap:.4f}" in text and "| pretrain |" in text
        image = heatmap(s, trained.scenario)
    finally:
        s.optimal_return = None
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 200
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # drawn, not blank


def test_inspect_a_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(ProxyGymError, match="no such model file") as err:
        inspect_model(tmp_path / "nope.zip", SCENARIO)
    assert "\n" not in str(err.value)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ProxyGymError, match="not a saved Stable-Baselines3 model") as err:
        inspect_model(tmp_path / "junk.zip", SCENARIO)
    assert "\n" not in str(err.value)


def test_inspect_a_model_of_another_scenario_says_it_does_not_fit(tmp_path):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", make_env("loss_landscape", "ppo", "belief"), seed=0).save(tmp_path / "other.zip")
    with pytest.raises(ProxyGymError, match="does not fit scenario 'sticky_values'") as err:
        inspect_model(tmp_path / "other.zip", SCENARIO, episodes=4)
    assert "\n" not in str(err.value) and "another scenario" in str(err.value)


@pytest.mark.parametrize("algo,observation", [("a2c", "history"), ("dqn", "belief"), ("maskable_ppo", "belief"),
                                              ("recurrent_ppo", "history")])
def test_the_algorithm_and_observation_are_read_from_the_file(tmp_path, algo, observation):
    kwargs = {"buffer_size": 1000} if algo == "dqn" else {}
    model = algo_class(algo)(POLICIES.get(algo, "MlpPolicy"), make_env(SCENARIO, algo, observation), seed=0, **kwargs)
    model.save(tmp_path / "m.zip")
    summary = inspect_model(tmp_path / "m.zip", SCENARIO, episodes=4)
    assert (summary.algo, summary.observation) == (algo, observation)
    wrong = "ppo" if algo != "ppo" else "a2c"
    with pytest.raises(ProxyGymError, match=f"saved by {algo}, not {wrong}"):
        inspect_model(tmp_path / "m.zip", SCENARIO, algo=wrong, episodes=4)


def test_the_callback_refuses_an_observation_the_model_was_not_built_for():
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make_env(SCENARIO, "ppo", "history"), n_steps=64, batch_size=64, seed=0)
    callback = AlignmentEvalCallback(SCENARIO, "ppo", "belief", eval_freq=64, eval_episodes=2)
    with pytest.raises(ProxyGymError, match="observation='history'"):
        model.learn(64, callback=callback)

