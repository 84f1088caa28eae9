"""The reports people read: the benchmark's tables, a policy summary in Markdown, the optimal policy in words.

Each function returns text; the command line writes it (atomically) or prints it.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from proxygym.agents.bench import JSON_KEYS, BenchResult, best_index
from proxygym.agents.solver import DEPLOY_CODE, DISCARD_CODE, Solution
from proxygym.agents.summary import PolicySummary
from proxygym.envs.actions import CONTINUE, VERDICT_NAMES
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.regimen import ANTI, RESERVE, TRAIN, USAGE_LETTERS, usage_letters
from proxygym.envs.scenario import Scenario

#: The picture formats the benchmark plot (:func:`proxygym.agents.plots.bench_plot`) is written in, by file suffix.
PLOT_FORMATS = ("png", "pdf", "svg")


# -- console tables ------------------------------------------------------------------------------
#: The width the text is laid out in: wide enough that no table is ever wrapped (the terminal's own width
#: is not known when the output is a file or a pipe, and a table cut to 80 columns reads badly in either).
WIDE = 10_000


def table(*columns: str, right: tuple[int, ...] = ()) -> Table:
    """A console table in the commands' one style: a rule under the header, no frame; ``right``: the indices of the
    columns aligned right (numbers)."""
    out = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for i in right:
        out.columns[i].justify = "right"
    return out


def render(*renderables) -> str:
    """Rich renderables (tables, text) as plain text, each at its natural width: what the commands print."""
    buf = io.StringIO()
    console = Console(file=buf, width=WIDE, color_system=None, highlight=False, emoji=False, markup=False)
    for r in renderables:  # one at a time: rich would join two strings on one line
        console.print(r)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


# -- the benchmark ------------------------------------------------------------------------------
def bench_table(rows: list[BenchResult]) -> Table:
    """One scenario's rows: '*' marks the strategy with the highest mean return; 'gap' is the optimum less it."""
    best = best_index(rows)
    out = table("", "strategy", "return", "95% interval", "P(aligned)", "P(misaligned)", "P(abstain)", "runs", "exact",
                "gap", right=(2, 3, 4, 5, 6, 7, 8, 9))
    for i, r in enumerate(rows):
        o = r.outcomes
        out.add_row(
            "*" if i == best else "", r.strategy, f"{o.mean_return:.4f}", f"[{o.ci95_low:.4f}, {o.ci95_high:.4f}]",
            f"{o.p_deploy_aligned:.3f}", f"{o.p_deploy_misaligned:.3f}", f"{o.p_abstain:.3f}", f"{o.mean_runs:.2f}",
            "" if r.exact_return is None else f"{r.exact_return:.4f}",
            "" if r.optimality_gap is None else f"{r.optimality_gap:.4f}",
        )
    return out


def format_tables(results: list[BenchResult], sources: dict[str, str] | None = None) -> str:
    """A table per scenario (:func:`bench_table`), as text. ``sources``: how ``proxygym solve`` names a scenario
    given as a file (its path), for the line that says where the optimum comes from."""
    parts = []
    by_scenario: dict[str, list[BenchResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, []).append(r)
    for name, rows in by_scenario.items():
        parts += [f"{name}: {rows[0].title}  ({rows[0].outcomes.episodes} episodes each)", bench_table(rows)]
        if rows[0].optimal_return is not None:
            source = (sources or {}).get(name, name)
            parts.append(f"gap: the optimum ({rows[0].optimal_return:.4f}, proxygym solve {source}) less the mean return")
        parts.append("")
    return render(*parts)


def format_markdown(results: list[BenchResult]) -> str:
    """One Markdown table: a row per scenario, a column per strategy (mean return +- 95%), best in bold."""
    strategies = list(dict.fromkeys(r.strategy for r in results))
    by_scenario: dict[str, dict[str, BenchResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, {})[r.strategy] = r
    out = ["| scenario | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for name, rows in by_scenario.items():
        best = max(rows.values(), key=lambda r: r.outcomes.mean_return).strategy
        cells = []
        for s in strategies:
            cell = rows[s].outcomes.return_text(3)
            cells.append(f"**{cell}**" if s == best else cell)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def bench_json(results: list[BenchResult]) -> str:
    """``proxygym bench --json``: a list of rows with the keys of :data:`proxygym.agents.bench.JSON_KEYS`."""
    return json.dumps([r.record() for r in results], indent=2) + "\n"


def bench_csv(results: list[BenchResult]) -> str:
    """``proxygym bench --csv``: the same rows as the JSON, empty cells for missing values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(JSON_KEYS))
    writer.writeheader()
    for r in results:
        writer.writerow({k: "" if v is None else v for k, v in r.record().items()})
    return buf.getvalue()


# -- a trained policy -------------------------------------------------------------------------
def percent(x: float) -> str:
    return "<1%" if 0 < x < 0.005 else f"{100 * x:.0f}%"


def usage_cell(shares: np.ndarray) -> str:
    """``"T 80% / R 20%"``: the usages a cell's runs got, most frequent first (zero shares left out)."""
    order = sorted((u for u in (TRAIN, RESERVE, ANTI) if shares[u] > 0), key=lambda u: -shares[u])
    return " / ".join(f"{USAGE_LETTERS[u]} {percent(shares[u])}" for u in order) or "-"


def format_text(summary: PolicySummary) -> str:
    """A short Markdown report: the claim, the outcomes, the reference, and the policy as a table."""
    s, o, best = summary, summary.outcomes, summary.best_strategy_outcomes
    lines = [
        f"## {s.scenario}: {s.title}",
        "",
        f"> {s.claim}",
        "",
        f"**{s.algo}** ({s.observation} observation), deterministic policy, {o.episodes} episodes (seeds {s.seed}..{s.seed + o.episodes - 1})",
        "",
        "| outcome | value |",
        "|---|---|",
        f"| mean return (95% interval) | {o.return_text()} |",
        f"| P(deploy aligned) | {o.p_deploy_aligned:.3f} |",
        f"| P(deploy misaligned) | {o.p_deploy_misaligned:.3f} |",
        f"| P(abstain) | {o.p_abstain:.3f} |",
        f"| mean runs used | {o.mean_runs:.2f} |",
        f"| best strategy: {s.best_strategy} | {best.return_text()} ({best.episodes} episodes) |",
    ]
    if s.optimal_return is not None:
        lines.append(f"| optimal return (exact) | {s.optimal_return:.4f} (gap {s.optimality_gap:.4f}) |")
    lines += [
        "",
        "Policy: the usage of each proxy in each phase (T train, R reserve, A anti), as shares of the"
        " runs that ran the phase; and the share of the runs reaching the checkpoint after the phase"
        " that were discarded there.",
        "",
        "| phase | runs | " + " | ".join(s.proxies) + " | discarded |",
        "|---|---:|" + "---|" * len(s.proxies) + "---:|",
    ]
    for t, phase in enumerate(s.phases):
        if s.phase_runs[t] == 0:
            cells = ["not run"] * len(s.proxies) + ["-"]
        else:
            cells = [usage_cell(s.usage_shares[t, j]) for j in range(len(s.proxies))]
            cells.append(percent(s.discard_shares[t]))
        lines.append(f"| {phase} | {int(s.phase_runs[t])} | " + " | ".join(cells) + " |")
    ideas = ", ".join(f"{name} {percent(share)}" for name, share in zip(s.ideas, s.idea_shares) if share > 0)
    lines += ["", f"Ideas (share of runs started with each): {ideas or '-'}", ""]
    return "\n".join(lines)


def comparison_table(scenario: Scenario, algo: str, summary: PolicySummary, strategies: list[BenchResult]) -> str:
    """The trained agent against the benchmarked ``strategies`` (mean return, 95% interval), and its normalized score."""

    o = summary.outcomes
    rows = [(f"trained {algo}", o, f"{o.episodes} episodes, deterministic policy")]
    exact = {}
    for r in strategies:
        exact[r.strategy] = r.exact_return
        kind = f"{r.outcomes.episodes} episodes" + ("" if r.exact_return is None else f", exact {r.exact_return:.4f}")
        rows.append((r.strategy, r.outcomes, kind))
    best = max(range(len(rows)), key=lambda i: rows[i][1].mean_return)
    out = table("", "policy", "return", "95% interval", "evaluation", right=(2, 3))
    for i, (name, outcomes, kind) in enumerate(rows):
        out.add_row("*" if i == best else "", name, f"{outcomes.mean_return:.4f}",
                    f"[{outcomes.ci95_low:.4f}, {outcomes.ci95_high:.4f}]", kind)
    parts = [f"{scenario.name}: {scenario.title}", out]
    score = normalized_score(o.mean_return, exact.get("first_model"), exact.get("optimal"))
    if score is not None:
        parts.append(
            f"normalized score (agent - first_model) / (optimal - first_model) = {score:.3f}"
            f"; optimality gap {exact['optimal'] - o.mean_return:.4f}"
        )
    return render(*parts).rstrip("\n")


def normalized_score(agent: float, first_model: float | None, optimal: float | None) -> float | None:
    """(agent - first_model) / (optimal - first_model): 0 is deploying the first model, 1 the optimum."""
    if first_model is None or optimal is None or optimal - first_model <= 1e-12:
        return None
    return (agent - first_model) / (optimal - first_model)


# -- the optimal policy in words ----------------------------------------------------------------
def _usage_text(dyn: Dynamics, code: int) -> str:
    return usage_letters(dyn.usages[code])


def _result_text(dyn: Dynamics, r: int) -> str:
    names, passed = dyn.scenario.proxy_names, dyn.results[r]
    if len(names) == 1:
        return "pass" if passed[0] else "fail"
    return " ".join(f"{name}{'+' if p else '-'}" for name, p in zip(names, passed))


def describe_policy(solution: Solution, scenario: Scenario | None = None, max_lines: int = 40) -> str:
    """The optimal policy in words: its outcomes, the first run's plan per test outcome, when
    it discards and deploys, and how it picks ideas from run to run."""
    scenario = scenario or solution.scenario
    pol = solution.policy
    dyn = pol.dyn
    T, R = dyn.n_phases, 2**dyn.n_proxies
    r = scenario.reward
    out = solution.outcomes()
    names = scenario.proxy_names
    phases = [p.name for p in scenario.phases]
    lines = [
        f"Optimal policy for {scenario.name} (budget {scenario.budget}): expected return {solution.value:.4f}",
        f"  P(deploy aligned) {out.p_deploy_aligned:.4f}, P(deploy misaligned) {out.p_deploy_misaligned:.4f},"
        f" P(abstain) {out.p_abstain:.4f}, expected runs {out.mean_runs:.3f}",
        f"  solved exactly in {solution.seconds:.3f} s over {solution.program_states} program states"
        f" and {solution.states} belief states",
        f"  usages are letters per proxy ({', '.join(names)}): R reserve, T train, A anti",
    ]

    # The first run, per test outcome, as far as the line budget allows (most likely outcomes first).
    root = pol.root
    tree = pol.tree(root)
    acts = pol.actions[root]
    lines.append(
        f"First run ({scenario.budget} run{'s' if scenario.budget > 1 else ''} left),"
        f" idea {scenario.idea_names[pol.ideas[root]]}:"
        f" phase {phases[0]} {_usage_text(dyn, int(acts[0][0]))}"
    )
    shown = [0]
    hidden = 0.0

    def walk(d: int, x: int, reach: float, indent: str) -> None:
        nonlocal hidden
        a = int(acts[d][x]) if d > 0 else int(acts[0][0])
        kids = [(pol.child(x, a, res), res) for res in range(R)]
        kids = [(y, res) for y, res in kids if tree.prob[d + 1][y] > 0.0]
        kids.sort(key=lambda yr: -tree.prob[d + 1][yr[0]])
        for y, res in kids:
            p = reach * tree.prob[d + 1][y]
            if shown[0] >= max_lines:
                hidden += p
                continue
            shown[0] += 1
            b = int(acts[d + 1][y])
            if b == DEPLOY_CODE:
                what = "deploy"
            elif b == DISCARD_CODE:
                what = "discard"
            else:
                what = f"continue, phase {phases[d + 1]} {_usage_text(dyn, b)}"
            lines.append(
                f"{indent}checkpoint {d + 1} ({phases[d]}): {_result_text(dyn, res)}"
                f" [P {tree.prob[d + 1][y]:.3f}, reach {p:.3f}, P(aligned) {tree.p_aligned[d + 1][y]:.3f}] -> {what}"
            )
            if b >= 0:
                walk(d + 1, y, p, indent + "  ")

    walk(0, 0, 1.0, "  ")
    if hidden > 0.0:
        lines.append(f"  ... further outcomes not shown (total probability {hidden:.3f})")

    # When it deploys: on the first run, the P(aligned) it needs at the final checkpoint.
    reach = np.ones(1)
    for d in range(1, T + 1):
        reach = pol.children_reach(root, d - 1, reach) * tree.prob[d]
    live = reach > 0.0
    dep = live & (acts[T] == DEPLOY_CODE)
    dis = live & (acts[T] == DISCARD_CODE)
    pa = tree.p_aligned[T]
    parts = []
    if dep.any():
        parts.append(f"deploys at P(aligned) >= {pa[dep].min():.3f}")
    if dis.any():
        parts.append(f"discards at P(aligned) <= {pa[dis].max():.3f}")
    if parts:
        lines.append("At the first run's final checkpoint it " + " and ".join(parts) + ".")
    if all(len(v) == 1 for v in dyn.base_rate_values) and r.aligned > r.misaligned:
        # Known base rates: runs are independent, so the discard value is that of the program state the
        # discard leads to (none left: abstain), and deploying pays iff
        # P(aligned) >= (V(next) - R_misaligned) / (R_aligned - R_misaligned). Follow the final-checkpoint discards.
        chain = [root]
        while True:
            key, i = pol.keys[chain[-1]], pol.ideas[chain[-1]]
            nxt = pol.next_key(key, i, key[2][i], T)  # a known base rate's posterior never moves
            if nxt is None:
                break
            chain.append(pol.index[nxt])
        thresholds = []
        for k_, state in enumerate(chain):
            later = pol.values[chain[k_ + 1]] if k_ + 1 < len(chain) else r.abstain
            t = (later - r.misaligned) / (r.aligned - r.misaligned)
            n, c, _ = pol.keys[state]
            label = f"{n}" if scenario.compute is None else f"{n} (compute {c})"
            thresholds.append(f"{label}: {t:.3f}" if t > 0 else f"{label}: any")
        lines.append(
            "Deploy threshold on P(aligned) at the final checkpoint, by runs left (counting the run under way): "
            + ", ".join(thresholds)
        )
        ideas = [pol.ideas[state] for state in chain]
        if len(set(ideas)) == 1:
            lines.append(f"Every run uses idea {scenario.idea_names[ideas[0]]} (base rates are known: runs are independent).")
        else:
            lines.append(
                "Idea by runs left: "
                + ", ".join(f"{pol.keys[state][0]}: {scenario.idea_names[i]}" for state, i in zip(chain, ideas))
            )
    else:
        # Unknown base rates: follow the most likely way each run ends in a discard.
        lines.append("How it picks ideas (following the most likely discard of each run):")
        state, mass = root, 1.0
        for run in range(1, scenario.budget + 1):
            tree = pol.tree(state)
            reach = np.ones(1)
            best = (0.0, 0, 0)
            deploy_p = 0.0
            for d in range(1, T + 1):
                reach = pol.children_reach(state, d - 1, reach) * tree.prob[d]
                a = pol.actions[state][d]
                deploy_p += float(reach[(reach > 0) & (a == DEPLOY_CODE)].sum())
                gone = np.flatnonzero((reach > 0) & (a == DISCARD_CODE))
                if len(gone):
                    x = gone[np.argmax(reach[gone])]
                    if reach[x] > best[0]:
                        best = (float(reach[x]), d, int(x))
            post = ", ".join(
                f"{scenario.idea_names[i]} {float(np.dot(w, dyn.base_rate_values[i])):.3f}"
                for i, w in enumerate(pol.posterior(state))
            )
            lines.append(
                f"  run {run} (P reached {mass:.3f}; mean base rates {post}): idea {scenario.idea_names[pol.ideas[state]]},"
                f" deploys from it with P {deploy_p:.3f}"
            )
            nxt = pol.after_discard(state, best[1], best[2]) if best[0] > 0.0 else -1
            if nxt < 0:  # no discard, or none after which a run can start
                break
            mass *= best[0]
            state = nxt
    return "\n".join(lines)


# -- the optimal policy's first run, as data ----------------------------------------------------
def first_run(solution: Solution, scenario: Scenario | None = None) -> list[dict]:
    """Every decision point the optimal policy's first run reaches with positive probability.

    One entry per decision point, ordered by checkpoint ``d`` (0: the run's start, before
    phase 1) and, within a checkpoint, by the solver's node index::

        {"checkpoint": d,
         "results": [{proxy: passed}, ...],   # one mapping per checkpoint 1..d, in order
         "verdict": "continue" | "discard" | "deploy",
         "usages": {proxy: "R" | "T" | "A"},  # for phase d + 1 on continue, else None
         "probability": P(the run reaches this point),
         "p_aligned": the filter's P(aligned) here}

    Read from the solver's :class:`~proxygym.agents.solver.Policy` (its run tree, actions,
    ``child`` and ``children_reach``); nothing is recomputed.
    """
    scenario = scenario or solution.scenario
    pol = solution.policy
    dyn, root = pol.dyn, pol.root
    tree = pol.tree(root)
    names = scenario.proxy_names

    def point(d: int, x: int, results: list[dict], probability: float) -> dict:
        verdict, code = pol.action(root, d, x)
        usages = None if verdict != CONTINUE else {n: USAGE_LETTERS[int(u)] for n, u in zip(names, dyn.usages[code])}
        return {
            "checkpoint": d,
            "results": results,
            "verdict": VERDICT_NAMES[verdict],
            "usages": usages,
            "probability": probability,
            "p_aligned": float(tree.p_aligned[d][x]),
        }

    out = [point(0, 0, [], 1.0)]
    level = {0: []}  # the reached nodes of checkpoint d -> the results that led there
    reach = np.ones(1)
    for d in range(dyn.n_phases):
        reach = pol.children_reach(root, d, reach) * tree.prob[d + 1]
        nxt = {}
        for x, results in level.items():
            verdict, code = pol.action(root, d, x)
            if verdict != CONTINUE:
                continue
            for r in range(len(dyn.results)):
                y = int(pol.child(x, code, r))
                if reach[y] > 0.0:
                    nxt[y] = results + [{n: bool(p) for n, p in zip(names, dyn.results[r])}]
        level = dict(sorted(nxt.items()))
        out += [point(d + 1, y, results, float(reach[y])) for y, results in level.items()]
    return out
