"""``proxygym advise`` against the hand-worked case and against an exhaustive search.

test_analysis.py's one-phase case (budget 2, run cost 0.1, rewards 1 / -1): plan R returns
-0.087; plan T returns 0.630855 - 0.369145 - 0.1 * 1.276629 = 0.134047 (test_sweep.py works its
deployments); plan A (anti-training halves the aligned pass rate, pressure -1, no pull on
values) deploys aligned with 0.209584 + 0.60587 * 0.4 = 0.451932 in 1.60587 runs, returning
-0.256723. So the best fixed regimen is T.
"""

from __future__ import annotations

import json

import pytest
import yaml

from proxygym.agents import advice
from proxygym.agents.advice import best_fixed
from proxygym.envs.scenario import load_scenario, parse_scenario
from tests.helpers import crossing, hand_scenario, run_cli


def test_best_fixed_regimen_by_hand():
    sc = parse_scenario(hand_scenario())
    ranked, searched, exhaustive = best_fixed(sc)
    assert exhaustive and searched == 3
    values = {"".join("RTA"[int(u)] for u in r.plan[0]): a.expected_return for r, a in ranked}
    assert values == {"T": pytest.approx(0.134047, abs=1e-6), "R": pytest.approx(-0.087), "A": pytest.approx(-0.256723, abs=1e-6)}
    assert list(values) == ["T", "R", "A"]


def test_local_search_finds_the_exhaustive_optimum(monkeypatch):
    """On a scenario small enough to search exhaustively (2 proxies x 3 phases, 729 plans), the local
    search used for larger ones reaches the same best plan."""
    sc = load_scenario("loss_landscape")
    (top, a), *_ = best_fixed(sc)[0]
    monkeypatch.setattr(advice, "EXHAUSTIVE_PLANS", 0)
    ranked, searched, exhaustive = best_fixed(sc)
    assert not exhaustive and searched < 729
    assert ranked[0][1].expected_return == pytest.approx(a.expected_return, abs=1e-12)


def test_advise_cli_names_the_flip_and_writes_json(tmp_path):
    path = tmp_path / "hand.yaml"
    path.write_text(yaml.safe_dump(hand_scenario()))
    out = run_cli("advise", str(path), "--json", str(tmp_path / "a.json"))
    assert out.returncode == 0, out.stderr
    assert "Best fixed regimen (every plan, 3 analysed): plan T" in out.stdout
    assert f"reward.misaligned > {crossing():.4g}" in out.stdout  # T stays ahead of R unless misaligned pays more
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["best_fixed"]["plan"] == "T" and data["flips_against"] == "R"
    assert data["optimal_value"] >= data["best_fixed"]["expected_return"] - 1e-12
    (phase,) = data["optimal_first_run"]
    assert phase["reached"] == pytest.approx(1.0) and sum(phase["usages"]["ask"].values()) == pytest.approx(1.0)
    by = {f["path"]: f for f in data["flips"]}
    assert by["reward.misaligned"]["flips"][0] == pytest.approx(crossing(), abs=1e-4)


def test_a_screened_regimen_is_written_as_the_cli_reads_it():
    """The regimen advise names for `proxygym flips --plan '...'` parses back to itself (two proxies, two screens)."""
    from proxygym.agents.advice import _regimen_text
    from proxygym.agents.sweep import parse_regimen_text
    from proxygym.envs.regimen import make_regimen

    sc = load_scenario("loss_landscape")
    regimen = make_regimen(sc, "TR,RR,AA", screen={1: "all", 2: "ask_if_aligned"})
    text = _regimen_text(sc, regimen)
    assert "'" not in text and parse_regimen_text(sc, text) == regimen
