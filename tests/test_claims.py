"""The forms of a scenario's ``expect`` claims against hand-worked values, and their robustness to persistence.

The numbers are those of test_analysis.py's hand-worked case (one proxy, plan R: P(pass | M)
= 0.4, base rate 0.4; plan T: base rate 0.52, P(pass | M) = 0.492423), and of the same case
with two phases, worked below.
"""

from __future__ import annotations

import json

import pytest
import yaml

from proxygym.agents.claims import check_claims, with_persistence
from proxygym.envs.errors import ScenarioError
from proxygym.envs.scenario import parse_scenario
from tests.helpers import SIG1, hand_scenario, run_cli

TWO_PHASES = [{"name": "one", "capability": 0.0, "plasticity": 0.5}, {"name": "two", "capability": 0.0, "plasticity": 0.5}]


def claims_of(expect: list[dict], **over) -> list:
    return check_claims(parse_scenario(hand_scenario(expect=expect, **over)))


def test_recall_and_misaligned_passes_by_hand():
    """Plan R: recall = 1 - 0.4 = 0.6, P(misaligned and passes) = 0.6 * 0.4 = 0.24.
    Plan T: recall = 1 - 0.492423, P(misaligned and passes) = 0.48 * 0.492423 = 0.236363."""
    ppm_t = 0.5 * SIG1 + (1 - 0.5 * SIG1) * 0.2
    c_r, c_t, c_lower = claims_of([
        {"value": "R", "metric": "recall", "within": [0.6, 0.6]},
        {"value": "T", "metric": "p_misaligned_pass", "within": [0.48 * ppm_t - 1e-12, 0.48 * ppm_t + 1e-12]},
        {"better": "T", "than": "R", "metric": "p_misaligned_pass"},  # lower is better
    ])
    assert c_r.values == ((pytest.approx(0.6),),) and c_r.holds
    assert c_t.holds and c_t.values[0][0] == pytest.approx(0.236363, abs=1e-6)
    assert c_lower.holds


def test_checkpoint_claims_by_hand():
    """Two phases like the hand case's, plan R, no drift: P(A) stays 0.4. Shaping: pressure 0, so a model
    enters the passing basin with 0.5 * sigmoid(0) = 0.25 a phase and leaves it with 0.25. Shaped after
    one phase with 0.25, after two with 0.25 * 0.75 + 0.75 * 0.25 = 0.375, so P(pass | M) is
    0.25 + 0.75 * 0.2 = 0.4 at checkpoint 1 and 0.375 + 0.625 * 0.2 = 0.5 at checkpoint 2 (recall 0.6,
    then 0.5), and P(pass | A) at checkpoint 2 is 0.375 + 0.625 * 0.9 = 0.9375 (likelihood ratio 1.875)."""
    claims = claims_of([
        {"value": "R", "metric": "recall", "checkpoint": "all", "within": [0.44, 0.61]},
        {"value": "R", "metric": "recall", "checkpoint": "all", "within": [0.55, 1.0]},
        {"value": "R", "metric": "recall", "checkpoint": 1, "within": [0.55, 1.0]},
        {"value": "R", "metric": "likelihood_ratio", "checkpoint": 2, "within": [1.875 - 1e-9, 1.875 + 1e-9]},
        {"better": "R", "than": "T", "metric": "recall", "checkpoint": 2},
    ], phases=TWO_PHASES)
    every, every_strict, first, ratio, order = claims
    assert every.values[0] == (pytest.approx(0.6), pytest.approx(0.5))
    assert every.holds is True and every_strict.holds is False and first.holds is True
    assert "0.6000, 0.5000" in every_strict.text
    assert ratio.holds is True
    assert order.holds is True


def test_better_by_a_margin():
    """T raises the base rate from 0.4 to 0.52: by at least 0.1, not by at least 0.13."""
    by_01, by_013 = claims_of([
        {"better": "T", "than": "R", "metric": "base_rate", "by": 0.1},
        {"better": "T", "than": "R", "metric": "base_rate", "by": 0.13},
    ])
    assert by_01.holds is True and by_013.holds is False
    assert "by at least 0.13" in by_013.text


def test_robustness_to_persistence_by_hand():
    """No shaping (proximity 0): a misaligned model passes each checkpoint with 0.2. Screened at
    checkpoint 1 and tested at 2, it passes both with 0.2^2 = 0.04 when results are fresh coins
    (persistence 0) and with 0.2 when they are a lasting property (persistence 1)."""
    data = hand_scenario(phases=TWO_PHASES, expect=[
        {"value": {"plan": "R", "screen": {1: "ask"}}, "metric": "p_pass_misaligned", "within": [0.0, 0.1]},
    ])
    data["proxies"][0]["proximity"] = 0.0
    sc = parse_scenario(data)
    (claim,) = check_claims(sc, robustness=(0.0, 1.0))
    assert claim.values[0][0] == pytest.approx(0.04)
    assert claim.holds is True and claim.robust == {0.0: True, 1.0: False}
    (at_one,) = check_claims(with_persistence(sc, 1.0))
    assert at_one.values[0][0] == pytest.approx(0.2)


@pytest.mark.parametrize("entry, words", [
    ({"value": "R", "metric": "recall", "checkpoint": 3, "within": [0, 1]}, "checkpoints are 1..2"),
    ({"value": "R", "metric": "recall", "checkpoint": 1, "proxy": "nope", "within": [0, 1]}, "unknown proxy 'nope'"),
    ({"value": "always_reserve", "metric": "recall", "checkpoint": 1, "within": [0, 1]}, "name a plan or a regimen mapping"),
    ({"value": "R", "metric": "expected_return", "checkpoint": 1, "within": [0, 1]}, "is not read at a checkpoint"),
    ({"value": "R", "metric": "recall"}, "'within: [lo, hi]' goes with 'value'"),
    ({"same": ["R", "T"], "metric": "recall", "by": 0.1}, "'by' goes with 'better'"),
    ({"value": "R", "metric": "recall", "within": [0.5, 0.1]}, "lo <= hi"),
    ({"value": "R", "better": "R", "than": "T"}, "exactly one form"),
    ({"value": {"plan": "R", "compute": 1}, "metric": "recall", "within": [0, 1]}, "compute must be a whole number from 2"),
])
def test_bad_claims_are_one_line_errors(entry, words):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(hand_scenario(phases=TWO_PHASES, expect=[entry]))
    assert words in str(err.value) and "\n" not in str(err.value).strip()


def test_a_claim_sets_its_own_compute():
    """Two phases of cost 1, no screen: with compute 2 one run fits (it ships whatever it shows: fallback deploy),
    with compute 4 two do, as with a run budget of 1 and of 2."""
    claims = claims_of([
        {"same": [{"plan": "R", "compute": 2}, {"plan": "R", "budget": 1}], "metric": "expected_return", "tolerance": 1e-12},
        {"same": [{"plan": "R", "compute": 4}, {"plan": "R", "budget": 2}], "metric": "expected_return", "tolerance": 1e-12},
    ], phases=TWO_PHASES, budget=1000)
    assert all(c.holds for c in claims), [c.text for c in claims]


def test_claims_cli_reports_robustness_and_writes_json(tmp_path):
    data = hand_scenario(name="robust", phases=TWO_PHASES, expect=[
        {"value": {"plan": "R", "screen": {1: "ask"}}, "metric": "p_pass_misaligned", "within": [0.0, 0.1]},
    ])
    data["proxies"][0]["proximity"] = 0.0
    path = tmp_path / "robust.yaml"
    path.write_text(yaml.safe_dump(data))
    out = run_cli("claims", str(path), "--json", str(tmp_path / "claims.json"))
    assert out.returncode == 0, out.stderr
    assert "at persistence 0: holds, 1: fails" in out.stdout and "All 1 claims hold." in out.stdout
    (row,) = json.loads((tmp_path / "claims.json").read_text())
    assert row["holds"] is True and row["holds_at_persistence"] == {"0": True, "1": False}
    assert row["values"][0][0] == pytest.approx(0.04)
