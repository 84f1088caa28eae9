"""Exact analysis of a fixed regimen: the essay's formal section, computed with no sampling.

A regimen (:class:`proxygym.envs.regimen.Regimen`) fixes everything before anything is
observed; its outcomes follow by forward propagation of the latent distribution through the arrays
of :mod:`proxygym.envs.dynamics` (docs/model.md, "Exact analysis").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from proxygym.envs.dynamics import Dynamics
from proxygym.envs.outcomes import Outcomes, exact
from proxygym.envs.regimen import ANTI, Regimen
from proxygym.envs.scenario import Scenario


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

    @property
    def outcomes(self) -> Outcomes:
        """The regimen's outcomes in the form every report uses (exact: no interval)."""
        return exact(self.expected_return, self.p_deploy_aligned, self.p_deploy_misaligned, self.p_abstain, self.expected_runs)

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["compare"] is None:
            del out["compare"]
        return out


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0.0 else num / den


def single_run(dyn: Dynamics, regimen: Regimen, rho: np.ndarray) -> tuple[np.ndarray, ...]:
    """One run of the regimen from base rate(s) rho, exactly.

    Returns, each shaped like rho: P(aligned at the final checkpoint), P(misaligned there),
    P(the run passes every screen and the final test and is aligned), P(it passes and is
    misaligned). Each is summed over its own states (no difference of two sums), so a
    ratio of two of them stays within [0, 1] where it should.
    """
    plan = regimen.plan_array
    screens = dict(regimen.screen)
    free = dyn.initial(rho)  # every run, tested or not
    kept = free.copy()  # mass that has passed every test so far
    n_anti = np.zeros(dyn.n_proxies, dtype=np.int64)
    for t in range(dyn.n_phases):
        code = dyn.usage_code(plan[t])
        free = dyn.advance(free, t, code, regimen.idea, n_anti)
        kept = dyn.advance(kept, t, code, regimen.idea, n_anti)
        n_anti = n_anti + (plan[t] == ANTI)
        checkpoint = t + 1
        if checkpoint in screens:
            kept = kept * dyn.pass_set_prob(t, n_anti, screens[checkpoint])
    kept = kept * dyn.pass_set_prob(dyn.n_phases - 1, n_anti, regimen.test)
    aligned = dyn.aligned
    return free[..., aligned].sum(-1), free[..., ~aligned].sum(-1), kept[..., aligned].sum(-1), kept[..., ~aligned].sum(-1)


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


def analyze(scenario: Scenario, regimen: Regimen) -> Analysis:
    """Every quantity of the essay's formal section for one regimen, exactly.

    When the idea's base rate is a prior, runs are correlated through it: the budgeted
    outcomes are computed for each possible base rate, then averaged over the prior.
    The single-run quantities are those of one run with the base rate drawn from the prior.
    """
    dyn = Dynamics.of(scenario)
    rho = dyn.base_rate_values[regimen.idea]
    w = dyn.base_rate_probs[regimen.idea]
    base, base_m, q_a, q_m = single_run(dyn, regimen, rho)
    q = q_a + q_m
    p_da, p_dm, p_ab, runs = budgeted(q, q_a, base, regimen.budget, regimen.fallback)

    base_rate, p_pass, p_pass_and_a, p_pass_and_m = float(w @ base), float(w @ q), float(w @ q_a), float(w @ q_m)
    ppa = _ratio(p_pass_and_a, base_rate)
    p_misaligned = float(w @ base_m)
    ppm = _ratio(p_pass_and_m, p_misaligned)
    r = scenario.reward
    p_da, p_dm, p_ab, runs = (float(w @ x) for x in (p_da, p_dm, p_ab, runs))
    return Analysis(
        base_rate=base_rate,
        p_pass_aligned=ppa,
        p_pass_misaligned=ppm,
        likelihood_ratio=None if ppa is None or ppm is None else _ratio(ppa, ppm),
        prior_odds=_ratio(base_rate, p_misaligned),
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


def trajectory(scenario: Scenario, regimen: Regimen) -> list[dict]:
    """One run of the regimen's plan played to the end with no test applied, read at every checkpoint.

    docs/model.md, "Trajectory of one run": ``f_t = f_{t-1} @ P_t`` from the run start, and at
    checkpoint ``t`` (with ``n_j(t)`` from the plan, the current phase included)
    P(aligned) (``base_rate``), and for each proxy ``P(pass | aligned)``, ``P(pass | misaligned)``
    and ``P(shaped)``. The regimen's screens, test, budget and fallback play no part. With a
    prior over the base rate every quantity is that of one run whose rate is drawn from the
    prior (the joint probabilities are averaged over the prior, then divided), as for
    :func:`analyze`'s single-run quantities. A conditional whose condition has probability 0
    is None. The list has one entry per checkpoint ``t = 1..T``::

        {"checkpoint": t, "base_rate": ..., "proxies": {name: {"p_pass_aligned": ...,
         "p_pass_misaligned": ..., "p_shaped": ...}}}
    """
    dyn = Dynamics.of(scenario)
    w = dyn.base_rate_probs[regimen.idea]
    plan = regimen.plan_array
    aligned, shaped = dyn.aligned, dyn.shaped
    dist = dyn.initial(dyn.base_rate_values[regimen.idea])  # (support, S)
    n_anti = np.zeros(dyn.n_proxies, dtype=np.int64)
    out = []
    for t in range(dyn.n_phases):
        dist = dyn.advance(dist, t, dyn.usage_code(plan[t]), regimen.idea, n_anti)
        n_anti = n_anti + (plan[t] == ANTI)
        mass = w @ dist  # (S,): P(state at checkpoint t + 1), the base rate drawn from the prior
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
