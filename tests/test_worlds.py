"""Uncertainty over the world (``worlds:`` in a scenario file): each world is a plain scenario, so every
number of the scenario with worlds is checked against the worlds' own numbers, computed by the code that
knows nothing of worlds: the analysis is their weighted mix, the filter's posterior over worlds is Bayes'
rule over their predictive probabilities, and the solver's value lies between the best fixed plan and
the value of knowing the world. (The env plays these numbers: tests/test_monte_carlo.py checks the shipped
uncertain_monitor like every shipped scenario, and the world posterior against frequencies.)"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from proxygym.agents.advice import Advice, advice_text, best_fixed, optimal_phases, world_advice
from proxygym.agents.solver import solve
from proxygym.envs.analysis import analyze
from proxygym.envs.belief import BatchBeliefFilter
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import error_line, mixed_scenario, run_cli_here, tiny

KEYS = ("base_rate", "p_pass", "expected_runs", "expected_compute", "p_deploy_aligned", "p_deploy_misaligned",
        "p_abstain", "expected_return")


def with_worlds(sc, worlds) -> object:
    data = sc.model_dump(exclude={"expect"})
    data["worlds"] = worlds
    return parse_scenario(data)


def prior_scenario():
    """One idea with a prior over its base rate, two persistent proxies (one damaged by anti-training), and
    worlds that set the base rate, a transfer and a proxy's persistence (so the union of persistent bits
    differs from some worlds' own)."""
    sc = mixed_scenario()
    data = sc.model_dump(exclude={"expect"})
    data["ideas"] = [{"name": "coin", "base_rate": {"values": [0.2, 0.7], "probs": [0.5, 0.5]}, "drift": 0.1}]
    data["proxies"][0]["persistence"] = 0.6
    data["worlds"] = [
        {"name": "base", "weight": 0.5, "set": {}},
        {"name": "gloomy", "weight": 0.3, "set": {"ideas.coin.drift": 0.5, "proxies.probe.transfer.ask": 0.4}},
        {"name": "lasting", "weight": 0.2, "set": {"proxies.probe.persistence": 0.9, "proxies.ask.persistence": 0.0,
                                                   "proxies.ask.anti_damage": 0.5}},
    ]
    return parse_scenario(data)


CASES = {"uncertain_monitor": lambda: load_scenario("uncertain_monitor"), "prior": prior_scenario}


@pytest.mark.parametrize("name", list(CASES))
def test_the_analysis_is_the_weighted_mix_of_the_worlds(name):
    """Every fixed plan (screens and both fallbacks included): each outcome of the scenario with worlds is
    the worlds' outcomes, each analysed as a scenario of its own, weighted by the worlds' priors."""
    sc = CASES[name]()
    k, T = len(sc.proxies), len(sc.phases)
    groups = ["".join(g) for g in itertools.product("RTA", repeat=k)]
    plans = [",".join(p) for p in itertools.product(groups, repeat=T)]
    rng = np.random.default_rng(0)
    for plan in rng.choice(plans, size=min(len(plans), 12), replace=False):
        for fallback, screen in (("deploy", {}), ("abstain", {1: sc.proxy_names[0]} if T > 1 else {})):
            mixed = analyze(sc, make_regimen(sc, plan, screen=screen, fallback=fallback))
            parts = [analyze(w, make_regimen(w, plan, screen=screen, fallback=fallback)) for w in sc.world_scenarios]
            for key in KEYS:
                want = sum(p * getattr(a, key) for p, a in zip(sc.world_weights, parts))
                assert getattr(mixed, key) == pytest.approx(want, abs=1e-12), (plan, fallback, key)


def test_a_world_is_the_scenario_with_its_fields_set():
    sc = prior_scenario()
    base, gloomy, lasting = sc.world_scenarios
    assert base == parse_scenario(sc.model_dump(exclude={"expect", "worlds"}))
    assert gloomy.ideas[0].drift == 0.5 and gloomy.proxies[1].transfer == {"ask": 0.4}
    assert (lasting.proxies[0].persistence, lasting.proxies[0].anti_damage, lasting.proxies[1].persistence) == (0.0, 0.5, 0.9)
    dyn = Dynamics.of(sc)
    assert dyn.n_worlds == 3 and dyn.n_states == 3 * 2 ** (1 + 2 + 2)  # both proxies persistent in some world
    assert np.allclose([p.sum() for p in dyn.base_rate_probs], 1.0)
    assert dyn.base_rate_probs[0].tolist() == pytest.approx([0.25, 0.25, 0.15, 0.15, 0.1, 0.1])


def test_the_world_posterior_is_bayes_rule_over_the_worlds():
    """After runs with their results, the filter's P(world | history) is P(w) P_w(history) normalized, with
    P_w(history) the product of the predictive probabilities a filter of world w alone gives the same
    history, and its P(aligned) the mix of the worlds' P(aligned) under that posterior."""
    sc = prior_scenario()
    worlds = sc.world_scenarios
    filters = [BatchBeliefFilter(Dynamics(w), 1) for w in worlds]
    joint = BatchBeliefFilter(Dynamics.of(sc), 1)
    evidence = np.zeros(len(worlds))  # log P_w(history so far)
    rng = np.random.default_rng(1)
    for run in range(3):
        for f in (*filters, joint):
            f.start_run(0)
        n_anti = np.zeros((1, 2), dtype=np.int64)
        for t in range(len(sc.phases)):
            usage = rng.integers(3, size=2)
            code = int(usage @ [1, 3])
            before = n_anti.copy()
            n_anti = n_anti + (usage == 2)
            results = rng.random((1, 2)) < 0.6
            for w, f in enumerate(filters):
                f.advance(t, code, n_anti=before)
                evidence[w] += np.log(f.observe(t, n_anti, results)[0])
            joint.advance(t, code, n_anti=before)
            joint.observe(t, n_anti, results)
            post = np.array(sc.world_weights) * np.exp(evidence - evidence.max())
            post /= post.sum()
            np.testing.assert_allclose(joint.world_posterior()[0], post, rtol=1e-10)
            mix = sum(p * f.p_aligned[0] for p, f in zip(post, filters))
            assert joint.p_aligned[0] == pytest.approx(mix, rel=1e-10)
        for f in (*filters, joint):
            f.end_run()
        np.testing.assert_allclose(joint.world_posterior()[0], post, rtol=1e-10)


def test_a_phase_by_blocks_is_the_dense_transition():
    """With worlds, a phase applied world by world (each world's own dense table, or its bit-by-bit steps, as when
    the combined table or a world's would be too large) moves distributions, batches with one phase per row, and
    single models (transition_rows, as the env samples them) exactly as the dense block-diagonal table does."""
    dyn = Dynamics.of(prior_scenario())
    assert dyn.transition is not None
    by_tables = copy.copy(dyn)
    by_tables.transition = None
    by_bits = copy.copy(by_tables)
    by_bits.world_dynamics = tuple(copy.copy(d) for d in dyn.world_dynamics)
    for d in by_bits.world_dynamics:
        d.transition = None
    rng = np.random.default_rng(2)
    dist = rng.dirichlet(np.ones(dyn.n_states), size=6)
    for other in (by_tables, by_bits):
        for t in range(dyn.n_phases):
            for code in (0, 5, 8):
                for n_anti in ([0, 0], [1, 0], [1, 1]):
                    np.testing.assert_allclose(other.advance(dist, t, code, 0, np.array(n_anti)),
                                               dyn.advance(dist, t, code, 0, np.array(n_anti)), rtol=0, atol=1e-15)
        phase, code = rng.integers(dyn.n_phases, size=6), rng.integers(9, size=6)
        n_anti, state = rng.integers(2, size=(6, 2)), rng.integers(dyn.n_states, size=6)
        idea = np.zeros(6, dtype=np.int64)
        want = np.stack([dyn.transition[p, c, 0, dyn.anti_key(n), s] for p, c, n, s in zip(phase, code, n_anti, state)])
        np.testing.assert_allclose(other.transition_rows(phase, code, idea, n_anti, state), want, rtol=0, atol=1e-15)
        np.testing.assert_allclose(other.advance(np.eye(dyn.n_states)[state], phase, code, idea, n_anti), want,
                                   rtol=0, atol=1e-15)


def test_the_belief_observation_carries_the_world_posterior():
    sc = load_scenario("uncertain_monitor")
    belief, history = ObservationLayout.of(sc, "belief"), ObservationLayout.of(sc, "history")
    assert belief.slices["world"].stop - belief.slices["world"].start == 3 and "world" not in history.slices
    assert "world" not in ObservationLayout.of(load_scenario("sticky_values"), "belief").slices
    from proxygym.envs.proxy_alignment import ProxyAlignmentEnv

    env = ProxyAlignmentEnv(sc, observation="belief")
    obs, _ = env.reset(seed=0)
    assert belief.decode(obs)["world"].tolist() == pytest.approx([0.4, 0.4, 0.2])


def test_the_optimum_lies_between_the_best_fixed_plan_and_knowing_the_world():
    """The solver with worlds: at least every fixed plan's exact return, at most the value of being told the
    world first (each world solved alone, weighted); with identical worlds, the scenario's own optimum."""
    sc = tiny(T=2, budget=2)
    data = sc.model_dump(exclude={"expect"})
    name = sc.proxy_names[0]
    worlds = with_worlds(sc, [{"name": "a", "weight": 0.5, "set": {f"proxies.{name}.steer": 0.8}},
                              {"name": "b", "weight": 0.5, "set": {f"proxies.{name}.proximity": 0.9,
                                                                    "phases." + data["phases"][0]["name"] + ".plasticity": 0.1}}])
    value = solve(worlds).value
    fixed = max(analyze(worlds, make_regimen(worlds, ",".join(p))).expected_return
                for p in itertools.product("RTA", repeat=2))
    told = sum(p * solve(w).value for p, w in zip(worlds.world_weights, worlds.world_scenarios))
    assert fixed <= value + 1e-12 and value <= told + 1e-12 and fixed < told
    same = with_worlds(sc, [{"name": "a", "weight": 0.3, "set": {}}, {"name": "b", "weight": 0.7, "set": {}}])
    assert solve(same).value == pytest.approx(solve(sc).value, abs=1e-12)


BAD = [
    ({"name": "a", "weight": 0.5, "set": {"proxies.cot_monitor.stear": 0.1}}, ["worlds[0] (a)", "stear", "no such field", "proxies.<cot_monitor>"]),
    ({"name": "a", "weight": 0.5, "set": {"budget": 5}}, ["worlds[0] (a)", "'budget'", "own choices"]),
    ({"name": "a", "weight": 0.5, "set": {"reward.misaligned": -1}}, ["'reward.misaligned'", "own choices"]),
    ({"name": "a", "weight": 0.5, "set": {"proxies.cot_monitor.steer": 3}}, ["worlds[0] (a)", "steer", "less than or equal to 1"]),
    ({"name": "a", "weight": 0.5, "set": {"proxies.nope.steer": 0.1}}, ["'proxies.nope.steer'", "no such field"]),
]


@pytest.mark.parametrize("world, words", BAD, ids=["typo", "budget", "reward", "range", "proxy"])
def test_a_bad_world_is_one_line(tmp_path, world, words):
    data = load_scenario("uncertain_monitor").model_dump(exclude={"expect"})
    data["worlds"] = [world, {"name": "b", "weight": 0.5, "set": {}}]
    _check_bad(tmp_path, data, words)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["worlds"][0].update(weight=0.5), ["weights must sum to 1", "1.1"]),
    (lambda d: d.update(worlds=[{"name": "only", "weight": 1.0, "set": {}}]), ["at least two"]),
    (lambda d: d["worlds"][1].update(name="steers"), ["names must be unique", "steers"]),
    (lambda d: d["ideas"].append({"name": "other", "base_rate": 0.3}), ["one idea", "default, other"]),
], ids=["weights", "one", "names", "ideas"])
def test_bad_worlds_are_one_line(tmp_path, change, words):
    data = load_scenario("uncertain_monitor").model_dump(exclude={"expect"})
    change(data)
    _check_bad(tmp_path, data, words)


def _check_bad(tmp_path, data, words):
    import yaml

    data["name"] = "mine"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out.csv"
    res = run_cli_here("sweep", str(path), "--vary", "budget=1:3:3", "--plans", "R", "--csv", str(out))
    line = error_line(res.returncode, res.stdout, res.stderr)
    assert res.returncode == 2 and not out.exists()
    assert all(w in line for w in words), line


def test_advice_weighs_the_worlds(shipped, solutions):
    """The advice on uncertain_monitor: per world, the best fixed regimen there and what the robust choice
    gets there, and the value of knowing the world, against every plan (with and without an early screen)
    analysed in each world as a scenario of its own, and each world solved alone. (``proxygym advise`` adds
    the flip points, which tests/test_advice.py checks; here the advice is put together without them.)"""
    sc = next(s for s in shipped if s.name == "uncertain_monitor")
    ranked, searched, exhaustive = best_fixed(sc)
    best = ranked[0][0]
    worlds = world_advice(sc, best, with_optimal=True)
    adv = Advice(sc, ranked, analyze(sc, make_regimen(sc, "R")), analyze(sc, make_regimen(sc, "R", test="none")),
                 solutions[sc.name].value, optimal_phases(sc, solutions[sc.name]), "R", [], searched, exhaustive, worlds)
    got = adv.to_dict()
    plans = [",".join(p) for p in itertools.product("RTA", repeat=len(sc.phases))]
    regimens = [make_regimen(sc, p, screen=s) for p in plans for s in ({}, {1: "all"})]
    per_world = np.array([[analyze(w, r).expected_return for r in regimens] for w in sc.world_scenarios])
    weights = np.array(sc.world_weights)
    mixed = weights @ per_world
    robust = int(np.argmax(mixed))
    assert got["best_fixed"]["expected_return"] == pytest.approx(mixed[robust], abs=1e-12)
    for w, row in zip(got["worlds"], per_world):
        assert w["best_fixed"]["expected_return"] == pytest.approx(row.max(), abs=1e-12)
        assert w["robust_expected_return"] == pytest.approx(row[robust], abs=1e-12)
    value = got["value_of_knowing_the_world"]
    assert value["fixed"] == pytest.approx(weights @ per_world.max(axis=1) - mixed[robust], abs=1e-12)
    told = sum(p * solve(w).value for p, w in zip(sc.world_weights, sc.world_scenarios))
    assert value["optimal"] == pytest.approx(told - solutions[sc.name].value, abs=1e-12)
    assert 0 < value["optimal"] < value["fixed"]  # the adaptive lab learns the world from its own tests
    text = advice_text(adv)
    assert f"worth {value['fixed']:.4f} to a fixed plan" in text and "obfuscates (prior 0.40)" in text


def test_a_path_every_world_sets_is_not_a_parameter(tmp_path):
    """A sweep moves the scenario's own value, which a world's setting overrides: where every world sets the
    path the sweep would change nothing (one line), where some do it moves the others (their weighted mix)."""
    import yaml

    data = load_scenario("uncertain_monitor").model_dump(exclude={"expect"})
    path = tmp_path / "mine.yaml"
    data["name"] = "mine"
    for w in data["worlds"]:
        w["set"]["proxies.cot_monitor.sensitivity"] = 0.9
    path.write_text(yaml.safe_dump(data))
    res = run_cli_here("sweep", str(path), "--vary", "proxies.cot_monitor.sensitivity=0.5:1:3", "--plans", "R")
    line = error_line(res.returncode, res.stdout, res.stderr)
    assert res.returncode == 2 and "set by every world (steers, obfuscates, inert)" in line, line
    from proxygym.envs.parameters import parameters, with_parameters

    sc = load_scenario("uncertain_monitor")  # every world sets steer; only inert sets proximity
    assert "proxies.cot_monitor.steer" not in parameters(sc) and "proxies.cot_monitor.proximity" in parameters(sc)
    moved = with_parameters(sc, {"proxies.cot_monitor.proximity": 0.5})
    steers, obfuscates, inert = moved.world_scenarios
    assert (steers.proxies[0].proximity, obfuscates.proxies[0].proximity, inert.proxies[0].proximity) == (0.5, 0.5, 0.3)
    reg = make_regimen(sc, "T,T")
    moved = with_parameters(sc, {"proxies.cot_monitor.sensitivity": 0.8})
    want = sum(p * analyze(w, reg).expected_return for p, w in zip(sc.world_weights, moved.world_scenarios))
    assert all(w.proxies[0].sensitivity == 0.8 for w in moved.world_scenarios)
    assert analyze(moved, reg).expected_return == pytest.approx(want, abs=1e-12)


def test_a_sweep_of_a_scenario_with_worlds_is_each_points_analysis():
    """A sweep compiles a scenario with worlds point by point (stacks hold scenarios without worlds): every row
    is the analysis of the scenario with that point's values set."""
    from proxygym.agents.sweep import parse_vary, sweep
    from proxygym.envs.parameters import with_parameters

    sc = load_scenario("uncertain_monitor")
    axes = [parse_vary(sc, "proxies.cot_monitor.sensitivity=0.6:1:3"), parse_vary(sc, "phases.early_rl.plasticity=0.2:0.8:2")]
    rows = sweep(sc, axes, ["R", "T,R"], workers=1)
    assert len(rows) == 12
    for row in rows:
        point = with_parameters(sc, row["params"])
        want = analyze(point, make_regimen(point, row["plan"])).expected_return
        assert row["expected_return"] == pytest.approx(want, abs=1e-12)
