"""The sweep's fast path (grid points stacked through the analysis' arrays) against the analysis of each point alone.

A sweep sets its grid points with :func:`parameter_setter` and analyses the points that share a layout
together (:func:`analyze_many` on :meth:`Dynamics.stack`). The independent computation is the
straightforward one: for each point, :func:`with_parameters` and :func:`analyze` of each regimen, one
scenario and one regimen at a time. Every key of every row must agree to 1e-12 (None where undefined).
"""

from __future__ import annotations

import math

import pytest

from proxygym.agents.sweep import PARALLEL_POINTS, parse_regimen_text, parse_vary, sweep
from proxygym.envs.analysis import ANALYSIS_KEYS, analyze, analyze_stack, metric_value
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.parameters import with_parameters
from proxygym.envs.scenario import load_scenario
from tests.helpers import compute_scenario, mixed_scenario

KEYS = ANALYSIS_KEYS + ("recall", "p_misaligned_pass")

# (scenario, two --vary specs, regimens): each grid 6 x 5
CASES = {
    # a persistent proxy that anti-training wears (8 states, 3 anti-training keys), screens and anti-training
    "persistent_steer_plasticity": (
        lambda: load_scenario("sticky_values"),
        ["proxies.honesty_eval.steer=-1:1:6", "phases.pretrain.plasticity=0:1:5"],
        ["T,R,R", "A,T,R", "{plan: 'T,A,R', screen: {1: honesty_eval}, fallback: abstain}"],
    ),
    # persistence and anti_damage from 0: the grid's points have different state spaces (layouts)
    "persistence_from_zero": (
        lambda: load_scenario("sticky_values"),
        ["proxies.honesty_eval.persistence=0:1:6", "proxies.honesty_eval.anti_damage=0:0.4:5"],
        ["A,A,T", "{plan: 'T,R,A', screen: {2: honesty_eval}}"],
    ),
    # three ideas whose base rates have priors of 1, 2 and 3 values, each run's idea at random or one idea
    "ideas_and_priors": (
        mixed_scenario,
        ["ideas.known.base_rate=0:1:6", "proxies.probe.steer=-1:1:5"],
        ["{plan: 'TR,AT,RR', idea: random}", "{plan: 'TT,RR,RA', idea: three}",
         "{plan: 'RT,TR,RR', idea: coin, screen: {1: ask}, fallback: abstain}"],
    ),
    # a compute budget (the recursion over compute left) that varies, so the regimens differ by point
    "compute_budget": (
        compute_scenario,
        ["compute=9:14:6", "phases.late.plasticity=0:1:5"],
        ["T,R", "{plan: 'T,R', screen: {1: honeypot}}", "{plan: 'A,T', fallback: abstain}"],
    ),
    # a phase's cost: the points differ in what their runs spend
    "phase_cost": (
        compute_scenario,
        ["phases.early.cost=1:5:5", "ideas.default.drift=0:0.5:6"],
        ["{plan: 'T,R', screen: {1: honeypot}}", "R,T"],
    ),
}


def one_by_one(scenario, params: dict, text: str) -> dict:
    """The row of one grid point and regimen, computed alone: the scenario with the values set, the regimen
    built on it, and the analysis."""
    sc = with_parameters(scenario, params)
    keys = analyze(sc, parse_regimen_text(sc, text)).to_dict()
    return {**keys, **{m: metric_value(m, keys) for m in ("recall", "p_misaligned_pass")}}


def assert_rows_match(scenario, rows: list[dict]) -> None:
    for row in rows:
        want = one_by_one(scenario, row["params"], row["plan"])
        for key in KEYS:
            got, expected = row[key], want[key]
            if expected is None or got is None:
                assert got is None and expected is None, (row["params"], row["plan"], key, got, expected)
            else:
                assert math.isfinite(got) and abs(got - expected) <= 1e-12, (row["params"], row["plan"], key, got, expected)


@pytest.mark.parametrize("case", list(CASES))
def test_a_grid_is_the_analysis_of_each_point_alone(case):
    make, varies, texts = CASES[case]
    sc = make()
    axes = [parse_vary(sc, v) for v in varies]
    rows = sweep(sc, axes, texts, workers=1)
    assert len(rows) == len(axes[0].values) * len(axes[1].values) * len(texts) == 30 * len(texts)
    assert_rows_match(sc, rows)


def test_the_parallel_sweep_is_the_analysis_of_each_point_alone():
    """A grid large enough for the process pool (chunks analysed in worker processes): in grid order, the rows
    of the sweep on one process, and every 41st row is the analysis of its point alone."""
    sc = load_scenario("sticky_values")
    axes = [parse_vary(sc, "proxies.honesty_eval.steer=-1:1:64"), parse_vary(sc, "phases.pretrain.plasticity=0:1:64")]
    assert 64 * 64 >= PARALLEL_POINTS
    texts = ["T,R,R", "{plan: 'A,R,T', screen: {1: honesty_eval}}"]
    rows = sweep(sc, axes, texts, workers=2)
    grid = [(x, y) for x in axes[0].values for y in axes[1].values]
    assert [(r["params"][axes[0].path], r["params"][axes[1].path], r["plan"]) for r in rows] == \
        [(x, y, t) for x, y in grid for t in texts]
    assert rows == sweep(sc, axes, texts, workers=1)
    assert_rows_match(sc, rows[::41])


def test_only_scenarios_of_one_layout_and_one_set_of_costs_stack():
    sc = load_scenario("sticky_values")
    regimen = parse_regimen_text(sc, "T,R,R")
    other = with_parameters(sc, {"proxies.honesty_eval.persistence": 0.0})  # no disposition bit: 4 states, not 8
    with pytest.raises(ValueError, match="layouts"):
        Dynamics.stack([sc, other])
    dearer = with_parameters(sc, {"phases.rl.cost": 2})
    with pytest.raises(ValueError, match="cost"):
        analyze_stack([sc, dearer], regimen)
