"""ProxyAlignmentVectorEnv: the batched twin of ProxyAlignment-v0, against the single env, the filter and the exact analysis."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import proxygym  # noqa: F401  (registers ProxyAlignment-v0)
from proxygym.agents.regimen import RegimenAgent, play_batch
from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, nearest_allowed
from proxygym.envs.analysis import analyze
from proxygym.envs.belief import BatchBeliefFilter, BeliefFilter
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import ANTI, make_regimen
from proxygym.envs.scenario import parse_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.conftest import within_interval, z_value
from tests.test_analysis import hand_scenario, regimens_to_check

MODES = ("history", "belief")
END_KEYS = ("deployed", "aligned", "abstained")
STEP_KEYS = ("p_aligned", "runs_used", "checkpoint", "invalid_action")


def mixed_scenario(**over):
    """Two proxies, three phases, three ideas whose base-rate priors have 1, 2 and 3 support values."""
    data = hand_scenario(
        budget=3,
        phases=[
            {"name": "a", "capability": 0.2, "plasticity": 0.6},
            {"name": "b", "capability": 0.6, "plasticity": 0.3},
            {"name": "c", "capability": 1.0, "plasticity": 0.1},
        ],
        ideas=[
            {"name": "known", "base_rate": 0.3, "drift": 0.1},
            {"name": "coin", "base_rate": {"values": [0.0, 1.0], "probs": [0.6, 0.4]}},
            {"name": "three", "base_rate": {"values": [0.1, 0.5, 0.9], "probs": [0.2, 0.5, 0.3]}, "drift": 0.2},
        ],
    )
    second = dict(data["proxies"][0], name="probe", sensitivity=0.8, false_pass=0.3, steer=-0.2, native=-1.0,
                  anti_damage=0.2, proximity=0.3, difficulty=0.7, sharpness=5.0)
    data["proxies"].append(second)
    data.update(over)
    return parse_scenario(data)


def random_valid_actions(rng: np.random.Generator, masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """A verdict uniform over the allowed ones, usages and idea uniform."""
    actions = np.floor(rng.random((len(masks), len(nvec))) * nvec).astype(np.int64)
    actions[:, 0] = np.argmax(rng.random((len(masks), 3)) * masks[:, :3], axis=1)
    return actions


# -- the Gymnasium vector contract ----------------------------------------------------------
def test_make_vec_uses_the_vector_entry_point():
    vec = gym.make_vec("ProxyAlignment-v0", num_envs=8, vectorization_mode="vector_entry_point", scenario="sticky_values")
    single = ProxyAlignmentEnv("sticky_values")
    assert isinstance(vec.unwrapped, ProxyAlignmentVectorEnv) and vec.num_envs == 8
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.single_observation_space == single.observation_space
    assert vec.single_action_space == single.action_space
    assert vec.observation_space.shape == (8,) + single.observation_space.shape
    assert vec.action_space.shape == (8,) + single.action_space.shape
    belief = gym.make_vec("ProxyAlignment-v0", num_envs=2, vectorization_mode="vector_entry_point",
                          scenario="sticky_values", observation="belief")
    assert belief.single_observation_space == ProxyAlignmentEnv("sticky_values", observation="belief").observation_space


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", shipped_scenarios())
def test_spaces_info_format_and_autoreset(name, mode):
    """Every observation lies in the space, info follows Gymnasium's vector format, and the
    step after a program's episode ends resets it (reward 0, not terminated, the first
    observation a fresh single env shows)."""
    n = 64
    vec = ProxyAlignmentVectorEnv(n, name, observation=mode)
    first_obs = ProxyAlignmentEnv(name, observation=mode).reset(seed=0)[0]
    rng = np.random.default_rng(1)
    obs, info = vec.reset(seed=1)
    assert vec.observation_space.contains(obs) and np.array_equal(obs, np.tile(first_obs, (n, 1)))
    ended = np.zeros(n, dtype=bool)
    resets_seen = 0
    for _ in range(60):
        masks = vec.action_masks()
        assert masks.shape == (n, 3 + 3 * vec.n_proxies + vec.n_ideas)
        obs, reward, terminated, truncated, info = vec.step(random_valid_actions(rng, masks, vec.single_action_space.nvec))
        assert vec.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (n,) and not truncated.any()
        for key in STEP_KEYS:
            assert info[key].shape == (n,) and info[f"_{key}"].dtype == bool and info[f"_{key}"].all()
        assert not info["invalid_action"].any()  # only allowed verdicts were sent
        if terminated.any():
            for key in END_KEYS:
                assert np.array_equal(info[f"_{key}"], terminated)
            assert np.array_equal(info["deployed"] | info["abstained"], terminated)
            assert not (info["aligned"] & ~info["deployed"]).any()
        else:
            assert not any(key in info for key in END_KEYS)
        # the programs that ended at the previous step were reset by this one
        assert np.all(reward[ended] == 0.0) and not terminated[ended].any()
        assert np.array_equal(obs[ended], np.tile(first_obs, (ended.sum(), 1)))
        assert np.all(info["checkpoint"][ended] == 0) and np.all(info["runs_used"][ended] == 0)
        resets_seen += ended.sum()
        ended = terminated.copy()
    assert resets_seen > 0


def test_reset_mask_resets_only_the_programs_chosen():
    vec = ProxyAlignmentVectorEnv(6, "sticky_values")
    vec.reset(seed=0)
    obs, *_ = vec.step(np.array([[CONTINUE, 0, 0]] * 6))
    mask = np.array([True, False, True, False, False, False])
    fresh, info = vec.reset(options={"reset_mask": mask})
    assert np.array_equal(fresh[~mask], obs[~mask])
    assert np.all(info["checkpoint"][mask] == 0) and np.array_equal(info["_checkpoint"], mask)
    assert np.array_equal(fresh[mask], np.tile(ProxyAlignmentEnv("sticky_values").reset(seed=0)[0], (2, 1)))


def test_step_before_reset_and_bad_actions_are_refused():
    vec = ProxyAlignmentVectorEnv(3, "sticky_values")
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros((3, 3), dtype=np.int64))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.full((3, 3), 3, dtype=np.int64))


# -- the same rules as the single env -----------------------------------------------------------
def rollout(vec: ProxyAlignmentVectorEnv, seed: int, steps: int = 40) -> list:
    rng = np.random.default_rng(seed)
    out = [vec.reset(seed=seed)]
    for _ in range(steps):
        out.append(vec.step(random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec)))
    return out


def same_step(a, b) -> bool:
    return all(
        (x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)) if isinstance(x, dict) else np.array_equal(x, y)
        for x, y in zip(a, b)
    )


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_batch_different_seed_different(mode):
    sc = mixed_scenario()
    a = rollout(ProxyAlignmentVectorEnv(32, sc, observation=mode), seed=7)
    b = rollout(ProxyAlignmentVectorEnv(32, sc, observation=mode), seed=7)
    c = rollout(ProxyAlignmentVectorEnv(32, sc, observation=mode), seed=8)
    assert all(same_step(x, y) for x, y in zip(a, b))
    assert not all(same_step(x, y) for x, y in zip(a, c))
    # reseeding the same instance replays the batch too
    vec = ProxyAlignmentVectorEnv(32, sc, observation=mode)
    rollout(vec, seed=3)
    assert all(same_step(x, y) for x, y in zip(rollout(vec, seed=7), a))


@pytest.mark.parametrize("mode", MODES)
def test_deterministic_scenario_matches_the_single_env_step_for_step(mode):
    """Where every probability is 0 or 1 the random streams do not matter, so the vector
    env and N single envs fed the same actions (invalid verdicts included) must agree on
    every observation, reward, termination and info value, through discards, abstentions,
    deployments and autoresets."""
    data = hand_scenario(
        budget=3,
        reward={"aligned": 1.0, "misaligned": -1.0, "abstain": -0.25, "run_cost": 0.1},
        phases=[{"name": "a", "capability": 0.0, "plasticity": 0.0}, {"name": "b", "capability": 0.0, "plasticity": 0.0}],
        ideas=[{"name": "good", "base_rate": 1.0}, {"name": "bad", "base_rate": 0.0}],
    )
    data["proxies"][0].update(sensitivity=1.0, false_pass=0.0, proximity=0.0, anti_damage=0.0)
    data["proxies"].append(dict(data["proxies"][0], name="other", sensitivity=0.0, false_pass=1.0))
    sc = parse_scenario(data)
    n = 24
    vec = ProxyAlignmentVectorEnv(n, sc, observation=mode)
    singles = [ProxyAlignmentEnv(sc, observation=mode) for _ in range(n)]
    obs, info = vec.reset(seed=0)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=i)
        assert np.array_equal(obs[i], o) and all(info[k][i] == v for k, v in inf.items())
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    for _ in range(80):
        actions = np.floor(rng.random((n, 4)) * vec.single_action_space.nvec).astype(np.int64)
        obs, reward, terminated, _, info = vec.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:
                o, inf = env.reset()
                r, t = 0.0, False
            else:
                o, r, t, _, inf = env.step(actions[i])
            assert np.array_equal(obs[i], o)
            assert reward[i] == pytest.approx(r, abs=1e-15) and terminated[i] == t
            for key, value in inf.items():
                assert info[f"_{key}"][i] and info[key][i] == value, (key, info[key][i], value)
            assert all(not info.get(f"_{k}", np.zeros(n, bool))[i] for k in END_KEYS if k not in inf)
        ended = terminated.copy()


def test_verdict_rules_are_the_single_envs():
    sc = parse_scenario(hand_scenario(phases=[
        {"name": "a", "capability": 0.0, "plasticity": 0.5},
        {"name": "b", "capability": 0.0, "plasticity": 0.5},
    ]))
    vec = ProxyAlignmentVectorEnv(3, sc)
    vec.reset(seed=0)
    assert vec.action_masks()[:, :3].tolist() == [[True, False, False]] * 3
    obs, r, term, _, info = vec.step(np.array([[DEPLOY, 0, 0], [DISCARD, 0, 0], [CONTINUE, 0, 0]]))
    assert info["invalid_action"].tolist() == [True, True, False]
    assert np.all(info["checkpoint"] == 1) and np.all(info["runs_used"] == 1) and np.allclose(r, -0.1)
    assert vec.action_masks()[:, :3].tolist() == [[True, True, False]] * 3
    obs, r, term, _, info = vec.step(np.array([[DEPLOY, 0, 0], [CONTINUE, 0, 0], [DISCARD, 0, 0]]))
    assert info["invalid_action"].tolist() == [True, False, False]
    assert info["checkpoint"].tolist() == [2, 2, 0] and not term.any()
    obs, r, term, _, info = vec.step(np.array([[CONTINUE, 0, 0], [DEPLOY, 0, 0], [CONTINUE, 0, 0]]))
    assert info["invalid_action"].tolist() == [True, False, False]
    assert term.tolist() == [True, True, False] and info["deployed"].tolist() == [True, True, False]
    assert np.all(r[:2] == np.where(info["aligned"][:2], 1.0, -1.0)) and r[2] == pytest.approx(-0.1)
    for verdict in range(3):
        for d in range(3):
            assert nearest_allowed(np.array([verdict]), np.array([d]), 2)[0] == nearest_allowed(verdict, d, 2)


# -- the filter -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_filter_equals_the_single_filter(seed):
    """Each program's history, replayed from its observations and actions into its own
    single-episode BeliefFilter, gives the batched filter's read-outs to 1e-12 (ideas with
    priors of 1, 2 and 3 support values, two proxies, anti-training, discards, autoresets)."""
    sc = mixed_scenario()
    n = 48
    vec = ProxyAlignmentVectorEnv(n, sc, observation="belief")
    dyn = vec.dynamics
    filters = [BeliefFilter(dyn) for _ in range(n)]
    n_anti = np.zeros((n, dyn.n_proxies), dtype=np.int64)
    rng = np.random.default_rng(seed)
    obs, info = vec.reset(seed=seed)
    ended = np.zeros(n, dtype=bool)
    checked = 0
    for _ in range(60):
        before = info["checkpoint"].copy()
        actions = random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec)
        actions[rng.random(n) < 0.2, 0] = DEPLOY  # some invalid verdicts too
        obs, _, terminated, _, info = vec.step(actions)
        seen = vec.layout.decode(obs)
        for i, f in enumerate(filters):
            d = int(before[i])
            verdict = nearest_allowed(int(actions[i, 0]), d, dyn.n_phases)
            if ended[i]:
                f.reset()
            elif verdict == CONTINUE:
                if d == 0:
                    f.start_run(int(actions[i, -1]))
                    n_anti[i] = 0
                usage = actions[i, 1 : 1 + dyn.n_proxies]
                n_anti[i] += usage == ANTI
                f.advance(d, dyn.usage_code(usage))
                f.observe(d, n_anti[i], seen["results"][i, d, :, 0] > 0.5)
            elif verdict == DISCARD:
                f.end_run()
            assert abs(f.p_aligned - info["p_aligned"][i]) <= 1e-12
            assert np.allclose(f.p_shaped, vec.belief.p_shaped[i], rtol=0, atol=1e-12)
            assert np.allclose(f.mean_base_rates, vec.belief.mean_base_rates[i], rtol=0, atol=1e-12)
            assert np.allclose(seen["p_aligned"][i, 0], f.p_aligned, rtol=0, atol=1e-6)  # float32 in the observation
            checked += f.idea is not None
        ended = terminated.copy()
    assert checked > 1000


def test_batch_filter_keeps_the_padded_support_at_zero():
    sc = mixed_scenario()
    b = BatchBeliefFilter(Dynamics(sc), 3)
    b.start_run(np.array([0, 1, 2]))
    b.advance(0, 0)
    b.observe(0, np.zeros((3, 2), dtype=np.int64), np.array([[True, False], [False, False], [True, True]]))
    b.end_run()
    assert np.all(b.weights[:, 0, 1:] == 0.0) and np.all(b.weights[:, 1, 2:] == 0.0)
    assert np.allclose(b.weights.sum(axis=2), 1.0)


# -- the regimen agent --------------------------------------------------------------------------
def test_regimen_agent_acts_alike_on_one_observation_and_on_a_batch():
    sc = mixed_scenario()
    reg = make_regimen(sc, "TR,RA,RR", screen={1: "ask", 2: "probe"}, idea="three", fallback="deploy")
    vec = ProxyAlignmentVectorEnv(64, sc)
    agent = RegimenAgent(reg, vec.layout, sc.budget)
    obs, _ = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        batch = agent(obs)
        assert batch.shape == (64, 4)
        assert all(np.array_equal(batch[i], agent(obs[i])) for i in range(64))
        obs, *_ = vec.step(np.where(rng.random((64, 1)) < 0.7, batch,
                                    random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec)))


# -- Monte Carlo through the vector env -----------------------------------------------------------
def test_monte_carlo_agrees_with_exact_analysis(shipped):
    """Every regimen test_analysis checks through the single env, played by the batched
    RegimenAgent through the vector env with 20,000 episodes: each outcome frequency
    (deploy aligned, deploy misaligned, abstain), the mean runs and the mean return lie
    inside 99% intervals around the exact values, family-wise (Bonferroni over every
    comparison here), so a correct env fails this test less than 1% of the time.
    """
    episodes = 20_000
    cases = [(sc, r) for sc in shipped for r in regimens_to_check(sc)]
    z = z_value(0.99, comparisons=5 * len(cases))
    failures = []
    for n, (sc, reg) in enumerate(cases):
        exact = analyze(sc, reg)
        vec = ProxyAlignmentVectorEnv(episodes, sc.model_copy(update={"budget": reg.budget}))
        returns, last = play_batch(vec, RegimenAgent(reg, vec.layout, reg.budget), seed=n)
        counts = {
            "aligned": int(last["aligned"].sum()),
            "misaligned": int((last["deployed"] & ~last["aligned"]).sum()),
            "abstain": int(last["abstained"].sum()),
        }
        assert sum(counts.values()) == episodes
        for key, p in (("aligned", exact.p_deploy_aligned), ("misaligned", exact.p_deploy_misaligned),
                       ("abstain", exact.p_abstain)):
            if not within_interval(counts[key], episodes, p, z):
                failures.append(f"{sc.name} [{reg.describe(sc)}]: {key} {counts[key] / episodes:.4f} vs exact {p:.4f}")
        for key, values, target in (("runs", last["runs_used"].astype(float), exact.expected_runs),
                                    ("return", returns, exact.expected_return)):
            sd = max(values.std(ddof=1), 1e-9)
            if abs(values.mean() - target) > z * sd / math.sqrt(episodes) + 1e-9:
                failures.append(f"{sc.name} [{reg.describe(sc)}]: mean {key} {values.mean():.4f} vs exact {target:.4f}")
    assert not failures, "\n".join(failures)


def test_monte_carlo_with_priors_and_screens():
    """The shipped scenarios mostly use one idea and no anti-training damage; here ideas with
    priors, two proxies, damaging anti-training, early screens and both fallbacks."""
    sc = mixed_scenario()
    regimens = [
        make_regimen(sc, "AR,TA,RR", screen={1: "ask"}, idea="three"),  # anti-training damages the tests
        make_regimen(sc, "AT,RR,TR", test="probe", screen={2: "ask,probe"}, idea="coin", fallback="abstain"),
        make_regimen(sc, "R", idea="known", budget=1),
    ]
    episodes = 20_000
    z = z_value(0.99, comparisons=3 * len(regimens))
    for n, reg in enumerate(regimens):
        exact = analyze(sc, reg)
        vec = ProxyAlignmentVectorEnv(episodes, sc.model_copy(update={"budget": reg.budget}), observation="belief")
        _, last = play_batch(vec, RegimenAgent(reg, vec.layout, reg.budget), seed=100 + n)
        assert within_interval(int(last["aligned"].sum()), episodes, exact.p_deploy_aligned, z)
        assert within_interval(int(last["abstained"].sum()), episodes, exact.p_abstain, z)
        runs = last["runs_used"].astype(float)
        assert abs(runs.mean() - exact.expected_runs) <= z * max(runs.std(ddof=1), 1e-9) / math.sqrt(episodes) + 1e-9
