"""Scenario files: the schema, the loader and the error every bad input turns into.

A scenario is one YAML file in ``scenarios/`` (see ``docs/model.md`` for what each
field means in the essay's terms). Every field is validated on load; a bad file
raises :class:`ScenarioError` whose message is one line naming the file, the field
path and what is allowed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from proxygym.envs.errors import ScenarioError
from proxygym.envs.regimen import MAX_BUDGET, MAX_COMPUTE, PLAN_PATTERN, RANDOM_IDEA_NAME, regimen_from_spec

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: Limits that keep the exact belief state small (it has 2**(1 + proxies + persistent proxies)
#: latent states and 3**proxies usages per phase; see docs/model.md, "Size").
MAX_PROXIES = 4
MAX_PHASES = 8
MAX_IDEAS = 8
#: The most worlds a scenario may weigh (each multiplies the latent states a belief tracks).
MAX_WORLDS = 8
#: What a world may set: the fields that say what training and testing do (a phase's capability and
#: plasticity, an idea's base rate and drift, a proxy's fields), not the lab's own resources and
#: values (budget, compute, phase costs, rewards), which it knows.
WORLD_FIELDS = {"phases": ("capability", "plasticity"), "ideas": ("base_rate", "drift")}

#: Outcomes of the analysis for which a smaller value is the better one.
LOWER_IS_BETTER = frozenset(
    {"p_deploy_misaligned", "p_abstain", "expected_runs", "expected_compute", "p_pass_misaligned", "p_misaligned_pass"}
)
METRICS = (
    "base_rate",
    "p_pass_aligned",
    "p_pass_misaligned",
    "likelihood_ratio",
    "recall",
    "p_misaligned_pass",
    "prior_odds",
    "posterior_odds",
    "p_pass",
    "expected_runs",
    "expected_compute",
    "p_deploy_aligned",
    "p_deploy_misaligned",
    "p_abstain",
    "expected_return",
)
#: The metrics a claim may read at one checkpoint of a run (``checkpoint:``, from the trajectory);
#: all but base_rate are a proxy's.
CHECKPOINT_METRICS = ("base_rate", "p_pass_aligned", "p_pass_misaligned", "likelihood_ratio", "recall", "p_misaligned_pass")


Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Reward(_Strict):
    aligned: float = Field(1.0, allow_inf_nan=False)
    misaligned: float = Field(0.0, allow_inf_nan=False)
    abstain: float = Field(0.0, allow_inf_nan=False)
    run_cost: float = Field(0.0, ge=0.0, allow_inf_nan=False)


Whole = Annotated[int, Field(ge=1, strict=True)]


class Phase(_Strict):
    name: Name
    capability: float = Field(ge=0.0, allow_inf_nan=False)
    plasticity: Unit
    cost: Whole = 1  # the compute one phase uses (docs/model.md, "Compute")


class Prior(_Strict):
    """A discrete prior over an idea's base rate: P(rho = values[i]) = probs[i]."""

    values: list[Unit] = Field(min_length=1, max_length=16)
    probs: list[Unit] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _probs_match_values(self) -> "Prior":
        if len(self.values) != len(self.probs):
            raise ValueError(
                f"values has {len(self.values)} entries and probs has {len(self.probs)}; they must be the same length"
            )
        total = sum(self.probs)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"probs must sum to 1, they sum to {total:g}")
        return self


class Idea(_Strict):
    name: Name
    base_rate: Union[Unit, Prior] = 0.3
    drift: Unit = 0.0

    @field_validator("name")
    @classmethod
    def _not_random(cls, v: str) -> str:
        if v.lower() == RANDOM_IDEA_NAME:
            raise ValueError(f"'{v}' is reserved (a regimen's idea 'random' draws each run's idea at random); choose another name")
        return v

    @property
    def support(self) -> tuple[list[float], list[float]]:
        """The base rate's possible values and their prior probabilities."""
        if isinstance(self.base_rate, Prior):
            return list(self.base_rate.values), list(self.base_rate.probs)
        return [float(self.base_rate)], [1.0]


class Proxy(_Strict):
    name: Name
    sensitivity: Unit
    false_pass: Unit
    steer: float = Field(0.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    incentive: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    native: float = Field(0.0, allow_inf_nan=False)
    anti_strength: float = Field(1.0, ge=0.0, allow_inf_nan=False)
    anti_damage: Unit = 0.0
    proximity: Unit = 0.0
    difficulty: float = Field(10.0, allow_inf_nan=False)
    sharpness: float = Field(10.0, gt=0.0, allow_inf_nan=False)
    # v1 (docs/model.md, "World model v1"); each default reproduces v0
    persistence: Unit = 0.0
    gate: Unit = 0.0
    proximity_aligned: Union[Unit, None] = None  # None: the same as proximity
    faking_when_set: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    obfuscation_difficulty: Union[Annotated[float, Field(allow_inf_nan=False)], None] = None
    wash_out: Unit = 1.0
    transfer: dict[Name, Unit] = Field(default_factory=dict)

    @property
    def aligned_proximity(self) -> float:
        """The shaping rate of aligned models: ``proximity_aligned``, or ``proximity`` when it is not given."""
        return self.proximity if self.proximity_aligned is None else self.proximity_aligned

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v.lower() in {"none", "all"}:
            raise ValueError(f"'{v}' is reserved (it means a test set on the command line); choose another name")
        return v


class RegimenSpec(_Strict):
    """A fixed regimen named in an ``expect`` entry (see proxygym.envs.regimen.Regimen)."""

    plan: str
    test: Union[str, None] = None
    screen: dict[int, str] = Field(default_factory=dict)
    idea: Union[str, None] = None
    budget: Union[Annotated[int, Field(ge=1, le=MAX_BUDGET)], None] = None
    compute: Union[Annotated[int, Field(ge=1, le=MAX_COMPUTE, strict=True)], None] = None  # None: the scenario's
    fallback: Literal["deploy", "abstain"] = "deploy"

    @field_validator("plan")
    @classmethod
    def _plan_syntax(cls, v: str) -> str:
        if not PLAN_PATTERN.match(v):
            raise ValueError(f"plan {v!r} must be groups of the letters R, T, A separated by commas, e.g. 'TR,TR,RR'")
        return v


Contender = Union[Annotated[str, Field(min_length=1)], RegimenSpec]


class Expectation(_Strict):
    """A claim the tests check, in one of three forms.

    - ``{better: X, than: Y, metric: M}``: X beats Y on M (higher is better, except
      for the metrics in LOWER_IS_BETTER, where lower is better); with ``by: d``, by at least d;
    - ``{same: [X, Y], metric: M, tolerance: e}``: X and Y differ by at most e on M;
    - ``{value: X, metric: M, within: [lo, hi]}``: X's M lies in [lo, hi].

    X and Y are plans (``"T,R,R"``), regimens (``{plan, test, screen, idea, budget,
    compute, fallback}``) or strategy names. ``recall`` is 1 - p_pass_misaligned and
    ``p_misaligned_pass`` is P(misaligned and passes), (1 - base_rate) p_pass_misaligned.
    With ``checkpoint: t`` (1..T, or ``all``: every checkpoint) the metric is read on one run
    of a fixed regimen's plan at checkpoint t, with no test applied (the analysis'
    trajectory; the metrics of CHECKPOINT_METRICS), for ``proxy`` (needed when there are
    several proxies).
    """

    better: Union[Contender, None] = None
    than: Union[Contender, None] = None
    same: Union[Annotated[list[Contender], Field(min_length=2, max_length=2)], None] = None
    value: Union[Contender, None] = None
    within: Union[Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)], None] = None
    tolerance: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    by: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    metric: Literal[METRICS] = "expected_return"  # type: ignore[valid-type]
    checkpoint: Union[Annotated[int, Field(ge=1, le=MAX_PHASES)], Literal["all"], None] = None
    proxy: Union[Name, None] = None
    note: str = ""

    @field_validator("better", "than", "value")
    @classmethod
    def _plan_or_strategy(cls, v: Contender) -> Contender:
        _check_contender(v)
        return v

    @field_validator("same")
    @classmethod
    def _pair(cls, v: list) -> list:
        for c in v or []:
            _check_contender(c)
        return v

    @model_validator(mode="after")
    def _one_form(self) -> "Expectation":
        forms = [self.better is not None or self.than is not None, self.same is not None, self.value is not None]
        if sum(forms) != 1 or (self.better is None) != (self.than is None):
            raise ValueError("give 'better' and 'than', or 'same' (a pair), or 'value' (with 'within'): exactly one form")
        if (self.value is None) != (self.within is None):
            raise ValueError("'within: [lo, hi]' goes with 'value' (and 'value' needs it)")
        if self.within is not None and self.within[0] > self.within[1]:
            raise ValueError(f"within: [lo, hi] needs lo <= hi, got {self.within}")
        if self.by and self.better is None:
            raise ValueError("'by' goes with 'better' and 'than' (the margin by which one beats the other)")
        if self.checkpoint is not None and self.metric not in CHECKPOINT_METRICS:
            raise ValueError(f"metric {self.metric!r} is not read at a checkpoint; with 'checkpoint' use one of {', '.join(CHECKPOINT_METRICS)}")
        if self.proxy is not None and self.checkpoint is None:
            raise ValueError("'proxy' goes with 'checkpoint' (the proxy whose pass rates are read there)")
        return self

    @property
    def contenders(self) -> tuple[Contender, ...]:
        if self.value is not None:
            return (self.value,)
        return (self.better, self.than) if self.same is None else (self.same[0], self.same[1])

    @property
    def sides(self) -> tuple[str, ...]:
        """The fields that name the contenders, for error messages."""
        if self.value is not None:
            return ("value",)
        return ("better", "than") if self.same is None else ("same[0]", "same[1]")


def _check_contender(v: Contender) -> None:
    if isinstance(v, str) and not (PLAN_PATTERN.match(v) or re.match(r"^[a-z_][a-z0-9_]*$", v)):
        raise ValueError(
            f"{v!r} is neither a plan (letters R, T, A in comma-separated groups) nor a strategy name (lower_case)"
        )


class World(_Strict):
    """One setting of the scenario's parameters the lab cannot tell apart in advance, with its prior weight.

    ``set`` maps dotted paths (``proxies.NAME.FIELD``, ``proxies.NAME.transfer.OTHER``,
    ``phases.NAME.capability|plasticity``, ``ideas.NAME.base_rate|drift``) to the values they take
    in this world; every other field is the scenario's own (docs/model.md, "Worlds").
    """

    name: Name
    weight: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)
    set: dict[str, float] = Field(default_factory=dict)


def world_paths(scenario: "Scenario") -> list[str]:
    """The dotted paths a world of ``scenario`` may set, in file order."""
    proxy_fields = [f for f in Proxy.model_fields if f not in ("name", "transfer")]
    out = [f"phases.{p.name}.{f}" for p in scenario.phases for f in WORLD_FIELDS["phases"]]
    out += [f"ideas.{i.name}.{f}" for i in scenario.ideas for f in WORLD_FIELDS["ideas"]]
    for p in scenario.proxies:
        out += [f"proxies.{p.name}.{f}" for f in proxy_fields]
        out += [f"proxies.{p.name}.transfer.{o}" for o in scenario.proxy_names if o != p.name]
    return out


def _world_scenario(scenario: "Scenario", i: int, world: World) -> "Scenario":
    """The scenario as it is in ``world`` (no worlds, no claims), validated by the schema like a file."""
    where = f"worlds[{i}] ({world.name})"
    allowed = set(world_paths(scenario))
    data = scenario.model_dump(exclude={"worlds", "expect"})
    for path, value in world.set.items():
        if path not in allowed:
            head = path.split(".")[0]
            if head in ("budget", "compute", "reward") or path.endswith(".cost"):
                why = "the lab's budget, compute, phase costs and rewards are its own choices, the same in every world"
            else:
                why = "no such field"
            raise ValueError(f"{where}: cannot set {path!r} ({why}); a world may set {_summarize(scenario)}")
        section, name, field, *rest = path.split(".")
        place = next(x for x in data[section] if x["name"] == name)
        if rest:
            place[field] = {**place[field], rest[0]: value}
        else:
            place[field] = value
    try:
        out = Scenario.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"{where}: {_first_error(err)}") from None
    out._source = f"{scenario.source} {where}"
    return out


def _summarize(scenario: "Scenario") -> str:
    """The world paths in a few words: the sections, the names in each and the fields."""
    proxy_fields = [f for f in Proxy.model_fields if f not in ("name", "transfer")]

    def names(items) -> str:
        return "|".join(x.name for x in items)

    return (
        f"phases.<{names(scenario.phases)}>.<capability|plasticity>, ideas.<{names(scenario.ideas)}>.<base_rate|drift>, "
        f"proxies.<{names(scenario.proxies)}>.<{'|'.join(proxy_fields)}> or proxies.NAME.transfer.OTHER"
    )


def _default_ideas() -> list[Idea]:
    return [Idea(name="default", base_rate=0.3)]


class Scenario(_Strict):
    name: Name
    title: str = Field(min_length=1)
    claim: str = Field(min_length=1)
    description: str = ""
    budget: int = Field(ge=1, le=MAX_BUDGET)
    compute: Union[Annotated[int, Field(ge=1, le=MAX_COMPUTE, strict=True)], None] = None  # None: runs counted by budget alone
    reward: Reward = Field(default_factory=Reward)
    phases: list[Phase] = Field(min_length=1, max_length=MAX_PHASES)
    ideas: list[Idea] = Field(default_factory=_default_ideas, min_length=1, max_length=MAX_IDEAS)
    proxies: list[Proxy] = Field(min_length=1, max_length=MAX_PROXIES)
    expect: list[Expectation] = Field(default_factory=list)
    worlds: list[World] = Field(default_factory=list, max_length=MAX_WORLDS)  # empty: the scenario is the one world
    _source: str = PrivateAttr(default="")
    _cache: dict = PrivateAttr(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        # Where a scenario was read from is not part of what it is.
        return isinstance(other, Scenario) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

    @property
    def source(self) -> str:
        """Where the scenario came from (its file), for error messages."""
        return self._source or self.name

    # A copy (``model_copy(update=...)`` included) compiles its own dynamics: the cache is not shared.
    def __copy__(self) -> "Scenario":
        copy = super().__copy__()
        copy._cache = {}
        return copy

    def __deepcopy__(self, memo=None) -> "Scenario":
        copy = super().__deepcopy__(memo)
        copy._cache = {}
        return copy

    def cached(self, key: str, build):
        """``build(self)``, computed once per scenario object (a scenario is frozen, so it cannot go stale).

        The compiled dynamics and the exact optimum live here, so every consumer of one
        loaded scenario shares them.
        """
        if key not in self._cache:
            self._cache[key] = build(self)
        return self._cache[key]

    @model_validator(mode="before")
    @classmethod
    def _budget_or_compute(cls, data: object) -> object:
        # With a compute budget, the run budget is optional: absent, it is the most runs a program may start.
        if isinstance(data, dict) and "budget" not in data and data.get("compute") is not None:
            data = {**data, "budget": MAX_BUDGET}
        return data

    @field_validator("budget", mode="before")
    @classmethod
    def _whole_budget(cls, v: object) -> object:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError(f"budget must be a whole number of runs, got {v!r}")
        return v

    @property
    def spent_by_checkpoint(self) -> tuple[int, ...]:
        """The compute a run has used by each checkpoint ``0..T``: the costs of the phases run so far."""
        out = [0]
        for p in self.phases:
            out.append(out[-1] + p.cost)
        return tuple(out)

    @property
    def full_run_compute(self) -> int:
        """The compute one run played to the end uses: the sum of the phases' costs."""
        return self.spent_by_checkpoint[-1]

    @model_validator(mode="after")
    def _unique_names_and_plans(self) -> "Scenario":
        for field in ("phases", "ideas", "proxies"):
            names = [item.name for item in getattr(self, field)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{field}: names must be unique, {', '.join(dupes)} repeats")
        names = self.proxy_names
        for j, proxy in enumerate(self.proxies):
            for other in proxy.transfer:
                if other == proxy.name:
                    raise ValueError(
                        f"proxies[{j}].transfer: a proxy cannot transfer to itself ({other!r}); name other proxies"
                        f" ({', '.join(n for n in names if n != proxy.name) or 'there are none'})"
                    )
                if other not in names:
                    raise ValueError(f"proxies[{j}].transfer: unknown proxy {other!r}; proxies are {', '.join(names)}")
        if self.compute is not None and self.compute < self.full_run_compute:
            raise ValueError(
                f"compute: {self.compute} is less than one full run, which costs {self.full_run_compute}"
                " (the sum of the phases' costs)"
            )
        self._check_worlds()
        for i, exp in enumerate(self.expect):
            self._check_checkpoint(i, exp)
            for side, spec in zip(exp.sides, exp.contenders):
                try:
                    if isinstance(spec, RegimenSpec):
                        self._check_regimen(spec)
                    elif PLAN_PATTERN.match(spec):
                        self._check_regimen(RegimenSpec(plan=spec))
                except ValueError as err:
                    raise ValueError(f"expect[{i}].{side}: {err}") from None
        return self

    def _check_worlds(self) -> None:
        if not self.worlds:
            return
        if len(self.worlds) == 1:
            raise ValueError("worlds: give at least two (one world is the scenario with its values set: set them in the file)")
        names = [w.name for w in self.worlds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"worlds: names must be unique, {', '.join(dupes)} repeats")
        total = sum(w.weight for w in self.worlds)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"worlds: the weights must sum to 1, they sum to {total:g}")
        if len(self.ideas) > 1:
            raise ValueError(
                f"worlds: a scenario with worlds has one idea (this one has {len(self.ideas)}:"
                f" {', '.join(self.idea_names)}); weigh the ideas' base rates with a prior instead"
            )
        for i, world in enumerate(self.worlds):
            _world_scenario(self, i, world)

    @property
    def world_scenarios(self) -> "tuple[Scenario, ...]":
        """The scenario in each of its worlds (claims and worlds dropped), in file order; without
        ``worlds``, the scenario alone. Built once per scenario object."""
        if not self.worlds:
            return (self,)

        def build(sc: "Scenario") -> "tuple[Scenario, ...]":
            try:  # (a copy with new values, as a sweep makes, is checked here: model_copy does not validate)
                return tuple(_world_scenario(sc, i, w) for i, w in enumerate(sc.worlds))
            except ValueError as err:
                raise ScenarioError(f"{sc.source}: {err}") from None

        return self.cached("world_scenarios", build)

    @property
    def world_weights(self) -> tuple[float, ...]:
        """The worlds' prior weights (``(1.0,)`` without worlds)."""
        return tuple(w.weight for w in self.worlds) or (1.0,)

    def _check_checkpoint(self, i: int, exp: Expectation) -> None:
        if exp.checkpoint is None:
            return
        T = len(self.phases)
        if exp.checkpoint != "all" and exp.checkpoint > T:
            raise ValueError(f"expect[{i}].checkpoint: {exp.checkpoint} is past the last checkpoint; checkpoints are 1..{T} (or 'all')")
        names = self.proxy_names
        if exp.proxy is not None and exp.proxy not in names:
            raise ValueError(f"expect[{i}].proxy: unknown proxy {exp.proxy!r}; proxies are {', '.join(names)}")
        if exp.proxy is None and exp.metric != "base_rate" and len(names) > 1:
            raise ValueError(f"expect[{i}]: {exp.metric} at a checkpoint is a proxy's; say which with 'proxy' ({', '.join(names)})")
        for side, spec in zip(exp.sides, exp.contenders):
            if isinstance(spec, str) and not PLAN_PATTERN.match(spec):
                raise ValueError(
                    f"expect[{i}].{side}: {spec!r} at a checkpoint: name a plan or a regimen mapping"
                    " (a claim at a checkpoint reads one run of a fixed plan)"
                )

    def _check_regimen(self, spec: RegimenSpec) -> None:
        try:
            regimen_from_spec(self, spec)
        except ScenarioError as err:
            raise ValueError(str(err).removeprefix(f"{self.source}: ")) from None

    # -- convenience -------------------------------------------------------------
    @property
    def proxy_names(self) -> list[str]:
        return [p.name for p in self.proxies]

    @property
    def idea_names(self) -> list[str]:
        return [i.name for i in self.ideas]


_TYPE_TAGS = {"float", "int", "str", "bool", "list", "dict", "none"}


def _is_field(part: object) -> bool:
    """Pydantic puts the union branch it tried into an error's location; field names look different."""
    text = str(part)
    return not ("[" in text or "-" in text or text[:1].isupper() or text in _TYPE_TAGS)


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_field(part):
            out += ("." if out else "") + str(part)
    return out


def _first_error(err: ValidationError) -> str:
    errors = err.errors(include_url=False)
    # A value that may be a number or a mapping (a prior, a regimen) fails once per branch:
    # report the branch that matches the type of what was written.
    def branch_fits(e: dict) -> bool:
        tried_mapping = any(str(p).endswith(("Prior", "Prior]", "RegimenSpec", "RegimenSpec]")) for p in e["loc"])
        return isinstance(e.get("input"), dict) == tried_mapping

    e = next((cand for cand in errors if branch_fits(cand)), errors[0])
    msg = e["msg"].removeprefix("Value error, ")
    where = _format_loc(e["loc"])
    extra = ""
    if e["type"] == "extra_forbidden":
        parent = where.rsplit(".", 1)[0] if "." in where else "the top level"
        msg = f"unknown key (not allowed in {parent})"
    elif e["type"] == "missing":
        msg = "required field is missing"
    elif "input" in e and not isinstance(e["input"], (dict, list)) and e["type"] != "value_error":
        extra = f" (got {e['input']!r})"
    return f"{where}: {msg}{extra}" if where else f"{msg}{extra}"


def parse_scenario(data: object, source: str = "<scenario>", expected_name: str | None = None) -> Scenario:
    """Validate a mapping (already parsed from YAML) into a :class:`Scenario`."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the file must hold a mapping of fields (name, budget, phases, ...), got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(f"{source}: {_first_error(err)}") from None
    if expected_name is not None and scenario.name != expected_name:
        raise ScenarioError(f"{source}: name: must equal the file stem {expected_name!r}, got {scenario.name!r}")
    scenario._source = source
    return scenario


def shipped_scenarios() -> list[str]:
    """Names of the scenarios that ship with ProxyGym, sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(ref: "str | Path | Scenario") -> Scenario:
    """Load a scenario by shipped name, by path to a YAML file, or pass a loaded one through."""
    if isinstance(ref, Scenario):
        return ref
    ref_str = str(ref)
    path = Path(ref_str)
    if not (ref_str.endswith((".yaml", ".yml")) or path.is_file()):
        if not re.match(NAME_PATTERN, ref_str) or not (SCENARIO_DIR / f"{ref_str}.yaml").is_file():
            names = ", ".join(shipped_scenarios())
            raise ScenarioError(f"unknown scenario {ref_str!r}: give a path to a YAML file or one of: {names}")
        path = SCENARIO_DIR / f"{ref_str}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: cannot be read ({err.__class__.__name__}: {err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_scenario(data, source=str(path), expected_name=path.stem)
