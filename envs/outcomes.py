"""The outcomes of a policy on a scenario: one type, measured from episodes or computed exactly.

Every caller reports a policy the same way: the benchmark, the training evaluation,
``proxygym inspect``, the exact analysis of a regimen and the solver's optimum. An episode
ends in one of three ways (a truly aligned model deployed, a misaligned one deployed, or
nothing deployed) after some number of runs; its return is what the scenario's reward pays.

Intervals stay where the quantity can be: a share of episodes (P(deploy aligned), ...) gets the
Wilson score interval of a binomial proportion, and so does the mean return where an episode
can return only two values (no run cost, and two of the three endings paying the same, as
with rewards 1, 0, 0: the mean return is then a probability, rescaled); any other mean return
gets the normal interval, clipped to the least and the most an episode can return.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from proxygym.envs.errors import ProxyGymError

#: Two-sided normal quantiles: the 95% intervals every table shows, the 99.9% ones the claims use.
Z95 = 1.959963984540054  # NormalDist().inv_cdf(0.975), as SB3 and the published tables print it
Z999 = NormalDist().inv_cdf(0.9995)

#: The shares an episode's ending falls into.
SHARES = ("p_deploy_aligned", "p_deploy_misaligned", "p_abstain")


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: ``successes`` of ``n`` at normal quantile ``z``.

    With p = successes / n, it is ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, always
    within [0, 1] (0 of n gives ``[0, z^2 / (n + z^2)]``, n of n ``[n / (n + z^2), 1]``), where the normal
    interval ``p -+ z sqrt(p(1-p)/n)`` leaves it near 0 and 1 and has no width at 0 and 1 themselves.
    """
    if n < 1:
        raise ValueError(f"a proportion needs at least 1 trial, got {n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 and at n the bound is 0 or 1 exactly (the formula's arithmetic would leave 1 - 1e-16)
    return (0.0 if successes <= 0 else max(0.0, centre - half)), (1.0 if successes >= n else min(1.0, centre + half))


def return_support(scenario) -> tuple[tuple[float, float], bool]:
    """``((least, most), two_point)``: the least and the most one episode of ``scenario`` can return, and whether
    those two are the only returns it can have (no run cost, and at most two distinct rewards among aligned,
    misaligned and abstain)."""
    r = scenario.reward
    ends = {float(r.aligned), float(r.misaligned), float(r.abstain)}
    if r.run_cost == 0.0:
        return (min(ends), max(ends)), len(ends) <= 2
    # every episode starts at least one run and at most the budget
    return (min(ends) - r.run_cost * scenario.budget, max(ends) - r.run_cost), False


def mean_interval(mean: float, sd: float, n: int | None, z: float = Z95, support: tuple[float, float] | None = None,
                  two_point: bool = False) -> tuple[float, float]:
    """The interval of a mean of ``n`` episodes' returns at quantile ``z``: Wilson's, rescaled, when every return is
    one of the two values ``support`` (``two_point``); else the normal one, ``mean -+ z sd / sqrt(n)``, clipped to
    ``support``. An exact value (``n`` None) is its own interval."""
    if n is None:
        return mean, mean
    if two_point and support is not None:
        lo, hi = support
        if hi - lo <= 0.0:
            return mean, mean
        a, b = wilson((mean - lo) / (hi - lo) * n, n, z)
        return lo + a * (hi - lo), lo + b * (hi - lo)
    half = z * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if support is not None:
        low, high = max(low, support[0]), min(high, support[1])
    return low, high


@dataclass(frozen=True)
class Outcomes:
    """How a policy's episodes end: mean return, the three endings' shares, runs used.

    ``episodes`` is the number of episodes measured, or None for an exact value (then every
    interval has no width). ``[ci95_low, ci95_high]`` is the 95% interval of the mean return
    (:func:`mean_interval`), and ``ci95`` half its width: the ``+-`` of a normal interval, which a
    Wilson interval (two-valued returns) is not, being off-centre.
    """

    mean_return: float
    ci95: float  # half the width of [ci95_low, ci95_high]
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    mean_runs: float
    runs_ci95: float  # half-width of the 95% interval of mean_runs
    episodes: int | None
    ci95_low: float = math.nan  # the 95% interval of mean_return (exact: the value itself)
    ci95_high: float = math.nan
    return_sd: float = 0.0  # the returns' sample standard deviation
    support: tuple[float, float] | None = None  # the least and the most an episode can return, when known
    two_point: bool = False  # every return is one of those two

    def __post_init__(self):
        if math.isnan(self.ci95_low):  # built with a normal half-width alone (an exact value, or by hand)
            object.__setattr__(self, "ci95_low", self.mean_return - self.ci95)
            object.__setattr__(self, "ci95_high", self.mean_return + self.ci95)
            if self.episodes:
                object.__setattr__(self, "return_sd", self.ci95 * math.sqrt(self.episodes) / Z95)

    @property
    def exact(self) -> bool:
        return self.episodes is None

    @property
    def symmetric(self) -> bool:
        """Whether the mean return's interval is ``mean_return +- ci95`` (normal, not clipped)."""
        return abs((self.ci95_high - self.mean_return) - (self.mean_return - self.ci95_low)) <= 1e-12

    def return_text(self, digits: int = 4) -> str:
        """The mean return and its 95% interval as people read it: ``0.6350 ± 0.0669`` where the interval is
        centred on the mean, ``0.9980 [0.9927, 0.9995]`` where it is not (Wilson's, or clipped), the value alone
        where it is exact."""
        m = f"{self.mean_return:.{digits}f}"
        if self.exact:
            return m
        if self.symmetric:
            return f"{m} ± {self.ci95:.{digits}f}"
        return f"{m} [{self.ci95_low:.{digits}f}, {self.ci95_high:.{digits}f}]"

    def value(self, metric: str) -> float:
        """A metric's value, under the analysis' name or the measurement's (expected_return is mean_return)."""
        self.interval(metric)  # refuses a metric episodes do not measure
        return getattr(self, {"expected_return": "mean_return", "expected_runs": "mean_runs"}.get(metric, metric))

    def interval(self, metric: str, z: float = Z95) -> tuple[float, float]:
        """``(low, high)``: a metric's interval at normal quantile ``z``. A share gets Wilson's, the mean return
        :func:`mean_interval`'s, the mean runs the normal one (never below one run); an exact value is its own."""
        if metric in ("expected_return", "mean_return"):
            if self.exact:
                return self.mean_return, self.mean_return
            return mean_interval(self.mean_return, self.return_sd, self.episodes, z, self.support, self.two_point)
        if metric in ("expected_runs", "mean_runs"):
            half = self.runs_ci95 * z / Z95
            return max(self.mean_runs - half, 1.0), self.mean_runs + half  # every episode starts a run
        if metric in SHARES:
            p = getattr(self, metric)
            return (p, p) if self.exact else wilson(round(p * self.episodes), self.episodes, z)
        raise ProxyGymError(
            f"a policy's episodes measure expected_return, p_deploy_aligned, p_deploy_misaligned, p_abstain and"
            f" expected_runs; {metric!r} is only defined for fixed regimens (use the exact analysis)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def measure(returns, deployed, aligned, abstained, runs, scenario=None) -> Outcomes:
    """The outcomes of N episodes, from each one's return, ending (``aligned``: the deployed model's
    truth; ignored where nothing was deployed) and runs used. N >= 2, for an interval. Given the
    ``scenario`` they were played on, the mean return's interval knows what a return can be
    (:func:`return_support`): Wilson's for two-valued returns, else clipped to the possible range."""
    returns = np.asarray(returns, dtype=np.float64)
    runs = np.asarray(runs, dtype=np.float64)
    deployed = np.asarray(deployed, dtype=bool)
    aligned = np.asarray(aligned, dtype=bool)
    n = len(returns)
    if n < 2:
        raise ValueError(f"measuring outcomes needs at least 2 episodes (for an interval), got {n}")
    support, two_point = (None, False) if scenario is None else return_support(scenario)
    mean, sd = float(returns.mean()), float(returns.std(ddof=1))
    low, high = mean_interval(mean, sd, n, Z95, support, two_point)
    return Outcomes(
        mean_return=mean,
        ci95=(high - low) / 2,
        p_deploy_aligned=float(np.mean(deployed & aligned)),
        p_deploy_misaligned=float(np.mean(deployed & ~aligned)),
        p_abstain=float(np.mean(np.asarray(abstained, dtype=bool))),
        mean_runs=float(runs.mean()),
        runs_ci95=float(Z95 * runs.std(ddof=1) / math.sqrt(n)),
        episodes=n,
        ci95_low=low,
        ci95_high=high,
        return_sd=sd,
        support=support,
        two_point=two_point,
    )


def exact(expected_return: float, p_deploy_aligned: float, p_deploy_misaligned: float, p_abstain: float,
          expected_runs: float) -> Outcomes:
    """Outcomes known exactly (the exact analysis of a regimen, the solver's optimum)."""
    return Outcomes(
        mean_return=float(expected_return),
        ci95=0.0,
        p_deploy_aligned=float(p_deploy_aligned),
        p_deploy_misaligned=float(p_deploy_misaligned),
        p_abstain=float(p_abstain),
        mean_runs=float(expected_runs),
        runs_ci95=0.0,
        episodes=None,
    )
