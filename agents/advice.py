"""Advice in words: what to do with each proxy in each phase, by how much it wins, and what would change it.

:func:`advise` puts together, for one scenario, the best fixed regimen (searched over plans by
the exact analysis), the exact optimal policy's first run (the solver), the log-odds split of
the best regimen against plain rejection sampling, and the nearest flip points
(:func:`proxygym.agents.sweep.flips`). :func:`advice_text` writes it for a lab lead.

The search over plans: every plan (each proxy's usage in each phase) when there are at most
``EXHAUSTIVE_PLANS`` of them, tested on every proxy at the end, no screen; else a local search
from each constant plan (change one phase's usage of one proxy at a time while that improves).
The best plan is then offered each single early screen of every proxy, kept where it helps.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from proxygym.agents.report import first_run
from proxygym.agents.solver import optimum
from proxygym.agents.sweep import Flips, flips
from proxygym.envs.analysis import Analysis, analyze, compare
from proxygym.envs.regimen import USAGE_LETTERS, USAGE_NAMES, Regimen, make_regimen, plan_text
from proxygym.envs.scenario import Scenario

#: Up to this many plans, the search tries them all.
EXHAUSTIVE_PLANS = 6561
#: Flip points shown (the nearest ones).
SHOWN_FLIPS = 4


@dataclass
class Advice:
    """What :func:`advise` found. ``ranked``: (regimen, analysis) of the best fixed regimens, best first."""

    scenario: Scenario
    ranked: list[tuple[Regimen, Analysis]]
    reserve: Analysis
    first_model: Analysis
    optimal_value: float | None
    optimal_phases: list[dict] | None  # per phase: {"phase", "reached", "usages": {proxy: {letter: share}}}
    against: str  # the regimen the flips are computed against
    flips: list[Flips] = field(default_factory=list)
    searched: int = 0
    exhaustive: bool = True
    worlds: "list[WorldAdvice]" = field(default_factory=list)  # with ``worlds:`` in the scenario

    @property
    def value_of_knowing_the_world(self) -> dict:
        """What being told the world before the first run is worth (the expected value of perfect information):
        to a fixed plan, ``sum_w P(w) max_plan V_w(plan)`` less the best fixed regimen's return (the worlds
        weighted); to the optimal policy, ``sum_w P(w) V*_w`` less its value (None where a world or the
        whole was not solved). Empty without worlds."""
        if not self.worlds:
            return {}
        fixed = sum(w.weight * w.best_return for w in self.worlds) - self.best[1].expected_return
        told = [w.optimal_value for w in self.worlds]
        optimal = None if self.optimal_value is None or None in told else \
            sum(w.weight * v for w, v in zip(self.worlds, told)) - self.optimal_value
        return {"fixed": fixed, "optimal": optimal}

    @property
    def best(self) -> tuple[Regimen, Analysis]:
        return self.ranked[0]

    def to_dict(self) -> dict:
        sc = self.scenario
        best, a = self.best
        return {
            "scenario": sc.name,
            "best_fixed": {**best.to_dict(sc), "expected_return": a.expected_return},
            "runners_up": [{**r.to_dict(sc), "expected_return": x.expected_return} for r, x in self.ranked[1:]],
            "reserve_expected_return": self.reserve.expected_return,
            "first_model_expected_return": self.first_model.expected_return,
            "against_reserve": compare(a, self.reserve),
            "optimal_value": self.optimal_value,
            "optimal_first_run": self.optimal_phases,
            "flips_against": self.against,
            "flips": [f.to_dict() for f in self.flips if f.flips],
            "plans_searched": self.searched,
            "exhaustive": self.exhaustive,
            **({"worlds": [w.to_dict(sc) for w in self.worlds],
                "value_of_knowing_the_world": self.value_of_knowing_the_world} if self.worlds else {}),
        }


@dataclass
class WorldAdvice:
    """One world of a scenario with ``worlds:``: its prior ``weight``, the best fixed regimen were it known to
    hold (``best``, ``best_return``), what the robust choice (the best fixed regimen under the prior) returns
    in it, and the optimal policy's value there (None if not solved)."""

    name: str
    weight: float
    best: Regimen
    best_return: float
    robust_return: float
    optimal_value: float | None

    def to_dict(self, scenario: Scenario) -> dict:
        return {"name": self.name, "weight": self.weight,
                "best_fixed": {**self.best.to_dict(scenario), "expected_return": self.best_return},
                "robust_expected_return": self.robust_return, "optimal_value": self.optimal_value}


def world_advice(scenario: Scenario, robust: Regimen, with_optimal: bool) -> list[WorldAdvice]:
    """Per world, the best fixed regimen there (the same search as :func:`best_fixed`), the robust choice's
    return there, and the optimum there (each world is a scenario of its own)."""
    out = []
    for world, sc in zip(scenario.worlds, scenario.world_scenarios):
        (best, a), *_ = best_fixed(sc, keep=1)[0]
        solution = optimum(sc) if with_optimal else None
        out.append(WorldAdvice(world.name, world.weight, best, a.expected_return, analyze(sc, robust).expected_return,
                               None if solution is None else solution.value))
    return out


def _plans(scenario: Scenario) -> list[str]:
    T, k = len(scenario.phases), len(scenario.proxies)
    groups = ["".join(g) for g in itertools.product(USAGE_LETTERS, repeat=k)]
    return [",".join(p) for p in itertools.product(groups, repeat=T)]


def _local_search(scenario: Scenario, score) -> tuple[list[str], int]:
    """Plans visited by coordinate ascent from each constant plan; returns them and the count analysed."""
    T, k = len(scenario.phases), len(scenario.proxies)
    seen: dict[str, float] = {}

    def value(grid) -> float:
        text = ",".join("".join(row) for row in grid)
        if text not in seen:
            seen[text] = score(text)
        return seen[text]

    for letter in USAGE_LETTERS:
        grid = [[letter] * k for _ in range(T)]
        best = value(grid)
        improved = True
        while improved:
            improved = False
            for t, j, u in itertools.product(range(T), range(k), USAGE_LETTERS):
                trial = [row[:] for row in grid]
                trial[t][j] = u
                v = value(trial)
                if v > best + 1e-12:
                    grid, best, improved = trial, v, True
    return sorted(seen, key=lambda p: -seen[p]), len(seen)


def best_fixed(scenario: Scenario, keep: int = 3) -> tuple[list[tuple[Regimen, Analysis]], int, bool]:
    """The ``keep`` best fixed regimens by expected return (ties: the plan found first), how many plans were
    analysed, and whether the search was exhaustive."""
    cache: dict[str, Analysis] = {}

    def score(text: str) -> float:
        cache[text] = analyze(scenario, make_regimen(scenario, text))
        return cache[text].expected_return

    plans = _plans(scenario) if 3 ** (len(scenario.phases) * len(scenario.proxies)) <= EXHAUSTIVE_PLANS else None
    if plans is not None:
        for p in plans:
            score(p)
        order, searched, exhaustive = sorted(plans, key=lambda p: -cache[p].expected_return), len(plans), True
    else:
        order, searched = _local_search(scenario, score)
        exhaustive = False
    ranked = [(make_regimen(scenario, p), cache[p]) for p in order[:keep]]
    top, top_a = ranked[0]
    for d in range(1, len(scenario.phases)):  # one early screen on every proxy, where it helps
        trial = make_regimen(scenario, plan_text(top.plan), screen={d: "all"})
        a = analyze(scenario, trial)
        if a.expected_return > top_a.expected_return + 1e-12:
            top, top_a = trial, a
    if top is not ranked[0][0]:
        ranked.insert(0, (top, top_a))
    return ranked[:keep], searched, exhaustive


def optimal_phases(scenario: Scenario, solution) -> list[dict]:
    """Per phase, the share of the optimal policy's first runs that reach it and, among them, each proxy's usage shares."""
    points = first_run(solution, scenario)
    out = []
    for t, phase in enumerate(scenario.phases):
        here = [p for p in points if p["checkpoint"] == t and p["usages"] is not None]
        reached = sum(p["probability"] for p in here)
        usages = {}
        for name in scenario.proxy_names:
            shares = {}
            for p in here:
                letter = p["usages"][name]
                shares[letter] = shares.get(letter, 0.0) + p["probability"] / reached
            usages[name] = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
        out.append({"phase": phase.name, "reached": reached, "usages": usages})
    return out


def advise(scenario: Scenario, with_optimal: bool = True, progress: bool = False) -> Advice:
    ranked, searched, exhaustive = best_fixed(scenario)
    reserve = analyze(scenario, make_regimen(scenario, "R"))
    first = analyze(scenario, make_regimen(scenario, "R", test="none"))
    opt_value = opt_phases = None
    solution = optimum(scenario) if with_optimal else None  # None too where the scenario is too large to solve
    if solution is not None:
        opt_value, opt_phases = solution.value, optimal_phases(scenario, solution)
    best = ranked[0][0]
    best_text = _regimen_text(scenario, best)
    against = "R" if plan_text(best.plan) != plan_text(make_regimen(scenario, "R").plan) or best.screen else "T"
    found = [f for f in flips(scenario, best_text, against, progress=progress) if f.flips]
    worlds = world_advice(scenario, best, with_optimal) if scenario.worlds else []
    return Advice(scenario, ranked, reserve, first, opt_value, opt_phases, against, found, searched, exhaustive, worlds)


def _regimen_text(scenario: Scenario, regimen: Regimen) -> str:
    """The regimen as the flips search reads it: a plan, or a mapping when it screens."""
    if not regimen.screen:
        return plan_text(regimen.plan)
    names = scenario.proxy_names
    screens = ", ".join(f'{d}: "{",".join(names[j] for j in ps)}"' for d, ps in regimen.screen)
    return f'{{plan: "{plan_text(regimen.plan)}", screen: {{{screens}}}}}'


def _plan_words(scenario: Scenario, regimen: Regimen) -> list[str]:
    out = []
    for t, phase in enumerate(scenario.phases):
        parts = [f"{USAGE_NAMES[int(u)]} {name}" for name, u in zip(scenario.proxy_names, regimen.plan[t])]
        out.append(f"{phase.name}: {', '.join(parts)}")
    return out


def _flip_words(f: Flips) -> str:
    """``steer < 0.12`` or ``proximity > 0.61``: the side of the nearest flip away from the current value."""
    words = []
    for x in sorted(f.flips, key=lambda x: abs(x - f.value))[:2]:
        words.append(f"{f.path} {'<' if x < f.value else '>'} {x:.4g}")
    return " or ".join(words)


def advice_text(adv: Advice) -> str:
    sc = adv.scenario
    best, a = adv.best
    lines = [f"{sc.name}: {sc.title}", ""]
    how = "every plan" if adv.exhaustive else "a local search over plans"
    lines.append(f"Best fixed regimen ({how}, {adv.searched} analysed): {best.describe(sc)}")
    lines += [f"  {w}" for w in _plan_words(sc, best)]
    lines.append(f"  expected return {a.expected_return:.4f}; P(deploy aligned) {a.p_deploy_aligned:.4f},"
                 f" runs used {a.expected_runs:.2f}")
    for r, x in adv.ranked[1:]:
        lines.append(f"  runner-up: {r.describe(sc)}: {x.expected_return:.4f} (margin {a.expected_return - x.expected_return:.4f})")
    lines.append(f"  against plain rejection sampling (R, {adv.reserve.expected_return:.4f}):"
                 f" {a.expected_return - adv.reserve.expected_return:+.4f}; against the first model"
                 f" ({adv.first_model.expected_return:.4f}): {a.expected_return - adv.first_model.expected_return:+.4f}")
    c = compare(a, adv.reserve)
    b, lik = c["base_rate_log_impact"], c["likelihood_log_impact"]
    if b is not None and lik is not None and (abs(b) > 1e-12 or abs(lik) > 1e-12):
        bigger = "the base rate" if abs(b) >= abs(lik) else "the likelihood ratio"
        lines.append(f"  against R, in log posterior odds: base rate {b:+.3f}, likelihood ratio {lik:+.3f}: {bigger} decides")
    if adv.optimal_value is None:
        lines += ["", "The optimal policy: not solved (--no-optimal, or too large for the exact solver: proxygym solve says how large)."]
    else:
        lines.append("")
        lines.append(f"The optimal policy (adaptive, exact): expected return {adv.optimal_value:.4f},"
                     f" {adv.optimal_value - a.expected_return:+.4f} over the best fixed regimen. Its first run:")
        for ph in adv.optimal_phases:
            if ph["reached"] <= 0.0:
                continue
            uses = "; ".join(f"{name} " + ", ".join(f"{USAGE_NAMES[USAGE_LETTERS.index(u)]} {s:.0%}" for u, s in shares.items())
                             for name, shares in ph["usages"].items())
            lines.append(f"  {ph['phase']} (reached by {ph['reached']:.0%} of first runs): {uses}")
    if adv.worlds:
        lines += [""] + _world_lines(adv)
    lines.append("")
    best_text = _regimen_text(sc, best)
    if adv.flips:
        shown = "; ".join(_flip_words(f) for f in adv.flips[:SHOWN_FLIPS])
        lines.append(f"Where the answer flips ({best_text} against {adv.against}, one parameter at a time):")
        lines.append(f"  {best_text} stays ahead of {adv.against} unless {shown}.")
        if len(adv.flips) > SHOWN_FLIPS:
            lines.append(f"  ({len(adv.flips) - SHOWN_FLIPS} more parameters flip further away: proxygym flips {sc.name}"
                         f" --plan '{best_text}' --than {adv.against})")
    else:
        lines.append(f"No single parameter, moved over its range, makes {adv.against} beat {best_text}.")
    return "\n".join(lines) + "\n"



def _short(regimen: Regimen) -> str:
    """A regimen in a few characters: its plan, and the checkpoints it screens at."""
    screens = ", ".join(str(d) for d, _ in regimen.screen)
    return plan_text(regimen.plan) + (f" (screened at {screens})" if screens else "")


def _world_lines(adv: Advice) -> list[str]:
    best, a = adv.best
    lines = [f"Worlds ({len(adv.worlds)}, drawn once and hidden): the robust choice is the best fixed regimen above,"
             f" {_short(best)}, best under the prior."]
    for w in adv.worlds:
        opt = "" if w.optimal_value is None else f"; optimal {w.optimal_value:.4f}"
        lines.append(f"  {w.name} (prior {w.weight:.2f}): best fixed there {_short(w.best)} {w.best_return:.4f};"
                     f" the robust choice gets {w.robust_return:.4f} (regret {w.best_return - w.robust_return:.4f}){opt}")
    worst = min(adv.worlds, key=lambda w: w.robust_return)
    lines.append(f"  Its worst case: {worst.robust_return:.4f}, in {worst.name}.")
    value = adv.value_of_knowing_the_world
    told = sum(w.weight * w.best_return for w in adv.worlds)
    lines.append(f"  Knowing the world before the first run is worth {value['fixed']:.4f} to a fixed plan"
                 f" ({told:.4f} against {a.expected_return:.4f})")
    if value["optimal"] is not None:
        told_opt = sum(w.weight * w.optimal_value for w in adv.worlds)
        lines[-1] += (f", and {value['optimal']:.4f} to the optimal policy ({told_opt:.4f} against"
                      f" {adv.optimal_value:.4f}), which learns the world from its own tests as it goes.")
    else:
        lines[-1] += "."
    return lines
