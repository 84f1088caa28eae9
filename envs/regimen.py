"""Regimens: the usages of a proxy, the plan grammar, and a fixed way of running a whole program.

A regimen fixes, before anything is observed, how each phase uses each proxy (the plan),
which proxies must pass at which checkpoints for a run to be kept, which idea every run
uses, the budget, and what happens when the budget is spent with no pass. The exact
analysis (:mod:`proxygym.envs.analysis`) scores one; :class:`proxygym.agents.regimen.RegimenAgent`
plays one.

This module needs only a scenario's names and sizes (its ``phases``, ``proxy_names``,
``idea_names``, ``budget`` and ``source``), so the scenario schema can check the regimens
its ``expect`` entries name while it loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from proxygym.envs.errors import ScenarioError

#: The usages of a proxy in a phase, by code; the letter of each in a plan.
RESERVE, TRAIN, ANTI = 0, 1, 2
USAGE_LETTERS = "RTA"
USAGE_NAMES = ("reserve", "train", "anti")

#: A plan: groups of usage letters, one group per phase, separated by commas.
PLAN_PATTERN = re.compile(r"^[RTA]+(,[RTA]+)*$")
#: The most runs a program may start, and the most compute it may be given.
MAX_BUDGET = 1000
MAX_COMPUTE = 100_000
FALLBACKS = ("deploy", "abstain")
#: ``Regimen.idea`` for a regimen whose every run draws its idea uniformly at random (written ``random``).
RANDOM_IDEA = -1
RANDOM_IDEA_NAME = "random"


def can_start(runs_used, compute_left, budget: int, compute: int | None, full_run: int):
    """Whether a program may start another run (docs/model.md, "Budgets"): fewer than ``budget`` runs
    started and, with a compute budget, at least one full run's compute (``full_run``) left.
    Scalars give a bool, arrays an array."""
    ok = np.asarray(runs_used) < budget
    if compute is not None:
        ok = ok & (np.asarray(compute_left) >= full_run)
    return bool(ok) if np.ndim(ok) == 0 else ok


@dataclass(frozen=True)
class Regimen:
    """A fixed way of running the whole program.

    Attributes:
        plan: ``(T, k)`` usage of each proxy in each phase (RESERVE, TRAIN or ANTI).
        test: proxies (indices) that must all pass at the final checkpoint.
        screen: ``{checkpoint d (1..T-1): proxies}`` that must all pass at checkpoint d,
            else the run is discarded there (early rejection).
        idea: the idea every run uses, or RANDOM_IDEA: each run's idea drawn uniformly at random
            among the scenario's ideas (rejection sampling over ideas chosen blindly).
        budget: the most runs started.
        compute: the compute the program may spend (None: runs are counted by ``budget`` alone);
            a run may start only while at least one full run's compute is left.
        fallback: ``"deploy"``: the last run is deployed whatever its tests show (it is
            never discarded); ``"abstain"``: a last run that fails is discarded.
    """

    plan: tuple[tuple[int, ...], ...]
    test: tuple[int, ...]
    screen: tuple[tuple[int, tuple[int, ...]], ...] = ()
    idea: int = 0
    budget: int = 1
    fallback: str = "deploy"
    compute: int | None = None

    @property
    def plan_array(self) -> np.ndarray:
        return np.array(self.plan, dtype=np.int64)

    def describe(self, scenario) -> str:
        """The regimen in words, with the scenario's names."""
        names = scenario.proxy_names
        test = "+".join(names[j] for j in self.test) or "none"
        out = f"plan {plan_text(self.plan)}, test {test}"
        for d, proxies in self.screen:
            out += f", screen {'+'.join(names[j] for j in proxies)} at checkpoint {d}"
        out += f", idea {idea_text(scenario, self.idea)}, budget {self.budget}"
        if self.compute is not None:
            out += f", compute {self.compute}"
        return out + f", fallback {self.fallback}"

    def to_dict(self, scenario) -> dict:
        """The regimen with the scenario's names, for JSON: ``plan`` (text), ``test`` and per early
        checkpoint ``screen`` (proxy names), ``idea``, ``budget``, ``compute`` (null: no compute budget),
        ``fallback`` and ``text`` (:meth:`describe`)."""
        names = scenario.proxy_names
        return {
            "plan": plan_text(self.plan),
            "test": [names[j] for j in self.test],
            "screen": {str(d): [names[j] for j in proxies] for d, proxies in self.screen},
            "idea": idea_text(scenario, self.idea),
            "budget": self.budget,
            "compute": self.compute,
            "fallback": self.fallback,
            "text": self.describe(scenario),
        }


def idea_text(scenario, idea: int) -> str:
    """The name of idea index ``idea``, or ``random`` for RANDOM_IDEA."""
    return RANDOM_IDEA_NAME if idea == RANDOM_IDEA else scenario.idea_names[idea]


def plan_text(plan) -> str:
    """``"TR,TR,RR"`` from per-phase, per-proxy usage codes."""
    return ",".join(usage_letters(row) for row in plan)


def usage_letters(usage) -> str:
    """``"TR"`` from one phase's usage codes."""
    return "".join(USAGE_LETTERS[int(u)] for u in usage)


def parse_plan(scenario, text: str) -> tuple[tuple[int, ...], ...]:
    """Parse ``"TR,TR,RR"`` into per-phase, per-proxy usages.

    One group alone applies to every phase, and a group of one letter to every proxy:
    with two proxies and three phases, ``"R"`` is ``"RR,RR,RR"`` and ``"T,R,R"`` is
    ``"TT,RR,RR"``.
    """
    T, k = len(scenario.phases), len(scenario.proxy_names)
    text = text.strip()
    allowed = f"{T} groups (one per phase: {', '.join(p.name for p in scenario.phases)}) or one group for all phases"
    if not PLAN_PATTERN.match(text):
        raise ScenarioError(
            f"{scenario.source}: plan {text!r}: use the letters R (reserve), T (train), A (anti), one per proxy"
            f" ({', '.join(scenario.proxy_names)}), in comma-separated groups: {allowed}"
        )
    groups = text.split(",")
    if len(groups) == 1:
        groups = groups * T
    if len(groups) != T:
        raise ScenarioError(f"{scenario.source}: plan {text!r} has {len(groups)} groups; it needs {allowed}")
    groups = [g * k if len(g) == 1 else g for g in groups]  # one letter: every proxy alike
    for g in groups:
        if len(g) != k:
            raise ScenarioError(
                f"{scenario.source}: plan {text!r}: group {g!r} has {len(g)} letters; it needs {k},"
                f" one per proxy ({', '.join(scenario.proxy_names)})"
            )
    return tuple(tuple(USAGE_LETTERS.index(c) for c in g) for g in groups)


def parse_proxies(scenario, text: str | None, what: str = "test set") -> tuple[int, ...]:
    """Parse a comma-separated list of proxy names; ``None`` or ``"all"`` is every proxy, ``"none"`` is none."""
    names = scenario.proxy_names
    if text is None or text.strip().lower() == "all":
        return tuple(range(len(names)))
    if text.strip().lower() == "none":
        return ()
    out = []
    for name in (n.strip() for n in text.split(",")):
        if name not in names:
            raise ScenarioError(
                f"{scenario.source}: unknown proxy {name!r} in {what} {text!r}; proxies are {', '.join(names)}"
                " (or 'all', or 'none')"
            )
        out.append(names.index(name))
    return tuple(sorted(set(out)))


def make_regimen(
    scenario,
    plan: str,
    test: str | None = None,
    screen: dict[int, str] | None = None,
    idea: str | None = None,
    budget: int | None = None,
    fallback: str = "deploy",
    compute: int | None = None,
) -> Regimen:
    """Build a :class:`Regimen` from the strings a user writes (CLI or scenario ``expect``)."""
    T = len(scenario.phases)
    screens = []
    for d, names in sorted((screen or {}).items()):
        if not 1 <= int(d) <= T - 1:
            early = f"early checkpoints are 1..{T - 1}" if T > 1 else "with one phase there is no early checkpoint"
            raise ScenarioError(
                f"{scenario.source}: screen at checkpoint {d}: {early} (the final checkpoint's test is the test set)"
            )
        screens.append((int(d), parse_proxies(scenario, names, f"the screen at checkpoint {d}")))
    if fallback not in FALLBACKS:
        raise ScenarioError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if budget is not None and not 1 <= int(budget) <= MAX_BUDGET:
        raise ScenarioError(f"budget must be a whole number from 1 to {MAX_BUDGET}, got {budget!r}")
    full_run = scenario.full_run_compute
    if compute is not None and not full_run <= int(compute) <= MAX_COMPUTE:
        raise ScenarioError(
            f"compute must be a whole number from {full_run} (one full run) to {MAX_COMPUTE}, got {compute!r}"
        )
    if idea is None:
        idea_index = 0
    elif idea in scenario.idea_names:
        idea_index = scenario.idea_names.index(idea)
    elif idea == RANDOM_IDEA_NAME:
        idea_index = RANDOM_IDEA if len(scenario.idea_names) > 1 else 0  # one idea: drawing it is choosing it
    else:
        raise ScenarioError(
            f"{scenario.source}: unknown idea {idea!r}; ideas are {', '.join(scenario.idea_names)}"
            f" (or {RANDOM_IDEA_NAME!r}: each run's idea drawn uniformly at random)"
        )
    return Regimen(
        plan=parse_plan(scenario, plan),
        test=parse_proxies(scenario, test),
        screen=tuple(screens),
        idea=idea_index,
        budget=scenario.budget if budget is None else int(budget),
        fallback=fallback,
        compute=scenario.compute if compute is None else int(compute),
    )


def regimen_from_spec(scenario, spec) -> Regimen:
    """The regimen of a scenario file's regimen mapping (``{plan, test, screen, idea, budget, compute, fallback}``)."""
    return make_regimen(scenario, spec.plan, spec.test, spec.screen, spec.idea, spec.budget, spec.fallback, spec.compute)
