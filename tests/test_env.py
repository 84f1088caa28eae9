"""ProxyAlignment-v0: the Gymnasium and SB3 contracts, seeding, the decision protocol, and no leaks."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import proxygym
from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, ActionLayout
from proxygym.envs.belief import RunTable
from proxygym.envs.core import SMALL_BATCH
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import compute_scenario, hand_scenario, mixed_scenario, random_valid_actions

MODES = ("history", "belief")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", shipped_scenarios())
def test_check_env_gymnasium_and_sb3(name, mode):
    env = gym.make("ProxyAlignment-v0", scenario=name, observation=mode, render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(ProxyAlignmentEnv(name, observation=mode), warn=True)


def test_registration_both_ways():
    a = gym.make("ProxyAlignment-v0", scenario="sticky_values")
    b = gym.make("proxygym:ProxyAlignment-v0", scenario="sticky_values", observation="belief")
    assert a.unwrapped.scenario.name == "sticky_values"
    assert b.observation_space.shape[0] > a.observation_space.shape[0]
    assert proxygym.ENV_ID == "ProxyAlignment-v0"


def test_scenario_argument_forms(tmp_path):
    import shutil

    path = tmp_path / "sticky_values.yaml"
    shutil.copy(proxygym.envs.scenario.SCENARIO_DIR / "sticky_values.yaml", path)
    loaded = load_scenario("sticky_values")
    for arg in ("sticky_values", str(path), loaded):
        env = ProxyAlignmentEnv(scenario=arg)
        assert env.scenario == loaded


def rollout(env, seed: int, steps: int = 200) -> list:
    """Random actions from a seeded action space; returns every (obs, reward, terminated, info)."""
    env.action_space.seed(seed)
    out = []
    obs, info = env.reset(seed=seed)
    out.append((obs.copy(), 0.0, False, dict(info)))
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((obs.copy(), r, term, dict(info)))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs.copy(), 0.0, False, dict(info)))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_trajectory(mode):
    a = rollout(ProxyAlignmentEnv("sticky_values", observation=mode), seed=7)
    b = rollout(ProxyAlignmentEnv("sticky_values", observation=mode), seed=7)
    c = rollout(ProxyAlignmentEnv("sticky_values", observation=mode), seed=8)
    for (o1, r1, t1, i1), (o2, r2, t2, i2) in zip(a, b):
        assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2 and i1 == i2
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))


@pytest.mark.parametrize("mode", MODES)
def test_observation_does_not_carry_the_hidden_state(mode):
    """Two programs whose hidden state differs but whose observable history is the same see the same observations.

    The proxy here is uninformative (it passes with probability 0.5 whatever the model), so
    with the same random stream both programs see the same test results; only their hidden
    base rate, and so their models' alignment, differ. If any slot of the observation leaked
    alignment, shaping or the base rate, the two observation streams would differ.
    """
    data = hand_scenario(budget=3)
    data["proxies"][0].update(sensitivity=0.5, false_pass=0.5, proximity=0.0, anti_damage=0.0)
    sc = parse_scenario(data)
    envs_ = [ProxyAlignmentEnv(sc, observation=mode) for _ in range(2)]
    differed = 0
    for seed in range(50):
        obs = [e.reset(seed=seed)[0] for e in envs_]
        envs_[0].program.rho[:] = [0.0] * len(envs_[0].program.rho)  # hidden: every model misaligned
        envs_[1].program.rho[:] = [1.0] * len(envs_[1].program.rho)  # hidden: every model aligned
        rng = np.random.default_rng(seed)
        done = False
        while not done:
            assert np.array_equal(obs[0], obs[1])
            action = np.array([rng.integers(3), rng.integers(3), 0])
            steps = [e.step(action) for e in envs_]
            obs = [s[0] for s in steps]
            done = steps[0][2]
            assert steps[1][2] == done
            assert steps[0][4]["p_aligned"] == steps[1][4]["p_aligned"]
        assert np.array_equal(obs[0], obs[1])
        differed += steps[0][4].get("aligned") != steps[1][4].get("aligned")
    assert differed > 0  # the hidden truth really did differ


def first_checkpoint(env: ProxyAlignmentEnv, seed: int = 0):
    env.reset(seed=seed)
    return env.step(np.array([CONTINUE] + [0] * env.n_proxies + [0]))


def test_protocol_masks_and_invalid_actions():
    sc = parse_scenario(hand_scenario(phases=[
        {"name": "a", "capability": 0.0, "plasticity": 0.5},
        {"name": "b", "capability": 0.0, "plasticity": 0.5},
    ]))
    env = ProxyAlignmentEnv(sc)
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask[:3].tolist() == [True, False, False] and mask[3:].all()
    # checkpoint 0: deploy is read as continue (the run starts, run_cost is charged)
    obs, r, term, _, info = env.step(np.array([DEPLOY, 0, 0]))
    assert info["invalid_action"] and info["checkpoint"] == 1 and info["runs_used"] == 1 and not term
    assert r == pytest.approx(-0.1)
    assert env.action_masks()[:3].tolist() == [True, True, False]
    # an early checkpoint: deploy is read as continue
    obs, r, term, _, info = env.step(np.array([DEPLOY, 0, 0]))
    assert info["invalid_action"] and info["checkpoint"] == 2 and not term
    assert env.action_masks()[:3].tolist() == [False, True, True]
    # the final checkpoint: continue is read as deploy
    obs, r, term, _, info = env.step(np.array([CONTINUE, 0, 0]))
    assert info["invalid_action"] and term and info["deployed"]
    assert r == (1.0 if info["aligned"] else -1.0)


def test_discard_restarts_then_abstains():
    sc = parse_scenario(hand_scenario(budget=2, reward={"aligned": 1.0, "misaligned": -1.0, "abstain": -0.25, "run_cost": 0.1}))
    env = ProxyAlignmentEnv(sc)
    obs, r, term, _, info = first_checkpoint(env)
    assert info["checkpoint"] == 1 and not info["invalid_action"]
    obs, r, term, _, info = env.step(np.array([DISCARD, 0, 0]))
    assert not term and info["checkpoint"] == 0 and info["runs_used"] == 1 and r == 0.0
    layout = env.layout.decode(obs)
    assert layout["runs_left"][0] == pytest.approx(0.5) and layout["idea_runs"][0] == pytest.approx(0.5)
    obs, r, term, _, info = env.step(np.array([CONTINUE, 0, 0]))
    assert r == pytest.approx(-0.1) and info["runs_used"] == 2
    obs, r, term, _, info = env.step(np.array([DISCARD, 0, 0]))
    assert term and info["abstained"] and not info["deployed"] and r == pytest.approx(-0.25)
    with pytest.raises(RuntimeError):
        env.step(np.array([CONTINUE, 0, 0]))


def test_render_shows_the_program():
    env = ProxyAlignmentEnv("sticky_values", render_mode="ansi")
    first_checkpoint(env)
    text = env.render()
    assert "checkpoint 1/" in text and "P(aligned | history)" in text
    assert all(name in text for name in env.scenario.proxy_names)
    assert ProxyAlignmentEnv("sticky_values").render() is None


def test_rgb_array_draws_each_run_and_its_ending():
    """The hand case (one phase, one proxy, budget 2). Run 1 trains and is discarded whatever it shows, run 2
    reserves and is deployed: read back pixel by pixel against the documented layout (a cell of 12 pixels,
    the usage in its upper half, the result in its lower half, the ending in the first column)."""
    from proxygym.envs.proxy_alignment import COLOURS, USAGE_COLOURS

    env = ProxyAlignmentEnv(parse_scenario(hand_scenario()), render_mode="rgb_array")
    env.reset(seed=3)
    c = env.CELL
    blank = env.render()
    assert blank.shape == (c * (1 + env.IMAGE_RUNS), c * 2 + 2, 3) and blank.dtype == np.uint8 and (blank == 255).all()
    results = []
    for usage, verdict in ((1, DISCARD), (0, DEPLOY)):
        obs, *_ = env.step(np.array([CONTINUE, usage, 0]))
        results.append(bool(obs[env.layout.slices["results"]][0] > 0.5))
        frame = env.render()
        assert frame.shape == blank.shape
        env.step(np.array([verdict, 0, 0]))
    frame = env.render()
    for row, (usage, end) in enumerate(((1, "discarded"), (0, "deployed"))):
        y, x = c * (1 + row), c + 1  # the run's row; its one cell
        assert tuple(frame[y + 1, x + 1]) == USAGE_COLOURS[usage]
        assert tuple(frame[y + c // 2 + 1, x + 1]) == COLOURS["pass" if results[row] else "fail"]
        assert tuple(frame[y + 1, 1]) == COLOURS[end]
    assert (frame[c * 3 :] == 255).all()  # no third run


def test_sb3_make_vec_env_renders_rgb_arrays():
    """SB3's make_vec_env asks for render_mode='rgb_array' by default; the env takes it and its VecEnv renders."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("ProxyAlignment-v0", n_envs=2, env_kwargs={"scenario": "sticky_values"})
    venv.reset()
    venv.step(np.zeros((2, 3), dtype=np.int64))
    image = venv.render()
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    venv.close()


def test_gymnasium_vector_envs_that_render():
    """Gymnasium's vector RecordVideo renders a vector env: the batched one says, in one line, to make one of
    single envs instead (vectorization_mode='sync'), whose frames are the single env's images."""
    with pytest.raises(ValueError, match="vectorization_mode='sync'") as err:
        gym.make_vec("ProxyAlignment-v0", num_envs=2, scenario="sticky_values", render_mode="rgb_array")
    assert "\n" not in str(err.value)
    envs = gym.make_vec("ProxyAlignment-v0", num_envs=2, vectorization_mode="sync", scenario="sticky_values",
                        render_mode="rgb_array")
    envs.reset(seed=0)
    envs.step(np.zeros((2, 3), dtype=np.int64))
    frames = envs.render()
    single = ProxyAlignmentEnv("sticky_values", render_mode="rgb_array")
    single.reset(seed=0)
    assert len(frames) == 2 and all(f.shape == single.render().shape and f.dtype == np.uint8 for f in frames)
    envs.close()


def test_bad_observation_mode_is_refused():
    with pytest.raises(ValueError, match="history, belief"):
        ProxyAlignmentEnv("sticky_values", observation="full")


def test_one_namespace_beside_a_users_own_envs_and_agents(tmp_path):
    """Installed, the project is only ``proxygym``: a research folder with its own ``envs/`` and
    ``agents/`` packages keeps them, and ``gym.make("proxygym:ProxyAlignment-v0")`` still works."""
    for pkg in ("envs", "agents"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"WHOSE = 'theirs: {pkg}'\n")
    script = (
        "import importlib.util, gymnasium as gym, envs, agents\n"
        "env = gym.make('proxygym:ProxyAlignment-v0', scenario='sticky_values')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(envs.WHOSE, agents.WHOSE, env.unwrapped.scenario.name, obs.shape[0])\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["theirs:", "envs", "theirs:", "agents", "sticky_values", "24"]
    # and nothing but proxygym is importable from a folder of no packages: no top-level envs, agents, scenarios, train
    empty = tmp_path / "empty"
    empty.mkdir()
    probe = "import importlib.util as u; print([n for n in ('envs', 'agents', 'scenarios', 'train') if u.find_spec(n)])"
    res = subprocess.run([sys.executable, "-c", probe], cwd=empty, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", (res.stdout, res.stderr)


@pytest.mark.parametrize("mode", MODES)
def test_the_observation_kept_in_place_is_the_one_encoded_from_scratch(mode):
    """The env writes each observation's slots in place as the rules change the state; after every step of
    random play it equals the observation encoded afresh from the programs' state by the layout
    (with persistent proxies, a compute budget, two proxies and autoresets)."""
    for sc, n in ((mixed_scenario(), SMALL_BATCH), (compute_scenario(), SMALL_BATCH), (mixed_scenario(), 64)):
        vec = ProxyAlignmentVectorEnv(n, sc, observation=mode)  # both engines: a list of programs, arrays
        obs, _ = vec.reset(seed=1)
        rng = np.random.default_rng(1)
        for _ in range(150):
            assert np.array_equal(obs, vec.programs.encode())
            obs, *_ = vec.step(random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec))


def test_the_model_action_space_is_one_index_per_action():
    """train.py's agents act in ``ActionLayout.model_space()``: one Discrete index per distinct action, the mixed-radix
    number whose digits are (verdict, usages, idea), the verdict most significant; flat masks allow an index exactly
    where each of its components is allowed. Indexes and masks as worked by hand."""
    one = ActionLayout(n_proxies=1, n_ideas=1)
    assert one.model_space() == gym.spaces.Discrete(9) and one.n_flat == 9
    # (verdict 2, usage 1) is 2 * 3 + 1; (0, 2) is 2; the one idea adds no digit
    assert one.to_model([[2, 1, 0], [0, 2, 0]]).tolist() == [7, 2]
    assert one.from_model([7, 2]).tolist() == [[2, 1, 0], [0, 2, 0]]
    assert one.from_model(np.arange(9)).tolist() == [[v, u, 0] for v in range(3) for u in range(3)]
    # a run's start: continue only (indexes 0, 1, 2); an early checkpoint: continue or discard (0..5); the final
    # checkpoint: discard or deploy (3..8)
    assert one.model_masks(one.masks(0, 3)).tolist() == [True] * 3 + [False] * 6
    assert one.model_masks(one.masks(1, 3)).tolist() == [True] * 6 + [False] * 3
    assert one.model_masks(one.masks(3, 3)).tolist() == [False] * 3 + [True] * 6

    many = ActionLayout(n_proxies=2, n_ideas=3)
    assert many.model_space() == gym.spaces.Discrete(81)
    # (verdict 1, usages 2 and 0, idea 2): 1 * 27 + 2 * 9 + 0 * 3 + 2 = 47
    assert many.to_model([1, 2, 0, 2]).tolist() == 47 and many.from_model(47).tolist() == [[1, 2, 0, 2]]
    # masks that also forbid some usages and ideas (the env's never do): the flat mask is the product of the
    # components' masks, index by index
    verdict, first, second, idea = [True, True, False], [True, False, True], [False, True, True], [True, False, True]
    mask = np.array(verdict + first + second + idea)
    expected = [verdict[i // 27] and first[i // 9 % 3] and second[i // 3 % 3] and idea[i % 3] for i in range(81)]
    assert many.model_masks(mask).tolist() == expected and sum(expected) == 16  # 2 * 2 * 2 * 2
    assert many.model_masks(np.stack([mask, many.masks(0, 3)])).tolist() == [expected, [i < 27 for i in range(81)]]


def test_the_multidiscrete_model_spaces_are_kept():
    """Past ``FLAT_MAX`` actions the model space is the MultiDiscrete without a one-choice component (the idea, in a
    scenario of one idea), as every scenario's was before the flat one; a model may also act in the env's own space.
    Each maps both ways as worked by hand."""
    one = ActionLayout(n_proxies=1, n_ideas=1)
    multi = gym.spaces.MultiDiscrete([3, 3])
    assert one.model_space(flat=False) == multi and one.fits_model(multi) and one.fits_model(one.space())
    assert not one.fits_model(gym.spaces.Discrete(8)) and not one.fits_model(gym.spaces.MultiDiscrete([3, 3, 2]))
    assert one.from_model([[2, 1], [0, 2]], multi).tolist() == [[2, 1, 0], [0, 2, 0]]
    assert one.from_model([[2, 1, 0]], one.space()).tolist() == [[2, 1, 0]]  # already the env's action
    assert one.to_model([[1, 2, 0]], multi).tolist() == [[1, 2]]
    start = [True, False, False, True, True, True, True]  # continue only; every usage; the one idea
    assert one.masks(0, 3).tolist() == start and one.model_masks(one.masks(0, 3), multi).tolist() == start[:6]
    assert one.model_masks(one.masks(0, 3), one.space()).tolist() == start
    many = ActionLayout(n_proxies=2, n_ideas=3)  # every component has a choice: the MultiDiscrete is the env's
    assert many.model_space(flat=False) == many.space() == gym.spaces.MultiDiscrete([3, 3, 3, 3])
    assert many.model_masks(many.masks(1, 3), many.space()).tolist() == many.masks(1, 3).tolist()
    # 4 proxies and one idea: 3**5 = 243 actions, flat; 5 proxies: 729, past FLAT_MAX; 3 proxies and 4 ideas: 324
    assert ActionLayout(4, 1).model_space() == gym.spaces.Discrete(243) and ActionLayout.FLAT_MAX == 256
    assert ActionLayout(5, 1).model_space() == gym.spaces.MultiDiscrete([3] * 6)
    assert ActionLayout(3, 4).model_space() == gym.spaces.MultiDiscrete([3, 3, 3, 3, 4])
    assert ActionLayout(5, 1).model_space(flat=True) == gym.spaces.Discrete(729)  # DQN's, whatever its size


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_the_single_env_of_an_algorithm_plays_the_bare_env(algo):
    """``make_env`` (the single env train.py's agents act in, DQN's too) steps exactly as the bare env given the
    action its flat index stands for, worked out by hand; its masks are the flat ones."""
    from stable_baselines3.common.env_checker import check_env

    from proxygym.agents.training import ModelAction, make_env

    wrapped, bare = make_env("sticky_values", algo, "history"), ProxyAlignmentEnv("sticky_values")
    assert isinstance(wrapped, ModelAction) and wrapped.action_space == gym.spaces.Discrete(9)
    check_env(wrapped)
    a, _ = wrapped.reset(seed=4)
    b, _ = bare.reset(seed=4)
    rng = np.random.default_rng(4)
    for _ in range(200):
        assert np.array_equal(a, b)
        verdicts = bare.action_masks()[:3]
        assert wrapped.action_masks().tolist() == [bool(verdicts[i // 3]) for i in range(9)]
        index = int(rng.integers(9))
        a, ra, ta, _, ia = wrapped.step(index)
        b, rb, tb, _, ib = bare.step(np.array([index // 3, index % 3, 0]))
        assert (ra, ta, ia) == (rb, tb, ib)
        if ta:
            a, _ = wrapped.reset()
            b, _ = bare.reset()
    legacy = ModelAction(ProxyAlignmentEnv("sticky_values"), gym.spaces.MultiDiscrete([3, 3]))
    legacy.reset(seed=0)
    assert legacy.action_masks().tolist() == [True, False, False, True, True, True]
    with pytest.raises(ValueError, match="not an action space"):
        ModelAction(ProxyAlignmentEnv("sticky_values"), gym.spaces.Discrete(10))


def test_a_single_env_with_full_memos_plays_the_same():
    """A single env whose belief table holds 8 beliefs keeps only its own when full (at a run's start), and
    whose memo of transition rows holds 2 starts afresh when full: both compute what they forgot again, so
    the env gives the same observations, rewards and infos as with room to spare."""
    sc, other = mixed_scenario(), mixed_scenario()  # two scenario objects: the rows' memo is one per scenario
    roomy, tight = ProxyAlignmentEnv(sc, observation="belief"), ProxyAlignmentEnv(other, observation="belief")
    tight.program.table = RunTable(tight.dynamics, max_bytes=0, min_ids=8)
    tight.program._tables.row_limit = 2
    a, info_a = roomy.reset(seed=2)
    b, info_b = tight.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(400):
        assert np.array_equal(a, b) and info_a == info_b
        action = random_valid_actions(rng, roomy.action_masks()[None], roomy.action_space.nvec)[0]
        a, r_a, t_a, _, info_a = roomy.step(action)
        b, r_b, t_b, _, info_b = tight.step(action)
        assert (r_a, t_a) == (r_b, t_b)
        if t_a:
            a, info_a = roomy.reset()
            b, info_b = tight.reset()
    assert tight.program.table.compactions >= 3 and len(tight.program._rows) <= 2 < len(roomy.program._rows)
