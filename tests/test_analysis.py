"""The exact analysis against hand-worked cases, a path enumeration and its own algebra (its Monte Carlo checks: test_monte_carlo.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxygym.agents.strategies import make_strategy
from proxygym.envs.analysis import analyze, compare
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import SIG1, hand_scenario, scenarios


def test_hand_worked_reserve():
    """Plan R, test ask, budget 2, fallback deploy.

    Circumvention: sigmoid(10 * (0 - 10)) < 1e-40, so misaligned unshaped models pass
    with false_pass = 0.2. Values: nothing trained, no drift, so P(A) = 0.4.
    Shaping: pressure = native = 0, P(h: 0 -> 1) = proximity * sigmoid(0) = 0.25.
      P(pass | A) = 0.25 + 0.75 * 0.9 = 0.925
      P(pass | M) = 0.25 + 0.75 * 0.2 = 0.4
      likelihood ratio = 0.925 / 0.4 = 2.3125
      prior odds = 0.4 / 0.6 = 2/3; posterior odds = 2/3 * 2.3125 = 1.541667
      p_pass = 0.4 * 0.925 + 0.6 * 0.4 = 0.37 + 0.24 = 0.61
    Budget 2, the second run deployed whatever it shows:
      P(deploy A) = 0.37 + 0.39 * 0.4 = 0.526;  P(deploy M) = 0.24 + 0.39 * 0.6 = 0.474
      E[runs] = 1 + 0.39 = 1.39;  return = 0.526 - 0.474 - 0.1 * 1.39 = -0.087
    """
    sc = parse_scenario(hand_scenario())
    a = analyze(sc, make_regimen(sc, "R"))
    assert a.base_rate == pytest.approx(0.4)
    assert a.p_pass_aligned == pytest.approx(0.925)
    assert a.p_pass_misaligned == pytest.approx(0.4)
    assert a.likelihood_ratio == pytest.approx(2.3125)
    assert a.prior_odds == pytest.approx(2 / 3)
    assert a.posterior_odds == pytest.approx(1.5416667)
    assert a.p_pass == pytest.approx(0.61)
    assert a.expected_runs == pytest.approx(1.39)
    assert a.p_deploy_aligned == pytest.approx(0.526)
    assert a.p_deploy_misaligned == pytest.approx(0.474)
    assert a.p_abstain == pytest.approx(0.0)
    assert a.expected_return == pytest.approx(-0.087)


def test_hand_worked_abstain_fallback():
    """Same regimen, fallback abstain: a second failing run is discarded too.

    P(deploy A) = 0.37 * (1 + 0.39) = 0.5143; P(deploy M) = 0.24 * 1.39 = 0.3336;
    P(abstain) = 0.39^2 = 0.1521; return = 0.5143 - 0.3336 - 0.139 = 0.0417.
    """
    sc = parse_scenario(hand_scenario())
    a = analyze(sc, make_regimen(sc, "R", fallback="abstain"))
    assert a.p_deploy_aligned == pytest.approx(0.5143)
    assert a.p_deploy_misaligned == pytest.approx(0.3336)
    assert a.p_abstain == pytest.approx(0.1521)
    assert a.expected_runs == pytest.approx(1.39)
    assert a.expected_return == pytest.approx(0.0417)


def test_hand_worked_train_and_compare():
    """Plan T against plan R.

    Values: P(M -> A) = plasticity * steer = 0.2, so base rate = 0.4 + 0.6 * 0.2 = 0.52.
    Shaping: pressure = 0 + 1 = 1, P(h: 0 -> 1) = 0.5 * sigmoid(1) = 0.365529.
      P(pass | A) = 0.365529 + 0.634471 * 0.9 = 0.936553
      P(pass | M) = 0.365529 + 0.634471 * 0.2 = 0.492423
      likelihood ratio = 0.936553 / 0.492423 = 1.901926; prior odds = 0.52 / 0.48 = 1.083333
    Log impacts of T against R:
      base rate: ln(1.083333 / 0.666667) = ln(1.625) = 0.485508
      likelihood: ln(1.901926 / 2.3125) = ln(0.822455) = -0.195462
      posterior-odds ratio: 0.290046 (their sum)
    """
    sc = parse_scenario(hand_scenario())
    t = analyze(sc, make_regimen(sc, "T"))
    r = analyze(sc, make_regimen(sc, "R"))
    on = 0.5 * SIG1
    assert t.base_rate == pytest.approx(0.52)
    assert t.p_pass_aligned == pytest.approx(on + (1 - on) * 0.9)
    assert t.p_pass_misaligned == pytest.approx(on + (1 - on) * 0.2)
    assert t.p_pass_aligned == pytest.approx(0.936553, abs=1e-6)
    assert t.likelihood_ratio == pytest.approx(1.901926, abs=1e-6)
    c = compare(t, r)
    assert c["base_rate_log_impact"] == pytest.approx(0.485508, abs=1e-6)
    assert c["likelihood_log_impact"] == pytest.approx(-0.195462, abs=1e-6)
    assert c["log_posterior_odds_ratio"] == pytest.approx(0.290046, abs=1e-6)


def test_hand_worked_anti():
    """Plan A: pressure = -1, P(h: 0 -> 1) = 0.5 * sigmoid(-1) = 0.134471; one anti phase
    halves the sensitivity (anti_damage 0.5): 0.45.
      P(pass | A) = 0.134471 + 0.865529 * 0.45 = 0.523959 (0.5239589 unrounded)
      P(pass | M) = 0.134471 + 0.865529 * 0.2 = 0.307577
    """
    sc = parse_scenario(hand_scenario())
    a = analyze(sc, make_regimen(sc, "A"))
    assert a.base_rate == pytest.approx(0.4)
    assert a.p_pass_aligned == pytest.approx(0.523959, abs=1e-6)
    assert a.p_pass_misaligned == pytest.approx(0.307577, abs=1e-6)


def test_hand_worked_no_test():
    """Test set 'none': the first model is deployed, so P(deploy A) is the base rate and one run is used."""
    sc = parse_scenario(hand_scenario())
    a = analyze(sc, make_regimen(sc, "T", test="none"))
    assert a.p_pass == pytest.approx(1.0)
    assert a.expected_runs == pytest.approx(1.0)
    assert a.p_deploy_aligned == pytest.approx(0.52)


def test_prior_makes_runs_correlated():
    """An idea that is either always aligned (rho = 1) or never (rho = 0), 50/50.

    Given rho = 1 every run is aligned, given rho = 0 none is; so P(deploy aligned) = 0.5
    whatever the test does. Treating runs as independent draws with base rate 0.5 would
    give 0.4625 + (1 - 0.6625) * 0.5 = 0.63125 instead. Expected runs:
    rho = 1: 1 + 0.075 = 1.075; rho = 0: 1 + 0.6 = 1.6; mean 1.3375.
    """
    sc = parse_scenario(hand_scenario(ideas=[{"name": "idea", "base_rate": {"values": [0.0, 1.0], "probs": [0.5, 0.5]}}]))
    a = analyze(sc, make_regimen(sc, "R"))
    assert a.base_rate == pytest.approx(0.5)
    assert a.p_pass == pytest.approx(0.6625)
    assert a.p_deploy_aligned == pytest.approx(0.5)
    assert a.expected_runs == pytest.approx(1.3375)


def test_random_ideas_by_hand():
    """idea_screening's baseline: each run's idea drawn uniformly from three ideas, each of which works
    (base rate 1) with probability 0.3 and else never (0), drawn once per program; one phase, no
    shaping; the probe passes an aligned model with 0.9 and a misaligned one with 0.1; budget 8,
    the last run deployed whatever it shows.

    Given the number w of working ideas (binomial(3, 0.3)), a run is aligned with q = w / 3, passes
    and is aligned with 0.9 q, passes and is misaligned with 0.1 (1 - q), and fails with
    f = 1 - 0.9 q - 0.1 (1 - q). P(deploy aligned | w) = 0.9 q (1 - f^7) / (1 - f) + f^7 q, and the
    runs started are sum_{r<8} f^r.
    """
    sc = load_scenario("idea_screening")
    p_deploy_aligned = runs = 0.0
    for w in range(4):
        prob = math.comb(3, w) * 0.3**w * 0.7 ** (3 - w)
        q = w / 3
        f = 1 - 0.9 * q - 0.1 * (1 - q)
        p_deploy_aligned += prob * (sum(0.9 * q * f**r for r in range(7)) + f**7 * q)
        runs += prob * sum(f**r for r in range(8))
    a = analyze(sc, make_regimen(sc, "R", idea="random"))
    assert a.p_deploy_aligned == pytest.approx(p_deploy_aligned, abs=1e-12)
    assert a.expected_runs == pytest.approx(runs, abs=1e-12)
    assert a.base_rate == pytest.approx(0.3, abs=1e-12)
    assert a.p_deploy_aligned == pytest.approx(0.558, abs=5e-4)  # the essay's baseline, as the issue quotes it
    strategy = make_strategy("random_ideas", sc, ObservationLayout.of(sc, "belief"))
    assert strategy.regimen() == make_regimen(sc, "R", idea="random")


def test_random_ideas_of_one_idea_is_reserve():
    """With one idea, drawing it at random is choosing it: the regimen is plan R's."""
    sc = parse_scenario(hand_scenario())
    assert make_regimen(sc, "R", idea="random") == make_regimen(sc, "R")


def test_screen_at_early_checkpoint():
    """Two phases; screen at checkpoint 1, no final test; budget 1 means the screen never acts
    (the only run is the last), budget 2 means a first run failing the screen is replaced.

    Phase 1 reserve, capability 0: P(pass at 1 | A) = 0.25 + 0.75 * 0.9 = 0.925, | M: 0.4.
    Phase 2 has plasticity 0, capability 0; nothing changes alignment.
    Budget 2: P(deploy A) = 0.4 * 0.925 + (1 - 0.61) * 0.4 = 0.37 + 0.156 = 0.526.
    """
    phases = [
        {"name": "early", "capability": 0.0, "plasticity": 0.5},
        {"name": "late", "capability": 0.0, "plasticity": 0.0},
    ]
    sc = parse_scenario(hand_scenario(phases=phases))
    one = analyze(sc, make_regimen(sc, "R", test="none", screen={1: "ask"}, budget=1))
    two = analyze(sc, make_regimen(sc, "R", test="none", screen={1: "ask"}, budget=2))
    assert one.p_deploy_aligned == pytest.approx(0.4)
    assert two.p_pass == pytest.approx(0.61)
    assert two.p_deploy_aligned == pytest.approx(0.526)


# -- properties on random valid scenarios ----------------------------------------------
@st.composite
def scenario_and_regimens(draw):
    sc = draw(scenarios())
    T, k = len(sc.phases), len(sc.proxies)
    plans = [",".join("".join(draw(st.sampled_from("RTA")) for _ in range(k)) for _ in range(T)) for _ in range(2)]
    test = draw(st.sampled_from(["all", "none", sc.proxy_names[0]]))
    screen = {1: sc.proxy_names[-1]} if T > 1 and draw(st.booleans()) else {}
    idea = draw(st.sampled_from(sc.idea_names))
    fallback = draw(st.sampled_from(["deploy", "abstain"]))
    regs = [make_regimen(sc, p, test=test, screen=screen, idea=idea, fallback=fallback) for p in plans]
    return sc, regs


# derandomize: the same examples every run
@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario_and_regimens())
def test_probabilities_and_bayes_identities(case):
    sc, (r1, r2) = case
    a, b = analyze(sc, r1), analyze(sc, r2)
    for res in (a, b):
        for key in ("base_rate", "p_pass_aligned", "p_pass_misaligned", "p_pass", "p_deploy_aligned",
                    "p_deploy_misaligned", "p_abstain"):
            v = getattr(res, key)
            assert v is None or -1e-12 <= v <= 1 + 1e-12, (key, v)
        assert res.p_deploy_aligned + res.p_deploy_misaligned + res.p_abstain == pytest.approx(1.0)
        assert 1.0 - 1e-12 <= res.expected_runs <= sc.budget + 1e-12
        if None not in (res.prior_odds, res.likelihood_ratio, res.posterior_odds):
            assert res.posterior_odds == pytest.approx(res.prior_odds * res.likelihood_ratio, rel=1e-9, abs=1e-12)
    c = compare(a, b)
    if None not in c.values():
        assert c["log_posterior_odds_ratio"] == pytest.approx(
            c["base_rate_log_impact"] + c["likelihood_log_impact"], abs=1e-9
        )


# -- beyond the hand-worked case -------------------------------------------------------------
def test_two_proxies_two_phases_against_a_path_enumeration():
    """The dynamics beyond the hand-worked case, against an enumeration written straight from the
    world model's formulas (plain Python over every path of (a, h_0, h_1); no code of envs/ but
    the loader): drift, positive and negative steer, shaping pressure with native preferences,
    circumvention near the difficulty, anti-damage over two anti-trained phases, and the
    usage order of a two-proxy plan."""
    import itertools

    def sig(x):
        return 1.0 / (1.0 + math.exp(-x))

    phases = [{"name": "p1", "capability": 0.4, "plasticity": 0.7}, {"name": "p2", "capability": 0.9, "plasticity": 0.3}]
    ideas = [{"name": "idea", "base_rate": 0.35, "drift": 0.2}]
    proxies = [
        {"name": "ask", "sensitivity": 0.9, "false_pass": 0.15, "steer": 0.5, "incentive": 1.5, "native": -0.5,
         "anti_strength": 2.0, "anti_damage": 0.1, "proximity": 0.4, "difficulty": 0.8, "sharpness": 6.0},
        {"name": "probe", "sensitivity": 0.8, "false_pass": 0.05, "steer": -0.4, "incentive": 1.0, "native": 1.0,
         "anti_strength": 1.0, "anti_damage": 0.3, "proximity": 0.6, "difficulty": 1.2, "sharpness": 4.0},
    ]
    sc = parse_scenario(hand_scenario(phases=phases, ideas=ideas, proxies=proxies, budget=3))
    plan = [("T", "A"), ("A", "A")]  # phase 1: train ask, anti probe; phase 2: anti both

    # world-model.md, "One run: latent state and dynamics", by hand
    dist = {(1, 0, 0): 0.35, (0, 0, 0): 0.65}
    n_anti = [0, 0]
    for t, (phase, usage) in enumerate(zip(phases, plan)):
        p = phase["plasticity"]
        trained = [u == "T" for u in usage]
        up = 1 - math.prod(1 - p * max(px["steer"], 0) for px, tr in zip(proxies, trained) if tr)
        down = 1 - (1 - p * 0.2) * math.prod(1 - p * max(-px["steer"], 0) for px, tr in zip(proxies, trained) if tr)
        move = []
        for px, u in zip(proxies, usage):
            pressure = px["native"] + px["incentive"] * (u == "T") - px["anti_strength"] * (u == "A")
            move.append((px["proximity"] * sig(pressure), px["proximity"] * sig(-pressure)))
        new = {}
        for (a, h0, h1), w in dist.items():
            for a2, g0, g1 in itertools.product((0, 1), repeat=3):
                pa = (up if a2 else 1 - up) if a == 0 else (1 - down if a2 else down)
                ph = 1.0
                for h, g, (on, off) in ((h0, g0, move[0]), (h1, g1, move[1])):
                    ph *= (on if g else 1 - on) if h == 0 else (1 - off if g else off)
                new[(a2, g0, g1)] = new.get((a2, g0, g1), 0.0) + w * pa * ph
        dist = new
        n_anti = [n + (u == "A") for n, u in zip(n_anti, usage)]
    cap = phases[-1]["capability"]

    def p_pass(j, a, h):
        px = proxies[j]
        if h:
            return 1.0
        if a:
            return px["sensitivity"] * (1 - px["anti_damage"]) ** n_anti[j]
        return px["false_pass"] + (1 - px["false_pass"]) * sig(px["sharpness"] * (cap - px["difficulty"]))

    base = sum(w for (a, _, _), w in dist.items() if a)
    passed = sum(w * p_pass(0, a, h0) * p_pass(1, a, h1) for (a, h0, h1), w in dist.items())
    passed_aligned = sum(w * p_pass(0, a, h0) * p_pass(1, a, h1) for (a, h0, h1), w in dist.items() if a)

    res = analyze(sc, make_regimen(sc, "TA,AA"))
    assert res.base_rate == pytest.approx(base, abs=1e-12)
    assert res.p_pass == pytest.approx(passed, abs=1e-12)
    assert res.p_pass_aligned == pytest.approx(passed_aligned / base, abs=1e-12)
    # and the budget of 3 runs, deploying the last: independent runs, geometric by hand
    q, qa = passed, passed_aligned
    expected = qa * (1 + (1 - q)) + (1 - q) ** 2 * base
    assert res.p_deploy_aligned == pytest.approx(expected, abs=1e-12)


def compute_hand_case(fallback: str):
    """Two phases costing 1 and 3 (a full run is 4) under a compute budget of 5: a run failed at
    checkpoint 1 leaves 4, enough for one more run; a run failed at checkpoint 2 leaves 1, enough for none."""
    rho, s, f = 0.4, 0.8, 0.3
    sc = parse_scenario({
        "name": "hand", "title": "t", "claim": "c", "compute": 5,
        "phases": [{"name": "early", "capability": 0.0, "plasticity": 0.0, "cost": 1},
                   {"name": "late", "capability": 0.0, "plasticity": 0.0, "cost": 3}],
        "ideas": [{"name": "default", "base_rate": rho}],
        "proxies": [{"name": "ask", "sensitivity": s, "false_pass": f}],
    })
    return sc, make_regimen(sc, "R", screen={1: "ask"}, fallback=fallback), rho, s, f


def test_hand_worked_compute_budget_with_an_early_discard():
    """Alignment never moves here and tests are fresh draws, so by hand: a run first fails at checkpoint 1
    with P1 = rho (1 - s) + (1 - rho)(1 - f) (compute left 4: a second run starts), at checkpoint 2 with
    P2 = rho s (1 - s) + (1 - rho) f (1 - f) (compute left 1: no run can start)."""
    sc, reg, rho, s, f = compute_hand_case("deploy")
    p1 = rho * (1 - s) + (1 - rho) * (1 - f)
    # deploy fallback: a first-run fail at checkpoint 2 is played on and deployed; the second run is
    # deployed whatever it shows (any discard would leave 3 or 0 compute, less than a run)
    a = analyze(sc, reg)
    assert a.p_deploy_aligned == pytest.approx(rho * s * s + rho * s * (1 - s) + p1 * rho)
    assert a.p_abstain == pytest.approx(0.0)
    assert a.expected_runs == pytest.approx(1 + p1)
    assert a.expected_compute == pytest.approx(4 * (1 - p1) + p1 * (1 + 4))
    # abstain fallback: the same failures end the program with nothing deployed
    sc, reg, *_ = compute_hand_case("abstain")
    a = analyze(sc, reg)
    p2 = rho * s * (1 - s) + (1 - rho) * f * (1 - f)
    pass_both, pass_both_aligned = rho * s * s + (1 - rho) * f * f, rho * s * s
    assert a.p_deploy_aligned == pytest.approx(pass_both_aligned * (1 + p1))
    assert a.p_abstain == pytest.approx(p2 + p1 * (1 - pass_both))
    # spent: 4 on a pass, 4 on a fail at 2, 1 + (a second run: 1 if it fails at 1, else 4) on a fail at 1
    assert a.expected_compute == pytest.approx(4 * (1 - p1) + p1 * (1 + 1 * p1 + 4 * (1 - p1)))


@pytest.mark.parametrize("name", ["sticky_values", "loss_landscape", "idea_screening", "protocol_wins"])
def test_the_closed_forms_are_the_recursion(name):
    """Without a compute budget the run budget is summed in closed form; with a compute budget too large to bind,
    the recursion over (compute left, runs started) runs instead: the two give the same outcomes, for both
    fallbacks, budgets 1, 2 and 7, early screens or none, and random ideas."""
    sc = load_scenario(name)
    T = len(sc.phases)
    for plan in ("R", "T", "A"):
        for screen in ({}, {1: sc.proxy_names[0]} if T > 1 else {}):
            for budget in (1, 2, 7):
                for fallback in ("deploy", "abstain"):
                    for idea in (None, "random"):
                        closed = analyze(sc, make_regimen(sc, plan, screen=screen, budget=budget, fallback=fallback, idea=idea))
                        recursion = analyze(sc, make_regimen(sc, plan, screen=screen, budget=budget, fallback=fallback,
                                                             idea=idea, compute=100_000))
                        for key in ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain", "expected_runs", "expected_compute",
                                    "expected_return"):
                            assert getattr(closed, key) == pytest.approx(getattr(recursion, key), abs=1e-12), (plan, key)
