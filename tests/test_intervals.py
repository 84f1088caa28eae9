"""Intervals that stay where the quantity can be: Wilson score intervals for shares of episodes and for the
mean of two-valued returns, checked against cases worked by hand; the benchmark of a scenario given as a
file, whose JSON and CSV carry every column its console table shows."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from proxygym.envs.outcomes import Z95, Z999, measure, wilson
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import ROOT, hand_scenario, run_cli_here

Z2 = Z95 * Z95  # 3.841459


def by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson interval as the textbooks write it: (k + z^2/2 -+ z sqrt(k(n-k)/n + z^2/4)) / (n + z^2)."""
    centre, half = k + z * z / 2, z * math.sqrt(k * (n - k) / n + z * z / 4)
    return (centre - half) / (n + z * z), (centre + half) / (n + z * z)


def test_wilson_against_hand_worked_cases():
    """0 of 10: [0, z^2 / (10 + z^2)] = [0, 0.277533]; 10 of 10: [10 / (10 + z^2), 1] = [0.722467, 1];
    3 of 10: [0.107791, 0.603222] (p = 0.3: centre (3 + 1.920729) / 13.841459 = 0.355506, half
    1.959964 * sqrt(2.1 + 0.960365) / 13.841459 = 0.247715), the values statistics packages print."""
    assert wilson(0, 10) == (0.0, pytest.approx(Z2 / (10 + Z2), abs=1e-12))
    assert wilson(0, 10)[1] == pytest.approx(0.277533, abs=1e-6)
    assert wilson(10, 10) == (pytest.approx(10 / (10 + Z2), abs=1e-12), 1.0)
    assert wilson(10, 10)[0] == pytest.approx(0.722467, abs=1e-6)
    assert wilson(3, 10) == pytest.approx((0.107791, 0.603222), abs=1e-6)
    for k, n, z in ((3, 10, Z95), (17, 40, Z999), (1, 2, Z95)):
        assert wilson(k, n, z) == pytest.approx(by_hand(k, n, z), abs=1e-12)


def test_all_ones_stay_within_zero_and_one():
    """Ten episodes that all return 1, where returns are 0 or 1: the normal interval would be 1 +- 0; Wilson's is
    [10 / (10 + z^2), 1]. With three possible rewards (1, -1, 0) the mean is not a proportion: its normal interval
    is clipped to what an episode can return, [-1, 1], never past 1."""
    ones = [1.0] * 10
    two = parse_scenario(hand_scenario(reward={"aligned": 1.0, "misaligned": 0.0, "abstain": 0.0, "run_cost": 0.0}))
    o = measure(ones, [True] * 10, [True] * 10, [False] * 10, [1] * 10, two)
    assert (o.ci95_low, o.ci95_high) == (pytest.approx(10 / (10 + Z2), abs=1e-12), 1.0)
    assert o.interval("p_deploy_aligned") == o.interval("mean_return")  # the return is the share deployed aligned
    assert o.return_text() == "1.0000 [0.7225, 1.0000]"
    three = parse_scenario(hand_scenario(reward={"aligned": 1.0, "misaligned": -1.0, "abstain": 0.0, "run_cost": 0.0}))
    near = measure([1.0] * 9 + [-1.0], [True] * 10, [True] * 9 + [False], [False] * 10, [1] * 10, three)
    sd = math.sqrt((9 * 0.2**2 + 1.8**2) / 9)  # mean 0.8
    assert near.ci95_low == pytest.approx(0.8 - Z95 * sd / math.sqrt(10), abs=1e-12) and near.ci95_high == 1.0
    assert near.interval("p_abstain") == (0.0, pytest.approx(Z2 / (10 + Z2), abs=1e-12))


def test_a_benchmarked_claim_reads_wilson_intervals(tmp_path):
    """A claim on a strategy is scored by the benchmark: its share's interval at 99.9% is Wilson's, by hand."""
    data = hand_scenario(expect=[{"value": "random", "metric": "p_abstain", "within": [0.0, 1.0]},
                                 {"value": "random", "metric": "expected_return", "within": [-2.0, 1.0]}])
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(data))
    res = run_cli_here("claims", str(path), "--episodes", "40", "--json", str(tmp_path / "c.json"), "--no-progress")
    assert res.returncode == 0, res.stderr
    share, mean = json.loads((tmp_path / "c.json").read_text())
    (value,), ((lo, hi),) = share["values"][0], share["intervals"][0]
    assert (lo, hi) == pytest.approx(by_hand(round(value * 40), 40, Z999), abs=1e-12) and 0.0 <= lo <= hi <= 1.0
    (m,), ((lo, hi),) = mean["values"][0], mean["intervals"][0]  # run costs: a normal interval, clipped to [-1.2, 0.9]
    assert -1.0 - 0.1 * 2 <= lo < m < hi <= 1.0 - 0.1
    assert f"{value:.4f} [{by_hand(round(value * 40), 40, Z999)[0]:.4f}," in res.stdout


def test_too_few_episodes_for_an_interval_is_one_line():
    """0 or 1 episode per strategy: refused in one line (an interval of a mean needs two episodes' spread), never nan."""
    for n in ("0", "1"):
        for command in (["claims", "sticky_values"], ["bench", "--scenario", "sticky_values"]):
            res = run_cli_here(*command, "--episodes", n)
            assert res.returncode == 2 and res.stdout == "" and "nan" not in res.stderr, res
            assert res.stderr == f"proxygym: error: --episodes must be at least 2 (for an interval), got {n}\n"


@pytest.fixture(scope="module")
def file_bench(tmp_path_factory):
    """sticky_values under another name, given as a path in a folder of its own (not a shipped name)."""
    tmp = tmp_path_factory.mktemp("bench")
    data = yaml.safe_load((ROOT / "scenarios" / "sticky_values.yaml").read_text())
    data["name"] = "my_lab"
    (tmp / "some" / "path").mkdir(parents=True)
    scenario = tmp / "some" / "path" / "my_lab.yaml"
    scenario.write_text(yaml.safe_dump(data))
    outs = {ext: tmp / f"out.{ext}" for ext in ("json", "csv", "md", "pdf")}
    res = run_cli_here("bench", "--scenario", str(scenario), "--strategy", "optimal", "random", "always_reserve",
                       "--episodes", "300", "--json", str(outs["json"]), "--csv", str(outs["csv"]),
                       "--markdown", str(outs["md"]), "--plot", str(outs["pdf"]), "--no-progress")
    return scenario, res, outs


def test_bench_on_a_scenario_file_runs_to_the_end(file_bench):
    scenario, res, outs = file_bench
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith("my_lab: Sticky values")
    assert f"proxygym solve {scenario}) less the mean return" in res.stdout  # solve takes the path, not the name
    assert outs["pdf"].read_bytes()[:5] == b"%PDF-" and outs["md"].read_text().startswith("| scenario |")


def test_bench_files_carry_every_column_of_the_table(file_bench):
    """Each console row (strategy, return, 95% interval, P(aligned), P(misaligned), P(abstain), runs, exact, gap)
    is the JSON row rounded; the CSV has the JSON's keys and values; the returns are 0 or 1 here, so the
    interval is Wilson's of the episodes that deployed an aligned model."""
    _, res, outs = file_bench
    rows = json.loads(outs["json"].read_text())
    sc = load_scenario(str(file_bench[0]))
    assert (sc.reward.aligned, sc.reward.misaligned, sc.reward.abstain, sc.reward.run_cost) == (1, 0, 0, 0)
    printed = {}
    for line in res.stdout.splitlines():
        tokens = line.replace("[", " ").replace("]", " ").replace(",", " ").split()
        for i, token in enumerate(tokens):
            if token in {r["strategy"] for r in rows}:
                printed[token] = [float(t) for t in tokens[i + 1:]]
    for row in rows:
        keys = ["mean_return", "ci95_low", "ci95_high", "p_deploy_aligned", "p_deploy_misaligned", "p_abstain", "mean_runs",
                "exact_return", "optimality_gap"]
        digits = dict(zip(keys, [4, 4, 4, 3, 3, 3, 2, 4, 4]))
        shown = [k for k in keys if row[k] is not None]  # an empty cell where a strategy has no exact value
        assert printed[row["strategy"]] == [pytest.approx(round(row[k], digits[k]), abs=1e-12) for k in shown], row
        assert row["optimality_gap"] == pytest.approx(row["optimal_return"] - row["mean_return"], abs=1e-12)
        k = round(row["p_deploy_aligned"] * 300)
        assert (row["ci95_low"], row["ci95_high"]) == pytest.approx(by_hand(k, 300, Z95), abs=1e-12)
    with open(outs["csv"], newline="") as f:
        listed = list(csv.DictReader(f))
    assert [list(r) for r in listed] == [list(r) for r in rows]
    assert [float(r["ci95_high"]) for r in listed] == [r["ci95_high"] for r in rows]
