"""Plain helpers shared by the test modules: scenarios built by hand, hypothesis strategies,
running the CLI as a subprocess, and the Bonferroni quantile of the Monte Carlo suite
(its checks are written once, in test_monte_carlo.py).

Test modules import from here (never from one another, nor from conftest.py); the fixtures
live in conftest.py. Hypothesis strategies must be importable when a test is decorated, so
they are here rather than in fixtures.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
from hypothesis import strategies as st

from proxygym.envs.scenario import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
#: The keys of ``proxygym analyze --json`` (one regimen).
ANALYSIS_KEYS = {
    "base_rate", "p_pass_aligned", "p_pass_misaligned", "likelihood_ratio", "prior_odds", "posterior_odds",
    "p_pass", "expected_runs", "expected_compute", "p_deploy_aligned", "p_deploy_misaligned", "p_abstain",
    "expected_return",
}
SIG1 = 1.0 / (1.0 + math.exp(-1.0))  # sigmoid(1) = 0.7310586


# -- the CLI ------------------------------------------------------------------------------------
def run_cli_here(*args: str) -> subprocess.CompletedProcess:
    """``proxygym ARGS`` through ``proxygym.cli.main`` in this process, stdout and stderr captured: the CLI's
    own code, without the start of a new interpreter for each call (:func:`run_cli` runs it as a user does,
    in a subprocess; the modules that check many outputs of one command use this)."""
    import contextlib
    import io

    from proxygym.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # a usage error, from the parser
            code = exit_.code
    return subprocess.CompletedProcess(["proxygym", *args], code, out.getvalue(), err.getvalue())


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m proxygym ARGS`` in a subprocess, as a user would (the installed package, no PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-m", "proxygym", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def error_line(returncode: int, stdout: str, stderr: str, context=None) -> str:
    """The one line a refused command prints: exit code 2, exactly one line on stderr, no traceback, nothing on stdout."""
    lines = stderr.strip().splitlines()
    assert returncode == 2, (context, returncode, stdout, stderr)
    assert len(lines) == 1 and "Traceback" not in stderr and stdout == "", (context, stderr)
    return lines[0]


def run_concurrently(calls, workers: int = 3) -> list:
    """Call each of ``calls`` (functions of no argument, each running a subprocess) a few at a time;
    their results, in order. The subprocesses are real runs; only the waiting is shared."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


# -- statistics ----------------------------------------------------------------------------------
def z_value(confidence: float, comparisons: int = 1) -> float:
    """Two-sided normal quantile for a family of ``comparisons`` intervals at ``confidence`` (Bonferroni)."""
    alpha = (1.0 - confidence) / comparisons
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


# -- scenarios by hand -----------------------------------------------------------------------------
def within_interval(successes: int, n: int, p: float, z: float) -> bool:
    """Is the frequency successes/n inside the normal interval of a binomial(n, p) at quantile z?

    A continuity correction of 1/(2n) keeps it honest when p is 0 or 1.
    """
    half = z * (p * (1.0 - p) / n) ** 0.5 + 0.5 / n
    return abs(successes / n - p) <= half


def hand_scenario(**over) -> dict:
    """One proxy, one phase: the case worked by hand in test_analysis.py (as a dict, before parsing)."""
    data = {
        "name": "hand",
        "title": "hand-worked",
        "claim": "a case small enough to compute on paper",
        "budget": 2,
        "reward": {"aligned": 1.0, "misaligned": -1.0, "abstain": 0.0, "run_cost": 0.1},
        "phases": [{"name": "only", "capability": 0.0, "plasticity": 0.5}],
        "ideas": [{"name": "idea", "base_rate": 0.4}],
        "proxies": [
            {
                "name": "ask",
                "sensitivity": 0.9,
                "false_pass": 0.2,
                "steer": 0.4,
                "incentive": 1.0,
                "native": 0.0,
                "anti_strength": 1.0,
                "anti_damage": 0.5,
                "proximity": 0.5,
                "difficulty": 10.0,
                "sharpness": 10.0,
            }
        ],
    }
    data.update(over)
    return data


def mixed_scenario(**over):
    """Two proxies, three phases, three ideas whose base-rate priors have 1, 2 and 3 support values."""
    data = hand_scenario(
        budget=3,
        phases=[
            {"name": "a", "capability": 0.2, "plasticity": 0.6},
            {"name": "b", "capability": 0.6, "plasticity": 0.3},
            {"name": "c", "capability": 1.0, "plasticity": 0.1},
        ],
        ideas=[
            {"name": "known", "base_rate": 0.3, "drift": 0.1},
            {"name": "coin", "base_rate": {"values": [0.0, 1.0], "probs": [0.6, 0.4]}},
            {"name": "three", "base_rate": {"values": [0.1, 0.5, 0.9], "probs": [0.2, 0.5, 0.3]}, "drift": 0.2},
        ],
    )
    second = dict(data["proxies"][0], name="probe", sensitivity=0.8, false_pass=0.3, steer=-0.2, native=-1.0,
                  anti_damage=0.2, proximity=0.3, difficulty=0.7, sharpness=5.0)
    data["proxies"].append(second)
    data.update(over)
    return parse_scenario(data)


def compute_scenario(**over):
    """Two phases of unequal cost under a compute budget that an early discard stretches: a full run
    costs 4, 9 units allow two full runs, or up to three runs when some are discarded at checkpoint 1."""
    data = {
        "name": "compute", "title": "t", "claim": "c", "compute": 9,
        "reward": {"aligned": 1.0, "misaligned": -1.0, "abstain": -0.3, "run_cost": 0.02},
        "phases": [{"name": "early", "capability": 0.2, "plasticity": 0.6, "cost": 1},
                   {"name": "late", "capability": 1.2, "plasticity": 0.2, "cost": 3}],
        "ideas": [{"name": "default", "base_rate": {"values": [0.2, 0.6], "probs": [0.5, 0.5]}}],
        "proxies": [{"name": "honeypot", "sensitivity": 0.9, "false_pass": 0.2, "difficulty": 0.8, "sharpness": 8.0,
                     "persistence": 0.6, "steer": 0.3, "proximity": 0.2, "native": -1.0}],
    }
    data.update(over)
    return parse_scenario(data)


def tiny(T: int = 1, budget: int = 1, ideas=None, k: int = 1, **over):
    """hand_scenario, with a second phase where capability lets misaligned models fake the test,
    an abstain reward below 0, and up to two proxies that differ (the exact solver's small cases)."""
    data = hand_scenario(budget=budget, **over)
    data["reward"] = {"aligned": 1.0, "misaligned": -1.0, "abstain": -0.3, "run_cost": 0.1}
    data["phases"] = [
        {"name": "early", "capability": 0.0, "plasticity": 0.5},
        {"name": "late", "capability": 0.8, "plasticity": 0.2},
        {"name": "last", "capability": 1.0, "plasticity": 0.1},
    ][:T]
    data["proxies"][0].update(difficulty=0.7, sharpness=8.0)
    if k == 2:
        data["proxies"].append(
            {"name": "probe", "sensitivity": 0.7, "false_pass": 0.3, "steer": -0.2, "native": -1.0, "proximity": 0.3}
        )
    if ideas is not None:
        data["ideas"] = ideas
    return parse_scenario(data)


KNOWN = [{"name": "idea", "base_rate": 0.4}]
PRIOR = [{"name": "idea", "base_rate": {"values": [0.1, 0.8], "probs": [0.6, 0.4]}}]
TWO = [
    {"name": "sure", "base_rate": 0.35, "drift": 0.1},
    {"name": "gamble", "base_rate": {"values": [0.0, 0.8], "probs": [0.6, 0.4]}},
]


def random_valid_actions(rng: np.random.Generator, masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """A verdict uniform over the allowed ones, usages and idea uniform."""
    actions = np.floor(rng.random((len(masks), len(nvec))) * nvec).astype(np.int64)
    actions[:, 0] = np.argmax(rng.random((len(masks), 3)) * masks[:, :3], axis=1)
    return actions


# -- random valid scenarios (hypothesis) ---------------------------------------------------------------
unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def scenarios(draw, max_phases: int = 3, max_proxies: int = 2, max_ideas: int = 2):
    T = draw(st.integers(1, max_phases))
    k = draw(st.integers(1, max_proxies))
    m = draw(st.integers(1, max_ideas))
    ideas = []
    for i in range(m):
        if draw(st.booleans()):
            values = draw(st.lists(unit, min_size=1, max_size=3))
            raw = draw(st.lists(st.floats(0.1, 1.0), min_size=len(values), max_size=len(values)))
            probs = [r / sum(raw) for r in raw]
            probs[-1] = 1.0 - sum(probs[:-1])
            base = {"values": values, "probs": probs}
        else:
            base = draw(unit)
        ideas.append({"name": f"i{i}", "base_rate": base, "drift": draw(st.floats(0.0, 0.3))})
    proxies = [
        {
            "name": f"p{j}",
            "sensitivity": draw(unit),
            "false_pass": draw(unit),
            "steer": draw(st.floats(-1.0, 1.0)),
            "incentive": draw(st.floats(0.0, 5.0)),
            "native": draw(st.floats(-10.0, 10.0)),
            "anti_strength": draw(st.floats(0.0, 5.0)),
            "anti_damage": draw(unit),
            "proximity": draw(unit),
            "difficulty": draw(st.floats(-1.0, 2.0)),
            "sharpness": draw(st.floats(0.1, 20.0)),
        }
        for j in range(k)
    ]
    phases = [
        {"name": f"t{t}", "capability": draw(st.floats(0.0, 2.0)), "plasticity": draw(unit)} for t in range(T)
    ]
    data = {
        "name": "random",
        "title": "random",
        "claim": "random",
        "budget": draw(st.integers(1, 5)),
        "phases": phases,
        "ideas": ideas,
        "proxies": proxies,
    }
    return parse_scenario(data)


def hand_outcomes():
    """((P(deploy A), P(deploy M), runs) of plan R, the same of plan T) in the hand case (hand_scenario,
    budget 2), from the formulas worked in tests/test_sweep.py's docstring."""
    s = 0.5 * SIG1
    pa, pm = 0.52 * (s + (1 - s) * 0.9), 0.48 * (s + (1 - s) * 0.2)
    f = 1 - pa - pm
    t = (pa + f * 0.52, pm + f * 0.48, 1 + f)
    return (0.526, 0.474, 1.39), t


def crossing() -> float:
    """The misaligned reward x at which T's and R's returns are equal."""
    (ra, rm, rr), (ta, tm, tr) = hand_outcomes()
    return -((ta - ra) - 0.1 * (tr - rr)) / (tm - rm)
