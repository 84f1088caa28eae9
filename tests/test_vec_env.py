"""The SB3 VecEnv adapter over the vector env (agents/vec_env.py): same-step autoreset, infos, masks, DQN's
flat actions, seeding, the outcome distribution of its episodes, and a short SB3 run of every algorithm."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from proxygym.agents.regimen import RegimenAgent
from proxygym.agents.training import ALGOS, POLICIES, algo_class
from proxygym.agents.vec_env import ProxyAlignmentSB3VecEnv, make_vec_env
from proxygym.envs.analysis import analyze
from proxygym.envs.belief import RunTable
from proxygym.envs.core import Program, Programs, fresh_observation
from proxygym.envs.outcomes import Z95
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import compute_scenario, mixed_scenario, random_valid_actions, z_value
from tests.v1_cases import BOTH_PERSISTENT_K2

SCENARIOS = {
    "sticky_values": lambda: load_scenario("sticky_values"),
    "mixed": mixed_scenario,  # two proxies, three ideas with 1, 2 and 3 base-rate values
    "compute": compute_scenario,  # a compute budget, a persistent proxy (dense transitions)
    "v1": lambda: parse_scenario(BOTH_PERSISTENT_K2),  # persistent proxies with anti_damage: transitions bit by bit
    "worlds": lambda: load_scenario("uncertain_monitor"),  # a hidden world drawn with the base rate
    "worlds_by_blocks": lambda: _without_combined_table(load_scenario("uncertain_monitor")),
}


def _without_combined_table(sc):
    """The scenario with its worlds' phases applied world by world (as when the combined table would be too large)."""
    from proxygym.envs.dynamics import Dynamics

    Dynamics.of(sc).transition = None  # (the object every consumer of this scenario object shares)
    return sc


def _actions(rng, masks, nvec, invalid_share=0.2):
    actions = random_valid_actions(rng, masks, nvec)
    bad = rng.random(len(actions)) < invalid_share
    actions[bad, 0] = rng.integers(3, size=bad.sum())  # verdicts that may not be allowed
    return actions


@pytest.mark.parametrize("mode", ["history", "belief"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_one_program_plays_the_single_env_reset_by_hand(name, mode):
    """One program with the same seed and actions plays the single env's trajectories, reset by hand when an
    episode ends: each terminal observation is the single env's last one, the next observation its reset one,
    and the infos are the single env's (plus the terminal observation), with SB3's types."""
    sc = SCENARIOS[name]()
    single = ProxyAlignmentEnv(sc, observation=mode)
    adapter = ProxyAlignmentSB3VecEnv(sc, "ppo", 1, mode)
    adapter.seed(7)
    obs = adapter.reset()
    o, inf = single.reset(seed=7)
    assert np.array_equal(obs[0], o) and adapter.reset_infos[0] == inf
    rng = np.random.default_rng(7)
    episodes = 0
    for _ in range(300):
        action = _actions(rng, adapter.programs.masks(), adapter.single_action_space.nvec)
        assert np.array_equal(adapter.env_method("action_masks")[0], adapter.actions.model_masks(single.action_masks()))
        obs, rewards, dones, infos = adapter.step(adapter.actions.to_model(action))  # as a model acts
        o, r, t, tr, inf = single.step(action[0])
        assert obs.dtype == np.float32 and rewards.dtype == np.float32 and dones.dtype == bool
        assert rewards[0] == np.float32(r) and dones[0] == t
        info = dict(infos[0])
        if t:
            episodes += 1
            last = info.pop("terminal_observation")
            assert np.array_equal(last, o)  # the real last observation
            assert info.pop("TimeLimit.truncated") is False
            o, reset_info = single.reset()
            assert adapter.reset_infos[0] == reset_info
        assert info == inf and all(type(info[k]) is type(inf[k]) for k in inf)
        assert np.array_equal(obs[0], o)
    assert episodes > 20


@pytest.mark.parametrize("mode", ["history", "belief"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_one_program_is_a_batch_of_one_to_the_bit(name, mode):
    """The two engines of the rules: a :class:`Program` (plain Python numbers, beliefs looked up per history)
    and a one-program :class:`Programs` (numpy arrays, the filter stepped), fed the same random stream and
    the same actions (a fifth with verdicts that may not be allowed), agree on every observation, reward,
    ending, belief and count, exactly, over a few dozen episodes."""
    sc = SCENARIOS[name]()
    one, batch = Program(sc, mode), Programs(sc, 1, mode)
    one.rng, batch.rng = np.random.default_rng(3), np.random.default_rng(3)
    one.reset()
    batch.reset(np.zeros(1, dtype=np.int64))
    rng = np.random.default_rng(3)
    live = np.ones(1, dtype=bool)
    episodes = 0
    for _ in range(400):
        assert np.array_equal(one.obs, batch.observe()[0]) and np.array_equal(one.masks(), batch.masks()[0])
        assert (one.p_aligned, one.runs_used, one.checkpoint, one.compute_left, one.world, one.state) == (
            batch.p_aligned[0], batch.runs_used[0], batch.checkpoint[0], batch.compute_left[0], batch.world[0],
            batch.state[0])
        for mine, theirs in zip(one.read_outs(), batch.read_outs()):
            assert np.array_equal(np.asarray(mine), theirs[0])
        action = _actions(rng, batch.masks(), batch.actions.nvec)
        got = one.step(int(action[0, 0]), action[0, 1:-1].tolist(), int(action[0, -1]))
        out = batch.step(action, live)
        assert got == (out.reward[0], out.invalid[0], out.deployed[0], out.aligned[0], out.abstained[0])
        if out.terminated[0]:
            episodes += 1
            one.reset()
            batch.reset(np.zeros(1, dtype=np.int64))
    assert episodes > 30


@pytest.mark.parametrize("n", [8, 64])
def test_a_full_belief_table_keeps_the_programs_beliefs(n):
    """A batch whose belief table may hold only ``4 n`` beliefs forgets the others between steps (compacts)
    and computes them again when met: it plays exactly as a batch with room to spare (both engines)."""
    sc = mixed_scenario()
    roomy, tight = ProxyAlignmentVectorEnv(n, sc, observation="belief"), ProxyAlignmentVectorEnv(n, sc, observation="belief")
    engine = tight.programs
    engine.table = RunTable(tight.dynamics, max_bytes=0, min_ids=4 * n)
    for program in getattr(engine, "members", []):
        program.table = engine.table
    obs_a, info_a = roomy.reset(seed=5)
    obs_b, info_b = tight.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(300):
        assert np.array_equal(obs_a, obs_b) and all(np.array_equal(info_a[key], info_b[key]) for key in info_a)
        actions = _actions(rng, roomy.action_masks(), roomy.single_action_space.nvec)
        obs_a, r_a, t_a, _, info_a = roomy.step(actions)
        obs_b, r_b, t_b, _, info_b = tight.step(actions)
        assert np.array_equal(r_a, r_b) and np.array_equal(t_a, t_b)
    assert engine.table.compactions >= 3 and roomy.programs.table.compactions == 0


@pytest.mark.parametrize("name", ["sticky_values", "mixed"])
def test_many_programs_play_the_vector_env_reset_where_episodes_end(name):
    """N programs against the vector env stepped by hand with the same seed and actions, each program that
    ends reset at once (``reset_mask``): observations, rewards, ends, infos and terminal observations."""
    sc, n = SCENARIOS[name](), 16
    adapter = ProxyAlignmentSB3VecEnv(sc, "ppo", n, "belief")
    adapter.seed(3)
    ref = ProxyAlignmentVectorEnv(n, sc, observation="belief")
    obs = adapter.reset()
    ref_obs, _ = ref.reset(seed=3)
    assert np.array_equal(obs, ref_obs)
    rng = np.random.default_rng(3)
    ended = 0
    for _ in range(200):
        actions = _actions(rng, ref.action_masks(), ref.single_action_space.nvec)
        assert np.array_equal(np.stack(adapter.env_method("action_masks")), adapter.actions.model_masks(ref.action_masks()))
        obs, rewards, dones, infos = adapter.step(adapter.actions.to_model(actions))  # as a model acts
        ref_obs, ref_rewards, terminated, truncated, info = ref.step(actions)
        assert not truncated.any() and np.array_equal(dones, terminated)
        np.testing.assert_array_equal(rewards, ref_rewards.astype(np.float32))
        for i in range(n):
            expected = {k: info[k][i].item() for k in info if not k.startswith("_") and info[f"_{k}"][i]}
            got = {k: v for k, v in infos[i].items() if k not in ("terminal_observation", "TimeLimit.truncated")}
            assert got == expected
            assert ("terminal_observation" in infos[i]) == terminated[i]
            if terminated[i]:
                assert np.array_equal(infos[i]["terminal_observation"], ref_obs[i])
        if terminated.any():
            ended += terminated.sum()
            ref_obs, _ = ref.reset(options={"reset_mask": terminated})
        assert np.array_equal(obs, ref_obs)
    assert ended > 100


@pytest.mark.parametrize("algo", ["ppo", "dqn", "maskable_ppo"])
def test_flat_actions_step_as_the_actions_they_stand_for(algo):
    """Every algorithm's adapter (DQN's too) takes one Discrete index per program, played as the env's own action
    that index stands for (worked out digit by digit: verdict, usage of each proxy, idea), with the same masks as
    the env's own space where each index's components are allowed; so do the MultiDiscrete spaces a resumed model
    may act in."""
    sc = mixed_scenario()  # 2 proxies, 3 ideas: 81 actions
    flat = ProxyAlignmentSB3VecEnv(sc, algo, 8)
    full = ProxyAlignmentSB3VecEnv(sc, algo, 8, full_actions=True) if algo != "dqn" else None
    own = ProxyAlignmentSB3VecEnv(sc, "ppo", 8, action_space=flat.single_action_space)
    assert flat.action_space == gym.spaces.Discrete(81) and own.full_actions and not flat.full_actions
    assert full is None or full.action_space == own.action_space
    flat.seed(1), own.seed(1)
    assert np.array_equal(flat.reset(), own.reset())
    rng = np.random.default_rng(1)
    for _ in range(50):
        masks, own_masks = np.stack(flat.env_method("action_masks")), np.stack(own.env_method("action_masks"))
        for i in range(8):  # the flat mask: index i allowed where its verdict, usages and idea are
            allowed = [own_masks[i, v] and own_masks[i, 3 + u1] and own_masks[i, 6 + u2] and own_masks[i, 9 + d]
                       for v in range(3) for u1 in range(3) for u2 in range(3) for d in range(3)]
            assert masks[i].tolist() == allowed
        index = rng.integers(81, size=8)
        digits = np.stack([index // 27, index // 9 % 3, index // 3 % 3, index % 3], axis=1)
        a, b = flat.step(index), own.step(digits)
        for x, y in zip(a[:3], b[:3]):
            assert np.array_equal(x, y)
        assert [i.get("invalid_action") for i in a[3]] == [i.get("invalid_action") for i in b[3]]
    if algo == "dqn":
        with pytest.raises(ValueError, match="not an action space dqn may act in"):
            ProxyAlignmentSB3VecEnv(sc, "dqn", 2, action_space=flat.single_action_space)


def test_a_multidiscrete_model_space_steps_as_the_env_given_idea_0():
    """A model saved with ``MultiDiscrete`` without the one-choice idea (before the flat space) acts through the
    adapter as the env's own actions with idea 0, with the masks of its components."""
    sc = load_scenario("sticky_values")
    legacy = ProxyAlignmentSB3VecEnv(sc, "ppo", 4, action_space=gym.spaces.MultiDiscrete([3, 3]))
    own = ProxyAlignmentSB3VecEnv(sc, "ppo", 4, full_actions=True)
    legacy.seed(2), own.seed(2)
    assert np.array_equal(legacy.reset(), own.reset())
    rng = np.random.default_rng(2)
    for _ in range(50):
        assert np.array_equal(np.stack(legacy.env_method("action_masks")), np.stack(own.env_method("action_masks"))[:, :6])
        two = rng.integers(3, size=(4, 2))
        a, b = legacy.step(two), own.step(np.concatenate([two, np.zeros((4, 1), dtype=np.int64)], axis=1))
        for x, y in zip(a[:3], b[:3]):
            assert np.array_equal(x, y)
    with pytest.raises(ValueError, match="not an action space ppo may act in"):
        ProxyAlignmentSB3VecEnv(sc, "ppo", 4, action_space=gym.spaces.MultiDiscrete([3, 2]))


def test_seeding_and_the_rest_of_the_vec_env_api():
    sc = load_scenario("sticky_values")
    runs = []
    for _ in range(2):
        env = make_vec_env(sc, "ppo", 4, "history", seed=11)
        rng = np.random.default_rng(0)
        seen = [env.reset()]
        for _ in range(30):
            actions = _actions(rng, env.unwrapped.programs.masks(), env.unwrapped.single_action_space.nvec)
            seen.append(env.step(env.unwrapped.actions.to_model(actions))[0])
        runs.append(np.stack(seen))
    assert np.array_equal(*runs)
    base = env.unwrapped
    assert isinstance(base, ProxyAlignmentSB3VecEnv)
    assert env.get_attr("render_mode") == [None] * 4 and env.has_attr("action_masks")
    assert env.get_attr("n_phases", indices=[1, 2]) == [3, 3]
    assert env.env_is_wrapped(ProxyAlignmentEnv) == [False] * 4
    assert len(env.env_method("action_masks", indices=[0, 3])) == 2
    env.set_attr("budget", base.budget)
    with pytest.raises(ValueError, match="all of them"):
        env.set_attr("budget", 1, indices=[0])
    with pytest.warns(UserWarning):
        assert env.render() is None
    env.close()


# -- the outcome distribution ---------------------------------------------------------------------------
PROGRAMS = 4000
EPISODE_INDEX = (0, 1, 2)  # each program's first, second and third episode (the last two after autoresets)
CHECKED = [
    ("sticky_values", lambda sc: make_regimen(sc, "T,R,R")),
    ("sticky_values", lambda sc: make_regimen(sc, "A", fallback="abstain")),
    ("mixed", lambda sc: make_regimen(sc, "AT,RR,TR", test="probe", screen={2: "ask,probe"}, idea="coin",
                                      fallback="abstain")),
]
Z = z_value(0.99, comparisons=len(CHECKED) * len(EPISODE_INDEX) * 5)


@pytest.mark.parametrize("case", range(len(CHECKED)))
def test_the_adapters_episodes_have_the_exact_outcome_distribution(case):
    """A fixed regimen played through the adapter with SB3's same-step autoreset: each program's first, second
    and third episode (each an unbiased sample: a program's episodes are independent and alike) against the exact
    analysis, within Bonferroni intervals at 99% over the module's comparisons."""
    name, build = CHECKED[case]
    sc = SCENARIOS[name]()
    reg = build(sc)
    sc = sc.model_copy(update={"budget": reg.budget})
    exact = analyze(sc, reg).outcomes
    env = ProxyAlignmentSB3VecEnv(sc, "ppo", PROGRAMS, "history")
    env.seed(100 + case)
    agent = RegimenAgent(reg, env.layout, reg.budget)
    k = len(EPISODE_INDEX)
    returns, runs = np.zeros((k, PROGRAMS)), np.zeros((k, PROGRAMS))
    ending = np.zeros((k, PROGRAMS), dtype=np.int64)  # 0 deploy aligned, 1 deploy misaligned, 2 abstain
    episode, total = np.zeros(PROGRAMS, dtype=np.int64), np.zeros(PROGRAMS)
    obs = env.reset()
    while (episode < k).any():
        obs, rewards, dones, infos = env.step(env.actions.to_model(agent(obs)))  # as a model acts
        assert not any(i["invalid_action"] for i in infos)
        total += rewards
        for i in np.flatnonzero(dones & (episode < k)):
            e, info = episode[i], infos[i]
            returns[e, i], runs[e, i] = total[i], info["runs_used"]
            ending[e, i] = 2 if info["abstained"] else (0 if info["aligned"] else 1)
            assert info["deployed"] != info["abstained"]
        total[dones] = 0.0
        episode += dones
    failures = []
    for e in range(k):
        for code, p in enumerate((exact.p_deploy_aligned, exact.p_deploy_misaligned, exact.p_abstain)):
            share = np.mean(ending[e] == code)
            if abs(share - p) > Z * math.sqrt(p * (1 - p) / PROGRAMS) + 0.5 / PROGRAMS:
                failures.append(f"episode {e} ending {code}: {share:.4f} vs {p:.4f}")
        for label, values, target in (("runs", runs[e], exact.mean_runs), ("return", returns[e], exact.mean_return)):
            half = Z * max(values.std(ddof=1), 1e-9) / math.sqrt(PROGRAMS) + 1e-9
            if abs(values.mean() - target) > half:
                failures.append(f"episode {e} {label}: {values.mean():.4f} vs {target:.4f} (+- {half:.4f})")
    assert not failures, "\n".join(failures)


# -- SB3 through the adapter ------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_learns_through_the_adapter(algo):
    """A real (short) SB3 run per algorithm; the same seed gives the same trained policy."""
    import torch

    torch.set_num_threads(1)
    small = dict(
        ppo=dict(n_steps=32, batch_size=64), a2c=dict(n_steps=8), maskable_ppo=dict(n_steps=32, batch_size=64),
        recurrent_ppo=dict(n_steps=32, batch_size=64), dqn=dict(buffer_size=1000, learning_starts=64, train_freq=4),
    )[algo]
    params = []
    for _ in range(2):
        env = make_vec_env("sticky_values", algo, 4, "belief", seed=5)
        model = algo_class(algo)(POLICIES.get(algo, "MlpPolicy"), env, seed=5, **small)
        model.learn(256)
        assert model.num_timesteps >= 256 and isinstance(model.get_env().unwrapped, ProxyAlignmentSB3VecEnv)
        assert len(model.ep_info_buffer) > 0  # VecMonitor's episode returns reach SB3's logger
        params.append(torch.nn.utils.parameters_to_vector(model.policy.parameters()).detach().clone())
    assert torch.equal(*params)


# -- the batched evaluation (play_model) --------------------------------------------------------------
class RegimenModel:
    """A stand-in for a trained model: ``predict`` plays a fixed regimen, in the action space ``space`` (train.py's
    flat one, the MultiDiscrete without the one-choice idea models were saved with before it, or the env's own),
    worked out by hand from the env's actions, and checks what the evaluation hands it (masks over the choices of
    ``space`` for maskable_ppo; for recurrent_ppo a state carried over and ``episode_start`` exactly where a
    program's observation is its episode's first)."""

    def __init__(self, algo, agent, venv, space):
        self.algo, self.agent, self.venv, self.calls, self.action_space = algo, agent, venv, 0, space
        self.observation_space = venv.single_observation_space
        self.fresh = fresh_observation(venv.layout, venv.dynamics)
        self.layout = venv.programs.actions

    def predict(self, obs, deterministic=False, action_masks=None, state=None, episode_start=None):
        assert deterministic
        actions = self.agent(obs)
        if self.algo == "maskable_ppo":
            allowed = self.layout.masks(self.venv.layout.position(obs, self.venv.budget)[0], self.venv.n_phases)
            if isinstance(self.action_space, gym.spaces.Discrete):  # index 3 * verdict + usage: the verdict's mask
                assert np.array_equal(action_masks, np.repeat(allowed[:, :3], 3, axis=1))
            else:
                assert np.array_equal(action_masks, allowed[:, : sum(self.action_space.nvec)])
        if self.algo == "recurrent_ppo":
            assert (state is None) == (self.calls == 0)
            assert np.array_equal(episode_start, (obs == self.fresh).all(axis=1))
            state = ("lstm", self.calls)
        self.calls += 1
        if isinstance(self.action_space, gym.spaces.Discrete):
            return 3 * actions[:, 0] + actions[:, 1], state
        return actions[:, : len(self.action_space.nvec)], state


SPACES = {"flat": gym.spaces.Discrete(9), "multi": gym.spaces.MultiDiscrete([3, 3]), "own": gym.spaces.MultiDiscrete([3, 3, 1])}


def test_play_model_plays_each_programs_first_episode():
    """play_model with a fixed regimen in every algorithm's form and every action space a model may act in: the
    same episodes whatever the form, and their outcomes (the first episode of each of 4000 programs, long ones
    included) the exact analysis' distribution."""
    from proxygym.agents.training import play_model

    sc = load_scenario("sticky_values")
    reg = make_regimen(sc, "T,R,R")
    exact = analyze(sc, reg).outcomes
    venv = ProxyAlignmentVectorEnv(1, sc, observation="history")
    played = {}
    for algo in ALGOS:
        for name, space in SPACES.items():
            if algo == "dqn" and name != "flat":
                continue
            model = RegimenModel(algo, RegimenAgent(reg, venv.layout, reg.budget), venv, space)
            played[algo, name] = play_model(model, algo, sc, "history", PROGRAMS, seed=9)
    assert len(played) == 13
    first = played["ppo", "flat"]
    for roll in played.values():
        assert roll.returns == first.returns and roll.checkpoint == first.checkpoint and roll.verdict == first.verdict
        assert np.array_equal(np.asarray(roll.usage), np.asarray(first.usage)) and roll.idea == first.idea
    got = first.outcomes()
    assert got.episodes == PROGRAMS
    z = z_value(0.99, comparisons=5)
    for key in ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain"):
        p = getattr(exact, key)
        assert abs(getattr(got, key) - p) <= z * math.sqrt(p * (1 - p) / PROGRAMS) + 0.5 / PROGRAMS, key
    for key, ci in (("mean_runs", got.runs_ci95), ("mean_return", got.ci95)):
        assert abs(getattr(got, key) - getattr(exact, key)) <= z / Z95 * ci + 1e-9, key
    # every recorded step is one of a counted episode: a run's start per run used
    assert np.sum(np.asarray(first.checkpoint) == 0) == sum(first.runs)


class FramesModel:
    """A stand-in for a model trained on ``n`` stacked frames (SB3's ``VecFrameStack`` space): it plays a fixed
    regimen on the newest frame and keeps every stacked observation it is handed."""

    def __init__(self, agent, single, n):
        self.agent, self.n, self.size = agent, n, single.shape[0]
        self.observation_space = gym.spaces.Box(np.repeat(single.low, n), np.repeat(single.high, n), dtype=single.dtype)
        self.action_space = gym.spaces.Discrete(9)
        self.seen = []

    def predict(self, obs, deterministic=False):
        self.seen.append(obs.copy())
        actions = self.agent(obs[:, -self.size:])
        return 3 * actions[:, 0] + actions[:, 1], None


def test_a_frame_stacked_model_is_handed_its_last_frames():
    """play_model gives a model of n stacked frames what VecFrameStack gave it in training: each program's last n
    observations of its episode, oldest first, zeros before the episode's first; checked frame by frame against the
    stacks of the step before, and the episodes the same as the unstacked policy's."""
    from proxygym.agents.training import play_model

    sc = load_scenario("sticky_values")
    reg = make_regimen(sc, "T,R,R")
    venv = ProxyAlignmentVectorEnv(1, sc, observation="history")
    agent = RegimenAgent(reg, venv.layout, reg.budget)
    model = FramesModel(agent, venv.single_observation_space, 3)
    stacked = play_model(model, "ppo", sc, "history", 200, seed=4)
    plain = play_model(RegimenModel("ppo", agent, venv, SPACES["flat"]), "ppo", sc, "history", 200, seed=4)
    assert stacked.returns == plain.returns and stacked.verdict == plain.verdict
    size, fresh = model.size, fresh_observation(venv.layout, venv.dynamics)
    before = None
    restarts = 0
    for seen in model.seen:
        frames = seen.reshape(len(seen), 3, size)
        start = (frames[:, -1] == fresh).all(axis=1)
        expected = np.zeros_like(frames)
        expected[:, -1] = frames[:, -1]
        if before is not None:
            expected[~start, :-1] = before[~start, 1:]
        assert np.array_equal(frames, expected)
        restarts += start.sum() if before is not None else 0
        before = frames
    assert len(model.seen) > 3 and restarts > 0  # several steps, and programs that began a second episode
