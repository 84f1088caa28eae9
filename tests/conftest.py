"""Fixtures shared by the test modules. Plain helpers live in tests/helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shipped():
    """Every shipped scenario, loaded."""
    from proxygym.envs.scenario import load_scenario, shipped_scenarios

    return [load_scenario(n) for n in shipped_scenarios()]


@pytest.fixture(scope="session")
def solutions(shipped):
    """The exact solver's solution of every shipped scenario, by name (solved once for the whole session)."""
    from proxygym.agents.solver import solve

    return {sc.name: solve(sc) for sc in shipped}
