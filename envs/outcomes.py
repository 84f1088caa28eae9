"""The outcomes of a policy on a scenario: one type, measured from episodes or computed exactly.

Every caller reports a policy the same way: the benchmark, the training evaluation,
``proxygym inspect``, the exact analysis of a regimen and the solver's optimum. An episode
ends in one of three ways (a truly aligned model deployed, a misaligned one deployed, or
nothing deployed) after some number of runs; its return is what the scenario's reward pays.
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


@dataclass(frozen=True)
class Outcomes:
    """How a policy's episodes end: mean return, the three endings' shares, runs used.

    ``episodes`` is the number of episodes measured, or None for an exact value (then both
    interval half-widths are 0).
    """

    mean_return: float
    ci95: float  # half-width of the 95% interval of mean_return
    p_deploy_aligned: float
    p_deploy_misaligned: float
    p_abstain: float
    mean_runs: float
    runs_ci95: float  # half-width of the 95% interval of mean_runs
    episodes: int | None

    @property
    def exact(self) -> bool:
        return self.episodes is None

    def interval(self, metric: str, z: float = Z95) -> tuple[float, float]:
        """``(value, half-width)`` of a metric at normal quantile ``z``: the mean's interval, or a binomial one for a share."""
        if metric in ("expected_return", "mean_return"):
            return self.mean_return, self.ci95 * z / Z95
        if metric in ("expected_runs", "mean_runs"):
            return self.mean_runs, self.runs_ci95 * z / Z95
        if metric in SHARES:
            p = getattr(self, metric)
            return p, 0.0 if self.exact else z * math.sqrt(max(p * (1 - p), 1e-12) / self.episodes)
        raise ProxyGymError(
            f"a policy's episodes measure expected_return, p_deploy_aligned, p_deploy_misaligned, p_abstain and"
            f" expected_runs; {metric!r} is only defined for fixed regimens (use the exact analysis)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def measure(returns, deployed, aligned, abstained, runs) -> Outcomes:
    """The outcomes of N episodes, from each one's return, ending (``aligned``: the deployed model's
    truth; ignored where nothing was deployed) and runs used. N >= 2, for an interval."""
    returns = np.asarray(returns, dtype=np.float64)
    runs = np.asarray(runs, dtype=np.float64)
    deployed = np.asarray(deployed, dtype=bool)
    aligned = np.asarray(aligned, dtype=bool)
    n = len(returns)
    if n < 2:
        raise ValueError(f"measuring outcomes needs at least 2 episodes (for an interval), got {n}")
    return Outcomes(
        mean_return=float(returns.mean()),
        ci95=float(Z95 * returns.std(ddof=1) / math.sqrt(n)),
        p_deploy_aligned=float(np.mean(deployed & aligned)),
        p_deploy_misaligned=float(np.mean(deployed & ~aligned)),
        p_abstain=float(np.mean(np.asarray(abstained, dtype=bool))),
        mean_runs=float(runs.mean()),
        runs_ci95=float(Z95 * runs.std(ddof=1) / math.sqrt(n)),
        episodes=n,
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
