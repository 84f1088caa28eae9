"""The strategies and the benchmark: exact values where there are some, the claims of every scenario, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from proxygym.agents.claims import check_claims
from proxygym.agents.bench import resolve_names, run_bench, run_pair
from proxygym.agents.regimen import play_episode
from proxygym.agents.strategies import STRATEGIES, make_strategy
from proxygym.envs.analysis import analyze
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import load_scenario, shipped_scenarios
from tests.conftest import run_cli, z_value

FIXED = [name for name in STRATEGIES if make_strategy(name, load_scenario("sticky_values"),
                                                       ProxyAlignmentEnv("sticky_values", observation="belief").layout).regimen()]
BENCH_KEYS = {
    "scenario": str, "strategy": str, "episodes": int, "mean_return": float, "ci95": float,
    "p_deploy_aligned": float, "p_deploy_misaligned": float, "p_abstain": float, "mean_runs": float,
    "exact_return": (float, type(None)),
}


def test_fixed_strategies_match_the_exact_analysis(shipped):
    """For every fixed-regimen strategy on every shipped scenario, the benchmark's mean return
    lies inside its 99% interval of the exact expected return (family-wise, Bonferroni over
    all pairs, so a correct simulation fails less than 1% of the time)."""
    pairs = [(sc, name) for sc in shipped for name in FIXED]
    z = z_value(0.99, comparisons=len(pairs))
    failures = []
    for sc, name in pairs:
        r = run_pair(sc, name, episodes=20_000, seed=3)
        half = r.outcomes.ci95 * z / 1.959963984540054 + 1e-12
        if abs(r.outcomes.mean_return - r.exact_return) > half:
            failures.append(f"{sc.name}/{name}: {r.outcomes.mean_return:.4f} +- {half:.4f} vs exact {r.exact_return:.4f}")
    assert not failures, "\n".join(failures)
    assert len(FIXED) >= 7


def test_strategy_claims_hold(shipped):
    """Every expect entry that names a strategy holds by the benchmark: the 99.9% intervals of
    the two sides do not overlap (or, for a 'same' claim, the gap is within its tolerance)."""
    checks = [c for sc in shipped for c in check_claims(sc, episodes=20_000, seed=5) if set(c.sides) & set(STRATEGIES)]
    named = {side for c in checks for side in c.sides}
    # claims 8, 9 and 10 are each shown by a strategy
    assert {"early_rejection", "idea_screening", "are_you_aligned_protocol"} <= named
    failing = [f"{c.scenario}: {c.text}" for c in checks if not c.holds]
    assert not failing, "\n".join(failing)


def test_no_strategy_beats_the_optimum(shipped):
    """The exact optimum is at least every strategy's benchmark mean, within its 99% interval
    (family-wise over every pair); the optimal strategy itself reports the solver's value as exact."""
    pairs = [(sc, name) for sc in shipped for name in STRATEGIES]
    z = z_value(0.99, comparisons=len(pairs))
    for sc, name in pairs:
        r = run_pair(sc, name, episodes=2000, seed=11)
        assert r.optimal_return is not None
        assert r.outcomes.mean_return - r.outcomes.ci95 * z / 1.959963984540054 <= r.optimal_return + 1e-12, (sc.name, name)
        if name == "optimal":
            assert r.exact_return == pytest.approx(r.optimal_return)


def test_one_interface_for_one_env_and_a_batch():
    """A strategy plays the single env through the same act() as the batch: the single env's
    outcome frequencies agree with the vector env's for an adaptive strategy too."""
    sc = load_scenario("idea_screening")
    env = ProxyAlignmentEnv(sc, observation="belief")
    agent = make_strategy("idea_screening", sc, env.layout, seed=0)
    single = np.mean([play_episode(env, agent, seed=i)[0] for i in range(3000)])
    batch = run_pair(sc, "idea_screening", episodes=3000, seed=0)
    se = np.sqrt(2 * 0.25 / 3000)
    assert abs(single - batch.outcomes.mean_return) < 4 * se


def test_unknown_names_are_refused_with_the_valid_ones():
    for args, listed in ((["--scenario", "nope"], shipped_scenarios()), (["--strategy", "nope"], list(STRATEGIES))):
        res = run_cli("bench", *args, "--episodes", "10")
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "'nope'" in res.stderr
        assert all(name in res.stderr for name in listed)


def test_bench_json_csv_plot_and_determinism(tmp_path):
    args = ["bench", "--scenario", "sticky_values", "idea_screening", "--episodes", "300", "--seed", "4"]
    a = run_cli(*args, "--json", str(tmp_path / "a.json"), "--csv", str(tmp_path / "a.csv"),
                "--plot", str(tmp_path / "a.png"))
    assert a.returncode == 0, a.stderr
    b = run_cli(*args, "--json", str(tmp_path / "b.json"))
    assert b.returncode == 0, b.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    rows = json.loads((tmp_path / "a.json").read_text())
    assert len(rows) == 2 * len(STRATEGIES)
    for row in rows:
        assert set(row) == set(BENCH_KEYS)
        for key, kind in BENCH_KEYS.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert row["episodes"] == 300
    fixed = {r["strategy"]: r for r in rows if r["scenario"] == "sticky_values" and r["exact_return"] is not None}
    assert set(fixed) == set(FIXED) | {"optimal"}  # the optimum is exact too (proxygym.agents.solver)
    sc = load_scenario("sticky_values")
    reg = make_strategy("train_early_reserve_late", sc, ProxyAlignmentEnv(sc, observation="belief").layout).regimen()
    assert fixed["train_early_reserve_late"]["exact_return"] == pytest.approx(analyze(sc, reg).expected_return)
    # the table marks one best strategy per scenario
    assert a.stdout.count("\n* ") == 2
    csv_lines = (tmp_path / "a.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(BENCH_KEYS) and len(csv_lines) == 1 + len(rows)
    import matplotlib.pyplot as plt

    image = plt.imread(tmp_path / "a.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200


def test_a_pair_does_not_depend_on_the_others():
    scenarios, _ = resolve_names(["sticky_values", "blueprint"], None)
    together = run_bench(scenarios, ["always_reserve", "random"], episodes=200, seed=9)
    alone = run_bench(scenarios[1:], ["random"], episodes=200, seed=9)
    assert together[-1] == alone[0]
