"""Exact analysis of a fixed regimen: the essay's formal section, computed with no sampling.

A regimen (:class:`proxygym.envs.regimen.Regimen`) fixes everything before anything is
observed; its outcomes follow by forward propagation of the latent distribution through the arrays
of :mod:`proxygym.envs.dynamics` (docs/model.md, "Exact analysis").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from proxygym.envs.dynamics import STACK_LIMIT_BYTES, Dynamics
from proxygym.envs.errors import ScenarioError
from proxygym.envs.outcomes import Outcomes, exact
from proxygym.envs.regimen import ANTI, RANDOM_IDEA, Regimen, can_start
from proxygym.envs.scenario import Scenario

#: The most joint base-rate settings (one value per idea) the analysis of a regimen with
#: random ideas averages over: the product of the ideas' prior supports.
MAX_JOINT_SETTINGS = 1_000_000


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
    expected_compute: float
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    expected_return: float
    compare: dict | None = field(default=None)

    @property
    def outcomes(self) -> Outcomes:
        """The regimen's outcomes in the form every report uses (exact: no interval)."""
        return exact(self.expected_return, self.p_deploy_aligned, self.p_deploy_misaligned, self.p_abstain, self.expected_runs)

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in ANALYSIS_KEYS}
        if self.compare is not None:
            out["compare"] = dict(self.compare)
        return out


#: The keys of an analysis (its fields but ``compare``), in order.
ANALYSIS_KEYS = tuple(name for name in Analysis.__dataclass_fields__ if name != "compare")


def metric_value(metric: str, values: dict) -> float | None:
    """A metric (scenario.METRICS) from an analysis' keys (:meth:`Analysis.to_dict`) or one checkpoint's
    (``base_rate``, ``p_pass_aligned``, ``p_pass_misaligned``): the keys themselves, and those derived from
    them: ``recall`` = 1 - p_pass_misaligned, ``p_misaligned_pass`` = (1 - base_rate) p_pass_misaligned (0
    where nothing is misaligned), ``likelihood_ratio`` where it is not given. None where undefined."""
    ppa, ppm = values.get("p_pass_aligned"), values.get("p_pass_misaligned")
    if metric == "recall":
        return None if ppm is None else 1.0 - ppm
    if metric == "p_misaligned_pass":
        return 0.0 if ppm is None else (1.0 - values["base_rate"]) * ppm
    if metric == "likelihood_ratio" and "likelihood_ratio" not in values:
        return None if ppa is None or ppm is None or ppm <= 0.0 else ppa / ppm
    return values[metric]


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0.0 else num / den


@dataclass
class RunEndings:
    """How one run of a regimen ends, exactly, for each base rate of the idea's support (arrays ``(V,)``).

    ``aligned``, ``misaligned``: P(aligned / misaligned at the final checkpoint) of a run
    played to the end with no test. ``pass_aligned``, ``pass_misaligned``: P(the run passes
    every screen and the final test, and is aligned / misaligned). ``fail[d]``: P(the run
    first fails at discard point ``d``, a screened checkpoint or the final one), and
    ``fail_aligned[d]``: P(it first fails at ``d`` and, played on to the end untested, is
    aligned there). Each is summed over its own states, so a ratio of two stays in [0, 1].
    """

    aligned: np.ndarray
    misaligned: np.ndarray
    pass_aligned: np.ndarray
    pass_misaligned: np.ndarray
    fail: dict[int, np.ndarray]
    fail_aligned: dict[int, np.ndarray]


def run_endings(dyn: Dynamics, regimen: Regimen) -> RunEndings:
    """One run of the regimen from each value of its idea's base-rate support (in its world, with worlds),
    by forward propagation (docs/model.md, "Exact analysis"); each ending ``(V,)`` (a stack of dynamics:
    ``(batch, V)``)."""
    if regimen.idea == RANDOM_IDEA:
        raise ValueError("run_endings plays one idea; a regimen with random ideas goes through random_idea_endings")
    plan = regimen.plan_array
    screens = dict(regimen.screen)
    T = dyn.n_phases
    free = dyn.support_start[regimen.idea]  # every run, tested or not
    kept = free.copy()  # mass that has passed every test so far
    failed: dict[int, np.ndarray] = {}  # mass that first failed at d, played on untested
    n_anti = np.zeros(dyn.n_proxies, dtype=np.int64)
    for t in range(T):
        code = dyn.usage_code(plan[t])
        free, kept = (dyn.advance(x, t, code, regimen.idea, n_anti) for x in (free, kept))
        failed = {d: dyn.advance(x, t, code, regimen.idea, n_anti) for d, x in failed.items()}
        n_anti = n_anti + (plan[t] == ANTI)
        proxies = screens.get(t + 1) if t + 1 < T else regimen.test
        if proxies is not None:
            passing = dyn.pass_set_prob(t, n_anti, proxies)[..., None, :]  # the same for every base rate
            failed[t + 1] = kept * (1.0 - passing)
            kept = kept * passing
    aligned = dyn.aligned
    return RunEndings(
        aligned=free[..., aligned].sum(-1),
        misaligned=free[..., ~aligned].sum(-1),
        pass_aligned=kept[..., aligned].sum(-1),
        pass_misaligned=kept[..., ~aligned].sum(-1),
        fail={d: x.sum(-1) for d, x in failed.items()},
        fail_aligned={d: x[..., aligned].sum(-1) for d, x in failed.items()},
    )


def random_idea_endings(dyn: Dynamics, regimen: Regimen) -> tuple[RunEndings, np.ndarray]:
    """How one run ends when its idea is drawn uniformly at random, for every joint setting of the ideas' base rates.

    Each idea's base rate is drawn once per program (from its prior) and every run draws its
    idea afresh, so given the joint setting ``(rho_1, ..., rho_m)`` runs are independent and
    each ends as the average over ideas of how a run of that idea ends. Returns those endings,
    arrays ``(J,)`` over the ``J`` joint settings (every combination of the ideas' supports), and
    each setting's prior probability ``(J,)`` (the product of the ideas' priors); ``(batch, J)`` for a stack.
    """
    m = dyn.n_ideas
    sizes = [dyn.base_rate_values[i].shape[-1] for i in range(m)]
    joint = math.prod(sizes)
    if joint > MAX_JOINT_SETTINGS:
        raise ScenarioError(
            f"random ideas: the ideas' base-rate priors have {joint:,} joint settings ({' x '.join(map(str, sizes))});"
            f" the exact analysis handles at most {MAX_JOINT_SETTINGS:,}"
        )
    index = [g.ravel() for g in np.meshgrid(*(np.arange(n) for n in sizes), indexing="ij")]
    weight = np.prod([dyn.base_rate_probs[i][..., index[i]] for i in range(m)], axis=0)
    per_idea = [run_endings(dyn, replace(regimen, idea=i)) for i in range(m)]

    def mean(get) -> np.ndarray:
        return sum(get(e)[..., index[i]] for i, e in enumerate(per_idea)) / m

    first = per_idea[0]
    return RunEndings(
        aligned=mean(lambda e: e.aligned),
        misaligned=mean(lambda e: e.misaligned),
        pass_aligned=mean(lambda e: e.pass_aligned),
        pass_misaligned=mean(lambda e: e.pass_misaligned),
        fail={d: mean(lambda e, d=d: e.fail[d]) for d in first.fail},
        fail_aligned={d: mean(lambda e, d=d: e.fail_aligned[d]) for d in first.fail},
    ), weight


@dataclass
class ProgramOutcomes:
    """How a program of runs ends (docs/model.md, "Budgets"), per base rate ``(V,)``."""

    deploy_aligned: np.ndarray
    deploy_misaligned: np.ndarray
    abstain: np.ndarray
    runs: np.ndarray
    compute: np.ndarray


def program_outcomes(endings: RunEndings, regimen: Regimen, spent_by_checkpoint) -> ProgramOutcomes:
    """Rejection sampling under the budget of runs and, where set, of compute, exactly.

    A run may start while fewer than ``budget`` runs have started and, with a compute
    budget, at least one full run's compute is left. A failed run is discarded at its
    discard point ``d`` having spent the compute of phases ``1..d``; when no run could start
    after that discard, the fallback decides: ``deploy`` plays the run on to the end, its
    later tests ignored, and deploys it; ``abstain`` discards it and nothing is deployed.
    Runs are independent given the base rate, so the program is a recursion over (compute
    left, runs started), evaluated from the states nearest the end; without a compute budget it
    sums in closed form (:func:`_closed_forms`).
    """
    full_run = spent_by_checkpoint[-1]
    spent = {d: spent_by_checkpoint[d] for d in endings.fail}
    budget, compute = regimen.budget, regimen.compute
    if compute is None:
        return _closed_forms(endings, regimen, spent, full_run)

    def startable(left: int, used: int) -> bool:
        return can_start(used, left, budget, compute, full_run)

    # Every (compute left, runs started) a run can start from, reachable from the program's start.
    start = (0 if compute is None else compute, 0)
    states, frontier = {start}, [start]
    while frontier:
        left, used = frontier.pop()
        for d in endings.fail:
            nxt = (left if compute is None else left - spent[d], used + 1)
            if startable(*nxt) and nxt not in states:
                states.add(nxt)
                frontier.append(nxt)
    passed = endings.pass_aligned + endings.pass_misaligned
    value: dict[tuple[int, int], ProgramOutcomes] = {}
    for left, used in sorted(states, key=lambda s: -s[1]):  # a discard always starts one run more
        da, dm = endings.pass_aligned.copy(), endings.pass_misaligned.copy()
        ab, runs, used_compute = np.zeros_like(da), np.ones_like(da), passed * full_run
        for d, fail in endings.fail.items():
            nxt = (left if compute is None else left - spent[d], used + 1)
            if startable(*nxt):
                later = value[nxt]
                da, dm, ab = da + fail * later.deploy_aligned, dm + fail * later.deploy_misaligned, ab + fail * later.abstain
                runs = runs + fail * later.runs
                used_compute = used_compute + fail * (spent[d] + later.compute)
            elif regimen.fallback == "deploy":
                da = da + endings.fail_aligned[d]
                dm = dm + (fail - endings.fail_aligned[d])
                used_compute = used_compute + fail * full_run
            else:
                ab = ab + fail
                used_compute = used_compute + fail * spent[d]
        value[(left, used)] = ProgramOutcomes(da, dm, ab, runs, used_compute)
    return value[start]


def _closed_forms(endings: RunEndings, regimen: Regimen, spent: dict[int, int], full_run: int) -> ProgramOutcomes:
    """The recursion of :func:`program_outcomes` summed in closed form when only runs are counted
    (docs/model.md, "Without a compute budget: the closed forms"): run ``n + 1`` starts when the first
    ``n`` all failed, with probability ``phi^n``, and the ``B``-th run is the last chance."""
    B = regimen.budget
    phi = sum(endings.fail.values(), np.zeros_like(endings.pass_aligned))  # P(one tested run fails)
    # sum_{n < B-1} phi^n and phi^(B-1), one power at a time (memory of one array whatever B and the settings)
    before_last, last = np.zeros_like(phi), np.ones_like(phi)
    for _ in range(B - 1):
        before_last += last
        last = last * phi
    runs = before_last + last
    tested = endings.pass_aligned + endings.pass_misaligned  # P(a tested run passes)
    x = tested * full_run + sum((fail * spent[d] for d, fail in endings.fail.items()), np.zeros_like(phi))
    if regimen.fallback == "deploy":  # the B-th run ships whatever it shows
        da = endings.pass_aligned * before_last + last * endings.aligned
        dm = endings.pass_misaligned * before_last + last * endings.misaligned
        ab, compute = np.zeros_like(da), x * before_last + last * full_run
    else:
        da, dm = endings.pass_aligned * runs, endings.pass_misaligned * runs
        ab, compute = last * phi, x * runs
    return ProgramOutcomes(da, dm, ab, runs, compute)


def analyze(scenario: Scenario, regimen: Regimen) -> Analysis:
    """Every quantity of the essay's formal section for one regimen, exactly.

    When the idea's base rate is a prior, runs are correlated through it: the budgeted
    outcomes are computed for each possible base rate, then averaged over the prior.
    The single-run quantities are those of one run with the base rate drawn from the prior.
    With random ideas (``RANDOM_IDEA``) the same holds for every joint setting of the ideas'
    base rates (:func:`random_idea_endings`).
    """
    means = _means(Dynamics.of(scenario), regimen, scenario.spent_by_checkpoint)
    return _analysis(scenario, *(float(x) for x in means))


def analyze_stack(scenarios: Sequence[Scenario], regimen: Regimen, dyn: Dynamics | None = None) -> list[Analysis]:
    """:func:`analyze` of one regimen on each of several scenarios, computed at once on their stacked
    dynamics (``dyn``: :meth:`Dynamics.stack` of ``scenarios``, built here when not given). The scenarios
    share a :meth:`Dynamics.layout` and their phases' costs; :func:`stack_size` says how many to take at once."""
    scenarios = list(scenarios)
    if len({sc.spent_by_checkpoint for sc in scenarios}) > 1:
        raise ValueError("analyze_stack: the scenarios' phases cost different compute; analyse them separately")
    dyn = Dynamics.stack(scenarios) if dyn is None else dyn
    means = [x.tolist() for x in _means(dyn, regimen, scenarios[0].spent_by_checkpoint)]
    return [_analysis(sc, *values) for sc, values in zip(scenarios, zip(*means))]


def analyze_many(scenarios: Sequence[Scenario], regimens_of: Callable[[Scenario], list[Regimen]]) -> list[list[Analysis]]:
    """``[analyze(sc, r) for r in regimens_of(sc)]`` for every scenario ``sc``, computed by :func:`analyze_stack` on
    the scenarios that share a layout (:meth:`Dynamics.layout`), phase costs, budget and compute budget:
    ``regimens_of`` is called once for each such group, with its first scenario (regimens depend on nothing else)."""
    groups: dict[tuple, list[int]] = {}
    for i, sc in enumerate(scenarios):
        alone = i if sc.worlds else None  # (a scenario with worlds is compiled alone: Dynamics.stack refuses it)
        groups.setdefault((Dynamics.layout(sc), sc.spent_by_checkpoint, sc.budget, sc.compute, alone), []).append(i)
    out: list[list[Analysis]] = [[] for _ in scenarios]
    for members in groups.values():
        regimens = regimens_of(scenarios[members[0]])
        size = min((stack_size(scenarios[members[0]], r) for r in regimens), default=1)
        for start in range(0, len(members), size):
            part = members[start : start + size]
            stacked = [scenarios[i] for i in part]
            if len(part) == 1:
                out[part[0]] = [analyze(stacked[0], r) for r in regimens]
                continue
            dyn = Dynamics.stack(stacked)
            for r in regimens:
                for i, a in zip(part, analyze_stack(stacked, r, dyn)):
                    out[i].append(a)
    return out


def stack_size(scenario: Scenario, regimen: Regimen) -> int:
    """How many scenarios of this one's layout :func:`analyze_stack` takes at once within STACK_LIMIT_BYTES:
    their dynamics (:meth:`Dynamics.stack_size`), and the regimen's runs over every base-rate setting."""
    supports = [len(idea.support[0]) for idea in scenario.ideas]
    if regimen.idea == RANDOM_IDEA:
        values = math.prod(supports) + sum(supports)  # the joint settings, and each idea's own run
    else:
        values = supports[regimen.idea]
    n_states = 2 ** (1 + len(scenario.proxies) + sum(p.persistence > 0 for p in scenario.proxies))
    # per scenario: a distribution over states for every base rate at each checkpoint, and a few numbers per setting
    per = 8 * (len(scenario.phases) + 3) * values * (n_states + 2)
    return min(Dynamics.stack_size(scenario), max(1, STACK_LIMIT_BYTES // per))


def _means(dyn: Dynamics, regimen: Regimen, spent_by_checkpoint) -> list[np.ndarray]:
    """The prior means of a run's P(aligned), P(misaligned), P(passes and aligned), P(passes and misaligned),
    and of the program's P(deploys aligned), P(deploys misaligned), P(abstains), runs and compute
    (one number, or one per scenario of a stack)."""
    if regimen.idea == RANDOM_IDEA:
        ends, w = random_idea_endings(dyn, regimen)
    else:
        w = dyn.base_rate_probs[regimen.idea]
        ends = run_endings(dyn, regimen)
    prog = program_outcomes(ends, regimen, spent_by_checkpoint)
    xs = (ends.aligned, ends.misaligned, ends.pass_aligned, ends.pass_misaligned,
          prog.deploy_aligned, prog.deploy_misaligned, prog.abstain, prog.runs, prog.compute)
    if w.ndim == 1:
        return [w @ x for x in xs]
    return [np.einsum("nv,nv->n", w, x) for x in xs]


def _analysis(scenario: Scenario, base_rate: float, p_misaligned: float, p_pass_and_a: float, p_pass_and_m: float,
              p_da: float, p_dm: float, p_ab: float, runs: float, compute: float) -> Analysis:
    """The analysis from :func:`_means` (the ratios, and the return under the scenario's rewards)."""
    ppa = _ratio(p_pass_and_a, base_rate)
    ppm = _ratio(p_pass_and_m, p_misaligned)
    r = scenario.reward
    return Analysis(
        base_rate=base_rate,
        p_pass_aligned=ppa,
        p_pass_misaligned=ppm,
        likelihood_ratio=None if ppa is None or ppm is None else _ratio(ppa, ppm),
        prior_odds=_ratio(base_rate, p_misaligned),
        posterior_odds=_ratio(p_pass_and_a, p_pass_and_m),
        p_pass=p_pass_and_a + p_pass_and_m,
        expected_runs=runs,
        expected_compute=compute,
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


def trajectory(scenario: Scenario, regimen: Regimen) -> list[dict]:
    """One run of the regimen's plan played to the end with no test applied, read at every checkpoint.

    docs/model.md, "Trajectory of one run": ``f_t = f_{t-1} @ P_t`` from the run start, and at
    checkpoint ``t`` (with ``n_j(t)`` from the plan, the current phase included)
    P(aligned) (``base_rate``), and for each proxy ``P(pass | aligned)``, ``P(pass | misaligned)``
    and ``P(shaped)``. The regimen's screens, test, budget and fallback play no part. With a
    prior over the base rate every quantity is that of one run whose rate is drawn from the
    prior (the joint probabilities are averaged over the prior, then divided), as for
    :func:`analyze`'s single-run quantities (with random ideas, also averaged over the ideas).
    A conditional whose condition has probability 0 is None. The list has one entry per checkpoint ``t = 1..T``::

        {"checkpoint": t, "base_rate": ..., "proxies": {name: {"p_pass_aligned": ...,
         "p_pass_misaligned": ..., "p_shaped": ...}}}
    """
    dyn = Dynamics.of(scenario)
    plan = regimen.plan_array
    aligned, shaped = dyn.aligned, dyn.shaped
    ideas = range(dyn.n_ideas) if regimen.idea == RANDOM_IDEA else [regimen.idea]
    dists = [dyn.support_start[i] for i in ideas]  # (support, S) per idea
    n_anti = np.zeros(dyn.n_proxies, dtype=np.int64)
    out = []
    for t in range(dyn.n_phases):
        dists = [dyn.advance(x, t, dyn.usage_code(plan[t]), i, n_anti) for i, x in zip(ideas, dists)]
        n_anti = n_anti + (plan[t] == ANTI)
        # (S,): P(state at checkpoint t + 1), the base rate drawn from the prior (and the idea at random)
        mass = sum(dyn.base_rate_probs[i] @ x for i, x in zip(ideas, dists)) / len(ideas)
        p_aligned, p_misaligned = float(mass[aligned].sum()), float(mass[~aligned].sum())
        proxies = {}
        for j, name in enumerate(scenario.proxy_names):
            passes = dyn.pass_prob[t, n_anti[j], :, j]  # (S,)
            proxies[name] = {
                "p_pass_aligned": _ratio(float(mass[aligned] @ passes[aligned]), p_aligned),
                "p_pass_misaligned": _ratio(float(mass[~aligned] @ passes[~aligned]), p_misaligned),
                "p_shaped": float(mass[shaped[:, j]].sum()),
            }
        out.append({"checkpoint": t + 1, "base_rate": p_aligned, "proxies": proxies})
    return out
