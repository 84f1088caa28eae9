"""Where the answer flips: exact analyses over a grid of parameter values, and the flip points of two regimens.

:func:`sweep` analyses every regimen at every point of a grid of one or two parameters
(paths of :mod:`proxygym.envs.parameters`), and optionally solves the exact optimum there.
:func:`flips` takes two regimens and, for every numeric parameter of the scenario, finds
where within the parameter's range the better of the two changes while the others stay at
the scenario's values: a scan of the range brackets each change of sign of the margin, and
bisection on the exact analysis finds the first multiple of ``FLIP_TOLERANCE`` past it.

A regimen is written as on the command line or in a scenario's ``expect``: a plan
(``"T,R,R"``) or a mapping (``"{plan: R, test: none, screen: {1: honeypot}}"``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import yaml
from pydantic import ValidationError
from tqdm import tqdm

from proxygym.agents.parallel import check_ray, parallel_map
from proxygym.envs.analysis import ANALYSIS_KEYS, Analysis, analyze_many, compare, metric_value
from proxygym.envs.errors import ProxyGymError, ScenarioError
from proxygym.envs.parameters import Parameter, check_value, parameter, parameter_setter, parameters, with_parameters
from proxygym.envs.regimen import PLAN_PATTERN, Regimen, make_regimen, regimen_from_spec
from proxygym.envs.scenario import LOWER_IS_BETTER, METRICS, RegimenSpec, Scenario

#: Bisection narrows a flip point to this width (in the parameter's own units).
FLIP_TOLERANCE = 1e-4
#: Points of the scan that brackets flips, per parameter (a flip and its return closer than
#: the spacing of this scan can be missed).
SCAN_POINTS = 65
#: The most exact analyses one sweep may ask for (grid points x regimens), and the most grid
#: points with ``--optimal`` (each is a solve).
MAX_ANALYSES = 1_000_000
MAX_OPTIMAL_POINTS = 10_000
#: A grid of at least this many points is analysed on every local core, in chunks of at most CHUNK_POINTS
#: (smaller grids take well under a second on one core, less than starting the processes saves).
PARALLEL_POINTS = 4000
CHUNK_POINTS = 500
#: The margin below which two regimens count as tied (no winner).
TIE = 1e-12


def parse_regimen_text(scenario: Scenario, text: str) -> Regimen:
    """A regimen from a plan (``"T,R,R"``) or a YAML mapping of a regimen (``"{plan: R, test: none}"``)."""
    text = text.strip()
    if PLAN_PATTERN.match(text):
        return make_regimen(scenario, text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"regimen {text!r}: give a plan such as 'T,R,R' or a mapping such as '{{plan: R, test: none, screen: {{1: NAME}}}}'"
        )
    try:
        spec = RegimenSpec.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScenarioError(f"regimen {text!r}: {where}: {first['msg']}") from None
    return regimen_from_spec(scenario, spec)


@dataclass(frozen=True)
class Axis:
    """One swept parameter: its path and the values of the grid."""

    path: str
    values: tuple[float, ...]


def parse_vary(scenario: Scenario, text: str) -> Axis:
    """``PATH=LO:HI:N`` into an :class:`Axis` of N evenly spaced values (rounded for a whole-number field)."""
    try:
        path, spec = text.split("=", 1)
        lo_s, hi_s, n_s = spec.split(":")
        lo, hi, n = float(lo_s), float(hi_s), int(n_s)
    except ValueError:
        raise ProxyGymError(f"--vary {text!r}: write PATH=LO:HI:N, e.g. proxies.cot_monitor.steer=0:1:21") from None
    if n < 1 or (n == 1 and lo != hi):
        raise ProxyGymError(f"--vary {text!r}: N must be at least 2 (or 1 with LO = HI), got {n}")
    if n > MAX_ANALYSES:
        raise ProxyGymError(f"--vary {text!r}: N is at most {MAX_ANALYSES:,}, got {n:,}")
    p = parameter(scenario, path.strip())
    for v in (lo, hi):
        check_value(scenario, p.path, v)
    values = np.linspace(lo, hi, n)
    if p.whole:
        values = np.unique(np.round(values))
    return Axis(p.path, tuple(float(v) for v in values))


def _margin(a: Analysis, b: Analysis, metric: str) -> float | None:
    """How much better ``a`` is than ``b`` on ``metric`` (positive: a wins), or None where undefined."""
    x, y = metric_value(metric, a.to_dict()), metric_value(metric, b.to_dict())
    if x is None or y is None:
        return None
    return (y - x) if metric in LOWER_IS_BETTER else (x - y)


def _regimens_at(scenario: Scenario, texts: list[str]) -> list[Regimen]:
    return [parse_regimen_text(scenario, t) for t in texts]


#: Paths whose value a regimen reads (its default budget and compute): the regimens are rebuilt where these vary.
REGIMEN_PATHS = ("budget", "compute")


def _analyse_chunk(args) -> list[dict]:
    """The rows of some grid points (run in a worker process for a large grid), their values already checked;
    the points are analysed together (:func:`analyze_many`)."""
    scenario, points, texts = args
    setter = parameter_setter(scenario, list(points[0]) if points else [])
    found = analyze_many([setter(values) for values in points], lambda sc: _regimens_at(sc, texts))
    return [_row(values, t, a) for values, results in zip(points, found) for t, a in zip(texts, results)]


def _row(values: dict[str, float], text: str, a: Analysis) -> dict:
    """One row of a sweep: the point, the regimen, every analysis key and the metrics derived from them."""
    keys = a.to_dict()
    return {"params": dict(values), "plan": text, **keys,
            **{m: metric_value(m, keys) for m in ("recall", "p_misaligned_pass")}}


def _solve_value(args) -> float:
    """The exact optimum's value at one grid point (run in a worker process)."""
    from proxygym.agents.solver import solve

    scenario, values = args
    return solve(with_parameters(scenario, values)).value


def sweep(scenario: Scenario, axes: list[Axis], texts: list[str], optimal: bool = False, progress: bool = False,
          workers: int | None = None, ray_address: str | None = None) -> list[dict]:
    """Every regimen analysed exactly at every grid point: rows ``{"params": {...}, "plan": TEXT, **analysis}``
    in grid order; with ``optimal``, also a row ``{"params", "plan": "optimal", "expected_return": value}``
    per point. Large grids and the optimum run on ``workers`` processes (default: every local core); with
    ``ray_address``, the optimum's solves run on Ray instead (:mod:`proxygym.agents.parallel`)."""
    if not 1 <= len(axes) <= 2:
        raise ProxyGymError(f"--vary: give one or two parameters, got {len(axes)}")
    if len({a.path for a in axes}) != len(axes):
        raise ProxyGymError("--vary: the two parameters must differ")
    if not texts and not optimal:
        raise ProxyGymError("give at least one regimen (--plans) or --optimal")
    size = math.prod(len(a.values) for a in axes)
    if size * max(1, len(texts)) > MAX_ANALYSES:
        raise ProxyGymError(f"the grid asks for {size * max(1, len(texts)):,} analyses; the limit is {MAX_ANALYSES:,}")
    if optimal and size > MAX_OPTIMAL_POINTS:
        raise ProxyGymError(f"--optimal solves every grid point: {size:,} points; the limit is {MAX_OPTIMAL_POINTS:,}")
    if workers is not None and workers < 1:
        raise ProxyGymError(f"--workers must be at least 1, got {workers}")
    if ray_address is not None and not optimal:
        raise ProxyGymError("--ray-address: only the optimum's solves (--optimal) run on Ray")
    check_ray(ray_address)
    for axis in axes:  # each value once, so the grid's points are set unchecked
        for v in axis.values:
            check_value(scenario, axis.path, v)
    points = [dict(zip([a.path for a in axes], combo)) for combo in _grid(axes)]
    _regimens_at(scenario, texts)  # a bad regimen fails before any work
    workers = workers or os.cpu_count() or 1
    rows = []
    if texts:  # in chunks of points, on local processes where the grid is large enough to gain from them
        chunks = [points[i : i + CHUNK_POINTS] for i in range(0, len(points), CHUNK_POINTS)]
        done = parallel_map(_analyse_chunk, [(scenario, c, texts) for c in chunks],
                            workers=workers if len(points) >= PARALLEL_POINTS else 1, progress=progress,
                            desc="analyses", unit="chunk")
        rows = [row for chunk in done for row in chunk]
    if optimal:
        values = parallel_map(_solve_value, [(scenario, v) for v in points], workers=workers, ray_address=ray_address,
                              progress=progress, desc="optimum", unit="point")
        rows += [{"params": dict(p), "plan": "optimal", "expected_return": v} for p, v in zip(points, values)]
    return rows


def _grid(axes: list[Axis]):
    if len(axes) == 1:
        return [(v,) for v in axes[0].values]
    return [(x, y) for x in axes[0].values for y in axes[1].values]


def winner_grid(rows: list[dict], axes: list[Axis], texts: list[str], metric: str = "expected_return") -> np.ndarray:
    """The index of the best regimen at each grid point, shape ``(len(axes[0].values), len(axes[1].values))``
    (one row for one axis); ties go to the first regimen, and -1 where the metric is undefined."""
    shape = tuple(len(a.values) for a in axes)
    out = np.full(shape, -1, dtype=np.int64)
    best = np.full(shape, -np.inf)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    where = {a.path: {v: i for i, v in enumerate(a.values)} for a in axes}
    for row in rows:
        if row["plan"] not in texts or row.get(metric) is None:
            continue
        at = tuple(where[a.path][row["params"][a.path]] for a in axes)
        score = sign * row[metric]
        if score > best[at] + TIE:
            best[at], out[at] = score, texts.index(row["plan"])
    return out


def terms_grid(rows: list[dict], axes: list[Axis], texts: list[str], metric: str = "expected_return") -> np.ndarray:
    """At each point of a two-parameter grid, which term decided between the two best regimens there:
    0 the base rate, 1 the likelihood ratio (the larger of the two log impacts of
    :func:`proxygym.envs.analysis.compare`), -1 where undefined or fewer than two regimens."""
    shape = tuple(len(a.values) for a in axes)
    out = np.full(shape, -1, dtype=np.int64)
    if len(texts) < 2:
        return out
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    by_point: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["plan"] in texts and row.get(metric) is not None:
            by_point.setdefault(tuple(row["params"][a.path] for a in axes), []).append(row)
    where = [{v: i for i, v in enumerate(a.values)} for a in axes]
    for key, point in by_point.items():
        if len(point) < 2:
            continue
        best, second = sorted(point, key=lambda r: -sign * r[metric])[:2]
        c = compare(Analysis(**_analysis_keys(best)), Analysis(**_analysis_keys(second)))
        b, lik = c["base_rate_log_impact"], c["likelihood_log_impact"]
        if b is not None and lik is not None:
            out[tuple(w[v] for w, v in zip(where, key))] = 0 if abs(b) >= abs(lik) else 1
    return out


def _analysis_keys(row: dict) -> dict:
    return {k: row[k] for k in ANALYSIS_KEYS}


def sweep_flip_points(scenario: Scenario, rows: list[dict], axis: Axis, texts: list[str],
                      metric: str = "expected_return") -> list[tuple[float, str, str]]:
    """Along a one-parameter sweep, where the best regimen changes: ``(value, from, to)``, each narrowed by
    bisection between the two grid points that bracket it."""
    wins = winner_grid(rows, [axis], texts, metric)
    p = parameter(scenario, axis.path)
    out = []
    for i in range(1, len(axis.values)):
        a, b = wins[i - 1], wins[i]
        if a >= 0 and b >= 0 and a != b:
            pair = [texts[a], texts[b]]
            margins = _margins_along(scenario, p.path, pair, metric)
            out.append((_bisect(margins, p, axis.values[i - 1], axis.values[i], 1), texts[a], texts[b]))
    return out


# -- flips ----------------------------------------------------------------------------------------
@dataclass
class Flips:
    """Where the better of two regimens changes as one parameter moves (the others at the scenario's values).

    ``margins``: the margin of the first regimen over the second at the window's two ends and at
    the scenario's value (positive: the first wins); ``span``: the least and the greatest margin the
    scan met (None if it is undefined everywhere).
    """

    path: str
    value: float
    window: tuple[float, float]
    flips: list[float]
    margins: tuple[float | None, float | None, float | None]
    span: tuple[float, float] | None = None

    @property
    def distance(self) -> float:
        """How far the nearest flip is from the scenario's value, as a share of the window (inf: none)."""
        if not self.flips:
            return math.inf
        width = max(self.window[1] - self.window[0], 1e-300)
        return min(abs(f - self.value) for f in self.flips) / width

    def to_dict(self) -> dict:
        return {"path": self.path, "value": self.value, "flips": self.flips, "window": list(self.window),
                "margin_at_low": self.margins[0], "margin_at_high": self.margins[1], "margin_now": self.margins[2],
                "margin_range": None if self.span is None else list(self.span)}


def _margins_along(scenario: Scenario, path: str, texts: list[str], metric: str):
    """``margins(values)``: the first regimen's margin over the second with ``path`` at each value, the points
    analysed together (:func:`analyze_many`; the regimens built once, or per budget and compute where ``path`` is
    one of them), None where undefined or where the schema refuses the value with the rest (say, compute below one
    run)."""
    setter = parameter_setter(scenario, [path])
    regimens = _regimens_at(scenario, texts)
    rebuilt = path in REGIMEN_PATHS

    def margins(values: list[float]) -> list[float | None]:
        points: dict[int, Scenario] = {}
        for i, value in enumerate(values):
            try:
                check_value(scenario, path, value)
                points[i] = setter({path: value})
            except ScenarioError:
                continue
        found = analyze_many(list(points.values()), lambda sc: _regimens_at(sc, texts) if rebuilt else regimens)
        by_point = dict(zip(points, (_margin(a, b, metric) for a, b in found)))
        return [by_point.get(i) for i in range(len(values))]

    return margins


def _sign(m: float | None) -> int:
    return 0 if m is None or abs(m) <= TIE else (1 if m > 0 else -1)


def flips_of(scenario: Scenario, p: Parameter, texts: list[str], metric: str = "expected_return") -> Flips:
    """The flip points of parameter ``p`` within its window (see the module's docstring)."""
    lo, hi = p.window()
    if p.whole:
        grid = np.unique(np.round(np.linspace(lo, hi, min(SCAN_POINTS, int(hi - lo) + 1))))
    else:
        grid = np.linspace(lo, hi, SCAN_POINTS)
    along = _margins_along(scenario, p.path, texts, metric)
    margins = along([float(v) for v in grid])
    found = []
    last_v, last_s = None, 0
    for v, m in zip(grid, margins):
        s = _sign(m)
        if s == 0:
            continue
        if last_s and s != last_s:
            found.append(_bisect(along, p, float(last_v), float(v), last_s))
        last_v, last_s = v, s
    (now,) = along([p.value])
    seen = [m for m in margins + [now] if m is not None]
    span = (min(seen), max(seen)) if seen else None
    return Flips(p.path, p.value, (float(lo), float(hi)), found, (margins[0], margins[-1], now), span)


def _bisect(margins, p: Parameter, a: float, b: float, sign_a: int) -> float:
    """The first point past ``a`` where the margin's sign leaves ``sign_a`` (``a`` and ``b`` bracket one change):
    on the lattice of multiples of FLIP_TOLERANCE (or of whole numbers), so the answer is the same whatever
    scan found the bracket: the least lattice value at which the order of the two is no longer the one at ``a``
    (a tie counts as changed). ``margins``: :func:`_margins_along`'s, asked one point at a time."""
    step = 1.0 if p.whole else FLIP_TOLERANCE
    lo, hi = math.floor(a / step + 1e-9), math.ceil(b / step - 1e-9)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s = _sign(margins([mid * step])[0])
        if s == sign_a:  # (a tie is where the first regimen stops being the better)
            lo = mid
        else:
            hi = mid
    return float(hi) if p.whole else round(hi * step, 4) + 0.0  # + 0.0: no "-0"


def flips(scenario: Scenario, first: str, second: str, metric: str = "expected_return", progress: bool = False) -> list[Flips]:
    """For every numeric parameter, where the better of two regimens flips; the nearest flips first."""
    if metric not in METRICS:
        raise ProxyGymError(f"unknown metric {metric!r}; metrics are {', '.join(METRICS)}")
    texts = [first, second]
    a, b = _regimens_at(scenario, texts)
    if a == b:
        raise ProxyGymError(f"--plan {first!r} and --than {second!r} are the same regimen: nothing can flip")
    out = [flips_of(scenario, p, texts, metric)
           for p in tqdm(list(parameters(scenario).values()), disable=not progress, unit="parameter", file=sys.stderr)]
    return sorted(out, key=lambda f: (f.distance, f.path))
