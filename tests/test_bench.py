"""The strategies and the benchmark: exact values where there are some, the claims of every scenario, the CLI
(the strategies' Monte Carlo checks against the exact analysis and the solver: test_monte_carlo.py)."""

from __future__ import annotations

import json

import pytest

from proxygym.agents.bench import resolve_names, run_bench, run_pair
from proxygym.agents.claims import check_claims
from proxygym.agents.regimen import play_batch, play_episode
from proxygym.agents.strategies import STRATEGIES, make_strategy
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.scenario import load_scenario, parse_scenario, shipped_scenarios
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import error_line, hand_scenario, run_cli

FIXED = [name for name in STRATEGIES if make_strategy(name, load_scenario("sticky_values"),
                                                       ProxyAlignmentEnv("sticky_values", observation="belief").layout).regimen()]
BENCH_KEYS = {
    "scenario": str, "strategy": str, "episodes": int, "mean_return": float, "ci95": float,
    "ci95_low": float, "ci95_high": float,
    "p_deploy_aligned": float, "p_deploy_misaligned": float, "p_abstain": float, "mean_runs": float,
    "exact_return": (float, type(None)), "optimal_return": float, "optimality_gap": float,
}


def test_strategy_claims_hold(shipped):
    """Every expect entry that names a strategy holds by the benchmark: the 99.9% intervals of
    the two sides do not overlap (or, for a 'same' claim, the gap is within its tolerance)."""
    checks = [c for sc in shipped for c in check_claims(sc, episodes=20_000, seed=5) if set(c.sides) & set(STRATEGIES)]
    named = {side for c in checks for side in c.sides}
    # claims 8, 9 and 10 are each shown by a strategy
    assert {"early_rejection", "idea_screening", "are_you_aligned_protocol"} <= named
    failing = [f"{c.scenario}: {c.text}" for c in checks if not c.holds]
    assert not failing, "\n".join(failing)


def test_exact_returns_are_the_hand_worked_ones():
    """The benchmark's exact column, on the case worked by hand in test_analysis.py: always_reserve
    returns 0.526 - 0.474 - 0.1 * 1.39 = -0.087; first_model deploys the first model, 0.4 - 0.6 - 0.1
    = -0.3; an adaptive strategy has no exact value."""
    sc = parse_scenario(hand_scenario())
    assert run_pair(sc, "always_reserve", episodes=10, seed=0).exact_return == pytest.approx(-0.087)
    assert run_pair(sc, "first_model", episodes=10, seed=0).exact_return == pytest.approx(-0.3)
    assert run_pair(sc, "idea_screening", episodes=10, seed=0).exact_return is None


def test_one_interface_for_one_env_and_a_batch():
    """Every strategy plays the single env through the same act() as a batch: episode by episode,
    the single env and a vector env of one program (the same seeds) end with the same return and
    the same outcome (one program plays the same in either: test_monte_carlo.py, test_vec_env.py)."""
    sc = load_scenario("idea_screening")
    env = ProxyAlignmentEnv(sc, observation="belief")
    vec = ProxyAlignmentVectorEnv(1, sc, observation="belief")
    for name in STRATEGIES:
        one, batch = make_strategy(name, sc, env.layout, seed=3), make_strategy(name, sc, vec.layout, seed=3)
        for seed in range(40):
            total, info = play_episode(env, one, seed=seed)
            totals, last = play_batch(vec, batch, seed=seed)
            assert totals[0] == total, (name, seed)
            assert all(last[key][0] == info[key] for key in ("deployed", "aligned", "abstained", "runs_used")), (name, seed)


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
    for row in rows:  # the gap the tables show: the optimum less the mean return
        assert row["optimality_gap"] == pytest.approx(row["optimal_return"] - row["mean_return"], abs=1e-12)
    optimal_row = next(r for r in rows if r["strategy"] == "optimal" and r["scenario"] == "sticky_values")
    assert optimal_row["optimal_return"] == optimal_row["exact_return"]
    fixed = {r["strategy"]: r for r in rows if r["scenario"] == "sticky_values" and r["exact_return"] is not None}
    assert set(fixed) == set(FIXED) | {"optimal"}  # the optimum is exact too (proxygym.agents.solver)
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


def test_bench_writes_a_pdf_or_svg_by_suffix_and_refuses_a_path_it_cannot_write(tmp_path):
    """The plot's format follows the file's suffix; an output that cannot be written, or a plot suffix
    that is not a picture format, is one line before the benchmark runs, and nothing is written."""
    args = ["bench", "--scenario", "sticky_values", "--strategy", "always_reserve", "random", "--episodes", "20"]
    res = run_cli(*args, "--plot", str(tmp_path / "b.pdf"), "--json", str(tmp_path / "b.json"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b.pdf").read_bytes()[:5] == b"%PDF-"
    res = run_cli(*args, "--plot", str(tmp_path / "b.svg"))
    assert res.returncode == 0 and b"<svg" in (tmp_path / "b.svg").read_bytes()[:400], res.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for extra, fragment in ((["--json", str(blocker / "out.json")], "cannot write"),
                            (["--csv", str(tmp_path)], "cannot write"),
                            (["--plot", str(tmp_path / "b.gif")], ".png, .pdf, .svg")):
        res = run_cli(*args, *extra)
        assert fragment in error_line(res.returncode, res.stdout, res.stderr, extra)
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "b.json", "b.pdf", "b.svg"]
