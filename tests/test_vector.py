"""ProxyAlignmentVectorEnv: the batched twin of ProxyAlignment-v0, against the single env and the protocol
(its Monte Carlo checks against the exact analysis: test_monte_carlo.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import proxygym  # noqa: F401  (registers ProxyAlignment-v0)
from proxygym.agents.regimen import RegimenAgent
from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, ActionLayout, nearest_allowed
from proxygym.envs.belief import BatchBeliefFilter
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import parse_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import hand_scenario, mixed_scenario, random_valid_actions

MODES = ("history", "belief")
END_KEYS = ("deployed", "aligned", "abstained")
STEP_KEYS = ("p_aligned", "runs_used", "checkpoint", "invalid_action")


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


# docs/model.md, "Decision points and actions" and "Masks and invalid actions", by kind of decision point
PROTOCOL_ALLOWED = {"start": {CONTINUE}, "early": {CONTINUE, DISCARD}, "final": {DISCARD, DEPLOY}}
PROTOCOL_REPLACED = {"start": {DISCARD: CONTINUE, DEPLOY: CONTINUE}, "early": {DEPLOY: CONTINUE}, "final": {CONTINUE: DEPLOY}}


@pytest.mark.parametrize("T", [1, 2, 4])
def test_verdict_rules_are_the_protocol_table(T):
    """The allowed verdicts and the replacement of the others, at every decision point d = 0..T,
    for one program and for a batch, against the tables of docs/model.md."""
    kinds = ["start"] + ["early"] * (T - 1) + ["final"]
    d = np.repeat(np.arange(T + 1), 3)
    verdict = np.tile(np.arange(3), T + 1)
    want = [v if v in PROTOCOL_ALLOWED[kinds[c]] else PROTOCOL_REPLACED[kinds[c]][v] for c, v in zip(d, verdict)]
    assert nearest_allowed(verdict, d, T).tolist() == want
    assert [nearest_allowed(int(v), int(c), T) for v, c in zip(verdict, d)] == want
    masks = ActionLayout(2, 3).masks(np.arange(T + 1), T)
    for c, kind in enumerate(kinds):
        assert {v for v in range(3) if masks[c, v]} == PROTOCOL_ALLOWED[kind] and masks[c, 3:].all()


# -- the filter (against a brute-force posterior: test_belief.py) -------------------------------------
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
