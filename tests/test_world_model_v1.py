"""World model v1 against an independent reference written from the contract.

The reference (``tests/v1_reference.py``) is built from ``world-model-v1.md`` and
``world-model.md`` alone: it enumerates latent paths (and test outcomes) in plain Python.
The project is used only through its public API: ``parse_scenario``, ``make_regimen``,
``analyze``, ``Dynamics.initial/advance/pass_prob/aligned/shaped/n_states/usage_code`` and
the documented state packing, the vector env with ``RegimenAgent``, and ``solve``.

The reference leaves the compute budget (``compute``, phase ``cost``) out: the compute
budget is checked against a hand-worked case (tests/test_analysis.py), against the
reference's run budget where no run ends early (below), by Monte Carlo
(tests/test_monte_carlo.py), and for its validation (tests/test_world_model_v1_input.py).
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest

from proxygym.agents.solver import solve
from proxygym.envs.analysis import analyze
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios
from tests.helpers import mixed_scenario
from tests.v1_cases import (
    BOTH_PERSISTENT_K2,
    ONE_PERSISTENT_K2,
    SCENARIOS,
    THREE,
    phase,
    scenario_data,
)
from tests.v1_reference import ANTI, Ref, parse_plan, v0_analyze

OUTPUTS = (
    "base_rate",
    "p_pass",
    "p_pass_aligned",
    "p_pass_misaligned",
    "p_deploy_aligned",
    "p_deploy_misaligned",
    "p_abstain",
    "expected_runs",
    "expected_return",
)


# -- scenarios (plain mappings, read both by parse_scenario and by the reference) -----------------
PLANS = {
    "all_on_k1": ["T,A,R", "A,T,A", "R", "T", "A"],
    "both_persistent_k2": ["TA,AT", "TT,RR", "AA,TA", "RT,AR"],
    "one_persistent_k2": ["TA,RT,AR", "TT,AA,RR", "AT,TA,TT"],
    "gate_no_persistence": ["T,A", "A,T", "T", "R"],
    "transfer_only": ["TA,AT,RR", "AT,TR,TA", "TT,TT,AA"],
    "edges": ["TA,AT", "AA,TT", "TT,RA", "RR,AA"],
}


def ids(cases):
    return [c["name"] for c in cases]


_CACHE: dict = {}


def compiled(data):
    """(reference, scenario, Dynamics), once per scenario mapping."""
    if data["name"] not in _CACHE:
        sc = parse_scenario(copy.deepcopy(data))
        _CACHE[data["name"]] = (Ref(data), sc, Dynamics(sc))
    return _CACHE[data["name"]]


def packed(ref: Ref, dist: dict) -> np.ndarray:
    out = np.zeros(ref.n_states)
    for s, p in dist.items():
        out[ref.index(s)] += p
    return out


def advance_plan(dyn, ref, rho, plan, idea):
    """Distributions after phases 0..T by Dynamics.advance from Dynamics.initial."""
    dist = dyn.initial(rho)
    out = [dist]
    n = np.zeros(ref.k, dtype=np.int64)
    for t, usage in enumerate(plan):
        dist = dyn.advance(dist, t, dyn.usage_code(np.array(usage)), idea, n)
        n = n + (np.array(usage) == ANTI)
        out.append(dist)
    return out


# == 1. the dynamics, state by state ===============================================================
@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_state_packing(data):
    ref, _sc, dyn = compiled(data)
    assert dyn.n_states == ref.n_states == 2 ** (1 + ref.k + len(ref.persistent))
    for s in ref.states():
        i = ref.index(s)
        assert bool(dyn.aligned[i]) == bool(s[0])
        assert list(map(bool, dyn.shaped[i])) == [bool(x) for x in s[1]]


@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_initial_distribution(data):
    ref, _sc, dyn = compiled(data)
    for rho in (0.0, 0.2, 0.6, 1.0):
        np.testing.assert_allclose(dyn.initial(rho), packed(ref, ref.start(rho)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_one_phase_from_every_state(data):
    """Dynamics.advance of a point mass = the contract's steps 1-3, for every state, phase,
    usage vector, idea and anti-training count the run can have had before the phase."""
    ref, _sc, dyn = compiled(data)
    S = ref.n_states
    states = list(ref.states())
    eye = np.eye(S)[[ref.index(s) for s in states]]
    for t in range(1, ref.T + 1):
        for usage in itertools.product(range(3), repeat=ref.k):
            code = dyn.usage_code(np.array(usage))
            for n_prev in itertools.product(range(t), repeat=ref.k):
                for idea in range(len(ref.ideas)):
                    got = dyn.advance(eye, t - 1, code, idea, np.array(n_prev))
                    want = np.stack([packed(ref, ref.step(s, t, usage, n_prev, ref.ideas[idea][2])) for s in states])
                    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13, err_msg=f"t={t} u={usage} n={n_prev} i={idea}")


@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_pass_prob_table(data):
    ref, _sc, dyn = compiled(data)
    for t in range(1, ref.T + 1):
        for n in range(t + 1):
            for s in ref.states():
                want = [ref.pass_p(s, j, t, n) for j in range(ref.k)]
                np.testing.assert_allclose(dyn.pass_prob[t - 1, n, ref.index(s)], want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_state_distribution_after_each_phase(data):
    """The marginal over states after each phase, summed over every enumerated latent path."""
    ref, _sc, dyn = compiled(data)
    for plan_text in PLANS[data["name"]]:
        plan = parse_plan(plan_text, ref.T, ref.k)
        for idea, (vals, _, _) in enumerate(ref.ideas):
            for rho in vals:
                got = advance_plan(dyn, ref, rho, plan, idea)
                for t, marg in enumerate(ref.state_marginals(rho, plan, idea)):
                    np.testing.assert_allclose(got[t], packed(ref, marg), rtol=0, atol=1e-13, err_msg=f"{plan_text} t={t}")


def regimens_for(data):
    """(plan, test, screen, idea, budget, fallback) combinations for one scenario."""
    ref = compiled(data)[0]
    names = ref.names
    tests = [None, [names[-1]], []]
    screens = [{}] + [{d: [names[0]]} for d in range(1, ref.T)] + ([{1: list(names), ref.T - 1: [names[-1]]}] if ref.T > 1 else [])
    out = []
    for pi, plan in enumerate(PLANS[data["name"]]):
        for ti, test in enumerate(tests):
            screen = screens[(pi + ti) % len(screens)]
            idea = (pi + ti) % len(ref.ideas)
            for budget in (1, 2):
                for fallback in ("deploy", "abstain"):
                    out.append((plan, test, screen, idea, budget, fallback))
    return out


def assert_outputs(got, want, where, tol=1e-12):
    for key in OUTPUTS + ("likelihood_ratio",):
        g, w = getattr(got, key), want[key]
        if w is None:
            assert g is None, f"{where}: {key} = {g}, the reference says undefined"
        elif key == "likelihood_ratio":
            assert g == pytest.approx(w, rel=1e-10, abs=tol), f"{where}: {key}"
        else:
            assert abs(g - w) <= tol, f"{where}: {key} = {g!r}, reference {w!r}"


@pytest.mark.parametrize("data", SCENARIOS, ids=ids(SCENARIOS))
def test_analysis_matches_path_enumeration(data):
    ref, sc, _dyn = compiled(data)
    for plan, test, screen, idea, budget, fallback in regimens_for(data):
        reg = make_regimen(
            sc,
            plan,
            test=None if test is None else (",".join(test) or "none"),
            screen={d: ",".join(v) for d, v in screen.items()},
            idea=sc.idea_names[idea],
            budget=budget,
            fallback=fallback,
        )
        want = ref.analyze(plan, test=test, screen=screen, idea=idea, budget=budget, fallback=fallback)
        assert_outputs(analyze(sc, reg), want, f"{data['name']} {reg.describe(sc)}")


def test_analysis_with_outcomes_enumerated():
    """One regimen scored by enumerating every latent path AND every test-result vector at
    every checkpoint (not only the product of pass probabilities)."""
    ref, sc, _dyn = compiled(ONE_PERSISTENT_K2)
    plan_text = "TA,RT,AR"
    plan = parse_plan(plan_text, ref.T, ref.k)
    reg = make_regimen(sc, plan_text, test="probe", screen={1: "ask", 2: "ask,probe"}, idea="gamble", budget=1)
    got = analyze(sc, reg)
    vals, probs, _ = ref.ideas[0]
    pA = pPass = pPassA = 0.0
    for rho, w in zip(vals, probs):
        for path, results, prob in ref.records(rho, plan, 0):
            kept = results[0][0] and results[1][0] and results[1][1] and results[2][1]
            a = path[-1][0]
            pA += w * prob * a
            pPass += w * prob * kept
            pPassA += w * prob * kept * a
    assert got.base_rate == pytest.approx(pA, abs=1e-12)
    assert got.p_pass == pytest.approx(pPass, abs=1e-12)
    assert got.p_pass_aligned == pytest.approx(pPassA / pA, abs=1e-12)
    assert got.p_pass_misaligned == pytest.approx((pPass - pPassA) / (1 - pA), abs=1e-12)


# == 2. the contract's stated consequences =======================================================
def with_proxy(data, j=0, **fields):
    out = copy.deepcopy(data)
    out["proxies"][j].update(fields)
    return out


def conditional_pass_rates(dyn, ref, rho, plan):
    """{(t, j, a, h_j): P(pass_j at t | a, h_j)} from Dynamics.advance and pass_prob."""
    out = {}
    n = Ref.anti_counts(plan, ref.k)
    dists = advance_plan(dyn, ref, rho, plan, 0)
    for t in range(1, ref.T + 1):
        for j in range(ref.k):
            pp = dyn.pass_prob[t - 1, n[t][j], :, j]
            for a in (0, 1):
                for h in (0, 1):
                    mask = (dyn.aligned == bool(a)) & (dyn.shaped[:, j] == bool(h))
                    mass = dists[t][mask].sum()
                    if mass > 1e-12:
                        out[(t, j, a, h)] = float((dists[t] * pp)[mask].sum() / mass)
    return out


def ref_conditional_pass_rates(ref, rho, plan):
    n = Ref.anti_counts(plan, ref.k)
    num, den = {}, {}
    for path, prob in ref.paths(rho, plan, 0):
        for t in range(1, ref.T + 1):
            a, h, _ = path[t]
            for j in range(ref.k):
                key = (t, j, a, h[j])
                num[key] = num.get(key, 0.0) + prob * ref.pass_p(path[t], j, t, n[t][j])
                den[key] = den.get(key, 0.0) + prob
    return {key: num[key] / den[key] for key in num if den[key] > 1e-12}


# gate 0 everywhere, every other new field on, rising capability and anti-damage
GATE_OFF = scenario_data(
    "gate_off",
    THREE,
    [
        {"name": "p", "sensitivity": 0.85, "false_pass": 0.15, "steer": 0.6, "native": -0.5, "anti_damage": 0.3,
         "proximity": 0.4, "proximity_aligned": 0.2, "difficulty": 0.8, "sharpness": 5.0, "faking_when_set": 1.5,
         "obfuscation_difficulty": 0.5, "wash_out": 0.4, "transfer": {"q": 0.5}},
        {"name": "q", "sensitivity": 0.7, "false_pass": 0.3, "steer": 0.2, "native": 0.3, "proximity": 0.3,
         "difficulty": 0.5, "sharpness": 4.0, "anti_damage": 0.2},
    ],
    ideas=[{"name": "one", "base_rate": 0.3, "drift": 0.1}],
)


def test_gate_off_persistence_keeps_single_checkpoint_pass_rates():
    """With gate 0, P(pass_j at t | a, h_j) is v0's (pi_j, or 1 when shaped) for every kappa."""
    rho = 0.3
    for plan_text in ("TA,AT,RR", "AA,TT,TA"):
        rates = {}
        for kappa in (0.0, 0.4, 1.0):
            data = with_proxy(with_proxy(GATE_OFF, 0, persistence=kappa), 1, persistence=1.0 - kappa / 2)
            data["name"] = f"gate_off_{int(kappa * 10)}"
            ref, _sc, dyn = compiled(data)
            plan = parse_plan(plan_text, ref.T, ref.k)
            got = conditional_pass_rates(dyn, ref, rho, plan)
            # the reference, once (its path enumeration over 32 states is the slow part)
            want = ref_conditional_pass_rates(ref, rho, plan) if kappa == 0.4 else got
            assert got.keys() == want.keys()
            n = Ref.anti_counts(plan, ref.k)
            for key, value in want.items():
                t, j, a, h = key
                v0 = 1.0 if h else ref.pi(j, a, t, n[t][j])
                assert value == pytest.approx(v0, abs=1e-12), (kappa, key)
                assert got[key] == pytest.approx(v0, abs=1e-12), (kappa, key)
            rates[kappa] = got
        assert rates[0.0] == pytest.approx(rates[0.4], abs=1e-12) == rates[1.0]


def test_gate_on_breaks_it_by_design():
    """The converse the contract names: with gating, the misaligned unshaped models left over-represent b = 1."""
    rates = []
    for kappa in (0.0, 1.0):
        data = with_proxy(GATE_OFF, 0, persistence=kappa, gate=1.0, steer=0.9)
        data["name"] = f"gate_on_{int(kappa)}"
        ref, _sc, dyn = compiled(data)
        plan = parse_plan("TR,TR,TR", ref.T, ref.k)
        got = conditional_pass_rates(dyn, ref, 0.3, plan)
        assert got == pytest.approx(ref_conditional_pass_rates(ref, 0.3, plan), abs=1e-12)
        rates.append(got[(1, 0, 0, 0)])
    assert rates[1] > rates[0] + 1e-3


def final_only_base():
    return scenario_data(
        "final_only",
        THREE,
        [
            {"name": "p", "sensitivity": 0.85, "false_pass": 0.15, "steer": 0.6, "native": -0.5, "anti_damage": 0.3,
             "proximity": 0.4, "difficulty": 0.8, "sharpness": 5.0},
            {"name": "q", "sensitivity": 0.7, "false_pass": 0.3, "steer": -0.2, "native": 0.3, "proximity": 0.3,
             "difficulty": 0.5, "sharpness": 4.0},
        ],
        ideas=[{"name": "one", "base_rate": {"values": [0.1, 0.5], "probs": [0.4, 0.6]}, "drift": 0.1}],
    )


def test_final_test_only_analysis_is_the_same_for_every_persistence():
    """Gate 0, other new fields at defaults: a regimen testing only at the end has one analysis for every kappa."""
    for plan_text in ("TA,AT,RR", "AA,TT,TA", "R"):
        for budget, fallback in ((1, "deploy"), (2, "abstain"), (2, "deploy")):
            results = []
            for kp, kq in ((0.0, 0.0), (0.5, 0.0), (1.0, 0.3), (1.0, 1.0)):
                data = with_proxy(with_proxy(final_only_base(), 0, persistence=kp), 1, persistence=kq)
                data["name"] = f"final_only_{int(kp * 10)}_{int(kq * 10)}"
                ref, sc, _dyn = compiled(data)
                reg = make_regimen(sc, plan_text, budget=budget, fallback=fallback)
                got = analyze(sc, reg)
                if plan_text == "TA,AT,RR" and (kp, kq) == (0.5, 0.0):  # the reference once (slow with 32 states)
                    assert_outputs(got, ref.analyze(plan_text, budget=budget, fallback=fallback), data["name"])
                results.append(got)
            for other in results[1:]:
                for key in OUTPUTS + ("likelihood_ratio",):
                    assert getattr(other, key) == pytest.approx(getattr(results[0], key), abs=1e-12), (plan_text, key)


def explicit_defaults(data):
    out = copy.deepcopy(data)
    for p in out["proxies"]:
        p.update(
            persistence=0.0, gate=0.0, proximity_aligned=p.get("proximity", 0.0), faking_when_set=0.0,
            obfuscation_difficulty=None, wash_out=1.0, transfer={},
        )
    return out


#: The v1 fields of a proxy, a phase and a program (absent: their defaults, the v0 model).
V1_PROXY_FIELDS = ("persistence", "gate", "proximity_aligned", "faking_when_set", "obfuscation_difficulty", "wash_out", "transfer")


def v0_part(data: dict) -> dict:
    """A scenario file's data without its v1 fields: what the v0 model reads of it."""
    out = copy.deepcopy(data)
    out.pop("expect", None)
    out.pop("compute", None)
    out.pop("worlds", None)  # (the scenario as it is in its own numbers; tests/test_worlds.py checks the worlds)
    for p in out["proxies"]:
        for key in V1_PROXY_FIELDS:
            p.pop(key, None)
    for ph in out["phases"]:
        ph.pop("cost", None)
    return out


def test_defaults_reproduce_v0_on_the_shipped_scenarios():
    """Every new field given at its default: analyze() equals the v0 scenario's (the file without its v1
    fields), and both equal a v0 reference."""
    import yaml

    from proxygym.envs.scenario import SCENARIO_DIR

    for name in shipped_scenarios():
        data = v0_part(yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text()))
        v0 = parse_scenario(copy.deepcopy(data))
        v1 = parse_scenario(explicit_defaults(data))
        assert Dynamics(v1).n_states == 2 ** (len(v1.proxies) + 1)
        T = len(v0.phases)
        plans = ["R", "T", "A", ",".join("T" if t == 0 else "R" for t in range(T))]
        for plan in plans:
            for budget, fallback in ((1, "deploy"), (3, "abstain"), (3, "deploy")):
                screen = {1: v0.proxy_names[0]} if T > 1 else {}
                a0 = analyze(v0, make_regimen(v0, plan, screen=screen, budget=budget, fallback=fallback))
                a1 = analyze(v1, make_regimen(v1, plan, screen=screen, budget=budget, fallback=fallback))
                want = v0_analyze(data, plan, screen={d: [n] for d, n in screen.items()}, budget=budget, fallback=fallback)
                for key in OUTPUTS:
                    assert getattr(a1, key) == getattr(a0, key), (name, plan, key)
                    w = want[key]
                    if w is None:
                        assert getattr(a0, key) is None
                    else:
                        assert getattr(a0, key) == pytest.approx(w, abs=1e-12), (name, plan, key)


def test_defaults_reproduce_v0_reference_on_small_scenarios():
    """The v1 reference at defaults, the v0 reference and analyze() agree (a v0 scenario with several ideas)."""
    data = final_only_base()
    data["proxies"][0]["anti_strength"] = 2.0
    for plan in ("TA,AT,RR", "AT,TA,AA"):
        for screen in ({}, {1: ["p"], 2: ["q"]}):
            ref, sc, _dyn = compiled(data)
            reg = make_regimen(sc, plan, screen={d: ",".join(v) for d, v in screen.items()}, budget=2, fallback="abstain")
            got = analyze(sc, reg)
            v0 = v0_analyze(data, plan, screen=screen, budget=2, fallback="abstain")
            v1 = ref.analyze(plan, screen=screen, budget=2, fallback="abstain")
            for key in OUTPUTS:
                assert v0[key] == pytest.approx(v1[key], abs=1e-12), key
                assert getattr(got, key) == pytest.approx(v0[key], abs=1e-12), key


GOODHART = scenario_data(
    "goodhart_proper",
    [phase("only", 0.3, 0.5)],
    [
        {"name": "p", "sensitivity": 0.8, "false_pass": 0.3, "steer": 0.1, "incentive": 3.0, "native": -1.0,
         "proximity": 0.9, "proximity_aligned": 0.0}
    ],
    ideas=[{"name": "one", "base_rate": 0.3}],
)


def test_proximity_aligned_below_proximity_lets_training_invert_the_test():
    ref, sc, _dyn = compiled(GOODHART)
    lr = {}
    for plan in ("T", "R"):
        got = analyze(sc, make_regimen(sc, plan))
        want = ref.analyze(plan)
        assert got.likelihood_ratio == pytest.approx(want["likelihood_ratio"], rel=1e-12)
        lr[plan] = (got.likelihood_ratio, want["likelihood_ratio"])
    assert lr["T"][0] < 1 and lr["T"][1] < 1
    assert lr["R"][0] > 1 and lr["R"][1] > 1
    # and with proximity_aligned = proximity (v0) training on it cannot invert it
    same = with_proxy(GOODHART, proximity_aligned=0.9)
    same["name"] = "goodhart_v0"
    ref0, sc0, _ = compiled(same)
    assert analyze(sc0, make_regimen(sc0, "T")).likelihood_ratio > 1
    assert ref0.analyze("T")["likelihood_ratio"] > 1


def retest_data(kappa, proximity=0.0, rho=0.3):
    return scenario_data(
        f"retest_{int(kappa * 100)}_{int(proximity * 100)}_{int(rho * 100)}",
        [phase("one", 0.5, 0.5), phase("two", 0.5, 0.2)],  # the same capability: pi does not change
        [
            {"name": "p", "sensitivity": 0.9, "false_pass": 0.2, "difficulty": 0.5, "sharpness": 4.0,
             "proximity": proximity, "native": -1.0, "persistence": kappa}
        ],
        ideas=[{"name": "one", "base_rate": rho}],
    )


@pytest.mark.parametrize("kappa", [0.0, 0.5, 1.0])
def test_retesting_one_model(kappa):
    """Misaligned, unshaped, pi unchanged: two checkpoints' results correlate through b alone.

    P(pass at both | M) = pi^2 + kappa^2 pi (1 - pi): independent at kappa 0, the same coin at kappa 1.
    """
    pi = 0.2 + 0.8 * 0.5  # false_pass + (1 - false_pass) * sigmoid(0)
    ref, sc, _dyn = compiled(retest_data(kappa))
    both = analyze(sc, make_regimen(sc, "R", screen={1: "p"}, test="p"))
    first = analyze(sc, make_regimen(sc, "R", screen={1: "p"}, test="none"))
    second = analyze(sc, make_regimen(sc, "R", test="p"))
    expected = pi**2 + kappa**2 * pi * (1 - pi)
    assert both.p_pass_misaligned == pytest.approx(expected, abs=1e-12)
    assert first.p_pass_misaligned == pytest.approx(pi, abs=1e-12)
    assert second.p_pass_misaligned == pytest.approx(pi, abs=1e-12)
    assert ref.analyze("R", screen={1: ["p"]}, test=["p"])["p_pass_misaligned"] == pytest.approx(expected, abs=1e-12)
    # the reference's outcome enumeration, with shaping on, conditioned on a = 0 and h = 0 throughout
    ref, _, _ = compiled(retest_data(kappa, proximity=0.3))
    joint = {}
    for path, results, prob in ref.records(0.3, parse_plan("R", 2, 1)):
        if all(s[0] == 0 and s[1] == (0,) for s in path):
            key = (results[0][0], results[1][0])
            joint[key] = joint.get(key, 0.0) + prob
    total = sum(joint.values())
    both_, first_only, second_only = (joint.get(key, 0.0) for key in ((1, 1), (1, 0), (0, 1)))
    p_both, p1, p2 = both_ / total, (both_ + first_only) / total, (both_ + second_only) / total
    assert p1 == pytest.approx(pi, abs=1e-12) and p2 == pytest.approx(pi, abs=1e-12)
    assert p_both == pytest.approx(expected, abs=1e-12)
    if kappa == 1.0:
        assert joint.get((1, 0), 0.0) == 0.0 and joint.get((0, 1), 0.0) == 0.0  # perfectly correlated
    if kappa == 0.0:
        assert p_both == pytest.approx(p1 * p2, abs=1e-12)  # independent


# == 3. Monte Carlo in the vector env =========================================================


# == 4. the exact solver =========================================================================
def solver_data(name, budget, ideas, **proxy):
    p = {"name": "p", "sensitivity": 0.85, "false_pass": 0.2, "steer": 0.5, "incentive": 1.5, "native": -0.5,
         "anti_strength": 1.5, "anti_damage": 0.3, "proximity": 0.4, "difficulty": 0.6, "sharpness": 6.0}
    p.update(proxy)
    return scenario_data(
        name,
        [phase("early", 0.2, 0.6), phase("late", 0.9, 0.2)],
        [p],
        ideas=ideas,
        budget=budget,
        reward={"aligned": 1.0, "misaligned": -1.0, "abstain": -0.3, "run_cost": 0.1},
    )


SOLVER_CASES = [
    solver_data("solver_persistent", 2, [{"name": "i", "base_rate": 0.4, "drift": 0.1}],
                persistence=1.0, gate=0.7, proximity_aligned=0.1, wash_out=0.3),
    solver_data("solver_prior", 2, [{"name": "i", "base_rate": {"values": [0.1, 0.7], "probs": [0.5, 0.5]}}],
                persistence=0.6, faking_when_set=2.0, obfuscation_difficulty=0.5, gate=0.4),
    solver_data("solver_two_ideas", 1,
                [{"name": "sure", "base_rate": 0.35}, {"name": "gamble", "base_rate": {"values": [0.0, 0.8], "probs": [0.6, 0.4]}}],
                persistence=0.8, gate=1.0, proximity_aligned=0.0, faking_when_set=1.0),
    solver_data("solver_t1", 2, [{"name": "i", "base_rate": 0.3}], persistence=1.0, gate=0.5, wash_out=0.0)
    | {"phases": [phase("only", 0.7, 0.5)]},
]


@pytest.mark.parametrize("data", SOLVER_CASES, ids=ids(SOLVER_CASES))
def test_solver_value_equals_expectimax_over_the_posterior(data):
    ref, sc, _dyn = compiled(data)
    assert solve(sc).value == pytest.approx(ref.optimal_value(), abs=1e-9)


def test_references_reproduce_the_worked_example():
    """Both references (v0 and v1 at defaults) give docs/model.md's worked example, and so does analyze()."""
    data = scenario_data(
        "worked_example",
        [phase("only", 0.5, 0.5)],
        [{"name": "ask", "sensitivity": 0.9, "false_pass": 0.1, "steer": 0.5, "native": 0.0,
          "incentive": math.log(3), "proximity": 0.4}],
        ideas=[{"name": "default", "base_rate": 0.2}],
        reward={"aligned": 1.0, "misaligned": 0.0, "abstain": 0.0, "run_cost": 0.0},
    )
    ref, sc, _dyn = compiled(data)
    table = {
        ("R", "deploy"): (1.592, 0.3024, 0.6976, 0.0),
        ("R", "abstain"): (1.592, 0.292928, 0.356608, 0.350464),
        ("T", "deploy"): (1.406, 0.5344, 0.4656, 0.0),
        ("T", "abstain"): (1.406, 0.523032, 0.312132, 0.164836),
    }
    keys = ("expected_runs", "p_deploy_aligned", "p_deploy_misaligned", "p_abstain")
    for (plan, fallback), numbers in table.items():
        got = analyze(sc, make_regimen(sc, plan, budget=2, fallback=fallback))
        for out in (v0_analyze(data, plan, budget=2, fallback=fallback), ref.analyze(plan, budget=2, fallback=fallback)):
            for key, value in zip(keys, numbers):
                assert out[key] == pytest.approx(value, abs=1e-12), (plan, fallback, key)
                assert getattr(got, key) == pytest.approx(value, abs=1e-12), (plan, fallback, key)
            assert out["expected_return"] == pytest.approx(numbers[1], abs=1e-12)  # default rewards
    assert ref.analyze("R")["likelihood_ratio"] == pytest.approx(23 / 7, rel=1e-12)
    assert ref.analyze("T")["likelihood_ratio"] == pytest.approx(93 / 37, rel=1e-12)


def test_a_compute_budget_with_no_early_discard_is_a_run_budget():
    """With no screens a run is always played to the end, so ``compute = B x (one full run)`` allows
    exactly B runs: the analysis equals the v0 reference's closed forms with budget B, for each fallback."""
    for name in ("sticky_values", "protocol_wins", "anti_training"):
        data = v0_part(load_scenario(name).model_dump())  # the v0 core: the reference reads no v1 field
        costs = [1, 2, 4][: len(data["phases"])]
        for phase_, cost in zip(data["phases"], costs):
            phase_["cost"] = cost
        budget = 3
        for fallback in ("deploy", "abstain"):
            want = v0_analyze(data, "T,R,R" if len(data["phases"]) == 3 else "T", budget=budget, fallback=fallback)
            sc = parse_scenario({**data, "budget": 1000, "compute": budget * sum(costs)})
            got = analyze(sc, make_regimen(sc, "T,R,R" if len(data["phases"]) == 3 else "T", fallback=fallback))
            for key in ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain", "expected_runs", "expected_return"):
                assert getattr(got, key) == pytest.approx(want[key], abs=1e-12), (name, fallback, key)
            assert got.expected_compute == pytest.approx(got.expected_runs * sum(costs), abs=1e-12)


@pytest.mark.parametrize("name", ["loss_landscape", "sticky_values", "both_persistent_k2", "mixed"])
def test_dense_transitions_by_anti_key_are_the_bit_by_bit_steps(name):
    """Where a persistent proxy's test wears with anti-training, the dense tables hold one transition per
    anti-training key; each equals the product of the per-bit steps (docs/model.md, "One phase, bit by bit"),
    computed apart, for every phase, usage, idea and every count each proxy can have before the phase."""
    sc = {"both_persistent_k2": lambda: parse_scenario(BOTH_PERSISTENT_K2), "mixed": mixed_scenario}.get(name, lambda: load_scenario(name))()
    if name == "mixed":  # make its proxies persistent, the second damaged by anti-training
        sc = parse_scenario({**sc.model_dump(), "proxies": [{**p.model_dump(), "persistence": 0.6} for p in sc.proxies]})
    dyn = Dynamics(sc)
    assert dyn.transition is not None and (name == "mixed" or dyn.n_anti_keys > 1)
    S, k = dyn.n_states, dyn.n_proxies
    eye = np.eye(S)
    for t in range(dyn.n_phases):
        for counts in itertools.product(range(t + 1), repeat=k):
            n_anti = np.array(counts)
            for code in range(dyn.n_usages):
                for i in range(dyn.n_ideas):
                    dense = dyn.advance(eye, t, code, i, n_anti)
                    bits = dyn._advance_by_bits(eye, t, code, i, n_anti)
                    np.testing.assert_allclose(dense, bits, rtol=0, atol=1e-14)
