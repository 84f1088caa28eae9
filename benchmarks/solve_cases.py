"""The named solver cases of ``bench_solver.py --cases`` and ``bench_memory.py``: variants of three scenarios.

The three bases are the shipped loss_landscape, idea_screening and sticky_values as they were
when the speed targets were set (commit 3b219f7, before the scenarios were rebuilt on the
world model v1), written out here so that a case stays the same problem whatever the shipped
files become. Only ``parse_scenario`` is used, so an older checkout can build them too.

- ``3x3``: loss_landscape (3 phases, 2 proxies) with a third proxy, a copy of its first;
- ``3x3_persistence``: the same with every proxy at persistence 0.8;
- ``screening_b<budget>``: idea_screening with that budget (e.g. ``screening_b50``);
- ``screening_<m>_ideas``: idea_screening with m ideas, copies of its own, its budget (e.g. ``screening_8_ideas``);
- ``guard_8_phases``: sticky_values with 8 phases and an unknown base rate (0.2 or 0.5), for the size guard.
"""

from __future__ import annotations

import copy
import re

from proxygym.envs.scenario import parse_scenario

_TEXT = {"title": "solver case", "claim": "a fixed problem for the solver's benchmark"}
_THREE_PHASES = [
    {"name": "pretrain", "capability": 0.2, "plasticity": 0.8},
    {"name": "rl", "capability": 0.5, "plasticity": 0.2},
    {"name": "scale", "capability": 0.9, "plasticity": 0.05},
]
_WORKS_30 = {"values": [0.0, 1.0], "probs": [0.7, 0.3]}
#: The bases, as the shipped files held them at 3b219f7 (less their texts and claims).
BASES = {
    "loss_landscape": {
        "name": "loss_landscape", "budget": 5, "phases": _THREE_PHASES, "ideas": [{"name": "default", "base_rate": 0.3}],
        "proxies": [
            {"name": "no_reward_hacking", "sensitivity": 0.9, "false_pass": 0.1, "incentive": 1.0, "native": -10.0, "proximity": 0.5},
            {"name": "ask_if_aligned", "sensitivity": 0.9, "false_pass": 0.1, "incentive": 1.0, "native": -0.5, "proximity": 0.5},
        ],
    },
    "idea_screening": {
        "name": "idea_screening", "budget": 8, "phases": [{"name": "full_run", "capability": 0.5, "plasticity": 0.0}],
        "ideas": [{"name": n, "base_rate": _WORKS_30} for n in ("persona_lock_in", "faithful_cot", "sticky_corrigibility")],
        "proxies": [{"name": "interpretability_probe", "sensitivity": 0.9, "false_pass": 0.1}],
    },
    "sticky_values": {
        "name": "sticky_values", "budget": 5, "phases": _THREE_PHASES, "ideas": [{"name": "default", "base_rate": 0.3}],
        "proxies": [{"name": "honesty_eval", "sensitivity": 0.9, "false_pass": 0.1, "steer": 0.5, "incentive": 3.0,
                     "native": -3.0, "proximity": 0.5}],
    },
}

#: The cases bench_solver.py times by default.
CASES = ("3x3", "3x3_persistence", "screening_b50", "screening_8_ideas", "guard_8_phases")


def case_scenario(name: str):
    """The scenario of a named case (see the module's docstring)."""

    def variant(base: str, *edits):
        data = copy.deepcopy({**BASES[base], **_TEXT})
        for edit in edits:
            edit(data)
        return parse_scenario(data, source=f"{base} ({name})")

    def third_proxy(data):
        data["proxies"].append(dict(data["proxies"][0], name=data["proxies"][0]["name"] + "_copy"))

    def persistent(data):
        for proxy in data["proxies"]:
            proxy["persistence"] = 0.8

    def ideas(m: int):
        return lambda data: data.update(ideas=[dict(data["ideas"][i % 3], name=f"idea_{i}") for i in range(m)])

    def eight_phases(data):
        data["phases"] = [dict(data["phases"][t % 3], name=f"phase_{t}") for t in range(8)]
        for idea in data["ideas"]:
            idea["base_rate"] = {"values": [0.2, 0.5], "probs": [0.5, 0.5]}

    if name == "3x3":
        return variant("loss_landscape", third_proxy)
    if name == "3x3_persistence":
        return variant("loss_landscape", third_proxy, persistent)
    if name == "guard_8_phases":
        return variant("sticky_values", eight_phases)
    if m := re.fullmatch(r"screening_b(\d+)", name):
        return variant("idea_screening", lambda d: d.update(budget=int(m.group(1))))
    if m := re.fullmatch(r"screening_(\d+)_ideas", name):
        return variant("idea_screening", ideas(int(m.group(1))))
    raise SystemExit(f"unknown solve case {name!r}")
