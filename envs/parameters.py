"""A scenario's numeric parameters by dotted path, their allowed ranges, and a scenario with some of them set.

A path names one number of a scenario file: ``budget``, ``compute``, ``reward.misaligned``,
``phases.rl.plasticity``, ``ideas.default.drift``, ``ideas.default.base_rate`` (a known base
rate, not a prior), ``proxies.cot_monitor.steer``, ``proxies.cot_monitor.transfer.probe``.
The allowed range of each is the scenario schema's (:mod:`proxygym.envs.scenario`), read from
its field constraints, so there is one definition of what a field may hold; a scenario with
new values is validated by the schema like a file (a cross-field rule, such as a compute
budget below one full run, is a one-line :class:`ScenarioError`).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, replace
from typing import Callable

import annotated_types
from pydantic.fields import FieldInfo

from proxygym.envs.errors import ScenarioError
from proxygym.envs.scenario import Idea, Phase, Proxy, Reward, Scenario, parse_scenario

#: Where a field has no bound on a side, the search for a flip looks this far from the value.
UNBOUNDED_SPAN = 10.0
#: The search for a flip in a compute budget looks up to this many times the scenario's compute (the schema
#: allows 100,000 units, where one exact analysis alone walks millions of (compute left, runs) states).
COMPUTE_SPAN = 10


@dataclass(frozen=True)
class Parameter:
    """One numeric parameter: its path, its value in the scenario, its allowed range and whether it is whole.

    ``lo``/``hi`` are the schema's bounds (``-inf``/``inf`` where it has none); ``open_lo`` says the
    lower bound itself is not allowed (a ``gt`` constraint). :meth:`window` is the finite range a
    search covers.
    """

    path: str
    value: float
    lo: float
    hi: float
    whole: bool
    open_lo: bool = False

    def window(self) -> tuple[float, float]:
        """The range searched for flips: the allowed range, or ``value -+ UNBOUNDED_SPAN`` on an unbounded side;
        a compute budget up to COMPUTE_SPAN times its value."""
        lo = self.value - UNBOUNDED_SPAN if math.isinf(self.lo) else self.lo
        hi = self.value + UNBOUNDED_SPAN if math.isinf(self.hi) else self.hi
        if self.path == "compute":
            hi = min(hi, COMPUTE_SPAN * self.value)
        if self.open_lo:
            lo = lo + (1 if self.whole else 1e-6) * max(1.0, abs(lo))
        return lo, hi

    def allowed(self) -> str:
        """The allowed range in words, for error messages."""
        lo = "-inf" if math.isinf(self.lo) else f"{self.lo:g}"
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:g}"
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} in {'(' if self.open_lo else '['}{lo}, {hi}]"


def _bounds(info: FieldInfo | None, annotation) -> tuple[float, float, bool, bool]:
    """(lo, hi, open_lo, whole) from a field's constraints, looking inside Optional/Annotated/Union."""
    lo, hi, open_lo = -math.inf, math.inf, False
    whole = annotation is int
    metadata = list(info.metadata) if info is not None else []
    for arg in typing.get_args(annotation):  # Union[Annotated[float, Field(...)], None] and the like
        for inner in typing.get_args(arg) or ():
            if isinstance(inner, FieldInfo):
                metadata += inner.metadata
        if typing.get_args(arg)[:1] == (int,) or arg is int:
            whole = True
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            lo = max(lo, float(m.ge))
        elif isinstance(m, annotated_types.Gt):
            lo, open_lo = max(lo, float(m.gt)), True
        elif isinstance(m, annotated_types.Le):
            hi = min(hi, float(m.le))
        elif isinstance(m, annotated_types.Lt):
            hi = min(hi, float(m.lt))
    return lo, hi, open_lo, whole


def _param(model: type, field: str, path: str, value) -> Parameter:
    info = model.model_fields[field]
    lo, hi, open_lo, whole = _bounds(info, info.annotation)
    if field == "transfer":  # dict[name, Unit]: the bounds are the value type's
        lo, hi, open_lo, whole = _bounds(None, typing.Union[typing.get_args(info.annotation)[1], None])
    return Parameter(path, float(value), lo, hi, whole, open_lo)


def parameters(scenario: Scenario) -> dict[str, Parameter]:
    """Every numeric parameter of ``scenario`` by path, in file order (a prior over a base rate and an unset
    ``obfuscation_difficulty`` are not numbers and are left out; ``proximity_aligned`` shows its effective value).
    Computed once per scenario object."""
    return scenario.cached("parameters", _parameters)


def _parameters(scenario: Scenario) -> dict[str, Parameter]:
    out: list[Parameter] = [_param(Scenario, "budget", "budget", scenario.budget)]
    if scenario.compute is not None:  # at least one full run's compute (a rule across fields)
        compute = _param(Scenario, "compute", "compute", scenario.compute)
        out.append(replace(compute, lo=float(scenario.full_run_compute)))
    for key in Reward.model_fields:
        out.append(_param(Reward, key, f"reward.{key}", getattr(scenario.reward, key)))
    for ph in scenario.phases:
        out += [_param(Phase, f, f"phases.{ph.name}.{f}", getattr(ph, f)) for f in ("capability", "plasticity", "cost")]
    for idea in scenario.ideas:
        if not hasattr(idea.base_rate, "values"):
            out.append(_param(Idea, "base_rate", f"ideas.{idea.name}.base_rate", idea.base_rate))
        out.append(_param(Idea, "drift", f"ideas.{idea.name}.drift", idea.drift))
    for px in scenario.proxies:
        for f in Proxy.model_fields:
            if f in ("name", "transfer"):
                continue
            value = px.aligned_proximity if f == "proximity_aligned" else getattr(px, f)
            if value is not None:
                out.append(_param(Proxy, f, f"proxies.{px.name}.{f}", value))
        for other, w in px.transfer.items():
            out.append(_param(Proxy, "transfer", f"proxies.{px.name}.transfer.{other}", w))
    fixed = set_by_every_world(scenario)
    return {p.path: p for p in out if p.path not in fixed}


def set_by_every_world(scenario: Scenario) -> set[str]:
    """The paths every one of the scenario's worlds sets: moving the scenario's own value changes nothing, so
    they are not parameters of it (a path only some worlds set is, and moves in the other worlds)."""
    if not scenario.worlds:
        return set()
    return set.intersection(*(set(w.set) for w in scenario.worlds))


def parameter(scenario: Scenario, path: str) -> Parameter:
    """The parameter at ``path``; an unknown path is a one-line error listing the valid ones."""
    known = parameters(scenario)
    if path in set_by_every_world(scenario):
        names = ", ".join(w.name for w in scenario.worlds)
        raise ScenarioError(f"{scenario.source}: {path} is set by every world ({names}), so its own value changes"
                            " nothing; vary it in the worlds' settings instead")
    if path not in known:
        raise ScenarioError(f"{scenario.source}: unknown parameter {path!r}; the parameters are {', '.join(known)}")
    return known[path]


def check_value(scenario: Scenario, path: str, value: float) -> Parameter:
    """The parameter at ``path``, after checking that ``value`` is allowed there (one line naming the range if not)."""
    p = parameter(scenario, path)
    ok = (p.lo < value if p.open_lo else p.lo <= value) and value <= p.hi and math.isfinite(value)
    if not ok or (p.whole and not float(value).is_integer()):
        raise ScenarioError(f"{scenario.source}: {path} = {value:g} is outside its allowed range: {p.allowed()}")
    return p


#: The most item copies a :func:`parameter_setter` keeps for reuse.
MAX_COPIES = 4096
#: Paths whose value takes part in a rule across fields (a compute budget of at least one full run):
#: a scenario with one of these set is validated whole by the schema.
CROSS_FIELD = ("compute", ".cost")


def _place(scenario: Scenario, path: str) -> tuple:
    """Where ``path`` sits: ``(section, item name, field, transfer key)``; ``section`` is None for a program
    field (``budget``), ``item name`` None for ``reward``, ``transfer key`` None but for
    ``proxies.NAME.transfer.OTHER``."""
    parts = path.split(".")
    if len(parts) == 1:
        return None, None, parts[0], None
    if parts[0] == "reward":
        return "reward", None, parts[1], None
    return parts[0], parts[1], parts[2], (parts[3] if len(parts) == 4 else None)


def _targets(scenario: Scenario, values: dict[str, float]):
    """Each value checked against its range and placed: ``_place(path) + (number,)``."""
    for path, value in values.items():
        number = int(value) if check_value(scenario, path, value).whole else float(value)
        yield _place(scenario, path) + (number,)


def with_parameters(scenario: Scenario, values: dict[str, float]) -> Scenario:
    """A copy of ``scenario`` with the parameters at the paths of ``values`` set (its claims dropped:
    they name regimens of the original). Each value is checked against its range; where a value
    takes part in a rule across fields (CROSS_FIELD), the whole scenario is validated by the schema."""
    for path, value in values.items():
        check_value(scenario, path, value)
    return parameter_setter(scenario, list(values))(values)


def parameter_setter(scenario: Scenario, paths: list[str]) -> Callable[[dict[str, float]], Scenario]:
    """``set(values)``: :func:`with_parameters` of ``scenario`` for values at ``paths``, each already checked
    with :func:`check_value` (as a sweep checks each value of its grid once); the paths are looked up once,
    for setting many points."""
    if any(path.endswith(CROSS_FIELD) for path in paths):
        return lambda values: _validated(scenario, values)
    program, items = [], {}  # items: (section, index) -> [(path, field, transfer key, whole)], "reward" at index None
    for path in paths:
        section, name, field, key = _place(scenario, path)
        whole = parameter(scenario, path).whole
        if section is None:
            program.append((path, field, whole))
        else:
            index = None if name is None else [x.name for x in getattr(scenario, section)].index(name)
            items.setdefault((section, index), []).append((path, field, key, whole))
    # the copy of an item with its new values, by those values: a grid point reuses the copies of the items it
    # shares with other points (say, a proxy's along one axis, a phase's along the other)
    copies: dict[tuple, object] = {}

    def set_values(values: dict[str, float]) -> Scenario:
        update: dict = {"expect": []}
        for path, field, whole in program:
            update[field] = int(values[path]) if whole else float(values[path])
        for (section, i), fields in items.items():
            numbers = tuple(int(values[path]) if whole else float(values[path]) for path, _, _, whole in fields)
            item = copies.get((section, i, numbers))
            if item is None:
                if len(copies) >= MAX_COPIES:
                    copies.clear()
                item = scenario.reward if section == "reward" else getattr(scenario, section)[i]
                change: dict = {}
                for (_, field, key, _), number in zip(fields, numbers):
                    if key is None:
                        change[field] = number
                    else:
                        change[field] = {**change.get(field, item.transfer), key: number}
                item = copies[(section, i, numbers)] = item.model_copy(update=change)
            if section == "reward":
                update["reward"] = item
            else:
                rows = update.setdefault(section, list(getattr(scenario, section)))
                rows[i] = item
        return scenario.model_copy(update=update)

    return set_values


def _validated(scenario: Scenario, values: dict[str, float]) -> Scenario:
    """:func:`with_parameters` by way of the schema: the scenario's data with the values set, parsed like a file."""
    data = scenario.model_dump()
    data["expect"] = []
    for section, name, field, key, number in _targets(scenario, values):
        if section is None:
            data[field] = number
            continue
        place = data["reward"] if section == "reward" else next(x for x in data[section] if x["name"] == name)
        if key is None:
            place[field] = number
        else:
            place[field][key] = number
    return parse_scenario(data, source=scenario.source)
