"""What the cost scenarios (early_rejection, anti_training, idea_screening) say, checked against
independent computations: closed forms from docs/model.md ("A phase", "Checkpoint tests",
"Rejection sampling under the budgets") written out by hand for these files, the solver's
first run as ``proxygym solve NAME --json`` prints it, and the parameter sweeps the
descriptions quote (a claim cannot vary the compute budget, the anti-damage or a reward).

tests/test_scenarios.py already checks that every claim holds exactly; these tests check why.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from proxygym.envs.analysis import analyze, trajectory
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import SCENARIO_DIR, load_scenario
from tests.helpers import run_cli

COSTS = ("early_rejection", "anti_training", "idea_screening")
PROBE = "deception_probe"


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def geometric(f: float, n: int) -> float:
    """sum_{i < n} f^i: the expected runs started when each fails with probability f and n may start."""
    return sum(f**i for i in range(n))


def with_proxy(sc, j: int = 0, **update):
    proxies = list(sc.proxies)
    proxies[j] = proxies[j].model_copy(update=update)
    return sc.model_copy(update={"proxies": proxies})


def with_reward(sc, **update):
    return sc.model_copy(update={"reward": sc.reward.model_copy(update=update)})


def first_run(name: str) -> dict:
    out = run_cli("solve", name, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- the rules every revisited scenario follows ------------------------------------------------------
@pytest.mark.parametrize("name", COSTS)
def test_rewards_persistence_and_anti_training_are_stated(name):
    """The file itself (not the defaults) states all four rewards and every proxy's persistence, and
    anti-training is not free: it damages the test (anti_damage > 0), or, where the description
    argues it is free, it changes nothing at all (early_rejection: plan A analyses as plan R)."""
    raw = yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())
    assert set(raw["reward"]) == {"aligned", "misaligned", "abstain", "run_cost"}
    for proxy in raw["proxies"]:
        assert "persistence" in proxy, proxy["name"]
    text = raw["description"]
    assert "Rewards" in text and "Persistence" in text
    if name != "early_rejection":
        assert all(proxy["anti_damage"] > 0.0 for proxy in raw["proxies"])
        return
    assert "Anti-training is free here because it does nothing" in text
    sc = load_scenario(name)
    for kwargs in ({}, {"screen": {1: "all"}, "fallback": "abstain"}):
        anti, reserve = analyze(sc, make_regimen(sc, "A", **kwargs)), analyze(sc, make_regimen(sc, "R", **kwargs))
        assert anti.to_dict() == pytest.approx(reserve.to_dict(), abs=1e-12)


# -- early_rejection ---------------------------------------------------------------------------------
def probe_by_hand(K: int | None, budget: int = 1000) -> tuple[float, float]:
    """The deception probe alone, fallback abstain, by hand: (screen at checkpoint 1 with no end test,
    end test only) expected returns with compute K (None: runs counted by ``budget`` alone).

    Values: no proxy steers, so an aligned model turns misaligned in phase t with probability
    plasticity_t * drift and a misaligned one stays. Shaping (the probe reserved): pressure = native
    = -3, up = 0.8 sigmoid(-3), down = 0.8 sigmoid(3), the same for aligned and misaligned models,
    so shaping and values are independent. An unshaped model passes with 0.9 if aligned, with
    0.1 + 0.9 circ_t if not, circ_t = sigmoid(10 (capability_t - 3)); one test per run, so
    persistence plays no part. A passing run is deployed; a failing one is the last chance when no
    other run fits: the screen's failures cost 1 (phase 1), the end test's 10 (a full run).
    """
    rho, drift = 0.5, 0.2
    plasticity, capability = (0.8, 0.2, 0.05), (0.2, 0.5, 0.9)
    up, down = 0.8 * sigmoid(-3.0), 0.8 * sigmoid(3.0)
    aligned, shaped = [], []
    a, h = rho, 0.0
    for p in plasticity:
        a *= 1.0 - p * drift
        h = h * (1.0 - down) + (1.0 - h) * up
        aligned.append(a)
        shaped.append(h)

    def pass_rates(t: int) -> tuple[float, float]:
        circ = sigmoid(10.0 * (capability[t] - 3.0))
        return shaped[t] + (1 - shaped[t]) * 0.9, shaped[t] + (1 - shaped[t]) * (0.1 + 0.9 * circ)

    def program(q_aligned: float, q: float, fail_cost: int) -> float:
        q_misaligned = q - q_aligned
        runs = budget if K is None else min(budget, (K - 10) // fail_cost + 1)
        return (q_aligned - q_misaligned) * geometric(1.0 - q, runs)

    pa1, pm1 = pass_rates(0)
    kept = aligned[2] / aligned[0]  # an aligned model at checkpoint 1 is still aligned at the end
    screen = program(aligned[0] * pa1 * kept, aligned[0] * pa1 + (1 - aligned[0]) * pm1, 1)
    pa3, pm3 = pass_rates(2)
    end = program(aligned[2] * pa3, aligned[2] * pa3 + (1 - aligned[2]) * pm3, 10)
    return screen, end


def probe_analysed(sc, K: int | None, budget: int | None = None) -> tuple[float, float]:
    screen = make_regimen(sc, "R", test="none", screen={1: PROBE}, fallback="abstain", compute=K, budget=budget)
    end = make_regimen(sc, "R", test=PROBE, fallback="abstain", compute=K, budget=budget)
    return analyze(sc, screen).expected_return, analyze(sc, end).expected_return


def test_early_rejection_probe_by_hand():
    sc = load_scenario("early_rejection")
    for K in (10, 11, 20, 30, 49, 50, 100, 1000):
        got = probe_analysed(sc, K)
        want = probe_by_hand(K)
        assert got == pytest.approx(want, abs=1e-9), K
    # the numbers the description quotes
    assert probe_by_hand(30) == pytest.approx((0.5775, 0.5125), abs=5e-5)
    assert probe_by_hand(10) == pytest.approx((0.2641, 0.2756), abs=5e-5)
    assert probe_by_hand(1000)[1] == pytest.approx(0.6170, abs=5e-5)


def test_early_rejection_verdict_turns_as_compute_grows():
    """The description: with one full run's compute (10) the end test wins, from 11 to 49 the early
    screen wins, from 50 (five full runs) on the end test wins again."""
    sc = load_scenario("early_rejection")
    for K in range(10, 121):
        screen, end = probe_analysed(sc, K)
        early_wins = 11 <= K <= 49
        assert (screen > end) == early_wins, (K, screen, end)
        assert abs(screen - end) > 5e-3, K  # never a near-tie: the verdict is clear at every compute
    assert sc.compute == 30


def test_early_rejection_counted_in_runs_the_end_test_wins():
    """With no compute budget (every run costs the same, as in protocol_loses) the end test beats the
    early screen at every run budget: only counting compute turns the verdict."""
    sc = load_scenario("early_rejection").model_copy(update={"compute": None})
    for budget in (1, 2, 3, 5, 10, 20, 100):
        screen, end = probe_analysed(sc, None, budget)
        assert (screen, end) == pytest.approx(probe_by_hand(None, budget), abs=1e-9)
        assert end > screen + 0.01, budget


def test_early_rejection_recall_by_hand():
    """Unshaped misaligned models circumvent at sigmoid(10 (capability - difficulty)): the honeypot
    (difficulty 0.6) catches most of them after pretraining and few at scale; the probe
    (difficulty 3) is never circumvented, but trained on it SGD shapes them into passing."""
    sc = load_scenario("early_rejection")
    points = trajectory(sc, make_regimen(sc, "R"))
    for t, capability in enumerate((0.2, 0.5, 0.9)):
        honeypot = points[t]["proxies"]["honeypot"]["p_pass_misaligned"]
        assert honeypot == pytest.approx(0.1 + 0.9 * sigmoid(10 * (capability - 0.6)), abs=1e-12)
    assert 1 - points[0]["proxies"]["honeypot"]["p_pass_misaligned"] > 0.85
    assert 1 - points[2]["proxies"]["honeypot"]["p_pass_misaligned"] < 0.05
    trained = trajectory(sc, make_regimen(sc, "RT"))[2]["proxies"][PROBE]
    h = 0.0
    for _ in range(3):  # trained: pressure -3 + 6 = 3
        h = h * (1 - 0.8 * sigmoid(-3.0)) + (1 - h) * 0.8 * sigmoid(3.0)
    assert trained["p_shaped"] == pytest.approx(h, abs=1e-12)
    assert trained["p_pass_misaligned"] == pytest.approx(h + (1 - h) * (0.1 + 0.9 * sigmoid(10 * (0.9 - 3))), abs=1e-12)
    assert trained["p_pass_misaligned"] > 0.95


def test_early_rejection_optimum_rejects_at_checkpoint_1():
    """The solver's first run reserves both proxies, continues past checkpoint 1 only when both pass
    there, and beats every fixed regimen the claims name."""
    out = first_run("early_rejection")
    points = out["first_run"]
    assert all(p["usages"] is None or set(p["usages"].values()) == {"R"} for p in points)
    at_1 = [p for p in points if p["checkpoint"] == 1]
    assert sum(p["probability"] for p in at_1) == pytest.approx(1.0)
    for p in at_1:
        both = all(p["results"][0].values())
        assert p["verdict"] == ("continue" if both else "discard"), p
    sc = load_scenario("early_rejection")
    assert out["value"] > max(probe_analysed(sc, 30)) + 0.3


# -- anti_training -----------------------------------------------------------------------------------
def monitor_by_hand(plan: str, anti_damage: float = 0.3) -> tuple[float, float]:
    """(P(pass | aligned), P(pass | misaligned)) at the end of a run, by hand.

    Nothing steers and nothing drifts, so values stay as drawn. Shaping: pressure 1 when reserved,
    1 - 3 = -2 when anti-trained; up = 0.5 sigmoid(pressure) O_t, down = 0.5 sigmoid(-pressure)
    (wash-out 1), O_t = sigmoid(10 (capability_t - 0.8)) the obfuscation onset, the same for aligned
    and misaligned models. An unshaped aligned model passes with 0.7 (1 - anti_damage)^n after n
    anti-trained phases, a misaligned one with 0.1 (no circumvention: difficulty 10).
    """
    letters = plan.split(",") if "," in plan else [plan] * 3
    h, n = 0.0, 0
    for letter, capability in zip(letters, (0.2, 0.5, 0.9)):
        pressure = -2.0 if letter == "A" else 1.0
        n += letter == "A"
        onset = sigmoid(10.0 * (capability - 0.8))
        h = h * (1 - 0.5 * sigmoid(-pressure)) + (1 - h) * 0.5 * sigmoid(pressure) * onset
    return h + (1 - h) * 0.7 * (1 - anti_damage) ** n, h + (1 - h) * 0.1


def monitor_program(plan: str, budget: int, anti_damage: float = 0.3, misaligned: float = -1.0) -> float:
    """Expected return with fallback abstain: base rate 0.6, aligned 1, abstain 0, 0.05 per run."""
    pa, pm = monitor_by_hand(plan, anti_damage)
    qa, qm = 0.6 * pa, 0.4 * pm
    runs = geometric(1 - qa - qm, budget)
    return (qa + misaligned * qm) * runs - 0.05 * runs


def test_anti_training_by_hand():
    sc = load_scenario("anti_training")
    for plan in ("R", "R,R,A", "A"):
        pa, pm = monitor_by_hand(plan)
        for budget in (1, 4, 10):
            a = analyze(sc, make_regimen(sc, plan, budget=budget, fallback="abstain"))
            assert a.p_pass_aligned == pytest.approx(pa, abs=1e-12)
            assert a.p_pass_misaligned == pytest.approx(pm, abs=1e-12)
            assert a.expected_return == pytest.approx(monitor_program(plan, budget), abs=1e-12), (plan, budget)
    lr = {plan: monitor_by_hand(plan)[0] / monitor_by_hand(plan)[1] for plan in ("R", "R,R,A", "A")}
    # done well the correlation gets stronger, done poorly weaker
    assert lr["R,R,A"] > lr["R"] + 1.0 and lr["A"] < lr["R"] - 0.2


def test_anti_training_wins_from_four_runs_on():
    """Done well (R,R,A) loses to reserving with up to three runs and wins from four on; done poorly
    (A) loses at every budget."""
    for budget in range(1, 11):
        well, poorly, reserve = (monitor_program(p, budget) for p in ("R,R,A", "A", "R"))
        assert (well > reserve) == (budget >= 4), budget
        assert poorly < reserve - 0.1, budget


def test_anti_training_done_poorly_is_the_damage():
    """With anti_damage 0 anti-training in every phase wins with ten runs (it is free: done right);
    the damage it pays three times is what makes it lose, from about 0.2 per phase on. Targeted
    anti-training still wins at the file's 0.3, and analyze agrees with the hand computation."""
    sc = load_scenario("anti_training")
    reserve = monitor_program("R", 10)
    for d in (0.0, 0.1, 0.2, 0.3, 0.4):
        got = analyze(with_proxy(sc, anti_damage=d), make_regimen(sc, "A", fallback="abstain")).expected_return
        assert got == pytest.approx(monitor_program("A", 10, d), abs=1e-12)
    assert monitor_program("A", 10, 0.0) > reserve + 0.15
    assert monitor_program("A", 10, 0.1) > reserve
    assert monitor_program("A", 10, 0.2) < reserve
    assert monitor_program("R,R,A", 10, 0.3) > reserve + 0.05


def test_anti_training_one_run_that_must_ship_is_moot():
    """With one run deployed whatever the monitor says, every plan returns 2 * 0.6 - 1 - 0.05."""
    sc = load_scenario("anti_training")
    for plan in ("R", "R,R,A", "A", "T"):
        a = analyze(sc, make_regimen(sc, plan, budget=1, fallback="deploy"))
        assert a.expected_return == pytest.approx(0.15, abs=1e-12)


def test_anti_training_verdicts_depend_on_the_misaligned_reward():
    """The description: at misaligned 0 the ten-run win shrinks to about 0.009; at -2 or below the
    sharper test wins even with one run; the file's -1 keeps both verdicts clear."""
    sc = load_scenario("anti_training")
    for m in (0.0, -1.0, -2.0, -3.0):
        s = with_reward(sc, misaligned=m)
        for plan, budget in (("R", 1), ("R,R,A", 1), ("R", 10), ("R,R,A", 10)):
            got = analyze(s, make_regimen(s, plan, budget=budget, fallback="abstain")).expected_return
            assert got == pytest.approx(monitor_program(plan, budget, misaligned=m), abs=1e-12)

    def margins(m):
        return (monitor_program("R", 1, misaligned=m) - monitor_program("R,R,A", 1, misaligned=m),
                monitor_program("R,R,A", 10, misaligned=m) - monitor_program("R", 10, misaligned=m))

    assert margins(0.0)[1] == pytest.approx(0.009, abs=5e-4)
    assert all(x > 0.05 for x in margins(-1.0))
    assert margins(-2.0)[0] < 0 and margins(-3.0)[0] < 0


def test_anti_training_optimum_screens_early_and_never_anti_trains():
    """The solver's first run never anti-trains (nor trains), discards a run that fails the monitor
    at checkpoint 1, and is worth more than any plan tested only at the end."""
    out = first_run("anti_training")
    points = out["first_run"]
    assert all(p["usages"] is None or p["usages"] == {"cot_monitor": "R"} for p in points)
    failed_at_1 = [p for p in points if p["checkpoint"] == 1 and not p["results"][0]["cot_monitor"]]
    assert failed_at_1 and all(p["verdict"] == "discard" for p in failed_at_1)
    assert out["value"] > max(monitor_program(p, 10) for p in ("R", "R,R,A", "A")) + 0.1


# -- idea_screening ----------------------------------------------------------------------------------
def test_idea_screening_reward_is_a_monotone_transform():
    """Every fixed contender of the claims ships a model in every episode, so with a misaligned
    reward r the return is r + (1 - r) P(deploy aligned): the claims order them the same."""
    sc = load_scenario("idea_screening")
    regimens = [
        make_regimen(sc, "R", idea="persona_lock_in"),
        make_regimen(sc, "R", test="none", idea="persona_lock_in"),
        make_regimen(sc, "R", idea="faithful_cot", budget=1),
        make_regimen(sc, "R", idea="random"),
    ]
    for regimen in regimens:
        base = analyze(sc, regimen)
        assert base.p_abstain == 0.0 and base.expected_return == pytest.approx(base.p_deploy_aligned, abs=1e-12)
        for r in (-1.0, -0.25):
            got = analyze(with_reward(sc, misaligned=r), regimen).expected_return
            assert got == pytest.approx(r + (1 - r) * base.p_deploy_aligned, abs=1e-12)


def test_idea_screening_persistence_and_anti_training_change_nothing_that_matters():
    """One phase: a run is tested once, so persistence 1 gives the same analysis as 0; anti-training
    only lowers the probe's pass rate on working ideas (0.9 * 0.7), and the optimum reserves."""
    sc = load_scenario("idea_screening")
    lasting = with_proxy(sc, persistence=1.0)
    for regimen in (make_regimen(sc, "R", idea="random"), make_regimen(sc, "R", idea="faithful_cot")):
        a, b = analyze(sc, regimen), analyze(lasting, regimen)
        for key in ("p_deploy_aligned", "p_deploy_misaligned", "expected_runs", "likelihood_ratio"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-12), key
    anti = analyze(sc, make_regimen(sc, "A", idea="faithful_cot"))
    assert anti.p_pass_aligned == pytest.approx(0.9 * 0.7, abs=1e-12)
    out = first_run("idea_screening")
    assert out["first_run"][0]["usages"] == {"interpretability_probe": "R"}
    assert out["value"] == pytest.approx(0.649, abs=5e-4)
