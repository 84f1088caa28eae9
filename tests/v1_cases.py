"""Small scenarios with the world model v1's fields switched on, shared by the v1 tests and the Monte Carlo suite."""

from __future__ import annotations


def phase(name, capability, plasticity):
    return {"name": name, "capability": capability, "plasticity": plasticity}


def scenario_data(name, phases, proxies, ideas=None, budget=2, reward=None):
    data = {"name": name, "title": "t", "claim": "c", "budget": budget, "phases": phases, "proxies": proxies}
    if ideas is not None:
        data["ideas"] = ideas
    data["reward"] = reward or {"aligned": 1.0, "misaligned": -1.0, "abstain": -0.2, "run_cost": 0.05}
    return data


THREE = [phase("pre", 0.3, 0.8), phase("rl", 0.7, 0.4), phase("scale", 1.1, 0.1)]
TWO_PHASES = [phase("pre", 0.2, 0.7), phase("late", 0.9, 0.3)]
PRIOR_AND_DRIFT = [
    {"name": "gamble", "base_rate": {"values": [0.2, 0.6], "probs": [0.5, 0.5]}, "drift": 0.1},
    {"name": "known", "base_rate": 0.4},
]

# k = 1, T = 3: every new field on, a persistent proxy with anti_damage > 0, two ideas (prior, drift)
ALL_ON_K1 = scenario_data(
    "all_on_k1",
    THREE,
    [
        {
            "name": "p", "sensitivity": 0.85, "false_pass": 0.15, "steer": 0.6, "incentive": 1.5, "native": -0.5,
            "anti_strength": 1.2, "anti_damage": 0.3, "proximity": 0.4, "proximity_aligned": 0.2,
            "difficulty": 0.8, "sharpness": 5.0, "persistence": 0.7, "gate": 0.6, "faking_when_set": 1.5,
            "obfuscation_difficulty": 0.5, "wash_out": 0.4,
        }
    ],
    ideas=PRIOR_AND_DRIFT,
)
# k = 2, T = 2: both persistent (kappa 1 and 0.5), anti_damage on both, transfer both ways, gate,
# a negative steer, proximity_aligned above proximity, wash_out 0, faking, obfuscation
BOTH_PERSISTENT_K2 = scenario_data(
    "both_persistent_k2",
    TWO_PHASES,
    [
        {
            "name": "cot", "sensitivity": 0.9, "false_pass": 0.2, "steer": 0.5, "incentive": 2.0, "native": -1.0,
            "anti_strength": 1.5, "anti_damage": 0.25, "proximity": 0.5, "proximity_aligned": 0.1,
            "difficulty": 0.6, "sharpness": 6.0, "persistence": 1.0, "gate": 1.0, "faking_when_set": 2.0,
            "wash_out": 0.0, "transfer": {"probe": 0.5},
        },
        {
            "name": "probe", "sensitivity": 0.7, "false_pass": 0.3, "steer": -0.3, "incentive": 1.0, "native": 0.5,
            "anti_strength": 2.0, "anti_damage": 0.4, "proximity": 0.2, "proximity_aligned": 0.6,
            "difficulty": 0.4, "sharpness": 3.0, "persistence": 0.5, "gate": 0.3, "obfuscation_difficulty": 0.7,
            "wash_out": 0.6, "transfer": {"cot": 0.8},
        },
    ],
    ideas=[{"name": "one", "base_rate": 0.35, "drift": 0.15}],
)
# k = 2, T = 3: one persistent proxy (anti_damage 0) and one not, transfer one way, gate on both
ONE_PERSISTENT_K2 = scenario_data(
    "one_persistent_k2",
    THREE,
    [
        {
            "name": "ask", "sensitivity": 0.95, "false_pass": 0.1, "steer": 0.4, "incentive": 1.0, "native": -0.3,
            "anti_strength": 1.0, "anti_damage": 0.2, "proximity": 0.3, "difficulty": 0.9, "sharpness": 8.0,
            "gate": 0.8, "faking_when_set": 0.5, "transfer": {"probe": 0.3},
        },
        {
            "name": "probe", "sensitivity": 0.8, "false_pass": 0.05, "steer": 0.2, "native": -2.0, "proximity": 0.5,
            "proximity_aligned": 0.25, "difficulty": 0.5, "sharpness": 4.0, "persistence": 0.9, "gate": 0.5,
            "obfuscation_difficulty": 0.6, "wash_out": 0.3,
        },
    ],
    ideas=PRIOR_AND_DRIFT,
    budget=2,
)
# k = 1, T = 2: no persistence, but gate (then psi is pi), faking, obfuscation, wash_out: v0's 4 states
GATE_NO_PERSISTENCE = scenario_data(
    "gate_no_persistence",
    TWO_PHASES,
    [
        {
            "name": "p", "sensitivity": 0.8, "false_pass": 0.25, "steer": 0.7, "incentive": 2.0, "native": -1.0,
            "anti_damage": 0.5, "proximity": 0.6, "proximity_aligned": 0.3, "difficulty": 0.5, "sharpness": 5.0,
            "gate": 0.9, "faking_when_set": 1.0, "obfuscation_difficulty": 0.4, "wash_out": 0.5,
        }
    ],
    ideas=[{"name": "one", "base_rate": {"values": [0.0, 0.5, 0.9], "probs": [0.3, 0.4, 0.3]}, "drift": 0.05}],
)
# k = 2, T = 3: no persistence, transfer and wash_out (dense tables may be used)
TRANSFER_ONLY = scenario_data(
    "transfer_only",
    THREE,
    [
        {"name": "a", "sensitivity": 0.9, "false_pass": 0.2, "steer": 0.3, "native": 0.2, "proximity": 0.4,
         "anti_damage": 0.3, "wash_out": 0.2, "transfer": {"b": 1.0}, "difficulty": 0.6, "sharpness": 5.0},
        {"name": "b", "sensitivity": 0.75, "false_pass": 0.1, "steer": -0.1, "native": -0.4, "incentive": 2.0,
         "proximity": 0.3, "proximity_aligned": 0.0, "transfer": {"a": 0.4}, "faking_when_set": 3.0},
    ],
    ideas=[{"name": "one", "base_rate": 0.5, "drift": 0.2}],
)
# k = 2, T = 2: edge values: plasticity 1 (0 ** 0 and 0 ** gamma), sensitivity 1 (pi_before = 1),
# false_pass 0 and no circumvention (pi = 0), anti_damage 1 (pi falls to 0), persistence 1, wash_out 0
EDGES = scenario_data(
    "edges",
    [phase("hot", 0.0, 1.0), phase("cold", 1.0, 0.0)],
    [
        {"name": "sure", "sensitivity": 1.0, "false_pass": 0.0, "steer": 1.0, "native": 0.0, "proximity": 1.0,
         "proximity_aligned": 0.5, "anti_damage": 1.0, "persistence": 1.0, "gate": 1.0, "faking_when_set": 0.0,
         "wash_out": 0.0, "transfer": {"half": 1.0}},
        {"name": "half", "sensitivity": 1.0, "false_pass": 0.0, "steer": 0.5, "native": -1.0, "proximity": 0.5,
         "difficulty": 0.5, "sharpness": 10.0, "persistence": 0.5, "gate": 0.5, "faking_when_set": 2.0,
         "obfuscation_difficulty": 0.5, "anti_damage": 0.5},
    ],
    ideas=[{"name": "one", "base_rate": 0.5}],
)
SCENARIOS = [ALL_ON_K1, BOTH_PERSISTENT_K2, ONE_PERSISTENT_K2, GATE_NO_PERSISTENCE, TRANSFER_ONLY, EDGES]


MC_CASES = [
    (ALL_ON_K1, "T,A,R", {1: "p"}, "p", "deploy"),
    (ALL_ON_K1, "A,T,A", {2: "p"}, "p", "abstain"),
    (ONE_PERSISTENT_K2, "TA,RT,AR", {1: "ask"}, "probe", "abstain"),
    (ONE_PERSISTENT_K2, "AT,TA,TT", {2: "ask,probe"}, None, "deploy"),
    (BOTH_PERSISTENT_K2, "TA,AT", {1: "cot"}, None, "abstain"),
]
