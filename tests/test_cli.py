"""The proxygym command as a user runs it: a subprocess, its output, its exit status."""

from __future__ import annotations

import json

import pytest
import yaml

from proxygym.envs.scenario import shipped_scenarios
from tests.helpers import ANALYSIS_KEYS, error_line, hand_scenario, run_cli, run_concurrently


def write(tmp_path, data, name="hand"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_analyze_json_matches_the_hand_worked_case(tmp_path):
    path = write(tmp_path, hand_scenario())
    res = run_cli("analyze", str(path), "--plan", "R", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == ANALYSIS_KEYS
    assert out["p_deploy_aligned"] == pytest.approx(0.526)  # worked in test_analysis
    assert out["expected_runs"] == pytest.approx(1.39)
    assert out["expected_compute"] == pytest.approx(1.39)  # one phase of cost 1 per run, no early discard


def test_analyze_compare_and_nulls(tmp_path):
    path = write(tmp_path, hand_scenario())
    res = run_cli("analyze", str(path), "--plan", "T", "--compare", "R", "--json")
    out = json.loads(res.stdout)
    assert set(out) == ANALYSIS_KEYS | {"regimen", "second", "compare"} and set(out["second"]) == ANALYSIS_KEYS | {"regimen"}
    assert set(out["compare"]) == {"log_posterior_odds_ratio", "base_rate_log_impact", "likelihood_log_impact"}
    assert out["compare"]["base_rate_log_impact"] == pytest.approx(0.485508, abs=1e-6)  # ln(1.625)
    # a base rate of 1 makes the prior odds undefined: null, not inf or NaN
    path = write(tmp_path, hand_scenario(ideas=[{"name": "idea", "base_rate": 1.0}]))
    out = json.loads(run_cli("analyze", str(path), "--plan", "R", "--json").stdout)
    assert out["prior_odds"] is None and out["p_deploy_aligned"] == pytest.approx(1.0)


def test_analyze_table_says_what_moved(tmp_path):
    path = write(tmp_path, hand_scenario())
    res = run_cli("analyze", str(path), "--plan", "T", "--compare", "R", "--budget", "3", "--fallback", "abstain")
    assert res.returncode == 0, res.stderr
    assert "base rate moved them more" in res.stdout
    assert "budget 3" in res.stdout and "fallback abstain" in res.stdout
    res = run_cli("analyze", str(path), "--plan", "R")
    assert "weighs more" in res.stdout


def test_analyze_options_reach_the_analysis(tmp_path):
    """--test, --budget and --fallback change the numbers as worked by hand (test_analysis.py):
    with no test the first model ships, 0.4 - 0.6 - 0.1 = -0.3; with three runs, each passing
    with 0.61 (0.37 aligned), P(deploy aligned) = 0.37 (1 + 0.39) + 0.39^2 0.4 = 0.57514 and
    E[runs] = 1 + 0.39 + 0.39^2 = 1.5421; abstaining after a second failure: 0.0417."""
    path = write(tmp_path, hand_scenario())
    out = json.loads(run_cli("analyze", str(path), "--plan", "R", "--test", "none", "--json").stdout)
    assert out["expected_return"] == pytest.approx(-0.3) and out["expected_runs"] == pytest.approx(1.0)
    out = json.loads(run_cli("analyze", str(path), "--plan", "R", "--test", "ask", "--budget", "3", "--json").stdout)
    assert out["p_deploy_aligned"] == pytest.approx(0.57514) and out["expected_runs"] == pytest.approx(1.5421)
    out = json.loads(run_cli("analyze", str(path), "--plan", "R", "--fallback", "abstain", "--json").stdout)
    assert out["expected_return"] == pytest.approx(0.0417) and out["p_abstain"] == pytest.approx(0.1521)


def test_scenarios_lists_every_shipped_file():
    res = run_cli("scenarios", "--json")
    assert res.returncode == 0
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == shipped_scenarios()
    assert all(r["claim"] and r["title"] for r in rows)
    text = run_cli("scenarios").stdout
    assert all(name in text for name in shipped_scenarios())


def _mutate(**changes):
    data = hand_scenario()
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[keys[-1]] = value
    return data


MALFORMED = [
    # (what, file content, extra args, fragments the one line must contain)
    ("bad yaml", "name: hand\nphases: [unclosed\n", [], ["hand.yaml", "not valid YAML", "line"]),
    ("unknown key", _mutate(colour="red"), [], ["hand.yaml", "colour", "unknown key"]),
    ("unknown nested key", _mutate(proxies__0__sensitivty=0.9), [], ["proxies[0].sensitivty", "unknown key"]),
    ("wrong type", _mutate(budget="five"), [], ["hand.yaml", "budget", "integer", "'five'"]),
    ("out of range", _mutate(proxies__0__sensitivity=1.5), [], ["proxies[0].sensitivity", "less than or equal to 1", "1.5"]),
    ("negative", _mutate(reward__run_cost=-1), [], ["reward.run_cost", "greater than or equal to 0"]),
    ("missing", _mutate(phases=[{"name": "x", "plasticity": 0.5}]), [], ["phases[0].capability", "missing"]),
    ("prior sum", _mutate(ideas=[{"name": "i", "base_rate": {"values": [0.1, 0.9], "probs": [0.5, 0.6]}}]), [],
     ["ideas[0].base_rate", "sum to 1", "1.1"]),
    ("prior shape", _mutate(ideas=[{"name": "i", "base_rate": {"values": [0.1, 0.9], "probs": [1.0]}}]), [],
     ["ideas[0].base_rate", "same length"]),
    ("name", _mutate(name="other"), [], ["hand.yaml", "name", "file stem", "'hand'"]),
    ("duplicate", _mutate(proxies=hand_scenario()["proxies"] * 2), [], ["proxies", "unique", "ask"]),
    ("expect plan shape", _mutate(expect=[{"better": "RR", "than": "R"}]), [], ["expect[0].better", "'RR'", "1, one per proxy"]),
    ("expect metric", _mutate(expect=[{"better": "T", "than": "R", "metric": "happiness"}]), [],
     ["expect[0].metric", "expected_return"]),
    ("plan shape", hand_scenario(), ["--plan", "TR"], ["hand.yaml", "plan 'TR'", "1, one per proxy (ask)"]),
    ("plan groups", hand_scenario(), ["--plan", "T,R"], ["plan 'T,R'", "2 groups", "1 groups"]),
    ("plan letters", hand_scenario(), ["--plan", "X"], ["plan 'X'", "R (reserve), T (train), A (anti)"]),
    ("unknown proxy", hand_scenario(), ["--plan", "R", "--test", "nope"], ["unknown proxy 'nope'", "proxies are ask"]),
    ("unknown idea", hand_scenario(), ["--plan", "R", "--idea", "nope"], ["unknown idea 'nope'", "ideas are idea"]),
    ("screen", hand_scenario(), ["--plan", "R", "--screen", "1:ask"], ["screen at checkpoint 1", "with one phase there is no early checkpoint"]),
    ("budget", hand_scenario(), ["--plan", "R", "--budget", "0"], ["budget", "1 to 1000"]),
]


@pytest.fixture(scope="module")
def malformed_runs(tmp_path_factory):
    """Every MALFORMED case run as a subprocess of the CLI (a few at a time), by name."""
    calls = {}
    for what, content, extra, _ in MALFORMED:
        path = write(tmp_path_factory.mktemp("malformed"), content)
        calls[what] = lambda path=path, extra=extra: run_cli("analyze", str(path), *(extra or ["--plan", "R"]))
    return dict(zip(calls, run_concurrently(list(calls.values()))))


@pytest.mark.parametrize("what,content,extra,fragments", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_exits_2_with_one_line(malformed_runs, what, content, extra, fragments):
    res = malformed_runs[what]
    line = error_line(res.returncode, res.stdout, res.stderr, what)
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_unknown_scenario_lists_the_shipped_ones():
    res = run_cli("analyze", "no_such_scenario", "--plan", "R")
    assert res.returncode == 2
    assert "unknown scenario 'no_such_scenario'" in res.stderr
    assert all(name in res.stderr for name in shipped_scenarios())
    res = run_cli("analyze", "/nonexistent/x.yaml", "--plan", "R")
    assert res.returncode == 2 and "no such file" in res.stderr


COMMANDS = [[], ["analyze"], ["bench"], ["solve"], ["sweep"], ["flips"], ["advise"], ["claims"], ["scenarios"], ["inspect"], ["train"]]


@pytest.fixture(scope="module")
def help_runs():
    """``proxygym [COMMAND] --help`` for every command, each a subprocess (a few at a time)."""
    return run_concurrently([lambda command=command: run_cli(*command, "--help") for command in COMMANDS])


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[" ".join(c) or "proxygym" for c in COMMANDS])
def test_help_of_every_command(help_runs, index):
    res = help_runs[index]
    assert res.returncode == 0 and "usage:" in res.stdout and res.stderr == "", res.stderr


@pytest.mark.parametrize("args, words", [
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["sweep", "sticky_values"], "the following arguments are required: --vary"),
    (["claims", "--episode", "3"], "unrecognized arguments: --episode"),  # no prefix of --episodes
])
def test_a_usage_error_is_one_line(args, words):
    res = run_cli(*args)
    assert words in error_line(res.returncode, res.stdout, res.stderr, args)


def test_unknown_proxy_in_a_screen_says_screen(tmp_path):
    phases = [{"name": "a", "capability": 0.0, "plasticity": 0.5}, {"name": "b", "capability": 0.0, "plasticity": 0.5}]
    path = write(tmp_path, hand_scenario(phases=phases))
    res = run_cli("analyze", str(path), "--plan", "R", "--screen", "1:nosuch")
    assert res.returncode == 2 and "unknown proxy 'nosuch' in the screen at checkpoint 1" in res.stderr
