"""The exact solver against brute force and against every fixed regimen (its Monte Carlo checks: test_monte_carlo.py).

Two independent references, neither of which uses the Bayesian filter, the run trees or
the interning of posteriors:

- ``brute_force``: every deterministic policy, as a map from observable histories to
  actions, enumerated and scored exactly by summing over the hidden base rates, latent
  states and test results (forward propagation of unnormalized masses); the best score.
- ``history_dp``: the maximum over actions at every observable history, with the
  probabilities of what comes next computed the same way (unnormalized masses per
  base-rate combination), by plain recursion. It equals the brute force where both run,
  and reaches scenarios slightly too large to enumerate policies for.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxygym.agents.bench import run_pair
from proxygym.agents.regimen import play_episode
from proxygym.agents.report import describe_policy, first_run
from proxygym.agents.solver import estimate_size, solve
from proxygym.agents.strategies import STRATEGIES, OptimalStrategy, Strategy
from proxygym.envs.analysis import analyze
from proxygym.envs.belief import BatchBeliefFilter
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import ANTI, make_regimen
from proxygym.envs.scenario import parse_scenario
from tests.helpers import KNOWN, PRIOR, TWO, hand_scenario, scenarios, tiny


# -- the references -------------------------------------------------------------------------
def _result_likelihood(dyn: Dynamics, t: int, n_anti, r: int) -> np.ndarray:
    """P(result code r at checkpoint t+1 | state), read off pass_prob (bit j of r: proxy j passed)."""
    out = np.ones(dyn.n_states)
    for j in range(dyn.n_proxies):
        p = dyn.pass_prob[t, n_anti[j], :, j]
        out = out * (p if (r >> j) & 1 else 1.0 - p)
    return out


def _rho_combos(dyn: Dynamics):
    """Every assignment of a base rate to each idea, with its prior probability."""
    per_idea = [list(zip(v, p)) for v, p in zip(dyn.base_rate_values, dyn.base_rate_probs)]
    for combo in itertools.product(*per_idea):
        yield tuple(v for v, _ in combo), math.prod(p for _, p in combo)


def _payoff(dyn: Dynamics, reward) -> np.ndarray:
    return np.where(dyn.aligned, reward.aligned, reward.misaligned)


def brute_force(sc) -> tuple[float, int]:
    """The best expected return over every deterministic policy, and the number of policies."""
    dyn = Dynamics(sc)
    T, C, R, m = dyn.n_phases, dyn.n_usages, 2**dyn.n_proxies, dyn.n_ideas
    rw = sc.reward
    payoff = _payoff(dyn, rw)

    def enum_start(past, n):
        for idea in range(m):
            for c in range(C):
                for sub in enum_after_phase(past, n, idea, (), c):
                    yield {("start", past): (idea, c), **sub}

    def enum_after_phase(past, n, idea, cur, c):
        branches = [list(enum_checkpoint(past, n, idea, cur + ((c, r),))) for r in range(R)]
        for combo in itertools.product(*branches):
            out = {}
            for part in combo:
                out.update(part)
            yield out

    def enum_checkpoint(past, n, idea, cur):
        key = ("cp", past, idea, cur)
        options = ["deploy", "discard"] if len(cur) == T else ["discard", *range(C)]
        for a in options:
            if a == "deploy" or (a == "discard" and n == 1):
                yield {key: a}
            elif a == "discard":
                for sub in enum_start(past + ((idea, cur),), n - 1):
                    yield {key: a, **sub}
            else:
                for sub in enum_after_phase(past, n, idea, cur, a):
                    yield {key: a, **sub}

    def eval_start(pol, past, n, rho):
        idea, c = pol[("start", past)]
        return -rw.run_cost + eval_phase(pol, past, n, rho, idea, (), dyn.initial(rho[idea]), c)

    def eval_phase(pol, past, n, rho, idea, cur, f, c):
        t = len(cur)
        before = [sum(dyn.usages[u][j] == ANTI for u in [cc for cc, _ in cur]) for j in range(dyn.n_proxies)]
        f = f @ dyn.transition[t, c, idea, dyn.anti_key(before)]
        n_anti = [sum(dyn.usages[u][j] == ANTI for u in [cc for cc, _ in cur] + [c]) for j in range(dyn.n_proxies)]
        total = 0.0
        for r in range(R):
            g = f * _result_likelihood(dyn, t, n_anti, r)
            mass = g.sum()
            if mass <= 0.0:
                continue
            cur2 = cur + ((c, r),)
            a = pol[("cp", past, idea, cur2)]
            if a == "deploy":
                total += g @ payoff
            elif a == "discard":
                total += mass * (rw.abstain if n == 1 else eval_start(pol, past + ((idea, cur2),), n - 1, rho))
            else:
                total += eval_phase(pol, past, n, rho, idea, cur2, g, a)
        return total

    combos = list(_rho_combos(dyn))
    best, count = -math.inf, 0
    for pol in enum_start((), sc.budget):
        count += 1
        best = max(best, sum(w * eval_start(pol, (), sc.budget, rho) for rho, w in combos))
    return best, count


def history_dp(sc) -> float:
    """The best expected return by recursion over observable histories (no filter, no trees).

    ``pw[l]`` is P(base rates = combination l, the finished runs seen); ``f[l, s]`` is
    P(base rates = l, the finished runs and the current run seen, its state = s).
    Values are unnormalized (scaled by the probability of the history), which leaves the
    maximizing actions unchanged.
    """
    dyn = Dynamics(sc)
    T, C, R, m, k = dyn.n_phases, dyn.n_usages, 2**dyn.n_proxies, dyn.n_ideas, dyn.n_proxies
    rw = sc.reward
    payoff = _payoff(dyn, rw)
    combos = list(_rho_combos(dyn))
    rho = np.array([c for c, _ in combos])  # (L, m)
    anti = dyn.usages == ANTI

    def start(pw, n):
        best = -math.inf
        for idea in range(m):
            f0 = pw[:, None] * dyn.initial(rho[:, idea])
            for c in range(C):
                best = max(best, -rw.run_cost * pw.sum() + phase(f0, idea, np.zeros(k, dtype=int), 0, c, n))
        return best

    def phase(f, idea, n_anti, t, c, n):
        f = f @ dyn.transition[t, c, idea, dyn.anti_key(n_anti)]
        n_anti = n_anti + anti[c]
        total = 0.0
        for r in range(R):
            g = f * _result_likelihood(dyn, t, n_anti, r)[None, :]
            if g.sum() <= 0.0:
                continue
            discard = rw.abstain * g.sum() if n == 1 else start(g.sum(axis=1), n - 1)
            if t + 1 == T:
                total += max(float((g @ payoff).sum()), discard)
            else:
                total += max([discard] + [phase(g, idea, n_anti, t + 1, c2, n) for c2 in range(C)])
        return total

    return start(np.array([w for _, w in combos]), sc.budget)


# -- 1. the solver against brute force ------------------------------------------------------
TINY_CASES = {
    "known T1 B1": dict(T=1, budget=1, ideas=KNOWN),
    "known T1 B2": dict(T=1, budget=2, ideas=KNOWN),
    "known T2 B1": dict(T=2, budget=1, ideas=KNOWN),
    "prior T1 B2": dict(T=1, budget=2, ideas=PRIOR),
    "prior T2 B1": dict(T=2, budget=1, ideas=PRIOR),
    "two ideas T1 B2": dict(T=1, budget=2, ideas=TWO),
    "two proxies, two ideas T1 B1": dict(T=1, budget=1, ideas=TWO, k=2),
}


@pytest.mark.parametrize("case", list(TINY_CASES))
def test_solver_equals_brute_force(case):
    sc = tiny(**TINY_CASES[case])
    best, count = brute_force(sc)
    assert count >= 12
    sol = solve(sc)
    assert sol.value == pytest.approx(best, abs=1e-9)
    assert history_dp(sc) == pytest.approx(best, abs=1e-9)
    assert sol.outcomes().mean_return == pytest.approx(sol.value, abs=1e-9)
    # the benchmark reports the optimum as the optimal strategy's exact return
    assert run_pair(sc, "optimal", episodes=2, seed=0).exact_return == pytest.approx(best, abs=1e-9)


SMALL_CASES = {
    "prior T2 B2": dict(T=2, budget=2, ideas=PRIOR),
    "two ideas T2 B2": dict(T=2, budget=2, ideas=TWO),
    "known T3 B1": dict(T=3, budget=1, ideas=KNOWN),
    "two proxies, two ideas T1 B2": dict(T=1, budget=2, ideas=TWO, k=2),
    "prior T1 B4": dict(T=1, budget=4, ideas=PRIOR),
}


@pytest.mark.parametrize("case", list(SMALL_CASES))
def test_solver_equals_history_dp(case):
    sc = tiny(**SMALL_CASES[case])
    sol = solve(sc)
    assert sol.value == pytest.approx(history_dp(sc), abs=1e-9)
    assert sol.outcomes().mean_return == pytest.approx(sol.value, abs=1e-9)


rewards = st.fixed_dictionaries(
    {
        "aligned": st.floats(-1.0, 2.0),
        "misaligned": st.floats(-2.0, 1.0),
        "abstain": st.floats(-1.0, 1.0),
        "run_cost": st.floats(0.0, 0.3),
    }
)


# derandomize: the same examples every run; scenarios with probabilities of exactly 0 or 1 included
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(max_phases=2, max_proxies=1, max_ideas=2), reward=rewards, budget=st.integers(1, 2))
def test_solver_equals_history_dp_on_random_scenarios(sc, reward, budget):
    sc = parse_scenario({**sc.model_dump(), "reward": reward, "budget": budget})
    sol = solve(sc)
    assert sol.value == pytest.approx(history_dp(sc), abs=1e-9)
    assert sol.outcomes().mean_return == pytest.approx(sol.value, abs=1e-9)


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(max_phases=1, max_proxies=2, max_ideas=2), reward=rewards, budget=st.integers(1, 2))
def test_solver_equals_history_dp_on_random_scenarios_with_two_proxies(sc, reward, budget):
    sc = parse_scenario({**sc.model_dump(), "reward": reward, "budget": budget})
    assert solve(sc).value == pytest.approx(history_dp(sc), abs=1e-9)


def test_run_tree_matches_the_filter():
    """A node's P(aligned) and branch probabilities are the filter's, along random paths."""
    sc = tiny(T=3, budget=1, ideas=PRIOR, k=2)
    sol = solve(sc)
    pol = sol.policy
    dyn = pol.dyn
    tree = pol.tree(pol.root)
    rng = np.random.default_rng(0)
    f = BatchBeliefFilter(dyn, 1)  # one episode
    for _ in range(20):
        f.reset()
        f.start_run(pol.idea(pol.root))
        n_anti = np.zeros(dyn.n_proxies, dtype=int)
        codes, results = [], []
        for t in range(dyn.n_phases):
            c, r = int(rng.integers(dyn.n_usages)), int(rng.integers(2**dyn.n_proxies))
            n_anti += dyn.usages[c] == ANTI
            f.advance(t, c)
            passed = ((r >> np.arange(dyn.n_proxies)) & 1).astype(bool)
            z = f.observe(t, n_anti[None], passed[None])[0]
            codes.append(c)
            results.append(r)
            x = pol.node_index(codes, results)
            assert tree.prob[t + 1][x] == pytest.approx(z, rel=1e-12)
            assert tree.p_aligned[t + 1][x] == pytest.approx(f.p_aligned[0], abs=1e-12)


def test_policy_queries_follow_the_filter():
    """Discarding a run moves the policy to the program state of the filter's posterior after it."""
    sc = tiny(T=2, budget=3, ideas=TWO)
    sol = solve(sc)
    pol = sol.policy
    dyn = pol.dyn
    rng = np.random.default_rng(1)
    def idea_weights(f):  # per idea, the posterior over its base rate's own support values
        return [f.weights[0, i, : len(v)] for i, v in enumerate(dyn.base_rate_values)]

    for _ in range(20):
        f = BatchBeliefFilter(dyn, 1)  # one episode
        state = pol.root
        assert pol.state_of(sc.budget, idea_weights(f)) == state
        while pol.runs_left(state) > 1:
            idea = pol.idea(state)
            f.start_run(idea)
            n_anti = np.zeros(dyn.n_proxies, dtype=int)
            codes, results = [], []
            d = int(rng.integers(1, dyn.n_phases + 1))  # end the run at a random checkpoint
            for t in range(d):
                c, r = int(rng.integers(dyn.n_usages)), int(rng.integers(2**dyn.n_proxies))
                n_anti += dyn.usages[c] == ANTI
                f.advance(t, c)
                f.observe(t, n_anti[None], dyn.results[r][None])
                codes.append(c)
                results.append(r)
            f.end_run()
            state = pol.after_discard(state, d, pol.node_index(codes, results))
            assert pol.state_of(pol.runs_left(state), idea_weights(f)) == state
        verdict, usage = pol.action(state, 0)
        assert verdict == 0 and 0 <= usage < dyn.n_usages


# -- 2. the solver against every fixed regimen -------------------------------------------------
def fixed_strategies(sc):
    layout = ObservationLayout(Dynamics(sc), "belief")
    for name, cls in STRATEGIES.items():
        if isinstance(cls, type) and issubclass(cls, OptimalStrategy):
            continue
        regimen = cls(sc, layout).regimen()
        if regimen is not None:
            yield name, regimen


def test_solver_beats_every_fixed_strategy(shipped, solutions):
    for sc in shipped:
        sol = solutions[sc.name]
        assert sol.outcomes().mean_return == pytest.approx(sol.value, abs=1e-9), sc.name
        for name, regimen in fixed_strategies(sc):
            exact = analyze(sc, regimen).expected_return
            assert sol.value >= exact - 1e-9, (sc.name, name, sol.value, exact)


def test_solver_beats_every_plan(shipped, solutions):
    """Beyond the named strategies: every plan, with or without early screens and end test, either fallback."""
    for sc in shipped:
        if len(sc.proxies) != 1:
            continue
        sol = solutions[sc.name]
        T = len(sc.phases)
        for letters in itertools.product("RTA", repeat=T):
            for screen in ({}, {d: "all" for d in range(1, T)}):
                for test in ("all", "none"):
                    for fallback in ("deploy", "abstain"):
                        reg = make_regimen(sc, ",".join(letters), test=test, screen=screen, fallback=fallback)
                        exact = analyze(sc, reg).expected_return
                        assert sol.value >= exact - 1e-9, (sc.name, reg.describe(sc), sol.value, exact)


def test_idea_screening_matches_its_description(solutions):
    """The scenario says the best pass/fail-count strategy deploys aligned with P 0.649, at most 1 - 0.7^3."""
    sol = solutions["idea_screening"]
    assert sol.value == pytest.approx(0.649, abs=5e-4)
    assert sol.value <= 1.0 - 0.7**3


# -- 3. the policy played in the env (its Monte Carlo checks are in test_monte_carlo.py) -------------
def test_optimal_strategy_in_the_single_env():
    sc = tiny(T=2, budget=2, ideas=PRIOR)
    env = ProxyAlignmentEnv(scenario=sc)
    agent = OptimalStrategy(sc, env.layout)
    assert agent.name == "optimal" and isinstance(agent, Strategy) and agent.regimen() is None
    for seed in range(30):
        _, info = play_episode(env, agent, seed=seed)
        assert not info["invalid_action"]


def test_optimal_strategy_refuses_an_episode_it_did_not_see_start():
    sc = tiny(T=2, budget=2, ideas=KNOWN)
    env = ProxyAlignmentEnv(scenario=sc)
    agent = OptimalStrategy(sc, env.layout)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.array([0, 0, 0]))  # checkpoint 1, played by someone else
    with pytest.raises(RuntimeError, match="lost track"):
        agent(obs)


# -- 4. the size guard ----------------------------------------------------------------------------
def big(k: int, T: int, budget: int, ideas=None):
    data = hand_scenario(budget=budget)
    data["phases"] = [{"name": f"t{t}", "capability": 0.1 * t, "plasticity": 0.5} for t in range(T)]
    data["proxies"] = [dict(data["proxies"][0], name=f"p{j}") for j in range(k)]
    if ideas is not None:
        data["ideas"] = ideas
    return parse_scenario(data)


def test_size_guard_refuses_a_large_run():
    sc = big(k=4, T=8, budget=5)
    with pytest.raises(ProxyGymError) as err:
        solve(sc)
    msg = str(err.value)
    assert "\n" not in msg and "too large" in msg and "limit" in msg
    assert "7.96e+24 belief states per run" in msg


def test_size_guard_refuses_many_posteriors():
    """Three ideas each fixed in advance (base rate 0 or 1) and a long budget: the run is tiny, the
    posteriors over the ideas are many."""
    ideas = [{"name": f"i{i}", "base_rate": {"values": [0.0, 1.0], "probs": [0.7, 0.3]}} for i in range(3)]
    sc = big(k=1, T=1, budget=12, ideas=ideas)
    est = estimate_size(sc)
    assert est.program_states > 10**6 and est.tree_nodes == 7
    with pytest.raises(ProxyGymError, match="program states"):
        solve(sc)


def test_size_estimate_bounds_what_a_solve_evaluates(shipped, solutions):
    for sc in shipped:
        sol = solutions[sc.name]
        assert sol.program_states <= sol.estimate.program_states, sc.name
        assert sol.states <= sol.estimate.work, sc.name


# -- 5. the description ------------------------------------------------------------------------------
def test_describe_policy(shipped, solutions):
    for sc in shipped:
        sol = solutions[sc.name]
        text = describe_policy(sol, sc)
        assert text.startswith(f"Optimal policy for {sc.name}")
        assert "First run" in text and f"{sol.value:.4f}" in text
        assert ("deploy" in text) and ("idea" in text)
        if any(len(v) > 1 for v in Dynamics.of(sc).base_rate_values):  # a prior, or worlds
            assert "How it picks ideas" in text
        else:
            assert "Deploy threshold" in text


def test_usages_that_change_nothing_tie_to_reserve():
    """A proxy whose training and anti-training change nothing (no steer, no proximity, no anti-damage): every
    usage gives the same value, and the solver's tie rule picks the lowest usage code, reserve, at every
    decision point of the first run (over three phases and two runs)."""
    data = hand_scenario(budget=2, phases=[{"name": f"p{t}", "capability": 0.0, "plasticity": 0.5} for t in range(3)])
    data["proxies"][0].update(steer=0.0, proximity=0.0, anti_damage=0.0)
    sol = solve(parse_scenario(data))
    usages = [p["usages"] for p in first_run(sol) if p["usages"]]
    assert usages and all(u == {"ask": "R"} for u in usages)
