"""The Bayesian filter's P(aligned) against the frequency of alignment among episodes with the same history."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxygym.agents.regimen import RegimenAgent
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import make_regimen
from tests.conftest import within_interval, z_value
from tests.test_analysis import scenarios


def collect(env: ProxyAlignmentEnv, agent, episodes: int, seed: int):
    """At every checkpoint of every run: the observation (the whole observable history), the
    filter's P(aligned), and the truth, read from the env's hidden state for this check only."""
    groups: dict[bytes, list] = defaultdict(list)
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        done = False
        while not done:
            obs, _, done, _, info = env.step(agent(obs))
            if not done:
                truth = bool(env.dynamics.aligned[env.programs.state[0]]) if info["checkpoint"] > 0 else None
                if truth is not None:
                    groups[obs.tobytes()].append((info["p_aligned"], truth))
    return groups


EXAMPLES = 12


# derandomize: the same examples every run, so a statistical failure is reproducible
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sc=scenarios(max_phases=2, max_proxies=1, max_ideas=1), data=st.data())
def test_filter_matches_empirical_frequency(sc, data):
    """Episodes with the same observable history share one P(aligned); among them, the share of
    truly aligned models must match it (a 99% family-wise interval: Bonferroni over the groups
    of every example, so a correct filter fails this test less than 1% of the time).

    The regimen screens at checkpoint 1 when there are two phases, so later runs follow
    discarded ones and the filter's carrying of evidence across runs is exercised too.
    """
    T = len(sc.phases)
    plan = data.draw(st.sampled_from(["R", "T", "A"]))
    screen = {1: sc.proxy_names[0]} if T > 1 else {}
    reg = make_regimen(sc, plan, screen=screen, fallback="abstain")
    env = ProxyAlignmentEnv(sc)
    agent = RegimenAgent(reg, env.layout, sc.budget)
    groups = collect(env, agent, episodes=3000, seed=data.draw(st.integers(0, 10_000)))
    big = {k: v for k, v in groups.items() if len(v) >= 100}
    assert big, "no observable history was seen often enough to check"
    z = z_value(0.99, comparisons=EXAMPLES * len(big))
    for key, rows in big.items():
        ps = {round(p, 12) for p, _ in rows}
        assert len(ps) == 1, "one observable history, one posterior"
        p = rows[0][0]
        aligned = sum(t for _, t in rows)
        assert within_interval(aligned, len(rows), p, z), (p, aligned / len(rows), len(rows))


def test_filter_learns_an_ideas_base_rate_across_runs():
    """An idea that is always aligned or never (50/50), a proxy that separates them well:
    after a first run that failed its test, the second run starts with P(aligned) well below 0.5,
    and the idea's posterior mean base rate says the same."""
    from proxygym.envs.scenario import parse_scenario
    from tests.test_analysis import hand_scenario

    sc = parse_scenario(hand_scenario(
        budget=3,
        ideas=[{"name": "idea", "base_rate": {"values": [0.0, 1.0], "probs": [0.5, 0.5]}}],
    ))
    # under reserve, P(pass | A) = 0.925 and P(pass | M) = 0.4 (worked in test_analysis)
    env = ProxyAlignmentEnv(sc, observation="belief")
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        obs, _, _, _, info = env.step(np.array([0, 0, 0]))
        if env.layout.decode(obs)["results"][0, 0, 1] == 1:  # failed
            break
    # P(rho = 1 | fail) = 0.5 * 0.075 / (0.5 * 0.075 + 0.5 * 0.6) = 0.0375 / 0.3375 = 1/9
    assert abs(info["p_aligned"] - 1 / 9) < 1e-12
    obs, _, _, _, info = env.step(np.array([1, 0, 0]))  # discard
    assert abs(env.layout.decode(obs)["base_rate"][0] - 1 / 9) < 1e-9
    obs, _, _, _, info = env.step(np.array([0, 0, 0]))  # next run, same idea
    assert info["p_aligned"] < 0.5
