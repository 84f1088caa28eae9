"""The one Monte Carlo suite: play in the vector env, compare with the exact computations.

Every check here plays a policy through ``ProxyAlignmentVectorEnv`` (one episode per program,
``agents.regimen.play_batch``) and compares what happened with an exact number:

- fixed regimens (the basic ones, an abstaining one, every fixed regimen a shipped
  scenario's claims name, every fixed strategy's regimen, and ideas with priors, early
  screens and damaging anti-training on a mixed scenario), played by ``RegimenAgent``,
  against the exact analysis (``analyze``): the three outcome frequencies, the mean runs
  and the mean return;
- the optimal strategy against the solver's exact outcomes, and every adaptive strategy
  against the solver's value (it must not beat it);
- the Bayesian filter's P(aligned) against the frequency of aligned models among the
  episodes that share one observable history.

The single env plays by the same rules (``envs/core.py``) in their one-program engine,
``Program``: ``tests/test_vec_env.py::test_one_program_is_a_batch_of_one_to_the_bit`` shows,
exactly, that a ``Program`` and a one-program ``Programs`` (the engine of the batches checked
here) play the same trajectories given the same random stream and actions, and
``test_single_env_is_a_vector_env_of_one`` that the single env and a vector env of one program
do, so these checks cover it too.

The error rate is family-wise over the whole module: every comparison is made at the
quantile ``Z``, Bonferroni over ``COMPARISONS``, the number of comparisons the module may
make (each test counts its own and checks it stays inside its share). So a correct
implementation fails this module less than 1% of the time, for any seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxygym.agents.claims import contender_regimen
from proxygym.agents.regimen import RegimenAgent, play_batch
from proxygym.agents.solver import solve
from proxygym.agents.strategies import STRATEGIES, OptimalStrategy, make_strategy
from proxygym.envs.analysis import analyze
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import TWO, compute_scenario, mixed_scenario, random_valid_actions, scenarios, tiny, z_value
from tests.v1_cases import MC_CASES

CONFIDENCE = 0.99
EPISODES = 20_000  # per fixed regimen, and for the optimal strategy
ADAPTIVE_EPISODES = 4_000  # per adaptive strategy (a one-sided check)
OUTCOMES = 5  # deploy aligned, deploy misaligned, abstain, mean runs, mean return


# -- what is checked ----------------------------------------------------------------------------
def strategy_regimen(name: str, sc):
    """The fixed regimen strategy ``name`` plays on ``sc``, or None for an adaptive strategy."""
    return STRATEGIES[name](sc, ObservationLayout(Dynamics(sc), "belief")).regimen()


def regimens_to_check(sc) -> list:
    """The basic regimens, an abstaining one, every fixed regimen the scenario's claims name and
    every fixed strategy's regimen, without repeats."""
    out = [
        make_regimen(sc, "R"),
        make_regimen(sc, "T"),
        make_regimen(sc, "A", fallback="abstain"),
        make_regimen(sc, "R", test="none"),
    ]
    for exp in sc.expect:
        for c in exp.contenders:
            r = contender_regimen(sc, c)
            if r is not None and r not in out:
                out.append(r)
    for name, cls in STRATEGIES.items():
        r = None if cls is OptimalStrategy else strategy_regimen(name, sc)
        if r is not None and r not in out:
            out.append(r)
    return out


def mixed_regimens(sc) -> list:
    """Ideas with priors, two proxies, damaging anti-training, early screens and both fallbacks."""
    return [
        make_regimen(sc, "AR,TA,RR", screen={1: "ask"}, idea="three"),  # anti-training damages the tests
        make_regimen(sc, "AT,RR,TR", test="probe", screen={2: "ask,probe"}, idea="coin", fallback="abstain"),
        make_regimen(sc, "R", idea="known", budget=1),
        make_regimen(sc, "TR,RA,RR", screen={1: "ask", 2: "probe"}, idea="three", fallback="deploy"),
    ]


SHIPPED = shipped_scenarios()
# (scenario, observation mode): the shipped scenarios in the history mode, the mixed one in the belief mode
REGIMEN_CASES = {name: (load_scenario(name), "history") for name in SHIPPED}
REGIMEN_CASES["mixed"] = (mixed_scenario(), "belief")
REGIMENS = {name: (mixed_regimens(sc) if name == "mixed" else regimens_to_check(sc)) for name, (sc, _) in REGIMEN_CASES.items()}
FIXED = [name for name, cls in STRATEGIES.items() if cls is not OptimalStrategy and strategy_regimen(name, REGIMEN_CASES[SHIPPED[0]][0])]
ADAPTIVE = [name for name, cls in STRATEGIES.items() if cls is not OptimalStrategy and name not in FIXED]

FILTER_EXAMPLES = 12
FILTER_GROUPS = 25  # at most this many observable histories checked per example (the most frequent)

# World model v1: every new field but compute on (tests/v1_cases.py), and a compute budget with early discards.
V1_CASES = [
    (parse_scenario(data), make_regimen(parse_scenario(data), plan, test=test, screen=screen, fallback=fallback))
    for data, plan, screen, test, fallback in MC_CASES
] + [(sc, make_regimen(sc, "R", screen={1: sc.proxy_names[0]}, fallback=fb)) for sc in (compute_scenario(),)
     for fb in ("deploy", "abstain")]

SHARES = {
    "regimens": {name: OUTCOMES * len(regs) for name, regs in REGIMENS.items()},
    "v1": OUTCOMES * len(V1_CASES),
    "compute_optimal": OUTCOMES + len(ADAPTIVE),
    "optimal": {name: OUTCOMES + len(ADAPTIVE) for name in SHIPPED},
    "autoreset": 1,
    "filter": FILTER_EXAMPLES * FILTER_GROUPS,
    "worlds": 2 * FILTER_GROUPS,
}
COMPARISONS = (sum(SHARES["regimens"].values()) + SHARES["v1"] + SHARES["compute_optimal"]
               + sum(SHARES["optimal"].values()) + SHARES["autoreset"] + SHARES["filter"] + SHARES["worlds"])
Z = z_value(CONFIDENCE, comparisons=COMPARISONS)


class Comparisons:
    """The comparisons of one test, each at the module's quantile ``Z``; ``done()`` fails with every miss.

    ``share`` is the number of comparisons the test may make (its part of ``COMPARISONS``).
    """

    def __init__(self, share: int):
        self.share = share
        self.count = 0
        self.failures: list[str] = []

    def frequency(self, label: str, successes: int, n: int, p: float) -> None:
        """successes/n against the probability p: the normal interval of a binomial(n, p), with a
        continuity correction of 1/(2n) that keeps it honest when p is 0 or 1."""
        self.count += 1
        half = Z * math.sqrt(p * (1.0 - p) / n) + 0.5 / n
        if abs(successes / n - p) > half:
            self.failures.append(f"{label}: {successes / n:.4f} vs exact {p:.4f} (+- {half:.4f}, n {n})")

    def mean(self, label: str, values: np.ndarray, target: float, at_most: bool = False) -> None:
        """The mean of ``values`` against ``target`` (two-sided), or only not above it (``at_most``)."""
        self.count += 1
        values = np.asarray(values, dtype=float)
        half = Z * max(values.std(ddof=1), 1e-9) / math.sqrt(len(values)) + 1e-9
        gap = values.mean() - target
        if gap > half or (not at_most and -gap > half):
            side = "above" if at_most else "vs"
            self.failures.append(f"{label}: mean {values.mean():.4f} {side} exact {target:.4f} (+- {half:.4f})")

    def outcomes(self, label: str, returns: np.ndarray, last: dict, exact) -> None:
        """One episode per program (``play_batch``'s returns and last infos) against the exact outcome distribution."""
        n = len(returns)
        counts = {
            "p_deploy_aligned": int(last["aligned"].sum()),
            "p_deploy_misaligned": int((last["deployed"] & ~last["aligned"]).sum()),
            "p_abstain": int(last["abstained"].sum()),
        }
        assert sum(counts.values()) == n, label  # every episode ended, in exactly one way
        for key, count in counts.items():
            self.frequency(f"{label} {key}", count, n, getattr(exact, key))
        self.mean(f"{label} runs", last["runs_used"], exact.mean_runs)
        self.mean(f"{label} return", returns, exact.mean_return)

    def done(self) -> None:
        assert self.count <= self.share, f"{self.count} comparisons made, {self.share} allotted: fix SHARES"
        assert not self.failures, "\n".join(self.failures)


# -- the single env is a vector env of one ---------------------------------------------------------
@pytest.mark.parametrize("mode", ["history", "belief"])
@pytest.mark.parametrize("name", ["mixed", "sticky_values"])
def test_single_env_is_a_vector_env_of_one(name, mode):
    """Given the same seed and actions (invalid verdicts included), the single env and a vector env
    of one program play identical trajectories: every observation, reward, termination and info
    value, over many episodes (the single env reset by hand where the vector env autoresets)."""
    sc = mixed_scenario() if name == "mixed" else load_scenario(name)
    single = ProxyAlignmentEnv(sc, observation=mode)
    vec = ProxyAlignmentVectorEnv(1, sc, observation=mode)
    o, inf = single.reset(seed=5)
    obs, info = vec.reset(seed=5)
    assert np.array_equal(obs[0], o) and {k: info[k][0] for k in inf} == inf
    rng = np.random.default_rng(5)
    ended, episodes, steps = False, 0, 400
    for _ in range(steps):
        action = random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec)
        if rng.random() < 0.2:
            action[0, 0] = rng.integers(3)  # a verdict that may not be allowed
        obs, reward, terminated, truncated, info = vec.step(action)
        if ended:
            o, inf = single.reset()
            r, t = 0.0, False
        else:
            o, r, t, tr, inf = single.step(action[0])
            assert not tr
        assert np.array_equal(obs[0], o)
        assert reward[0] == r and terminated[0] == t and not truncated[0]
        assert {k for k in info if not k.startswith("_")} == set(inf)
        for key, value in inf.items():
            assert info[f"_{key}"][0] and info[key][0] == value, (key, info[key][0], value)
        episodes += t
        ended = t
    assert episodes > 20


# -- fixed regimens against the exact analysis ------------------------------------------------------
@pytest.mark.parametrize("name", list(REGIMEN_CASES))
def test_regimens_agree_with_the_exact_analysis(name):
    """Each regimen, played by RegimenAgent in the vector env (with the regimen's budget and compute), against ``analyze``."""
    sc, mode = REGIMEN_CASES[name]
    checks = Comparisons(SHARES["regimens"][name])
    for n, reg in enumerate(REGIMENS[name]):
        exact = analyze(sc, reg)
        vec = ProxyAlignmentVectorEnv(EPISODES, sc.model_copy(update={"budget": reg.budget, "compute": reg.compute}),
                                      observation=mode)
        returns, last = play_batch(vec, RegimenAgent(reg, vec.layout, reg.budget, seed=n), seed=1000 + n)
        assert not last["invalid_action"].any()
        checks.outcomes(f"{name} [{reg.describe(sc)}]", returns, last, exact.outcomes)
    checks.done()


def test_world_model_v1_agrees_with_the_exact_analysis():
    """Scenarios with persistence, gates, proximity for aligned models, faking, obfuscation onset, wash-out,
    transfer and anti-training damage, and one with a compute budget and early discards, against ``analyze``."""
    checks = Comparisons(SHARES["v1"])
    for n, (sc, reg) in enumerate(V1_CASES):
        exact = analyze(sc, reg)
        vec = ProxyAlignmentVectorEnv(EPISODES, sc, observation="history")
        returns, last = play_batch(vec, RegimenAgent(reg, vec.layout, sc.budget, seed=n), seed=2000 + n)
        checks.outcomes(f"{sc.name} [{reg.describe(sc)}]", returns, last, exact.outcomes)
    checks.done()


def test_the_optimum_under_a_compute_budget():
    """With a compute budget (an unknown base rate, a persistent proxy, early discards that buy runs), the
    optimal strategy's outcomes are the solver's, and no adaptive strategy beats the solver's value."""
    sc = compute_scenario(budget=3)  # a third run only after an early discard (1 + 4 + 4 = 9)
    sol = solve(sc)
    checks = Comparisons(SHARES["compute_optimal"])
    against_the_solver(checks, "compute", sc, sol, seeds=(4321, 12))
    checks.done()


def against_the_solver(checks: Comparisons, label: str, sc, sol, seeds: tuple[int, int]) -> None:
    """The optimal strategy's five outcomes against the solver's (two-sided), and each adaptive
    strategy's mean return not above the solver's value (one-sided)."""
    vec = ProxyAlignmentVectorEnv(EPISODES, sc, observation="belief")
    returns, last = play_batch(vec, OptimalStrategy(sc, vec.layout, seed=0, solution=sol), seed=seeds[0])
    assert not last["invalid_action"].any()
    checks.outcomes(f"{label} optimal", returns, last, sol.outcomes())
    for strategy in ADAPTIVE:
        vec = ProxyAlignmentVectorEnv(ADAPTIVE_EPISODES, sc, observation="belief")
        returns, _ = play_batch(vec, make_strategy(strategy, sc, vec.layout, seed=seeds[1]), seed=seeds[1])
        checks.mean(f"{label} {strategy}", returns, sol.value, at_most=True)


def test_every_kind_of_regimen_is_checked():
    """The cases above include every fixed strategy's regimen, every fixed regimen the claims name,
    an abstaining regimen, one without a test, priors and early screens."""
    assert len(FIXED) >= 7 and len(ADAPTIVE) >= 2
    claimed = 0
    for name in SHIPPED:
        sc = REGIMEN_CASES[name][0]
        for s in FIXED:
            assert strategy_regimen(s, sc) in REGIMENS[name], (name, s)
        for exp in sc.expect:
            for c in exp.contenders:
                r = contender_regimen(sc, c)
                claimed += r is not None
                assert r is None or r in REGIMENS[name], (name, c)
        assert any(r.fallback == "abstain" for r in REGIMENS[name])
        assert any(len(r.test) == 0 for r in REGIMENS[name])
    assert claimed > len(SHIPPED)
    mixed = REGIMENS["mixed"]
    assert any(r.screen for r in mixed) and {r.fallback for r in mixed} == {"deploy", "abstain"}


# -- strategies against the solver ---------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_strategies_against_the_solver(name, solutions):
    """The optimal strategy's outcomes are the solver's (two-sided, each of the five); no adaptive
    strategy's mean return is above the solver's value (one-sided). Fixed strategies are checked
    exactly against the solver in test_solver.py and by Monte Carlo against the analysis above."""
    sc = REGIMEN_CASES[name][0]
    sol = solutions[name]
    checks = Comparisons(SHARES["optimal"][name])
    against_the_solver(checks, name, sc, sol, seeds=(1234, 11))
    checks.done()


def test_optimal_strategy_follows_autoresets():
    """Episodes after the first in each program (next-step autoreset) are played as well, in the history mode."""
    sc = tiny(T=2, budget=3, ideas=TWO)
    sol = solve(sc)
    checks = Comparisons(SHARES["autoreset"])
    env = ProxyAlignmentVectorEnv(num_envs=3000, scenario=sc, observation="history")
    agent = OptimalStrategy(sc, env.layout, solution=sol)
    obs, _ = env.reset(seed=7)
    running = np.zeros(env.num_envs)
    finished = np.zeros(env.num_envs, dtype=int)
    returns = []
    # each program's first two episodes, whatever their lengths (counting only the episodes that
    # end inside a fixed window would favour short ones); an episode has at most B (T + 1) steps,
    # and the autoreset takes one more
    for _ in range(2 * (sc.budget * (len(sc.phases) + 1) + 1)):
        obs, reward, terminated, _, info = env.step(agent(obs))
        assert not info["invalid_action"].any()
        running += reward
        counted = terminated & (finished < 2)
        returns.extend(running[counted])
        finished += terminated
        running[terminated] = 0.0
    assert (finished >= 2).all() and len(returns) == 2 * env.num_envs
    checks.mean("autoreset optimal", np.array(returns), sol.value)
    checks.done()


# -- the filter against frequencies ----------------------------------------------------------------------
def filter_groups(vec: ProxyAlignmentVectorEnv, agent, seed: int):
    """Play one episode per program; at every checkpoint of every run, the observation (the whole
    observable history), the filter's P(aligned), and the truth, read from the env's hidden state
    for this check only. Returns each distinct history's count, aligned count, and the least and
    greatest P(aligned) reported with it."""
    rows, ps, truths = [], [], []
    obs, _ = vec.reset(seed=seed)
    done = np.zeros(vec.num_envs, dtype=bool)
    while not done.all():
        obs, _, terminated, truncated, info = vec.step(agent(obs))
        keep = ~done & ~terminated & (info["checkpoint"] > 0)
        rows.append(obs[keep])
        ps.append(info["p_aligned"][keep])
        truths.append(vec.dynamics.aligned[vec.programs.state[keep]])
        done |= terminated | truncated
    _, group, count = np.unique(np.concatenate(rows), axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    ps, truths = np.concatenate(ps), np.concatenate(truths)
    aligned = np.bincount(group, weights=truths, minlength=len(count))
    low = np.full(len(count), np.inf)
    high = np.full(len(count), -np.inf)
    np.minimum.at(low, group, ps)
    np.maximum.at(high, group, ps)
    return count, aligned.astype(np.int64), low, high


# derandomize: the same examples every run, so a statistical failure is reproducible
@settings(max_examples=FILTER_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sc=scenarios(max_phases=2, max_proxies=1, max_ideas=1), data=st.data())
def test_filter_matches_empirical_frequency(sc, data):
    """Episodes with the same observable history share one P(aligned); among them, the share of
    truly aligned models must match it (the FILTER_GROUPS most frequent histories seen at least
    100 times, each a comparison of the module's family).

    The regimen screens at checkpoint 1 when there are two phases, so later runs follow
    discarded ones and the filter's carrying of evidence across runs is exercised too.
    """
    T = len(sc.phases)
    plan = data.draw(st.sampled_from(["R", "T", "A"]))
    screen = {1: sc.proxy_names[0]} if T > 1 else {}
    reg = make_regimen(sc, plan, screen=screen, fallback="abstain")
    vec = ProxyAlignmentVectorEnv(EPISODES, sc)
    agent = RegimenAgent(reg, vec.layout, sc.budget)
    count, aligned, low, high = filter_groups(vec, agent, seed=data.draw(st.integers(0, 10_000)))
    assert np.all(high - low <= 1e-12), "one observable history, one posterior"
    big = [g for g in np.argsort(-count, kind="stable")[:FILTER_GROUPS] if count[g] >= 100]
    assert big, "no observable history was seen often enough to check"
    checks = Comparisons(FILTER_GROUPS)  # this example's part of SHARES["filter"]
    for g in big:
        checks.frequency(f"history {g}", int(aligned[g]), int(count[g]), float(low[g]))
    checks.done()



def test_world_posterior_matches_empirical_frequency():
    """With worlds (uncertain_monitor), episodes with the same observable history share one posterior over
    the worlds, carried in the belief observation; among them, the share whose hidden world is each of the
    first two worlds must match it (the FILTER_GROUPS most frequent histories seen at least 100 times). The
    regimen trains in phase 1 and screens there, so histories span runs and differ in what they reveal."""
    sc = load_scenario("uncertain_monitor")
    reg = make_regimen(sc, "T,R", screen={1: sc.proxy_names[0]}, fallback="abstain")
    vec = ProxyAlignmentVectorEnv(EPISODES, sc, observation="belief")
    world_slot = vec.layout.slices["world"]
    agent = RegimenAgent(reg, vec.layout, sc.budget)
    rows, posts, truths = [], [], []
    obs, _ = vec.reset(seed=99)
    done = np.zeros(vec.num_envs, dtype=bool)
    while not done.all():
        obs, _, terminated, truncated, info = vec.step(agent(obs))
        keep = ~done & ~terminated & (info["checkpoint"] > 0)
        rows.append(obs[keep][:, : world_slot.start])  # the observable history (and the other read-outs)
        posts.append(obs[keep][:, world_slot])
        truths.append(vec.programs.world[keep])  # hidden: read for this check only
        done |= terminated | truncated
    _, group, count = np.unique(np.concatenate(rows), axis=0, return_inverse=True, return_counts=True)
    group, posts, truths = group.reshape(-1), np.concatenate(posts), np.concatenate(truths)
    checks = Comparisons(SHARES["worlds"])
    big = [g for g in np.argsort(-count, kind="stable")[:FILTER_GROUPS] if count[g] >= 100]
    assert len(big) >= 10
    for g in big:
        members = group == g
        post = posts[members]
        assert np.all(post.max(axis=0) - post.min(axis=0) <= 1e-6), "one observable history, one posterior"
        assert abs(float(post[0].sum()) - 1.0) < 1e-5
        for w in (0, 1):
            checks.frequency(f"history {g} world {w}", int((truths[members] == w).sum()), int(count[g]), float(post[0, w]))
    checks.done()
