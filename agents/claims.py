"""The claims of scenario files (their ``expect`` entries), checked.

A claim compares two contenders on one metric. A contender that is a fixed regimen (a
plan, a regimen mapping, or a strategy that is one, such as ``train_early_reserve_late``)
is scored exactly by :func:`proxygym.envs.analysis.analyze`, with zero width; an adaptive
strategy by the benchmark, with its interval at ``confidence_z``. A ``better`` claim holds
when the two intervals do not overlap and the order is right; a ``same`` claim holds when
the whole of both intervals lies within the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxygym.agents.bench import check_episodes, resolve_names, run_pair
from proxygym.agents.strategies import make_strategy
from proxygym.envs.analysis import analyze
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.outcomes import Z999
from proxygym.envs.regimen import PLAN_PATTERN, Regimen, make_regimen, regimen_from_spec
from proxygym.envs.scenario import LOWER_IS_BETTER, RegimenSpec, Scenario

#: Episodes and seed of the benchmark that scores an adaptive contender.
CLAIM_EPISODES = 20_000
CLAIM_SEED = 0


@dataclass
class Claim:
    """Both sides of one ``expect`` entry, and whether the claim holds (None: a value is undefined)."""

    scenario: str
    index: int
    metric: str
    sides: tuple[str, str]  # the contenders as the file names them
    labels: tuple[str, str]  # the contenders as scored
    values: tuple[float | None, float | None]
    half_widths: tuple[float, float]
    holds: bool | None
    text: str

    @property
    def exact(self) -> bool:
        """Both sides scored by the exact analysis."""
        return self.half_widths == (0.0, 0.0)


def contender_regimen(scenario: Scenario, contender) -> Regimen | None:
    """The regimen an ``expect`` contender names (a plan or a regimen mapping), or None for a strategy name."""
    if isinstance(contender, RegimenSpec):
        return regimen_from_spec(scenario, contender)
    if PLAN_PATTERN.match(contender):
        return make_regimen(scenario, contender)
    return None


def check_claims(
    scenario: Scenario,
    episodes: int = CLAIM_EPISODES,
    seed: int = CLAIM_SEED,
    confidence_z: float = Z999,
    exact_only: bool = False,
) -> list[Claim]:
    """Check every ``expect`` entry of ``scenario`` (with ``exact_only``, only those whose both sides are fixed regimens)."""
    check_episodes(episodes)
    layout = ObservationLayout.of(scenario, "belief")
    benchmarked: dict[str, tuple] = {}
    out = []
    for i, exp in enumerate(scenario.expect):
        sides = []  # (label, value, half-width) of each contender
        for c in exp.contenders:
            regimen = contender_regimen(scenario, c)
            label = str(c) if regimen is None else regimen.describe(scenario)
            if regimen is None:
                resolve_names([], [c])
                regimen = make_strategy(c, scenario, layout).regimen()
                if regimen is not None:
                    label = f"{c} (exact)"
            if regimen is not None:
                sides.append((label, getattr(analyze(scenario, regimen), exp.metric), 0.0))
            elif exact_only:
                break
            else:
                if c not in benchmarked:
                    benchmarked[c] = run_pair(scenario, c, episodes, seed)
                value, half = benchmarked[c].outcomes.interval(exp.metric, confidence_z)
                sides.append((f"{c} ({episodes} episodes)", value, half))
        if len(sides) < 2:
            continue
        (la, a, ha), (lb, b, hb) = sides
        if a is None or b is None:
            holds, text = None, f"{exp.metric} is undefined for one side  [{la}] vs [{lb}]"
        elif exp.same is not None:
            holds = abs(a - b) + ha + hb <= exp.tolerance
            text = f"{exp.metric}: {a:.4f} vs {b:.4f} (|diff| {abs(a - b):.4f} <= {exp.tolerance})  [{la}] vs [{lb}]"
        else:
            holds = a + ha < b - hb if exp.metric in LOWER_IS_BETTER else a - ha > b + hb
            shown = (f"{a:.4f} vs {b:.4f}" if ha == hb == 0.0 else f"{a:.4f} +- {ha:.4f} vs {b:.4f} +- {hb:.4f}")
            text = f"{exp.metric}: {shown}  [{la}] better than [{lb}]"
        out.append(Claim(scenario.name, i, exp.metric, tuple(str(c) for c in exp.contenders), (la, lb), (a, b), (ha, hb), holds, text))
    return out
