"""Exact analysis of a fixed regimen: the essay's formal section, computed with no sampling.

A regimen fixes, before anything is observed, how each phase uses each proxy (the
plan), which proxies must pass at which checkpoints for a run to be kept (the test
set at the final checkpoint, and optionally screens at earlier ones), which idea every
run uses, the budget, and what happens when the budget is spent with no pass. Its
outcomes follow by forward propagation of the latent distribution through the arrays
of :mod:`envs.dynamics` (docs/model.md, "Exact analysis").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from envs.dynamics import ANTI, USAGE_LETTERS, Dynamics
from envs.scenario import LOWER_IS_BETTER, MAX_BUDGET, PLAN_PATTERN, RegimenSpec, Scenario, ScenarioError

FALLBACKS = ("deploy", "abstain")


@dataclass(frozen=True)
class Regimen:
    """A fixed way of running the whole program.

    Attributes:
        plan: ``(T, k)`` usage of each proxy in each phase (0 reserve, 1 train, 2 anti).
        test: proxies (indices) that must all pass at the final checkpoint.
        screen: ``{checkpoint d (1..T-1): proxies}`` that must all pass at checkpoint d,
            else the run is discarded there (early rejection).
        idea: the idea every run uses.
        budget: the most runs started.
        fallback: ``"deploy"``: the last run is deployed whatever its tests show (it is
            never discarded); ``"abstain"``: a last run that fails is discarded.
    """

    plan: tuple[tuple[int, ...], ...]
    test: tuple[int, ...]
    screen: tuple[tuple[int, tuple[int, ...]], ...] = ()
    idea: int = 0
    budget: int = 1
    fallback: str = "deploy"

    @property
    def plan_array(self) -> np.ndarray:
        return np.array(self.plan, dtype=np.int64)

    def describe(self, scenario: Scenario) -> str:
        plan = ",".join("".join(USAGE_LETTERS[u] for u in row) for row in self.plan)
        names = scenario.proxy_names
        test = "+".join(names[j] for j in self.test) or "none"
        out = f"plan {plan}, test {test}"
        for d, proxies in self.screen:
            out += f", screen {'+'.join(names[j] for j in proxies)} at checkpoint {d}"
        return out + f", idea {scenario.idea_names[self.idea]}, budget {self.budget}, fallback {self.fallback}"


def parse_plan(scenario: Scenario, text: str) -> tuple[tuple[int, ...], ...]:
    """Parse ``"TR,TR,RR"`` into per-phase, per-proxy usages.

    One group alone applies to every phase, and a group of one letter to every proxy:
    with two proxies and three phases, ``"R"`` is ``"RR,RR,RR"`` and ``"T,R,R"`` is
    ``"TT,RR,RR"``.
    """
    T, k = len(scenario.phases), len(scenario.proxies)
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


def parse_proxies(scenario: Scenario, text: str | None, what: str = "test set") -> tuple[int, ...]:
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
    scenario: Scenario,
    plan: str,
    test: str | None = None,
    screen: dict[int, str] | None = None,
    idea: str | None = None,
    budget: int | None = None,
    fallback: str = "deploy",
) -> Regimen:
    """Build a :class:`Regimen` from the strings a user writes (CLI or scenario ``expect``)."""
    T = len(scenario.phases)
    screens = []
    for d, names in sorted((screen or {}).items()):
        if not 1 <= int(d) <= T - 1:
            raise ScenarioError(
                f"{scenario.source}: screen at checkpoint {d}: early checkpoints are 1..{T - 1}"
                " (the final checkpoint's test is the test set)"
            )
        screens.append((int(d), parse_proxies(scenario, names, f"the screen at checkpoint {d}")))
    if fallback not in FALLBACKS:
        raise ScenarioError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if budget is not None and not 1 <= int(budget) <= MAX_BUDGET:
        raise ScenarioError(f"budget must be a whole number from 1 to {MAX_BUDGET}, got {budget!r}")
    return Regimen(
        plan=parse_plan(scenario, plan),
        test=parse_proxies(scenario, test),
        screen=tuple(screens),
        idea=0 if idea is None else scenario.idea_index(idea),
        budget=scenario.budget if budget is None else int(budget),
        fallback=fallback,
    )


def regimen_from_spec(scenario: Scenario, spec: RegimenSpec) -> Regimen:
    return make_regimen(scenario, spec.plan, spec.test, spec.screen, spec.idea, spec.budget, spec.fallback)


@dataclass
class Analysis:
    """The outcomes of a regimen (docs/model.md, "Exact analysis"). Undefined ratios are None."""

    base_rate: float
    p_pass_aligned: float | None
    p_pass_misaligned: float | None
    likelihood_ratio: float | None
    prior_odds: float | None
    posterior_odds: float | None
    p_pass: float
    expected_runs: float
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    expected_return: float
    compare: dict | None = field(default=None)

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["compare"] is None:
            del out["compare"]
        return out


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0.0 else num / den


def single_run(dyn: Dynamics, regimen: Regimen, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run of the regimen from base rate(s) rho, exactly.

    Returns, each shaped like rho: P(aligned at the final checkpoint), P(the run passes
    every screen and the final test), P(it passes and is aligned).
    """
    plan = regimen.plan_array
    screens = dict(regimen.screen)
    free = dyn.initial(rho)  # every run, tested or not
    kept = free.copy()  # mass that has passed every test so far
    n_anti = np.zeros(dyn.n_proxies, dtype=np.int64)
    for t in range(dyn.n_phases):
        trans = dyn.transition[t, dyn.usage_code(plan[t]), regimen.idea]
        free = free @ trans
        kept = kept @ trans
        n_anti = n_anti + (plan[t] == ANTI)
        checkpoint = t + 1
        if checkpoint in screens:
            kept = kept * dyn.pass_set_prob(t, n_anti, screens[checkpoint])
    kept = kept * dyn.pass_set_prob(dyn.n_phases - 1, n_anti, regimen.test)
    aligned = dyn.aligned
    return free[..., aligned].sum(-1), kept.sum(-1), kept[..., aligned].sum(-1)


def budgeted(q: np.ndarray, q_aligned: np.ndarray, base: np.ndarray, budget: int, fallback: str):
    """Rejection sampling under a budget, for independent runs with the given per-run probabilities.

    ``q`` = P(a run passes), ``q_aligned`` = P(it passes and is aligned), ``base`` =
    P(aligned) for a run played to the end with no test (the fallback's last run).
    Returns P(deploy aligned), P(deploy misaligned), P(abstain), E[runs started].
    """
    fail = 1.0 - q
    powers = fail[..., None] ** np.arange(budget)  # P(run n+1 is started), n = 0..B-1
    expected_runs = powers.sum(-1)
    if fallback == "deploy":
        tested = powers[..., : budget - 1].sum(-1)  # runs that may still be discarded
        last = fail ** (budget - 1)
        p_da = q_aligned * tested + last * base
        p_dm = (q - q_aligned) * tested + last * (1.0 - base)
        p_ab = np.zeros_like(q)
    else:
        p_da = q_aligned * expected_runs
        p_dm = (q - q_aligned) * expected_runs
        p_ab = fail**budget
    return p_da, p_dm, p_ab, expected_runs


def analyze(scenario: Scenario, regimen: Regimen, dynamics: Dynamics | None = None) -> Analysis:
    """Every quantity of the essay's formal section for one regimen, exactly.

    When the idea's base rate is a prior, runs are correlated through it: the budgeted
    outcomes are computed for each possible base rate, then averaged over the prior.
    The single-run quantities are those of one run with the base rate drawn from the prior.
    """
    dyn = dynamics or Dynamics(scenario)
    rho = dyn.base_rate_values[regimen.idea]
    w = dyn.base_rate_probs[regimen.idea]
    base, q, q_a = single_run(dyn, regimen, rho)
    p_da, p_dm, p_ab, runs = budgeted(q, q_a, base, regimen.budget, regimen.fallback)

    base_rate, p_pass, p_pass_and_a = float(w @ base), float(w @ q), float(w @ q_a)
    p_pass_and_m = p_pass - p_pass_and_a
    ppa = _ratio(p_pass_and_a, base_rate)
    ppm = _ratio(p_pass_and_m, 1.0 - base_rate)
    r = scenario.reward
    p_da, p_dm, p_ab, runs = (float(w @ x) for x in (p_da, p_dm, p_ab, runs))
    return Analysis(
        base_rate=base_rate,
        p_pass_aligned=ppa,
        p_pass_misaligned=ppm,
        likelihood_ratio=None if ppa is None or ppm is None else _ratio(ppa, ppm),
        prior_odds=_ratio(base_rate, 1.0 - base_rate),
        posterior_odds=_ratio(p_pass_and_a, p_pass_and_m),
        p_pass=p_pass,
        expected_runs=runs,
        p_deploy_aligned=p_da,
        p_deploy_misaligned=p_dm,
        p_abstain=p_ab,
        expected_return=r.aligned * p_da + r.misaligned * p_dm + r.abstain * p_ab - r.run_cost * runs,
    )


def _log(x: float | None) -> float | None:
    return None if x is None or x <= 0.0 or math.isinf(x) else math.log(x)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare(first: Analysis, second: Analysis) -> dict:
    """Regimen 1 against regimen 2, in log odds (docs/model.md, "Comparing regimens").

    ``log_posterior_odds_ratio = base_rate_log_impact + likelihood_log_impact``, exactly.
    """
    return {
        "log_posterior_odds_ratio": _diff(_log(first.posterior_odds), _log(second.posterior_odds)),
        "base_rate_log_impact": _diff(_log(first.prior_odds), _log(second.prior_odds)),
        "likelihood_log_impact": _diff(_log(first.likelihood_ratio), _log(second.likelihood_ratio)),
    }


def what_moved(cmp: dict) -> str:
    """One line saying which of base rate and likelihood ratio moved the posterior odds."""
    b, lik, total = cmp["base_rate_log_impact"], cmp["likelihood_log_impact"], cmp["log_posterior_odds_ratio"]
    if b is None or lik is None or total is None:
        return "The log impacts are undefined here (a probability of 0 or 1 makes an odds or a ratio infinite)."
    if abs(total) < 1e-12 and abs(b) < 1e-12:
        return "Neither moved: the two regimens give the same posterior odds."
    bigger = "base rate" if abs(b) >= abs(lik) else "likelihood ratio"
    direction = "better" if total > 0 else "worse"
    return (
        f"The posterior odds are {math.exp(total):.3g}x ({direction}); the {bigger} moved them more"
        f" (base-rate log impact {b:+.3f}, likelihood log impact {lik:+.3f}, sum {total:+.3f})."
    )


# -- the claims of scenario files ------------------------------------------------------
def contender_regimen(scenario: Scenario, contender) -> Regimen | None:
    """The regimen an ``expect`` contender names, or None when it names a strategy."""
    if isinstance(contender, RegimenSpec):
        return regimen_from_spec(scenario, contender)
    if PLAN_PATTERN.match(contender):
        return make_regimen(scenario, contender)
    return None


@dataclass
class ClaimCheck:
    """The exact values of both sides of an ``expect`` entry, and whether the claim holds."""

    index: int
    metric: str
    values: tuple[float | None, float | None]
    holds: bool | None  # None: a side is a strategy (checked by the benchmark) or a value is undefined
    text: str


def check_expectations(scenario: Scenario) -> list[ClaimCheck]:
    """Check every ``expect`` entry whose two sides are fixed regimens, by the exact analysis."""
    dyn = Dynamics(scenario)
    out = []
    for i, exp in enumerate(scenario.expect):
        regimens = [contender_regimen(scenario, c) for c in exp.contenders]
        if any(r is None for r in regimens):
            out.append(ClaimCheck(i, exp.metric, (None, None), None, "names a strategy: checked by the benchmark"))
            continue
        a, b = (getattr(analyze(scenario, r, dyn), exp.metric) for r in regimens)
        names = [r.describe(scenario) for r in regimens]
        if a is None or b is None:
            holds, text = None, f"{exp.metric} is undefined for one side"
        elif exp.same is not None:
            holds = abs(a - b) <= exp.tolerance
            text = f"{exp.metric}: {a:.4f} vs {b:.4f} (|diff| {abs(a - b):.4f} <= {exp.tolerance})  [{names[0]}] vs [{names[1]}]"
        else:
            holds = a < b if exp.metric in LOWER_IS_BETTER else a > b
            text = f"{exp.metric}: {a:.4f} vs {b:.4f}  [{names[0]}] better than [{names[1]}]"
        out.append(ClaimCheck(i, exp.metric, (a, b), holds, text))
    return out
