"""The claims of scenario files (their ``expect`` entries), checked.

A claim compares two contenders on one metric, or bounds one contender's metric. A
contender that is a fixed regimen (a plan, a regimen mapping, or a strategy that is one,
such as ``train_early_reserve_late``) is scored exactly by
:func:`proxygym.envs.analysis.analyze` (or, for a claim at a checkpoint, by the run's
:func:`~proxygym.envs.analysis.trajectory`), with zero width; an adaptive strategy by the
benchmark, with its interval at ``confidence_z`` (Wilson's for a share of episodes and for a mean of
two-valued returns, :meth:`proxygym.envs.outcomes.Outcomes.interval`). A ``better`` claim holds when the two
intervals do not overlap, the order is right and the gap is at least ``by``; a ``same`` claim
when the whole of both intervals lies within the tolerance; a ``value`` claim when the whole
interval lies within ``within``. A claim at ``checkpoint: all`` must hold at every checkpoint.

:func:`check_claims` can also check each claim with every proxy's persistence set to other
values (``robustness``): whether a claim still holds when test results are fresh coins
(persistence 0) or lasting properties of the model (persistence 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxygym.agents.bench import check_episodes, resolve_names, run_pair
from proxygym.agents.strategies import make_strategy
from proxygym.envs.analysis import analyze, metric_value, trajectory
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.outcomes import Z999
from proxygym.envs.regimen import PLAN_PATTERN, Regimen, make_regimen, regimen_from_spec
from proxygym.envs.scenario import LOWER_IS_BETTER, Expectation, RegimenSpec, Scenario

#: Episodes and seed of the benchmark that scores an adaptive contender.
CLAIM_EPISODES = 20_000
CLAIM_SEED = 0
#: The persistences at which ``proxygym claims`` also checks every claim.
ROBUSTNESS = (0.0, 1.0)


@dataclass
class Claim:
    """One ``expect`` entry, its contenders' scores and whether it holds (None: a value is undefined).

    ``values`` has one tuple of per-checkpoint values per contender (one value unless the claim
    reads ``checkpoint: all``). ``robust`` maps a persistence to whether the claim holds when every
    proxy has that persistence.
    """

    scenario: str
    index: int
    metric: str
    sides: tuple[str, ...]  # the contenders as the file names them
    labels: tuple[str, ...]  # the contenders as scored
    values: tuple[tuple[float | None, ...], ...]
    intervals: tuple[tuple[tuple[float, float] | None, ...], ...]  # per contender, each value's (low, high)
    holds: bool | None
    text: str
    robust: dict[float, bool | None] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Every side scored by the exact analysis."""
        return all(i is None or i[0] == i[1] for side in self.intervals for i in side)

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario,
            "index": self.index,
            "metric": self.metric,
            "sides": list(self.sides),
            "labels": list(self.labels),
            "values": [list(v) for v in self.values],
            "intervals": [[None if i is None else list(i) for i in side] for side in self.intervals],
            "holds": self.holds,
            "text": self.text,
            "holds_at_persistence": {f"{p:g}": h for p, h in self.robust.items()},
        }


def contender_regimen(scenario: Scenario, contender) -> Regimen | None:
    """The regimen an ``expect`` contender names (a plan or a regimen mapping), or None for a strategy name."""
    if isinstance(contender, RegimenSpec):
        return regimen_from_spec(scenario, contender)
    if PLAN_PATTERN.match(contender):
        return make_regimen(scenario, contender)
    return None


def with_persistence(scenario: Scenario, persistence: float) -> Scenario:
    """The scenario with every proxy's ``persistence`` set to ``persistence`` (its own dynamics compiled afresh)."""
    proxies = [p.model_copy(update={"persistence": float(persistence)}) for p in scenario.proxies]
    return scenario.model_copy(update={"proxies": proxies})


def checkpoint_values(scenario: Scenario, regimen: Regimen, exp: Expectation) -> tuple[float | None, ...]:
    """The claim's metric on one run of the regimen's plan at its checkpoint (or every checkpoint, for ``all``)."""
    points = trajectory(scenario, regimen)
    chosen = points if exp.checkpoint == "all" else [points[exp.checkpoint - 1]]
    proxy = exp.proxy or scenario.proxy_names[0]
    out = []
    for point in chosen:
        rates = point["proxies"][proxy]
        ppa, ppm = rates["p_pass_aligned"], rates["p_pass_misaligned"]
        out.append(metric_value(exp.metric, {"base_rate": point["base_rate"], "p_pass_aligned": ppa, "p_pass_misaligned": ppm}))
    return tuple(out)


def _verdict(exp: Expectation, scores: list[tuple[str, tuple, tuple]]) -> tuple[bool | None, str]:
    """Whether the claim holds at every value it reads, and its line of text. Each score is
    ``(label, values, intervals)``, an interval ``(low, high)`` per value (an exact value's has no width)."""
    lower = exp.metric in LOWER_IS_BETTER
    where = "" if exp.checkpoint is None else (
        " at every checkpoint" if exp.checkpoint == "all" else f" at checkpoint {exp.checkpoint}"
    )
    where += f" ({exp.proxy})" if exp.proxy else ""
    labels = "  " + " vs ".join(f"[{label}]" for label, _, _ in scores)

    def shown(vals, spans) -> str:
        return ", ".join("undefined" if v is None else f"{v:.4f}" if lo == hi else f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
                         for v, (lo, hi) in zip(vals, spans))

    if any(v is None for _, vals, _ in scores for v in vals):
        return None, f"{exp.metric}{where} is undefined for a side {labels}"
    if exp.value is not None:
        (_, vals, spans), = scores
        lo, hi = exp.within
        holds = all(lo <= a and b <= hi for a, b in spans)
        return holds, f"{exp.metric}{where}: {shown(vals, spans)} within [{lo:g}, {hi:g}]{labels}"
    (_, a, sa), (_, b, sb) = scores
    if exp.same is not None:
        gaps = [abs(x - y) for x, y in zip(a, b)]
        widest = [max(ha - lb, hb - la) for (la, ha), (lb, hb) in zip(sa, sb)]  # the largest difference either way
        holds = all(w <= exp.tolerance for w in widest)
        return holds, (f"{exp.metric}{where}: {shown(a, sa)} vs {shown(b, sb)} (|diff| {max(gaps):.4f} <= {exp.tolerance})"
                       + labels)
    # the least margin the two intervals allow: the first side's worst end against the second side's best
    least = [(lb - ha) if lower else (la - hb) for (la, ha), (lb, hb) in zip(sa, sb)]
    holds = all(m > 0.0 and m >= exp.by for m in least)
    by = f" by at least {exp.by:g}" if exp.by else ""
    return holds, f"{exp.metric}{where}: {shown(a, sa)} vs {shown(b, sb)}{labels.replace('] vs [', '] better than [')}{by}"


def check_claims(
    scenario: Scenario,
    episodes: int = CLAIM_EPISODES,
    seed: int = CLAIM_SEED,
    confidence_z: float = Z999,
    exact_only: bool = False,
    robustness: tuple[float, ...] = (),
) -> list[Claim]:
    """Check every ``expect`` entry of ``scenario`` (with ``exact_only``, only those whose every side is a fixed regimen).

    With ``robustness``, each claim is also checked with every proxy's persistence set to each
    of those values (:attr:`Claim.robust`).
    """
    check_episodes(episodes)
    layout = ObservationLayout.of(scenario, "belief")
    benchmarked: dict[str, tuple] = {}
    out = []
    for i, exp in enumerate(scenario.expect):
        scores = []  # (label, values, intervals) of each contender
        for c in exp.contenders:
            regimen = contender_regimen(scenario, c)
            label = str(c) if regimen is None else regimen.describe(scenario)
            if regimen is None:
                resolve_names([], [c])
                regimen = make_strategy(c, scenario, layout).regimen()
                if regimen is not None:
                    label = f"{c} (exact)"
            if regimen is not None and exp.checkpoint is not None:
                vals = checkpoint_values(scenario, regimen, exp)
                scores.append((label, vals, tuple((v, v) for v in vals)))
            elif regimen is not None:
                v = metric_value(exp.metric, analyze(scenario, regimen).to_dict())
                scores.append((label, (v,), ((v, v),)))
            elif exact_only:
                break
            else:
                if c not in benchmarked:
                    benchmarked[c] = run_pair(scenario, c, episodes, seed)
                outcomes = benchmarked[c].outcomes
                span = outcomes.interval(exp.metric, confidence_z)
                scores.append((f"{c} ({episodes} episodes)", (outcomes.value(exp.metric),), (span,)))
        if len(scores) < len(exp.contenders):
            continue
        holds, text = _verdict(exp, scores)
        out.append(Claim(scenario.name, i, exp.metric, tuple(str(c) for c in exp.contenders),
                         tuple(s[0] for s in scores), tuple(s[1] for s in scores), tuple(s[2] for s in scores), holds, text))
    for p in robustness:
        varied = {c.index: c.holds for c in check_claims(with_persistence(scenario, p), episodes, seed, confidence_z, exact_only)}
        for claim in out:
            claim.robust[p] = varied.get(claim.index)
    return out
