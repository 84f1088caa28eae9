"""Shared helpers for the tests: running the CLI as a subprocess, playing regimens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m proxygym ARGS`` in a subprocess, as a user would (the installed package, no PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-m", "proxygym", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def z_value(confidence: float, comparisons: int = 1) -> float:
    """Two-sided normal quantile for a family of ``comparisons`` intervals at ``confidence`` (Bonferroni)."""
    alpha = (1.0 - confidence) / comparisons
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def within_interval(successes: int, n: int, p: float, z: float) -> bool:
    """Is the frequency successes/n inside the normal interval of a binomial(n, p) at quantile z?

    A continuity correction of 1/(2n) keeps it honest when p is 0 or 1.
    """
    half = z * (p * (1.0 - p) / n) ** 0.5 + 0.5 / n
    return abs(successes / n - p) <= half


@pytest.fixture(scope="session")
def shipped():
    from proxygym.envs.scenario import load_scenario, shipped_scenarios

    return [load_scenario(n) for n in shipped_scenarios()]
