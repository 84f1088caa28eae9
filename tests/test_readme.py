"""Every number in the README comes from a command the README names: run them and compare."""

from __future__ import annotations

import re

from proxygym.agents.bench import resolve_names, run_bench
from proxygym.agents.report import format_markdown
from tests.helpers import ROOT, run_cli

README = (ROOT / "README.md").read_text()


def test_benchmark_table_is_what_the_command_prints():
    table = re.search(r"<!-- bench-table:start -->\n(.*?)<!-- bench-table:end -->", README, re.S).group(1)
    scenarios, strategies = resolve_names(None, None)
    assert format_markdown(run_bench(scenarios, strategies, episodes=2000, seed=0)) == table


def test_scenario_table_is_what_the_command_prints():
    table = re.search(r"<!-- scenario-table:start -->\n(.*?)<!-- scenario-table:end -->", README, re.S).group(1)
    out = run_cli("scenarios", "--markdown")
    assert out.returncode == 0, out.stderr
    assert out.stdout == table
    assert table.count("\n| `") == len(run_cli("scenarios", "--json").stdout.split('"name"')) - 1  # a row per scenario


def test_analysis_example_is_what_the_command_prints():
    block = README.split("proxygym analyze sticky_values --plan T,R,R --compare R")[1]
    shown = re.search(r"ends with:\n\n```\n(.*?)```", block, re.S).group(1)
    out = run_cli("analyze", "sticky_values", "--plan", "T,R,R", "--compare", "R").stdout
    for line in shown.strip().splitlines():
        assert line.strip() in out, line
    for number in ("4.83", "6.58", "0.58", "0.30"):
        assert number in block.split("## The scenarios")[0]
    assert "4.8327" in out and "6.5829" in out and "0.5800" in out and "0.3000" in out


def test_every_claim_holds_as_the_readme_says():
    out = run_cli("claims")
    assert out.returncode == 0, out.stdout
    count = out.stdout.count("[holds]")
    assert f"All {count} claims hold." in README and "[FAILS]" not in out.stdout


def test_the_layout_table_matches_the_tree():
    """Every path the README's layout table names exists, and every module of the package is named there."""
    layout = README.split("## Layout")[1]
    named = {p.rstrip("/") for p in re.findall(r"`([\w./]+(?:\.py|/))`", layout)}
    for path in named:
        assert (ROOT / path).exists(), path
    modules = {str(p.relative_to(ROOT)) for d in ("envs", "agents", "proxygym") for p in (ROOT / d).glob("*.py")}
    modules = {m for m in modules if not m.endswith(("__init__.py", "__main__.py"))}
    assert modules <= named, sorted(modules - named)


def test_the_v1_fields_example_is_a_valid_scenario():
    """The README's YAML example of the later fields, with a name and a claim, loads and is analysed."""
    import yaml

    from proxygym.envs.analysis import analyze
    from proxygym.envs.regimen import make_regimen
    from proxygym.envs.scenario import parse_scenario

    section = README.split("## Beyond the first model")[1].split("\n## ")[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    sc = parse_scenario({"name": "example", "title": "t", "claim": "c", **yaml.safe_load(block)})
    assert sc.compute == 20 and sc.proxies[0].persistence == 0.8 and sc.proxies[0].transfer == {"probe": 0.5}
    a = analyze(sc, make_regimen(sc, "TR,RR", screen={1: "cot_monitor"}))
    assert 0.0 <= a.p_deploy_aligned <= 1.0 and a.expected_compute <= sc.compute
