"""Sweeps and flip points against hand-worked values (test_analysis.py's one-phase case), and their CLI's bad input.

The hand case, budget 2 and the second run deployed whatever it shows, run cost 0.1:
plan R deploys an aligned model with 0.526 and a misaligned one with 0.474 in 1.39 runs;
plan T (base rate 0.52, P(pass | A) = s + (1 - s) 0.9, P(pass | M) = s + (1 - s) 0.2 with
s = 0.5 sigmoid(1)) deploys an aligned one with pA + f 0.52, where pA = 0.52 P(pass | A),
pM = 0.48 P(pass | M) and f = 1 - pA - pM, in 1 + f runs. With the aligned reward 1 and the
misaligned reward x, each return is P(deploy A) + x P(deploy M) - 0.1 runs, so T and R swap
where those two lines cross.
"""

from __future__ import annotations

import json

import pytest
import yaml

from proxygym.agents.sweep import flips, parse_vary, sweep, sweep_flip_points
from proxygym.envs.errors import ScenarioError
from proxygym.envs.parameters import parameters, with_parameters
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import crossing, hand_outcomes, hand_scenario, run_cli, run_cli_here


@pytest.fixture(scope="module")
def hand():
    return parse_scenario(hand_scenario())


def test_parameters_and_their_ranges(hand):
    ps = parameters(hand)
    assert (ps["proxies.ask.steer"].lo, ps["proxies.ask.steer"].hi, ps["proxies.ask.steer"].value) == (-1.0, 1.0, 0.4)
    assert ps["budget"].whole and (ps["budget"].lo, ps["budget"].hi) == (1.0, 1000.0)
    assert ps["phases.only.cost"].whole and ps["phases.only.cost"].lo == 1.0
    assert ps["proxies.ask.sharpness"].open_lo and ps["proxies.ask.sharpness"].lo == 0.0
    assert ps["reward.misaligned"].window() == (-11.0, 9.0)  # unbounded: the value -+ 10
    assert "ideas.idea.base_rate" in ps and "compute" not in ps  # no compute budget in this scenario
    compute = parameters(load_scenario("early_rejection"))["compute"]  # 30, at least one full run (10)
    assert (compute.lo, compute.hi, compute.window()) == (10.0, 100_000.0, (10.0, 300.0))  # searched up to 10x
    moved = with_parameters(hand, {"proxies.ask.steer": -0.5, "budget": 3})
    assert moved.proxies[0].steer == -0.5 and moved.budget == 3 and hand.proxies[0].steer == 0.4


def test_sweep_rows_are_the_hand_worked_returns(hand):
    axis = parse_vary(hand, "reward.misaligned=-1:0:2")
    rows = sweep(hand, [axis], ["R", "T"])
    by = {(r["params"]["reward.misaligned"], r["plan"]): r["expected_return"] for r in rows}
    (ra, rm, rr), (ta, tm, tr) = hand_outcomes()
    assert by[(-1.0, "R")] == pytest.approx(-0.087)
    assert by[(0.0, "R")] == pytest.approx(0.526 - 0.139)
    assert by[(-1.0, "T")] == pytest.approx(ta - tm - 0.1 * tr)
    assert len(rows) == 4 and all(set(r) >= {"params", "plan", "likelihood_ratio", "base_rate"} for r in rows)


def test_flip_points_are_where_the_hand_worked_lines_cross(hand):
    x = crossing()
    assert -1.0 < x < 2.0  # T wins at x = -1 (more aligned deployments), R wins past x
    out = {f.path: f for f in flips(hand, "T", "R")}
    (flip,) = out["reward.misaligned"].flips
    assert flip == pytest.approx(x, abs=1e-4)
    axis = parse_vary(hand, "reward.misaligned=-1:3:9")
    (point, before, after), = sweep_flip_points(hand, sweep(hand, [axis], ["T", "R"]), axis, ["T", "R"])
    assert point == pytest.approx(x, abs=1e-4) and (before, after) == ("T", "R")
    # steer: T's edge comes from pulling values toward alignment; with steer low enough R wins
    assert out["proxies.ask.steer"].flips and out["proxies.ask.steer"].flips[0] < 0.4
    ranked = flips(hand, "T", "R")
    assert [f.distance for f in ranked] == sorted(f.distance for f in ranked)


def test_optimal_dominates_every_fixed_regimen(hand):
    axis = parse_vary(hand, "proxies.ask.steer=-0.5:0.5:3")
    rows = sweep(hand, [axis], ["R", "T", "A"], optimal=True, workers=2)
    for v in axis.values:
        at = {r["plan"]: r["expected_return"] for r in rows if r["params"]["proxies.ask.steer"] == v}
        assert at["optimal"] >= max(at["R"], at["T"], at["A"]) - 1e-9


def test_cli_sweep_and_flips_write_what_they_print(tmp_path):
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario()))
    out = run_cli("flips", str(path), "--plan", "T", "--than", "R", "--json", str(tmp_path / "f.json"),
                  "--plot", str(tmp_path / "f.pdf"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "f.json").read_text())
    by = {r["path"]: r for r in rows}
    assert by["reward.misaligned"]["flips"][0] == pytest.approx(crossing(), abs=1e-4)
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    out = run_cli("sweep", str(path), "--vary", "reward.misaligned=-1:3:5", "--vary", "proxies.ask.steer=0:1:3",
                  "--plans", "T", "R", "{plan: R, test: none}", "--json", str(tmp_path / "s.json"),
                  "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.png"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "s.json").read_text())
    assert len(rows) == 5 * 3 * 3 and {r["plan"] for r in rows} == {"T", "R", "{plan: R, test: none}"}
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 45
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, words", [
    (["sweep", "--vary", "proxies.ask.stir=0:1:3", "--plans", "R"], "unknown parameter 'proxies.ask.stir'; the parameters are budget"),
    (["sweep", "--vary", "proxies.ask.steer=0:2:3", "--plans", "R"], "outside its allowed range: a number in [-1, 1]"),
    (["sweep", "--vary", "budget=1:1000:1000", "--vary", "proxies.ask.steer=-1:1:1001", "--plans", "R", "T"], "the limit is 1,000,000"),
    (["sweep", "--vary", "proxies.ask.steer=0:1", "--plans", "R"], "write PATH=LO:HI:N"),
    (["sweep", "--vary", "proxies.ask.steer=0:1:3", "--plans", "{plan: Q}"], "plan 'Q' must be groups"),
    (["flips", "--plan", "T", "--than", "X,Y"], "give a plan such as"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, words):
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario()))
    out_file = tmp_path / "out.json"
    out = run_cli_here(args[0], str(path), *args[1:], "--json", str(out_file))
    assert out.returncode == 2, out.stdout + out.stderr
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not out_file.exists()


def test_a_value_the_schema_refuses_in_combination_is_a_one_line_error(hand):
    sc = parse_scenario(hand_scenario(compute=3, phases=[{"name": "only", "capability": 0.0, "plasticity": 0.5, "cost": 2}]))
    with pytest.raises(ScenarioError, match="less than one full run"):
        with_parameters(sc, {"phases.only.cost": 4})


def test_a_copied_scenario_is_the_one_the_schema_builds():
    """with_parameters copies a scenario without re-validating it where no rule spans fields; the same values
    written into the file's data and parsed like a file give the same scenario, for every parameter."""
    from proxygym.envs.parameters import _validated
    from proxygym.envs.scenario import load_scenario

    for sc in (load_scenario("loss_landscape"), parse_scenario(hand_scenario())):
        for p in parameters(sc).values():
            lo, hi = p.window()
            value = float(round((lo + hi) / 2)) if p.whole else (lo + hi) / 2
            assert with_parameters(sc, {p.path: value}) == _validated(sc, {p.path: value}), p.path


def test_the_derived_metrics_decide_flips_and_sweeps(hand):
    """recall and P(misaligned and passes): plan R 0.6 and 0.24, plan T 1 - 0.492423 and 0.48 x 0.492423 (hand-worked);
    on P(misaligned and passes), lower is better, so T is ahead of R."""
    axis = parse_vary(hand, "reward.misaligned=-1:0:2")
    rows = sweep(hand, [axis], ["R", "T"])
    r = next(x for x in rows if x["plan"] == "R")
    assert r["recall"] == pytest.approx(0.6) and r["p_misaligned_pass"] == pytest.approx(0.24)
    out = {f.path: f for f in flips(hand, "T", "R", metric="p_misaligned_pass")}
    assert out["reward.misaligned"].margins[2] == pytest.approx(0.24 - 0.48 * 0.492423, abs=1e-6)
    assert not out["reward.misaligned"].flips  # the reward moves no probability


@pytest.mark.parametrize("args, words", [
    (["sweep", "--vary", "proxies.ask.steer=0:1:3", "--plans", "R", "--workers", "0"], "--workers must be at least 1"),
    (["sweep", "--vary", "proxies.ask.steer=0:1:20000", "--vary", "proxies.ask.gate=0:1:20000", "--plans", "R"],
     "the limit is 1,000,000"),
    (["flips", "--plan", "R", "--than", "{plan: R}"], "the same regimen"),
])
def test_more_bad_input_is_one_line(tmp_path, args, words):
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario()))
    out = run_cli_here(args[0], str(path), *args[1:])
    assert out.returncode == 2 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_compute_ranges_from_one_full_run():
    sc = parse_scenario(hand_scenario(compute=6, phases=[{"name": "only", "capability": 0.0, "plasticity": 0.5, "cost": 2}]))
    assert parameters(sc)["compute"].lo == 2.0
    with pytest.raises(ScenarioError, match="outside its allowed range"):
        with_parameters(sc, {"compute": 1})


@pytest.mark.parametrize("path, values", [("compute", [2, 3, 4, 7, 9, 12]), ("budget", [1, 2, 3]),
                                          ("phases.late.cost", [1, 3, 5, 8]), ("proxies.honeypot.steer", [-1, 0, 0.5])])
def test_the_scan_analyses_each_point_as_the_point_alone(path, values):
    """flips' scan analyses its points together (analyze_many): each margin is that of the scenario set to the value
    and analysed alone, regimens rebuilt where they read the value (budget, compute), and None where the schema
    refuses the value with the rest (a compute budget below a full run)."""
    from proxygym.agents.sweep import _margins_along
    from proxygym.envs.analysis import analyze
    from proxygym.envs.regimen import make_regimen
    from tests.helpers import compute_scenario

    sc = compute_scenario()
    expected = []
    for v in values:
        try:
            at = with_parameters(sc, {path: v})
        except ScenarioError:
            expected.append(None)
            continue
        a, b = (analyze(at, make_regimen(at, text)).expected_return for text in ("T,R", "R,R"))
        expected.append(a - b)
    got = _margins_along(sc, path, ["T,R", "R,R"], "expected_return")([float(v) for v in values])
    assert [m is None for m in got] == [m is None for m in expected]
    assert None in expected or path != "compute"
    assert [m for m in got if m is not None] == pytest.approx([m for m in expected if m is not None], abs=1e-12)
