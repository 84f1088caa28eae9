"""World model v1: every new field out of range is refused by the CLI, in one line, with no traceback.

Each case is a scenario file with one bad value, run as ``python -m proxygym analyze FILE --plan R``
(world-model-v1.md, "New fields"; world-model.md: "Every field is validated on load: unknown
keys, wrong types, values out of range ... are each refused with one message that names the
file, the field path and the allowed range"). One case per rule runs as a subprocess (they run
concurrently: each spends most of its ~1 s importing); the other side of each range, and the
contract gaps, call the same entry point in process (``proxygym.cli.main``), to keep the module fast.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from tests.helpers import error_line

BASE = {
    "title": "t",
    "claim": "c",
    "budget": 2,
    "phases": [
        {"name": "early", "capability": 0.2, "plasticity": 0.5},
        {"name": "late", "capability": 0.6, "plasticity": 0.3},
    ],
    "proxies": [
        {"name": "p", "sensitivity": 0.9, "false_pass": 0.1},
        {"name": "q", "sensitivity": 0.8, "false_pass": 0.2},
    ],
}

# name: (where: ("proxies"|"phases", index) or None for the program, field, bad value, field path, what is allowed)
# one case per rule: run as a subprocess
CASES = {
    "persistence_above_1": (("proxies", 0), "persistence", 1.5, "proxies[0].persistence", "less than or equal to 1"),
    "gate_above_1": (("proxies", 1), "gate", 1.01, "proxies[1].gate", "less than or equal to 1"),
    "proximity_aligned_below_0": (("proxies", 0), "proximity_aligned", -0.5, "proxies[0].proximity_aligned", "greater than or equal to 0"),
    "wash_out_above_1": (("proxies", 0), "wash_out", 2, "proxies[0].wash_out", "less than or equal to 1"),
    "faking_when_set_negative": (("proxies", 0), "faking_when_set", -1, "proxies[0].faking_when_set", "greater than or equal to 0"),
    "obfuscation_difficulty_text": (("proxies", 0), "obfuscation_difficulty", "hard", "proxies[0].obfuscation_difficulty", "valid number"),
    "transfer_unknown_proxy": (("proxies", 0), "transfer", {"zz": 0.5}, "proxies[0].transfer", "proxies are p, q"),
    "transfer_to_itself": (("proxies", 1), "transfer", {"q": 0.5}, "proxies[1].transfer", "cannot transfer to itself"),
    "transfer_weight_above_1": (("proxies", 0), "transfer", {"q": 1.5}, "proxies[0].transfer.q", "less than or equal to 1"),
    "phase_cost_0": (("phases", 1), "cost", 0, "phases[1].cost", "greater than or equal to 1"),
    "phase_cost_fraction": (("phases", 0), "cost", 1.5, "phases[0].cost", "valid integer"),
    "compute_below_one_run": (None, "compute", 1, "compute", "less than one full run"),
}
# the other side of each range and other non-numbers: the same entry point, in process
IN_PROCESS = {
    "persistence_below_0": (("proxies", 1), "persistence", -0.1, "proxies[1].persistence", "greater than or equal to 0"),
    "gate_below_0": (("proxies", 0), "gate", -1, "proxies[0].gate", "greater than or equal to 0"),
    "proximity_aligned_above_1": (("proxies", 0), "proximity_aligned", 1.2, "proxies[0].proximity_aligned", "less than or equal to 1"),
    "wash_out_below_0": (("proxies", 1), "wash_out", -0.01, "proxies[1].wash_out", "greater than or equal to 0"),
    "faking_when_set_infinite": (("proxies", 0), "faking_when_set", float("inf"), "proxies[0].faking_when_set", "finite number"),
    "obfuscation_difficulty_list": (("proxies", 1), "obfuscation_difficulty", [0.5], "proxies[1].obfuscation_difficulty", "valid number"),
    "obfuscation_difficulty_nan": (("proxies", 0), "obfuscation_difficulty", float("nan"), "proxies[0].obfuscation_difficulty", "finite number"),
    "transfer_weight_below_0": (("proxies", 1), "transfer", {"p": -0.5}, "proxies[1].transfer.p", "greater than or equal to 0"),
    "transfer_not_a_mapping": (("proxies", 1), "transfer", ["p"], "proxies[1].transfer", "valid dictionary"),
    "phase_cost_negative": (("phases", 0), "cost", -2, "phases[0].cost", "greater than or equal to 1"),
    "compute_0": (None, "compute", 0, "compute", "greater than or equal to 1"),
    "compute_fraction": (None, "compute", 2.5, "compute", "valid integer"),
}
# A YAML boolean or a quoted string is not a real number ("obfuscation_difficulty: real or null";
# "wrong types ... are refused"), yet the loader's lax number parsing accepts them.
CONTRACT_GAPS = {
    "obfuscation_difficulty_boolean": (("proxies", 0), "obfuscation_difficulty", True, "proxies[0].obfuscation_difficulty", "number"),
    "persistence_boolean": (("proxies", 0), "persistence", True, "proxies[0].persistence", "number"),
    "persistence_quoted_text": (("proxies", 0), "persistence", "0.5", "proxies[0].persistence", "number"),
}


def write_case(folder, name, where, field, value):
    data = copy.deepcopy(BASE)
    data["name"] = name
    if where is None:
        data[field] = value
    else:
        data[where[0]][where[1]][field] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run every subprocess case at once; {case: (returncode, stdout, stderr)}."""
    folder = tmp_path_factory.mktemp("v1_bad_input")
    procs = {}
    for name, (where, field, value, _, _) in CASES.items():
        path = write_case(folder, name, where, field, value)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "proxygym", "analyze", str(path), "--plan", "R"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=folder,
        )
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout, stderr)
    return out


def check(outcome, name, path, allowed):
    line = error_line(*outcome, name)
    assert f"{name}.yaml" in line, line
    assert f"{path}:" in line, line
    assert allowed in line, line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_new_field_is_refused(outcomes, name):
    _, _, _, path, allowed = CASES[name]
    check(outcomes[name], name, path, allowed)


def run_in_process(tmp_path, capsys, name, case):
    from proxygym.cli import main

    where, field, value, _, _ = case
    path = write_case(tmp_path, name, where, field, value)
    code = main(["analyze", str(path), "--plan", "R"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_bad_new_field_is_refused_in_process(tmp_path, capsys, name):
    _, _, _, path, allowed = IN_PROCESS[name]
    check(run_in_process(tmp_path, capsys, name, IN_PROCESS[name]), name, path, allowed)


@pytest.mark.parametrize("name", list(CONTRACT_GAPS))
def test_non_number_is_refused(tmp_path, capsys, name):
    _, _, _, path, allowed = CONTRACT_GAPS[name]
    check(run_in_process(tmp_path, capsys, name, CONTRACT_GAPS[name]), name, path, allowed)
