"""The scenarios that enact the essay's passages (blueprint, goodhart_curse, protocol_wins,
protocol_loses, sticky_values, budget_of_one, worse_than_useless, loss_landscape), checked
against computations that do not go through the claim checker: the optimal policy's first
run as ``proxygym solve --json`` prints it, likelihood ratios and base rates computed by hand
from the formulas of docs/model.md ("A phase", "Checkpoint tests"), the log-impact split of
``proxygym analyze --compare``, and what the scenarios' reward choices decide.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from proxygym.agents.claims import ROBUSTNESS, check_claims
from proxygym.agents.report import first_run
from proxygym.agents.solver import solve
from proxygym.envs.analysis import analyze
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import ROOT, run_cli

ESSAY = ["blueprint", "goodhart_curse", "protocol_wins", "protocol_loses",
         "sticky_values", "budget_of_one", "worse_than_useless", "loss_landscape"]


def raw(name: str) -> dict:
    return yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())


def variant(name: str, **proxy_fields) -> dict:
    """The scenario file's data with every proxy's fields updated (``reward=`` updates the rewards)."""
    data = raw(name)
    reward = proxy_fields.pop("reward", None)
    if reward:
        data["reward"] = {**data["reward"], **reward}
    for p in data["proxies"]:
        p.update(proxy_fields)
    return data


def scenario_of(data: dict):
    return parse_scenario(data, "<variant>", None)


def solve_json(name: str) -> dict:
    out = run_cli("solve", name, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def analyze_json(name: str, *args: str) -> dict:
    out = run_cli("analyze", name, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- an independent chain: one proxy, a plan of R and T, tested at the end only ----------------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def by_hand(data: dict, plan: str) -> tuple[float, float]:
    """(base rate, likelihood ratio) of a one-proxy plan of R/T letters tested at the last checkpoint only.

    Written from docs/model.md alone over the states (a, h): values (steer toward alignment for a
    trained proxy, drift away from it in every phase), then shaping given the new alignment (up and
    down rates from proximity, proximity_aligned and the pressure native + incentive when trained),
    then the end test (shaped models pass; unshaped aligned ones at sensitivity, unshaped misaligned
    ones at false_pass plus circumvention). No gate, faking, obfuscation, wash-out or anti-training,
    so the test at the end does not depend on persistence ("Consequences a reader can check").
    """
    (p,) = data["proxies"]
    idea = data["ideas"][0]
    rho, drift = idea["base_rate"], idea.get("drift", 0.0)
    steer, native, incentive = p.get("steer", 0.0), p.get("native", 0.0), p.get("incentive", 1.0)
    prox = {0: p.get("proximity", 0.0)}
    prox[1] = p.get("proximity_aligned", prox[0])
    dist = {(1, 0): rho, (0, 0): 1.0 - rho, (1, 1): 0.0, (0, 1): 0.0}
    letters = plan.split(",") if "," in plan else [plan] * len(data["phases"])
    for phase, u in zip(data["phases"], letters):
        plast, trained = phase["plasticity"], u == "T"
        to_aligned = plast * max(steer, 0.0) if trained else 0.0
        to_misaligned = 1.0 - (1.0 - plast * drift) * ((1.0 - plast * max(-steer, 0.0)) if trained else 1.0)
        pressure = native + (incentive if trained else 0.0)
        nxt = dict.fromkeys(dist, 0.0)
        for (a, h), m in dist.items():
            flip = to_aligned if a == 0 else to_misaligned
            for a2, pa in ((1 - a, flip), (a, 1.0 - flip)):
                up, down = prox[a2] * _sigmoid(pressure), prox[a2] * _sigmoid(-pressure)
                stay = (1.0 - down) if h else (1.0 - up)
                nxt[(a2, h)] += m * pa * stay
                nxt[(a2, 1 - h)] += m * pa * (1.0 - stay)
        dist = nxt
    circ = _sigmoid(p.get("sharpness", 10.0) * (data["phases"][-1]["capability"] - p.get("difficulty", 10.0)))
    unshaped = {1: p["sensitivity"], 0: p["false_pass"] + (1.0 - p["false_pass"]) * circ}
    base = dist[(1, 0)] + dist[(1, 1)]
    pass_given = {a: (dist[(a, 1)] + dist[(a, 0)] * unshaped[a]) / (dist[(a, 0)] + dist[(a, 1)]) for a in (0, 1)}
    return base, pass_given[1] / pass_given[0]


@pytest.mark.parametrize("name,plan", [
    ("goodhart_curse", "T"), ("goodhart_curse", "R"), ("blueprint", "T"), ("blueprint", "R"),
    ("protocol_wins", "R"), ("protocol_loses", "R"), ("sticky_values", "T,R,R"), ("budget_of_one", "T"),
])
def test_end_test_base_rate_and_likelihood_ratio_by_hand(name, plan):
    """The analysis (at the file's own persistence) agrees with the hand-written chain."""
    sc = load_scenario(name)
    got = analyze(sc, make_regimen(sc, plan))
    base, lr = by_hand(raw(name), plan)
    assert got.base_rate == pytest.approx(base, rel=1e-9)
    assert got.likelihood_ratio == pytest.approx(lr, rel=1e-9)


# -- item 1: rewards and persistence stated, anti-training not free ------------------------------
@pytest.mark.parametrize("name", ESSAY)
def test_rewards_persistence_and_anti_damage_are_stated_and_argued(name):
    data = raw(name)
    assert set(data["reward"]) == {"aligned", "misaligned", "abstain", "run_cost"}
    text = data["description"]
    assert "Rewards" in text and "Persistence" in text and "Anti-training is not free" in text
    for p in data["proxies"]:
        assert "persistence" in p
        assert p["anti_damage"] > 0.0, p["name"]


@pytest.mark.parametrize("name", ESSAY)
def test_every_claim_holds_at_own_persistence_and_at_0_and_1(name):
    """Each of these files' claims tests only at the end, or (the protocols) has its evidence in
    the early screen, so each also holds at persistence 0 and 1, as the descriptions say (what
    ``proxygym claims`` reports, computed here in-process)."""
    for claim in check_claims(load_scenario(name), exact_only=True, robustness=ROBUSTNESS):
        assert claim.holds is True, claim.text
        assert claim.robust == {0.0: True, 1.0: True}, claim.text


@pytest.mark.parametrize("name", ["sticky_values", "loss_landscape", "worse_than_useless", "goodhart_curse",
                                  "blueprint", "protocol_wins", "protocol_loses"])
@pytest.mark.parametrize("misaligned", [0.0, -1.0])
def test_claims_do_not_turn_on_the_misaligned_reward(name, misaligned):
    """The descriptions say which claims the reward choice decides: none of these files' claims."""
    sc = scenario_of(variant(name, reward={"misaligned": misaligned}))
    assert all(c.holds for c in check_claims(sc, exact_only=True))


# -- item 2: the blueprint is used by the optimum -------------------------------------------------
def test_blueprint_optimum_trains_on_the_blueprint_in_its_first_run():
    points = solve_json("blueprint")["first_run"]
    start = points[0]
    assert start["checkpoint"] == 0 and start["usages"] == {"follows_blueprint": "T"}
    assert all(u != "A" for p in points if p["usages"] for u in p["usages"].values())


def test_blueprint_optimum_with_fresh_coins_never_trains_on_it():
    """The v0 artefact the file's persistence removes: with every checkpoint a fresh coin,
    re-testing looks like new evidence and the optimum keeps the blueprint as a screen."""
    sc = scenario_of(variant("blueprint", persistence=0.0))
    points = first_run(solve(sc), sc)
    assert all(u != "T" for p in points if p["usages"] for u in p["usages"].values())


# -- item 3: Goodhart's curse proper --------------------------------------------------------------
def test_goodhart_curse_training_inverts_the_test():
    data = raw("goodhart_curse")
    (p,) = data["proxies"]
    assert p["proximity_aligned"] < p["proximity"]  # misaligned models sit closer to the passing basin
    sc = load_scenario("goodhart_curse")
    t, r = analyze(sc, make_regimen(sc, "T")), analyze(sc, make_regimen(sc, "R"))
    assert t.likelihood_ratio < 0.9 and r.likelihood_ratio > 2.0
    assert t.p_pass_misaligned > t.p_pass_aligned
    assert r.expected_return > t.expected_return + 0.2
    # the same plans without the asymmetry (v0: angels shaped as often as demons) only degrade the test
    sym = scenario_of(variant("goodhart_curse", proximity_aligned=p["proximity"]))
    assert analyze(sym, make_regimen(sym, "T")).likelihood_ratio > 1.0


# -- item 4: the protocol's two cases, by the log-impact split ------------------------------------
@pytest.mark.parametrize("name,wins", [("protocol_wins", True), ("protocol_loses", False)])
def test_protocol_log_impacts(name, wins):
    got = analyze_json(name, "--plan", "R,T,T", "--screen", "1:ask_if_aligned", "--compare", "R", "--compare-screen", "none")
    protocol, plain, cmp = got, got["second"], got["compare"]
    # the protocol's likelihood ratio is the lower one in both files, its base rate the higher one
    assert protocol["likelihood_ratio"] < plain["likelihood_ratio"]
    assert protocol["base_rate"] > plain["base_rate"]
    assert cmp["base_rate_log_impact"] > 0.0 > cmp["likelihood_log_impact"]
    assert cmp["base_rate_log_impact"] == pytest.approx(math.log(protocol["prior_odds"] / plain["prior_odds"]))
    assert cmp["likelihood_log_impact"] == pytest.approx(math.log(protocol["likelihood_ratio"] / plain["likelihood_ratio"]))
    net = cmp["base_rate_log_impact"] + cmp["likelihood_log_impact"]
    assert cmp["log_posterior_odds_ratio"] == pytest.approx(net)
    # the essay: the protocol wins iff the base rate rises more than the proxy degrades
    assert (net > 0.0) == wins
    assert (protocol["expected_return"] > plain["expected_return"]) == wins


def test_protocol_plain_base_rate_is_drift_alone():
    """Without training, only drift moves values: P(A) = rho * prod_t (1 - p_t * drift)."""
    for name in ("protocol_wins", "protocol_loses"):
        data = raw(name)
        idea = data["ideas"][0]
        expected = idea["base_rate"] * math.prod(1.0 - ph["plasticity"] * idea["drift"] for ph in data["phases"])
        sc = load_scenario(name)
        assert analyze(sc, make_regimen(sc, "R")).base_rate == pytest.approx(expected, rel=1e-12)


# -- budget_of_one: the reward choice that carries the claim --------------------------------------
def test_budget_of_one_test_cannot_be_acted_on_with_its_rewards():
    """misaligned = abstain: the optimum never discards its only run (the test is of no use)."""
    points = solve_json("budget_of_one")["first_run"]
    assert all(p["verdict"] != "discard" for p in points)


def test_budget_of_one_test_can_be_acted_on_when_a_misaligned_model_costs_more():
    """With a misaligned model at -1 against 0 for nothing, one run's test is worth acting on:
    shipping only on a pass beats shipping whatever comes, and the optimum discards failing runs."""
    sc = scenario_of(variant("budget_of_one", reward={"misaligned": -1.0}))
    ship_on_pass = analyze(sc, make_regimen(sc, "R", budget=1, fallback="abstain")).expected_return
    ship_anyway = analyze(sc, make_regimen(sc, "R", budget=1, fallback="deploy")).expected_return
    assert ship_on_pass > ship_anyway + 0.3
    sol = solve(sc)
    assert any(p["verdict"] == "discard" for p in first_run(sol, sc))
    assert sol.value > analyze(sc, make_regimen(sc, "T", budget=1)).expected_return + 0.2
