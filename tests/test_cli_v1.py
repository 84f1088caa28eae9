"""The command line's v1 features: a complete second regimen for ``analyze --compare``,
``analyze --trajectory``, and the first run's policy in ``solve --json``.

Each is run through the command line's own entry point (``proxygym.cli.main``, in this process:
tests/test_cli.py runs the same command line as a subprocess) and checked against an independent
computation: numbers worked by hand from docs/model.md's formulas, regimens built
directly as :class:`Regimen` objects, and the solver's value.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from proxygym.agents.report import first_run
from proxygym.agents.solver import solve
from proxygym.envs.analysis import analyze, trajectory
from proxygym.envs.regimen import ANTI, RESERVE, TRAIN, Regimen, make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios
from tests.helpers import ANALYSIS_KEYS, ROOT, error_line, run_cli_here
from tests.test_analysis import hand_scenario

REGIMEN_KEYS = {"plan", "test", "screen", "idea", "budget", "compute", "fallback", "text"}
SPLIT_KEYS = {"log_posterior_odds_ratio", "base_rate_log_impact", "likelihood_log_impact"}
POINT_KEYS = {"checkpoint", "results", "verdict", "usages", "probability", "p_aligned"}
LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4


def write(tmp_path, data: dict):
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ok(*args) -> dict:
    res = run_cli_here(*args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return json.loads(res.stdout) if "--json" in args else res.stdout


def one_line_error(*args) -> str:
    res = run_cli_here(*args)
    return error_line(res.returncode, res.stdout, res.stderr, args)


# -- the trajectory ------------------------------------------------------------------------------
def traj_scenario(**over) -> dict:
    """One proxy, two phases: the trajectory worked by hand below."""
    data = {
        "name": "traj",
        "title": "trajectory by hand",
        "claim": "a trajectory small enough to compute on paper",
        "budget": 2,
        "phases": [
            {"name": "early", "capability": 0.0, "plasticity": 0.5},
            {"name": "late", "capability": 0.0, "plasticity": 0.2},
        ],
        "ideas": [{"name": "idea", "base_rate": 0.4, "drift": 0.1}],
        "proxies": [
            {
                "name": "ask",
                "sensitivity": 0.9,
                "false_pass": 0.2,
                "steer": 0.4,
                "incentive": LN3,
                "native": 0.0,
                "anti_strength": LN3,
                "anti_damage": 0.5,
                "proximity": 0.5,
                # difficulty 10, sharpness 10 (defaults) at capability 0: circ = sigmoid(-100) ~ 4e-44, taken as 0
            }
        ],
    }
    data.update(over)
    return data


# Plan T,A by hand (docs/model.md, "Phase step 1: values", "Phase step 2: shaping", "Checkpoint tests").
# Phase 1, train, plasticity 0.5:
#   P(a: 0 -> 1) = 0.5 * 0.4 = 0.2;  P(a: 1 -> 0) = 1 - (1 - 0.5 * 0.1) = 0.05
#   P(A) = 0.4 * 0.95 + 0.6 * 0.2 = 0.5
#   pressure = ln 3: P(h: 0 -> 1) = 0.5 * 3/4 = 0.375, so P(shaped) = 0.375 (the same for A and M:
#   shaping does not read values when proximity_aligned = proximity)
#   P(pass | A) = 0.375 + 0.625 * 0.9 = 0.9375;  P(pass | M) = 0.375 + 0.625 * 0.2 = 0.5
# Phase 2, anti, plasticity 0.2: nothing steers; drift: P(a: 1 -> 0) = 0.2 * 0.1 = 0.02
#   P(A) = 0.5 * 0.98 = 0.49
#   pressure = -ln 3: P(h: 0 -> 1) = 0.5 * 1/4 = 0.125, P(h: 1 -> 0) = 0.5 * 3/4 = 0.375
#   P(shaped) = 0.375 * 0.625 + 0.625 * 0.125 = 0.234375 + 0.078125 = 0.3125
#   one anti-trained phase: sensitivity 0.9 * (1 - 0.5) = 0.45
#   P(pass | A) = 0.3125 + 0.6875 * 0.45 = 0.621875;  P(pass | M) = 0.3125 + 0.6875 * 0.2 = 0.45
HAND_TA = [
    {"checkpoint": 1, "base_rate": 0.5, "proxies": {"ask": {"p_pass_aligned": 0.9375, "p_pass_misaligned": 0.5, "p_shaped": 0.375}}},
    {"checkpoint": 2, "base_rate": 0.49, "proxies": {"ask": {"p_pass_aligned": 0.621875, "p_pass_misaligned": 0.45, "p_shaped": 0.3125}}},
]


def assert_trajectory(got: list[dict], want: list[dict]) -> None:
    assert [p["checkpoint"] for p in got] == [p["checkpoint"] for p in want]
    for g, w in zip(got, want):
        assert set(g) == {"checkpoint", "base_rate", "proxies"}
        assert g["base_rate"] == pytest.approx(w["base_rate"], rel=1e-12)
        assert set(g["proxies"]) == set(w["proxies"])
        for name, values in w["proxies"].items():
            assert set(g["proxies"][name]) == {"p_pass_aligned", "p_pass_misaligned", "p_shaped"}
            for key, value in values.items():
                if value is None:
                    assert g["proxies"][name][key] is None, (g["checkpoint"], key)
                else:
                    assert g["proxies"][name][key] == pytest.approx(value, rel=1e-12), (g["checkpoint"], key)


def test_trajectory_matches_the_hand_worked_case_in_process():
    sc = parse_scenario(traj_scenario())
    assert_trajectory(trajectory(sc, make_regimen(sc, "T,A")), HAND_TA)
    # the screens, the test, the budget and the fallback play no part
    assert_trajectory(trajectory(sc, make_regimen(sc, "T,A", test="none", screen={1: "ask"}, budget=1)), HAND_TA)


def test_trajectory_matches_the_hand_worked_case_on_the_command_line(tmp_path):
    path = write(tmp_path, traj_scenario())
    out = ok("analyze", str(path), "--plan", "T,A", "--trajectory", "--json")
    assert set(out) == ANALYSIS_KEYS | {"regimen", "trajectory"}
    assert_trajectory(out["trajectory"], HAND_TA)
    assert out["regimen"]["plan"] == "T,A"
    text = ok("analyze", str(path), "--plan", "T,A", "--trajectory")
    assert "P(pass|A)" in text and "P(pass|M)" in text and "P(shaped)" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("1 ", "2 "))]
    assert rows == [["1", "early", "0.5000", "ask", "0.9375", "0.5000", "0.3750"],
                    ["2", "late", "0.4900", "ask", "0.6219", "0.4500", "0.3125"]]


def test_trajectory_with_a_prior_averages_over_it():
    """base_rate {0: 1/2, 0.8: 1/2}. Rate 0: P(A) = 0.2 after phase 1 (only steering), 0.2 * 0.98 = 0.196
    after phase 2; rate 0.8: 0.8 * 0.95 + 0.2 * 0.2 = 0.8, then 0.784. Averages 0.5 and 0.49; the
    conditionals are those of the known rate 0.4, as shaping does not read values."""
    sc = parse_scenario(traj_scenario(ideas=[{"name": "idea", "base_rate": {"values": [0.0, 0.8], "probs": [0.5, 0.5]}, "drift": 0.1}]))
    assert_trajectory(trajectory(sc, make_regimen(sc, "T,A")), HAND_TA)


def test_trajectory_conditionals_on_impossible_events_are_null(tmp_path):
    """Rate 0, no drift, nothing trained: P(aligned) = 0 at every checkpoint, so P(pass | aligned) is null.
    P(pass | M) = P(shaped) + (1 - P(shaped)) * 0.2 with P(shaped) = 0.5 * 1/2 = 0.25 after phase 1 and
    0.25 * (1 - 0.25) + 0.75 * 0.25 = 0.375 after phase 2: 0.4, then 0.5."""
    zero = traj_scenario(ideas=[{"name": "idea", "base_rate": 0.0}])
    path = write(tmp_path, zero)
    out = ok("analyze", str(path), "--plan", "R", "--trajectory", "--json")
    assert_trajectory(out["trajectory"], [
        {"checkpoint": 1, "base_rate": 0.0, "proxies": {"ask": {"p_pass_aligned": None, "p_pass_misaligned": 0.4, "p_shaped": 0.25}}},
        {"checkpoint": 2, "base_rate": 0.0, "proxies": {"ask": {"p_pass_aligned": None, "p_pass_misaligned": 0.5, "p_shaped": 0.375}}},
    ])
    assert "undefined" in ok("analyze", str(path), "--plan", "R", "--trajectory")
    one = parse_scenario(traj_scenario(ideas=[{"name": "idea", "base_rate": 1.0}]))
    last = trajectory(one, make_regimen(one, "R"))[-1]["proxies"]["ask"]
    assert last["p_pass_misaligned"] is None and last["p_pass_aligned"] == pytest.approx(0.375 + 0.625 * 0.9)


@pytest.mark.parametrize("name", shipped_scenarios())
def test_trajectory_ends_at_the_analysis_base_rate(name):
    """The last checkpoint's P(aligned) is analyze's base rate of the same plan with no test (and its
    first checkpoints are those of the plan cut short)."""
    sc = load_scenario(name)
    T = len(sc.phases)
    plans = ["R", "T", "A", ",".join("TRA"[t % 3] for t in range(T))]
    for plan in plans:
        for idea in sc.idea_names:
            reg = make_regimen(sc, plan, test="none", idea=idea)
            path = trajectory(sc, reg)
            assert len(path) == T
            assert path[-1]["base_rate"] == pytest.approx(analyze(sc, reg).base_rate, rel=1e-12, abs=1e-15)
            for point in path:
                for p in point["proxies"].values():
                    for v in p.values():
                        assert v is None or -1e-12 <= v <= 1 + 1e-12


def test_trajectory_with_a_bad_plan_is_one_line(tmp_path):
    path = write(tmp_path, traj_scenario())
    line = one_line_error("analyze", str(path), "--plan", "T,A,R", "--trajectory")
    assert "plan 'T,A,R' has 3 groups" in line
    line = one_line_error("analyze", str(path), "--plan", "Q", "--trajectory", "--json")
    assert "plan 'Q'" in line


# -- a complete second regimen -------------------------------------------------------------------
def _assert_side(got: dict, want) -> None:
    for key in ANALYSIS_KEYS:
        if getattr(want, key) is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(getattr(want, key), rel=1e-12, abs=1e-15), key


def _assert_split(cmp: dict, first, second) -> None:
    assert set(cmp) == SPLIT_KEYS
    assert cmp["log_posterior_odds_ratio"] == pytest.approx(cmp["base_rate_log_impact"] + cmp["likelihood_log_impact"], abs=1e-12)
    # each term from the two sides' own numbers
    assert cmp["base_rate_log_impact"] == pytest.approx(math.log(first.prior_odds) - math.log(second.prior_odds), abs=1e-12)
    assert cmp["likelihood_log_impact"] == pytest.approx(math.log(first.likelihood_ratio) - math.log(second.likelihood_ratio), abs=1e-12)
    assert cmp["log_posterior_odds_ratio"] == pytest.approx(math.log(first.posterior_odds) - math.log(second.posterior_odds), abs=1e-12)


def test_the_essay_protocol_against_rejection_sampling():
    """protocol_wins: screen at checkpoint 1, then train, test at the end (R,T,T) against plain rejection
    sampling (R, tested at the end, no screen). Each side equals analyze() of a Regimen built directly."""
    sc = load_scenario("protocol_wins")
    out = ok("analyze", "protocol_wins", "--plan", "R,T,T", "--screen", "1:ask_if_aligned",
             "--compare", "R", "--compare-screen", "none", "--json")
    assert set(out) == ANALYSIS_KEYS | {"regimen", "second", "compare"}
    assert set(out["second"]) == ANALYSIS_KEYS | {"regimen"}
    protocol = Regimen(plan=((RESERVE,), (TRAIN,), (TRAIN,)), test=(0,), screen=((1, (0,)),), idea=0, budget=sc.budget, fallback="deploy")
    plain = Regimen(plan=((RESERVE,),) * 3, test=(0,), screen=(), idea=0, budget=sc.budget, fallback="deploy")
    first, second = analyze(sc, protocol), analyze(sc, plain)
    _assert_side(out, first)
    _assert_side(out["second"], second)
    _assert_split(out["compare"], first, second)
    assert out["regimen"] == {
        "plan": "R,T,T", "test": ["ask_if_aligned"], "screen": {"1": ["ask_if_aligned"]}, "idea": "summoning_scroll",
        "budget": sc.budget, "compute": None, "fallback": "deploy", "text": protocol.describe(sc),
    }
    assert out["second"]["regimen"] == {
        "plan": "R,R,R", "test": ["ask_if_aligned"], "screen": {}, "idea": "summoning_scroll",
        "budget": sc.budget, "compute": None, "fallback": "deploy", "text": plain.describe(sc),
    }
    # the claim the scenario makes, read off the output
    assert out["expected_return"] > out["second"]["expected_return"]
    assert out["compare"]["log_posterior_odds_ratio"] > 0
    # the table names both regimens and splits the odds
    text = ok("analyze", "protocol_wins", "--plan", "R,T,T", "--screen", "1:ask_if_aligned",
              "--compare", "R", "--compare-screen", "none")
    assert f"regimen: {protocol.describe(sc)}" in text and f"compare: {plain.describe(sc)}" in text
    assert "likelihood_log_impact" in text and "The posterior odds are" in text


def two_by_two() -> dict:
    """Two proxies, two phases, two ideas (one with a prior over its base rate)."""
    data = traj_scenario(name="twobytwo", budget=4)
    data["proxies"] = data["proxies"] + [
        {"name": "probe", "sensitivity": 0.8, "false_pass": 0.3, "steer": 0.1, "proximity": 0.2, "native": -1.0}
    ]
    data["ideas"] = data["ideas"] + [{"name": "other", "base_rate": {"values": [0.1, 0.7], "probs": [0.6, 0.4]}}]
    return data


def test_every_compare_option_reaches_the_second_regimen(tmp_path):
    path = write(tmp_path, two_by_two())
    sc = load_scenario(str(path))
    out = ok("analyze", str(path), "--plan", "TR,RR", "--test", "ask", "--screen", "1:probe", "--budget", "3",
             "--compare", "RT,AR", "--compare-test", "probe,ask", "--compare-screen", "1:ask", "--compare-idea", "other",
             "--compare-budget", "2", "--compare-fallback", "abstain", "--json")
    first = Regimen(plan=((TRAIN, RESERVE), (RESERVE, RESERVE)), test=(0,), screen=((1, (1,)),), idea=0, budget=3, fallback="deploy")
    second = Regimen(plan=((RESERVE, TRAIN), (ANTI, RESERVE)), test=(0, 1), screen=((1, (0,)),), idea=1, budget=2, fallback="abstain")
    a, b = analyze(sc, first), analyze(sc, second)
    _assert_side(out, a)
    _assert_side(out["second"], b)
    _assert_split(out["compare"], a, b)
    assert out["second"]["regimen"]["test"] == ["ask", "probe"] and out["second"]["regimen"]["idea"] == "other"


def test_compare_options_default_to_the_first_side(tmp_path):
    """Any --compare-* option alone compares with the first regimen itself, changed only where it says."""
    path = write(tmp_path, two_by_two())
    sc = load_scenario(str(path))
    common = ["analyze", str(path), "--plan", "TR,RR", "--test", "ask", "--screen", "1:probe", "--idea", "other", "--budget", "3",
              "--fallback", "abstain"]
    out = ok(*common, "--compare-fallback", "abstain", "--json")  # the same regimen twice
    assert out["second"]["regimen"] == out["regimen"]
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in out["compare"].values())
    out = ok(*common, "--compare-budget", "1", "--json")
    want = Regimen(plan=((TRAIN, RESERVE), (RESERVE, RESERVE)), test=(0,), screen=((1, (1,)),), idea=1, budget=1, fallback="abstain")
    _assert_side(out["second"], analyze(sc, want))
    # the same plan on both sides: the table's columns are "first" and "second"
    text = ok(*common, "--compare-test", "none")
    assert "first" in text.splitlines()[4] and "second" in text.splitlines()[4]


def test_compare_plan_alone_prints_both_sides(tmp_path):
    out = ok("analyze", "sticky_values", "--plan", "T,R,R", "--compare", "R", "--json")
    assert set(out) == ANALYSIS_KEYS | {"regimen", "second", "compare"} and set(out["compare"]) == SPLIT_KEYS
    assert out["regimen"]["plan"] == "T,R,R" and out["second"]["regimen"]["plan"] == "R,R,R"


@pytest.mark.parametrize(
    "extra,fragments",
    [
        (["--compare-test", "nope"], ["compared regimen", "unknown proxy 'nope'", "proxies are ask, probe"]),
        (["--compare", "R", "--compare-test", "ask,nope"], ["compared regimen", "unknown proxy 'nope'"]),
        (["--compare-screen", "one:ask"], ["--compare-screen 'one:ask'", "CHECKPOINT:NAMES"]),
        (["--compare-screen", "1"], ["--compare-screen '1'", "CHECKPOINT:NAMES"]),
        (["--compare-screen", "2:ask"], ["compared regimen", "screen at checkpoint 2", "1..1"]),
        (["--compare-screen", "1:nope"], ["unknown proxy 'nope' in the screen at checkpoint 1"]),
        (["--compare-screen", "1:ask", "--compare-screen", "1:probe"], ["checkpoint 1 is screened twice"]),
        (["--compare", "RRR"], ["compared regimen", "plan 'RRR'"]),
        (["--compare-idea", "nope"], ["compared regimen", "unknown idea 'nope'"]),
        (["--compare-budget", "0"], ["compared regimen", "budget", "1 to 1000"]),
    ],
)
def test_bad_second_regimen_is_one_line(tmp_path, extra, fragments):
    path = write(tmp_path, two_by_two())
    for json_flag in ([], ["--json"]):
        line = one_line_error("analyze", str(path), "--plan", "R", *extra, *json_flag)
        for fragment in fragments:
            assert fragment in line, (fragment, line)


def test_compare_with_trajectory_gives_both_sides(tmp_path):
    path = write(tmp_path, traj_scenario())
    out = ok("analyze", str(path), "--plan", "T,A", "--compare", "R", "--trajectory", "--json")
    assert set(out) == ANALYSIS_KEYS | {"regimen", "trajectory", "second", "compare"}
    assert_trajectory(out["trajectory"], HAND_TA)
    sc = load_scenario(str(path))
    assert out["second"]["trajectory"][-1]["base_rate"] == pytest.approx(analyze(sc, make_regimen(sc, "R", test="none")).base_rate)


def test_help_documents_the_new_options():
    text = ok("analyze", "--help")
    for option in ("--compare-test", "--compare-screen", "--compare-idea", "--compare-budget", "--compare-fallback", "--trajectory"):
        assert option in text
    readme = (ROOT / "README.md").read_text()
    for option in ("--compare-test", "--compare-screen", "--compare-idea", "--compare-budget", "--compare-fallback",
                   "--trajectory", "first_run"):
        assert option in readme


# -- the first run of the optimum --------------------------------------------------------------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_first_run_of_budget_one_is_the_policy_worked_by_hand(tmp_path):
    """hand_scenario with budget 1 (one proxy, one phase): rewards +1 aligned, -1 misaligned, 0 abstain,
    run cost 0.1. At the only checkpoint, deploy pays P(A) - P(M) and discarding pays 0, so the run
    deploys iff P(A | result) > 1/2, and a usage's value is sum over results of max(P(r, A) - P(r, M), 0) - 0.1.
    No circumvention (capability 0, difficulty 10)."""
    path = write(tmp_path, hand_scenario(budget=1))

    def usage(p_a: float, shaped: float, sens: float) -> dict:
        pass_a, pass_m = shaped + (1 - shaped) * sens, shaped + (1 - shaped) * 0.2
        joint = {True: (p_a * pass_a, (1 - p_a) * pass_m), False: (p_a * (1 - pass_a), (1 - p_a) * (1 - pass_m))}
        return {"joint": joint, "value": sum(max(a - m, 0.0) for a, m in joint.values()) - 0.1}

    # R: values unchanged (0.4); shaped 0.5 * sigmoid(0) = 0.25
    # T: P(a: 0 -> 1) = 0.5 * 0.4 = 0.2, so P(A) = 0.4 + 0.6 * 0.2 = 0.52; shaped 0.5 * sigmoid(1)
    # A: values unchanged; shaped 0.5 * sigmoid(-1); sensitivity 0.9 * (1 - 0.5) after one anti phase
    options = {"R": usage(0.4, 0.25, 0.9), "T": usage(0.52, 0.5 * _sigmoid(1.0), 0.9), "A": usage(0.4, 0.5 * _sigmoid(-1.0), 0.45)}
    assert options["R"]["value"] == pytest.approx(0.37 - 0.24 - 0.1)  # 0.03
    best = max(options, key=lambda u: options[u]["value"])
    assert best == "T" and options["T"]["value"] == pytest.approx(0.15065, abs=1e-5)
    joint = options["T"]["joint"]
    assert joint[True][0] > joint[True][1] and joint[False][0] < joint[False][1]  # deploy on a pass, discard on a fail

    out = ok("solve", str(path), "--json")
    assert out["value"] == pytest.approx(options["T"]["value"], abs=1e-12)
    assert out["first_run_idea"] == "idea"
    listing = out["first_run"]
    assert all(set(p) == POINT_KEYS for p in listing)
    want = [
        {"checkpoint": 0, "results": [], "verdict": "continue", "usages": {"ask": "T"}, "probability": 1.0, "p_aligned": 0.4},
        {"checkpoint": 1, "results": [{"ask": False}], "verdict": "discard", "usages": None,
         "probability": sum(joint[False]), "p_aligned": joint[False][0] / sum(joint[False])},
        {"checkpoint": 1, "results": [{"ask": True}], "verdict": "deploy", "usages": None,
         "probability": sum(joint[True]), "p_aligned": joint[True][0] / sum(joint[True])},
    ]
    assert [{k: p[k] for k in ("checkpoint", "results", "verdict", "usages")} for p in listing] == [
        {k: p[k] for k in ("checkpoint", "results", "verdict", "usages")} for p in want
    ]
    for got, w in zip(listing, want):
        assert got["probability"] == pytest.approx(w["probability"], abs=1e-12)
        assert got["p_aligned"] == pytest.approx(w["p_aligned"], abs=1e-12)
    # "does the optimum ever train on ask in the first run?"
    assert any(p["usages"] and p["usages"]["ask"] == "T" for p in listing)


def test_first_run_lists_only_reachable_points(tmp_path):
    """Every model aligned (rate 1, no drift, no negative steer) and sensitivity 1: deploying pays 1 - 0.1
    whatever happens. After R or T an aligned model always passes (shaped or not), so the fail branch has
    probability 0 and is not listed; only anti-training (sensitivity 0.45) can fail."""
    data = hand_scenario(budget=1, ideas=[{"name": "idea", "base_rate": 1.0}])
    data["proxies"][0]["sensitivity"] = 1.0
    out = ok("solve", str(write(tmp_path, data)), "--json")
    assert out["value"] == pytest.approx(0.9, abs=1e-12)
    listing = out["first_run"]
    first = listing[0]["usages"]["ask"]
    outcomes = [p["results"] for p in listing if p["checkpoint"] == 1]
    assert outcomes == ([[{"ask": False}], [{"ask": True}]] if first == "A" else [[{"ask": True}]])
    assert all(p["probability"] > 0 for p in listing)
    assert all(p["verdict"] == "deploy" for p in listing[1:])


def _budget_one(tmp_path, name: str):
    data = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    data.pop("expect", None)
    data["budget"] = 1
    data["name"] = f"{name}_one"
    return write(tmp_path, data)


@pytest.mark.parametrize("name", ["sticky_values", "loss_landscape", "early_rejection", "idea_screening"])
def test_first_run_accounts_for_the_value_with_budget_one(tmp_path, name):
    """With one run the first run is the whole episode: deploying at P(aligned) p pays
    p R_aligned + (1 - p) R_misaligned, discarding pays R_abstain, and the run costs run_cost once.
    The listing's reachable points must add up to the solver's value, carry all the probability,
    and each continued point's children must carry exactly its probability."""
    path = _budget_one(tmp_path, name)
    sc = load_scenario(str(path))
    r = sc.reward
    out = ok("solve", str(path), "--json")
    listing = out["first_run"]
    assert listing[0]["checkpoint"] == 0 and listing[0]["verdict"] == "continue"
    assert all(p["probability"] > 0 for p in listing)
    value, ended = -r.run_cost, 0.0
    for p in listing:
        assert len(p["results"]) == p["checkpoint"]
        assert (p["usages"] is not None) == (p["verdict"] == "continue")
        if p["usages"] is not None:
            assert set(p["usages"]) == set(sc.proxy_names) and set(p["usages"].values()) <= {"R", "T", "A"}
            kids = [q for q in listing if q["checkpoint"] == p["checkpoint"] + 1 and q["results"][:-1] == p["results"]]
            assert sum(q["probability"] for q in kids) == pytest.approx(p["probability"], abs=1e-12)
        if p["verdict"] == "deploy":
            assert p["checkpoint"] == len(sc.phases)
            value += p["probability"] * (p["p_aligned"] * r.aligned + (1 - p["p_aligned"]) * r.misaligned)
            ended += p["probability"]
        elif p["verdict"] == "discard":
            assert p["checkpoint"] >= 1
            value += p["probability"] * r.abstain
            ended += p["probability"]
    assert ended == pytest.approx(1.0, abs=1e-12)
    assert value == pytest.approx(out["value"], abs=1e-9)
    assert out["p_deploy_aligned"] == pytest.approx(
        sum(p["probability"] * p["p_aligned"] for p in listing if p["verdict"] == "deploy"), abs=1e-9)


def test_first_run_is_a_consistent_tree(shipped):
    """On every shipped scenario the listing is a probability tree: it starts at the run's start, every
    point is reached with positive probability, a continued point's children (the points one checkpoint
    on whose results extend its own) carry exactly its probability, every other point ends the run
    (deploy at the final checkpoint, discard anywhere after the start), and the ends sum to 1."""
    for sc in shipped:
        T = len(sc.phases)
        listing = first_run(solve(sc))
        assert listing[0]["checkpoint"] == 0 and listing[0]["results"] == [] and listing[0]["verdict"] == "continue"
        for p in listing:
            d = p["checkpoint"]
            assert p["probability"] > 0 and 0.0 <= p["p_aligned"] <= 1.0
            assert p["verdict"] != "deploy" or d == T
            assert p["verdict"] != "continue" or d < T
            children = [c for c in listing if c["checkpoint"] == d + 1 and c["results"][:d] == p["results"]]
            if p["verdict"] == "continue":
                assert set(p["usages"]) == set(sc.proxy_names)
                assert sum(c["probability"] for c in children) == pytest.approx(p["probability"], rel=1e-9)
            else:
                assert p["usages"] is None and not children
        ended = sum(p["probability"] for p in listing if p["verdict"] != "continue")
        assert ended == pytest.approx(1.0, abs=1e-9)


def test_solve_json_keeps_its_keys():
    out = ok("solve", "budget_of_one", "--json")
    assert {"value", "seconds", "states", "program_states", "p_deploy_aligned", "p_deploy_misaligned", "p_abstain",
            "expected_runs", "first_run_idea", "first_run"} == set(out)


def test_readme_numbers_come_from_the_commands_it_names():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**A complete second regimen.**")[1].split("## The scenarios")[0]
    out = ok("analyze", "protocol_wins", "--plan", "R,T,T", "--screen", "1:ask_if_aligned", "--compare", "R",
             "--compare-screen", "none")
    assert "proxygym analyze protocol_wins --plan R,T,T --screen 1:ask_if_aligned --compare R --compare-screen none" in section
    for number in ("2.93x", "-0.249", "+1.323"):
        assert number in section and number in out, number
    path = ok("analyze", "protocol_wins", "--plan", "R,T,T", "--trajectory", "--json")["trajectory"]
    shares = [round(100 * p["proxies"]["ask_if_aligned"]["p_pass_misaligned"]) for p in path]
    assert shares == [13, 79, 94]
    assert "13%" in section and "79%" in section and "94%" in section
    assert f'"p_pass_misaligned": {path[0]["proxies"]["ask_if_aligned"]["p_pass_misaligned"]:.4f}' in section
    assert f'"base_rate": {path[0]["base_rate"]:.2f}' in section
    solve_section = readme.split("## The optimum")[1]
    point = next(p for p in ok("solve", "budget_of_one", "--json")["first_run"] if p["results"] == [{"red_team_eval": True}])
    assert f'"probability": {point["probability"]:.4f}, "p_aligned": {point["p_aligned"]:.4f}' in solve_section
    assert '"usages": {"red_team_eval": "' + point["usages"]["red_team_eval"] + '"}' in solve_section


def test_compute_options_reach_the_analysis():
    """--compute and --compare-compute give each side its compute budget; a compute below one full run is refused."""
    sc = load_scenario("sticky_values")
    out = ok("analyze", "sticky_values", "--plan", "R", "--screen", "1:honesty_eval", "--compute", "7",
             "--compare-compute", "12", "--json")
    for side, compute in ((out, 7), (out["second"], 12)):
        want = analyze(sc, make_regimen(sc, "R", screen={1: "honesty_eval"}, compute=compute))
        assert side["regimen"]["compute"] == compute
        assert side["expected_compute"] == pytest.approx(want.expected_compute, abs=1e-12)
        assert side["expected_compute"] <= compute
    assert "one full run" in one_line_error("analyze", "sticky_values", "--plan", "R", "--compute", "2")


def test_claims_refuses_too_few_episodes():
    assert "at least 2" in one_line_error("claims", "idea_screening", "--episodes", "1")
