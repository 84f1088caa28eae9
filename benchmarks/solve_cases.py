"""The named solver cases of ``bench_solver.py --cases`` and ``bench_memory.py``: variants of shipped scenarios.

Only ``load_scenario`` and ``parse_scenario`` are used, so an older checkout can build them too.

- ``3x3``: loss_landscape (3 phases, 2 proxies) with a third proxy, a copy of its first;
- ``3x3_persistence``: the same with every proxy at persistence 0.8;
- ``screening_b<budget>``: idea_screening with that budget (e.g. ``screening_b50``);
- ``screening_<m>_ideas``: idea_screening with m ideas, copies of its own, its budget (e.g. ``screening_8_ideas``);
- ``guard_8_phases``: sticky_values with 8 phases and an unknown base rate (0.2 or 0.5), for the size guard.
"""

from __future__ import annotations

import re

from proxygym.envs.scenario import load_scenario, parse_scenario

#: The cases bench_solver.py times by default.
CASES = ("3x3", "3x3_persistence", "screening_b50", "screening_8_ideas", "guard_8_phases")


def case_scenario(name: str):
    """The scenario of a named case (see the module's docstring)."""

    def variant(base: str, *edits):
        data = load_scenario(base).model_dump(exclude={"expect"})
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
