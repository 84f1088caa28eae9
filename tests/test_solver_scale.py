"""The exact solver at scale: exchangeable ideas against a dynamic program over pass/fail counts,
the size guard's bound against what solves measure, and ``proxygym solve --max-memory``.

The reference here, ``count_dp``, knows nothing of the filter, run trees, interning or canonical
keys: for ideas whose base rate is 0 or 1 (the idea_screening kind, values fixed within a run),
the posterior of an idea depends only on its pass and fail counts, so the optimum is a recursion
over those counts for every idea, in the ideas' own order (no symmetry used).
"""

from __future__ import annotations

import functools
import json
import tracemalloc

import pytest

from proxygym.agents.regimen import play_batch
from proxygym.agents.solver import estimate_size, parse_size, solve
from proxygym.agents.strategies import OptimalStrategy
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.scenario import load_scenario, parse_scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import PRIOR, TWO, compute_scenario, error_line, run_cli, run_concurrently, tiny

SENSITIVITY, FALSE_PASS = 0.9, 0.2
REWARD = {"aligned": 1.0, "misaligned": -0.8, "abstain": -0.1, "run_cost": 0.03}


def fixed_ideas(priors: list[float], budget: int):
    """Ideas whose base rate is 1 with probability ``priors[i]`` (else 0), one phase that moves nothing
    (plasticity 0, no shaping), a probe never trained on: the idea_screening kind."""
    return parse_scenario({
        "name": "fixed_ideas", "title": "t", "claim": "c", "budget": budget, "reward": REWARD,
        "phases": [{"name": "run", "capability": 0.5, "plasticity": 0.0}],
        "ideas": [{"name": f"i{n}", "base_rate": {"values": [0.0, 1.0], "probs": [1.0 - q, q]}} for n, q in enumerate(priors)],
        "proxies": [{"name": "probe", "sensitivity": SENSITIVITY, "false_pass": FALSE_PASS}],
    })


def count_dp(priors: list[float], budget: int, sensitivity=SENSITIVITY, false_pass=FALSE_PASS, reward=None) -> float:
    """The optimum by recursion over each idea's (passes, fails), ideas in their own order."""
    r = {**{"aligned": 1.0, "misaligned": 0.0, "abstain": 0.0, "run_cost": 0.0}, **(REWARD if reward is None else reward)}
    SENSITIVITY, FALSE_PASS = sensitivity, false_pass  # noqa: N806 (the names of the formulas)

    def works(q: float, p: int, f: int) -> float:  # P(the idea's base rate is 1 | p passes, f fails)
        a = q * SENSITIVITY**p * (1.0 - SENSITIVITY) ** f
        b = (1.0 - q) * FALSE_PASS**p * (1.0 - FALSE_PASS) ** f
        return a / (a + b)

    @functools.lru_cache(maxsize=None)
    def value(counts: tuple, n: int) -> float:
        best = -float("inf")
        for i, (p, f) in enumerate(counts):
            w = works(priors[i], p, f)
            total = -r["run_cost"]
            for passed, chance in ((True, w * SENSITIVITY + (1 - w) * FALSE_PASS), (False, w * (1 - SENSITIVITY) + (1 - w) * (1 - FALSE_PASS))):
                aligned = w * (SENSITIVITY if passed else 1 - SENSITIVITY) / chance  # the model is aligned iff the idea works
                deploy = aligned * r["aligned"] + (1 - aligned) * r["misaligned"]
                after = counts[:i] + ((p + passed, f + (not passed)),) + counts[i + 1 :]
                discard = r["abstain"] if n == 1 else value(after, n - 1)
                total += chance * max(deploy, discard)
            best = max(best, total)
        return best

    return value(tuple((0, 0) for _ in priors), budget)


CASES = {
    "three alike, budget 4": ([0.3, 0.3, 0.3], 4),
    "four alike, budget 3": ([0.3] * 4, 3),
    "two classes, budget 4": ([0.3, 0.5, 0.3, 0.5], 4),
    "two alike and one other, budget 5": ([0.4, 0.2, 0.4], 5),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exchangeable_ideas_equal_the_count_dp(case):
    priors, budget = CASES[case]
    sc = fixed_ideas(priors, budget)
    sol = solve(sc)
    assert sol.value == pytest.approx(count_dp(priors, budget), abs=1e-9)
    assert sol.outcomes().mean_return == pytest.approx(sol.value, abs=1e-9)
    # fewer program states than ideas' posteriors in every order
    assert sol.program_states < len(sol.policy._builder.weights[0]) ** len(priors)


def test_exchangeable_ideas_played_by_the_optimal_strategy():
    """Every real state the play reaches maps to a canonical one; the policy's actions are valid, the
    program states follow runs left, and the mean return is near the optimum."""
    sc = fixed_ideas([0.3, 0.5, 0.3, 0.5], 4)
    sol = solve(sc)
    env = ProxyAlignmentVectorEnv(4000, sc, observation="belief")
    returns, last = play_batch(env, OptimalStrategy(sc, env.layout, seed=0, solution=sol), seed=3)
    assert not last["invalid_action"].any()
    assert abs(returns.mean() - sol.value) < 5 * returns.std() / len(returns) ** 0.5 + 1e-9
    assert len(sol.policy.keys) > 1


def test_idea_screening_with_copies_of_its_ideas():
    """idea_screening (sensitivity 0.9, false pass 0.1, the default reward) with six copies of its idea and
    budget 4 equals the count recursion; a seventh copy changes nothing (at most four ideas are ever tried)."""
    base = load_scenario("idea_screening").model_dump(exclude={"expect"})
    values = []
    for copies in (6, 7):
        data = dict(base, budget=4, ideas=[dict(base["ideas"][0], name=f"idea_{n}") for n in range(copies)])
        values.append(solve(parse_scenario(data)).value)
    assert values[0] == pytest.approx(count_dp([0.3] * 6, 4, 0.9, 0.1, reward={}), abs=1e-9)
    assert values[1] == pytest.approx(values[0], abs=1e-12)


# -- the size guard ---------------------------------------------------------------------------------
SMALL = {
    "known T2 B3": lambda: tiny(T=2, budget=3),
    "prior T2 B2": lambda: tiny(T=2, budget=2, ideas=PRIOR),
    "prior T1 B5": lambda: tiny(T=1, budget=5, ideas=PRIOR),
    "two ideas T2 B2": lambda: tiny(T=2, budget=2, ideas=TWO),
    "two proxies T1 B3": lambda: tiny(T=1, budget=3, ideas=TWO, k=2),
    "compute": lambda: compute_scenario(budget=3),
    "fixed ideas": lambda: fixed_ideas([0.3, 0.3, 0.5], 6),
}


@pytest.mark.parametrize("case", list(SMALL))
def test_size_bound_is_above_what_a_solve_measures(case):
    sc = SMALL[case]()
    est = estimate_size(sc)
    tracemalloc.start()
    try:
        sol = solve(sc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sol.program_states <= est.program_states
    assert len(sol.policy._builder.trees) <= est.tree_builds
    assert sol.states <= est.work
    assert peak <= est.memory


def test_size_guard_counts_instead_of_building():
    """Eight phases and an unknown base rate: refused from the count, within a few megabytes (one run tree
    alone would have 2 million nodes)."""
    data = load_scenario("sticky_values").model_dump(exclude={"expect"})
    data["phases"] = [dict(data["phases"][t % 3], name=f"phase_{t}") for t in range(8)]
    data["ideas"] = [{"name": "default", "base_rate": {"values": [0.2, 0.5], "probs": [0.5, 0.5]}}]
    sc = parse_scenario(data)
    tracemalloc.start()
    try:
        est = estimate_size(sc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5e6 and est.tree_nodes > 2e6
    with pytest.raises(ProxyGymError, match="--max-memory"):
        est.check(sc)


@pytest.mark.parametrize("text, expected", [("4GB", 4 * 10**9), ("500MB", 5 * 10**8), ("1.5GiB", 3 * 2**29), ("2000000000", 2 * 10**9),
                                            ("64 kB", 64_000), ("12b", 12)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "0", "-4GB", "4XB", "", "1e9"])
def test_parse_size_refuses(text):
    with pytest.raises(ProxyGymError, match="--max-memory"):
        parse_size(text)


def test_solve_max_memory_on_the_command_line():
    """A limit below the estimate refuses in one line that names it and the flag; a large one solves;
    a bad size is a one-line error with the units allowed."""
    small, large, bad = run_concurrently([
        lambda: run_cli("solve", "loss_landscape", "--max-memory", "1000"),
        lambda: run_cli("solve", "loss_landscape", "--max-memory", "4GB", "--json"),
        lambda: run_cli("solve", "loss_landscape", "--max-memory", "lots"),
    ])
    line = error_line(small.returncode, small.stdout, small.stderr)
    assert "too large" in line and "--max-memory" in line and "the limit is 1e+03 bytes" in line
    assert large.returncode == 0, large.stderr
    assert '"value": 0.76369451' in large.stdout
    line = error_line(bad.returncode, bad.stdout, bad.stderr)
    assert "--max-memory 'lots'" in line and "GB" in line


def test_bench_max_memory_on_the_command_line(tmp_path):
    """``bench --max-memory``: below the solve's estimate the benchmark runs without the optimal strategy (it is
    not solved at the default limit behind the user's back); above it the optimal strategy is benchmarked;
    asked for by name under a small limit, the solver's one-line refusal stands."""
    small, large, named = run_concurrently([
        lambda: run_cli("bench", "--scenario", "budget_of_one", "--episodes", "100", "--max-memory", "1000",
                        "--json", str(tmp_path / "small.json")),
        lambda: run_cli("bench", "--scenario", "budget_of_one", "--episodes", "100", "--max-memory", "4GB",
                        "--json", str(tmp_path / "large.json")),
        lambda: run_cli("bench", "--scenario", "budget_of_one", "--strategy", "optimal", "--max-memory", "1000"),
    ])
    assert small.returncode == 0 and large.returncode == 0, (small.stderr, large.stderr)
    strategies = {name: {row["strategy"] for row in json.loads((tmp_path / f"{name}.json").read_text())}
                  for name in ("small", "large")}
    assert "optimal" not in strategies["small"] and strategies["large"] == strategies["small"] | {"optimal"}
    line = error_line(named.returncode, named.stdout, named.stderr)
    assert "too large" in line and "--max-memory" in line
