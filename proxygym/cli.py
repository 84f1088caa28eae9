"""The ``proxygym`` command: list scenarios, analyze regimens exactly, check claims, train agents.

Every user error (a bad scenario file, plan, name or argument) exits with status 2
and one line on stderr that says what was wrong and what is allowed.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import sys
from pathlib import Path

from proxygym.agents.bench import check_episodes, resolve_names, run_bench
from proxygym.agents.claims import ROBUSTNESS, check_claims
from proxygym.agents.files import check_writable, write_bytes_atomic, write_text_atomic
from proxygym.agents.parallel import show_progress
from proxygym.agents.report import (
    PLOT_FORMATS,
    bench_csv,
    bench_json,
    describe_policy,
    first_run,
    format_markdown,
    format_tables,
    render,
    table,
)
from proxygym.agents.solver import MAX_MEMORY, estimate_size, optimum, parse_size, solve
from proxygym.args import OneLineParser
from proxygym.envs.analysis import analyze, compare, trajectory, what_moved
from proxygym.envs.errors import ProxyGymError, ScenarioError
from proxygym.envs.regimen import idea_text, make_regimen, plan_text
from proxygym.envs.scenario import METRICS, load_scenario, shipped_scenarios

DESCRIPTIONS = {
    "base_rate": "P(aligned at the final checkpoint)",
    "p_pass_aligned": "P(pass | aligned)",
    "p_pass_misaligned": "P(pass | misaligned)",
    "likelihood_ratio": "P(pass | aligned) / P(pass | misaligned)",
    "prior_odds": "O(aligned), before any test",
    "posterior_odds": "O(aligned | pass) = prior odds x likelihood ratio",
    "p_pass": "P(a run passes every test of the regimen)",
    "expected_runs": "runs started, under the budget",
    "expected_compute": "compute spent (the phases' costs of the phases run)",
    "p_deploy_aligned": "P(the deployed model is aligned)",
    "p_deploy_misaligned": "P(the deployed model is misaligned)",
    "p_abstain": "P(nothing is deployed)",
    "expected_return": "the reward those outcomes pay, less run costs",
}


def _fmt(x) -> str:
    if x is None:
        return "undefined"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"


def _parse_screens(scenario, items: list[str], option: str = "--screen") -> dict[int, str]:
    """``{checkpoint: names}`` from ``D:NAMES`` items; a sole ``none`` means no screens."""
    if [i.strip().lower() for i in items] == ["none"]:
        return {}
    out: dict[int, str] = {}
    for item in items:
        d, sep, names = item.partition(":")
        if not sep or not d.strip().isdigit() or not names.strip():
            raise ScenarioError(
                f"{option} {item!r}: write CHECKPOINT:NAMES, e.g. 1:{scenario.proxy_names[0]}, or 'none' alone"
                f" (checkpoints 1..{len(scenario.phases) - 1}, proxies {', '.join(scenario.proxy_names)})"
            )
        if int(d) in out:
            raise ScenarioError(
                f"{option} {item!r}: checkpoint {int(d)} is screened twice; list its proxies once, e.g. {d}:A,B"
            )
        out[int(d)] = names
    return out


#: The options that describe the second regimen of a comparison (each defaults to the first side's value).
COMPARE_OPTIONS = ("compare_test", "compare_screen", "compare_idea", "compare_budget", "compare_compute", "compare_fallback")


def _second_regimen(scenario, args: argparse.Namespace):
    """The second regimen of ``--compare``: every setting the first side's unless a --compare-* option says otherwise."""
    try:
        return make_regimen(
            scenario,
            args.plan if args.compare is None else args.compare,
            test=args.test if args.compare_test is None else args.compare_test,
            screen=_parse_screens(scenario, args.screen if args.compare_screen is None else args.compare_screen,
                                  "--screen" if args.compare_screen is None else "--compare-screen"),
            idea=args.idea if args.compare_idea is None else args.compare_idea,
            budget=args.budget if args.compare_budget is None else args.compare_budget,
            compute=args.compute if args.compare_compute is None else args.compare_compute,
            fallback=args.fallback if args.compare_fallback is None else args.compare_fallback,
        )
    except ScenarioError as err:
        raise ScenarioError(f"the compared regimen (--compare, --compare-*): {err}") from None


def _print_trajectory(scenario, regimen, points: list[dict]) -> None:
    print(
        f"trajectory: one run of plan {plan_text(regimen.plan)}, idea {scenario.idea_names[regimen.idea]},"
        " played to the end with no test applied"
    )
    out = table("checkpoint", "phase", "P(aligned)", "proxy", "P(pass|A)", "P(pass|M)", "P(shaped)", right=(2, 4, 5, 6))
    for point in points:
        t = point["checkpoint"]
        lead = [str(t), scenario.phases[t - 1].name, _fmt(point["base_rate"])]
        for name, p in point["proxies"].items():
            out.add_row(*lead, name, _fmt(p["p_pass_aligned"]), _fmt(p["p_pass_misaligned"]), _fmt(p["p_shaped"]))
            lead = ["", "", ""]
    print(render(out), end="")


def _plot_labels(scenario, regimens) -> list[str]:
    """The legend of each regimen in the trajectory plot: its plan (and idea, when there are several);
    two that would read the same are told apart as first and second."""
    labels = [
        f"plan {plan_text(r.plan)}" + (f", idea {idea_text(scenario, r.idea)}" if len(scenario.ideas) > 1 else "")
        for r in regimens
    ]
    if len(labels) == 2 and labels[0] == labels[1]:
        labels = [f"{labels[0]} (first)", f"{labels[1]} (second)"]
    return labels


def cmd_analyze(args: argparse.Namespace) -> int:
    plot_format = _plot_format(args.plot)  # checked before any work, so a bad path costs nothing
    _check_outputs(args.plot)
    scenario = load_scenario(args.scenario)
    regimen = make_regimen(
        scenario,
        args.plan,
        test=args.test,
        screen=_parse_screens(scenario, args.screen),
        idea=args.idea,
        budget=args.budget,
        compute=args.compute,
        fallback=args.fallback,
    )
    result = analyze(scenario, regimen)
    other = other_regimen = None
    if args.compare is not None or any(getattr(args, o) is not None for o in COMPARE_OPTIONS):
        other_regimen = _second_regimen(scenario, args)
        other = analyze(scenario, other_regimen)
        result.compare = compare(result, other)
    path = trajectory(scenario, regimen) if args.trajectory or args.plot else None
    other_path = trajectory(scenario, other_regimen) if path is not None and other is not None else None
    if args.plot:
        from proxygym.agents.plots import trajectory_plot  # loads matplotlib: only when a plot is asked for

        regimens = [regimen] if other is None else [regimen, other_regimen]
        sides = list(zip(_plot_labels(scenario, regimens), [path] if other is None else [path, other_path]))
        write_bytes_atomic(args.plot, trajectory_plot(scenario, sides, plot_format))
    if not args.trajectory:  # drawn, not printed
        path = other_path = None
    # JSON: the analysis keys; with a comparison or a trajectory also each side's regimen, the
    # second side's every key ("second") and the log-impact split ("compare")
    full = other is not None or args.trajectory
    if args.json:
        if not full:
            print(json.dumps(result.to_dict(), indent=2))
            return 0
        out = {k: v for k, v in result.to_dict().items() if k != "compare"}
        out["regimen"] = regimen.to_dict(scenario)
        if path is not None:
            out["trajectory"] = path
        if other is not None:
            second = {k: v for k, v in other.to_dict().items() if k != "compare"}
            second["regimen"] = other_regimen.to_dict(scenario)
            if other_path is not None:
                second["trajectory"] = other_path
            out["second"] = second
            out["compare"] = result.compare
        print(json.dumps(out, indent=2))
        return 0

    print(f"{scenario.name}: {scenario.title}")
    print(f"regimen: {regimen.describe(scenario)}")
    if other is not None:
        print(f"compare: {other_regimen.describe(scenario)}")
    print()
    labels = [args.plan]
    if other is not None:
        labels.append(args.plan if args.compare is None else args.compare)
        if full and labels[0].strip() == labels[1].strip():
            labels = ["first", "second"]
    sides = [result] if other is None else [result, other]
    out = table("quantity", *labels, "meaning", right=tuple(range(1, 1 + len(labels))))
    for key, meaning in DESCRIPTIONS.items():
        out.add_row(key, *(_fmt(getattr(side, key)) for side in sides), meaning)
    print(render(out))
    if other is not None:
        split = table("comparison", "value", right=(1,))
        for key, value in result.compare.items():
            split.add_row(key, _fmt(value))
        print(render(split), end="")
        print(what_moved(result.compare))
    else:
        lp, ll = (None if v is None or v <= 0 else math.log(v) for v in (result.prior_odds, result.likelihood_ratio))
        if lp is None or ll is None:
            print("log posterior odds: undefined (a probability of 0 or 1 makes an odds or a ratio infinite).")
        else:
            bigger = "the base rate (prior odds)" if abs(lp) >= abs(ll) else "the likelihood ratio"
            print(
                f"log posterior odds {lp + ll:+.3f} = log prior odds {lp:+.3f} + log likelihood ratio {ll:+.3f}:"
                f" {bigger} weighs more."
            )
    if path is not None:
        print()
        _print_trajectory(scenario, regimen, path)
        if other_path is not None:
            print()
            _print_trajectory(scenario, other_regimen, other_path)
    if args.plot:
        print(f"\nwrote plot: {args.plot}")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    rows = []
    for name in shipped_scenarios():
        sc = load_scenario(name)
        rows.append(
            {
                "name": sc.name,
                "title": sc.title,
                "claim": " ".join(sc.claim.split()),
                "budget": sc.budget,
                "compute": sc.compute,
                "phases": len(sc.phases),
                "proxies": sc.proxy_names,
                "ideas": sc.idea_names,
                "persistence": {p.name: p.persistence for p in sc.proxies},
                "reward": sc.reward.model_dump(),
                "claims": len(sc.expect),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.markdown:
        print(scenario_markdown(rows), end="")
        return 0
    out = table("scenario", "phases", "proxies", "ideas", "runs", "compute", "title", right=(1, 2, 3, 4, 5))
    for r in rows:
        out.add_row(r["name"], str(r["phases"]), str(len(r["proxies"])), str(len(r["ideas"])), str(r["budget"]),
                    "-" if r["compute"] is None else str(r["compute"]), r["title"])
    print(render(out), end="")
    return 0


def scenario_markdown(rows: list[dict]) -> str:
    """The README's scenario table: each scenario's title, size, budgets, persistence and rewards."""
    out = [
        "| scenario | what it shows | phases x proxies x ideas | runs / compute | persistence | reward: aligned, misaligned, abstain, per run | claims |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = f"{r['budget']}" if r["compute"] is None else f"{r['budget']} / {r['compute']}"
        persistence = ", ".join(f"{v:g}" for v in r["persistence"].values())
        w = r["reward"]
        reward = f"{w['aligned']:g}, {w['misaligned']:g}, {w['abstain']:g}, {w['run_cost']:g}"
        size = f"{r['phases']} x {len(r['proxies'])} x {len(r['ideas'])}"
        out.append(f"| `{r['name']}` | {r['title']} | {size} | {runs} | {persistence} | {reward} | {r['claims']} |")
    return "\n".join(out) + "\n"


def cmd_claims(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    check_episodes(args.episodes)
    if args.json:
        check_writable(args.json)
    names = args.scenario or shipped_scenarios()
    scenarios = [load_scenario(name) for name in names]  # every name checked before any claim is
    failed, rows = 0, []
    # a bar over the scenarios on standard error; each scenario's lines go to standard output above it
    with tqdm(scenarios, disable=not _progress(args), unit="scenario", file=sys.stderr) as bar:
        for sc in bar:
            bar.set_description(sc.name)
            lines = [f"{sc.name}: {sc.title}"]
            for check in check_claims(sc, args.episodes, args.seed, robustness=ROBUSTNESS):
                mark = ROBUST_WORDS[check.holds].upper() if check.holds is False else ROBUST_WORDS[check.holds]
                failed += check.holds is not True
                at = ", ".join(f"{p:g}: {ROBUST_WORDS[h]}" for p, h in check.robust.items())
                lines.append(f"  [{mark}] {check.text}\n          at persistence {at}")
                rows.append(check.to_dict())
            bar.write("\n".join(lines), file=sys.stdout)
    held = len(rows) - failed
    print(f"{held} of {len(rows)} claims hold." if failed else f"All {len(rows)} claims hold.")
    for p in ROBUSTNESS:
        n = sum(r["holds_at_persistence"][f"{p:g}"] is True for r in rows)
        print(f"At persistence {p:g} for every proxy, {n} of {len(rows)} hold.")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


#: How a claim's line reads whether it holds at another persistence.
ROBUST_WORDS = {True: "holds", False: "fails", None: "undefined"}


def cmd_bench(args: argparse.Namespace) -> int:
    limit = _max_memory(args)
    scenarios, strategies = resolve_names(args.scenario, args.strategy)
    if args.max_memory is not None and "optimal" in strategies:
        # decided once per scenario object under the given limit; the benchmark's optimum reads that decision
        for sc in scenarios:
            if args.strategy:  # asked for by name: the solver's one-line error stands
                solve(sc, max_memory=limit)
            optimum(sc, max_memory=limit)
    # Every output is checked before the benchmark runs, so a bad path costs nothing.
    plot_format = _plot_format(args.plot)
    _check_outputs(args.json, args.csv, args.markdown, args.plot)
    results = run_bench(
        scenarios, strategies, args.episodes, args.seed, progress=_progress(args), explicit=bool(args.strategy)
    )
    # a scenario given as a file is solved by its path
    sources = {sc.name: arg for arg, sc in zip(args.scenario or [], scenarios) if arg != sc.name}
    print(format_tables(results, sources), end="")
    if args.json:
        write_text_atomic(args.json, bench_json(results))
    if args.csv:
        write_text_atomic(args.csv, bench_csv(results))
    if args.markdown:
        write_text_atomic(args.markdown, format_markdown(results))
    if args.plot:
        from proxygym.agents.plots import bench_plot  # loads matplotlib: only when a plot is asked for

        write_bytes_atomic(args.plot, bench_plot(results, plot_format))
    for label, path in (("json", args.json), ("csv", args.csv), ("markdown", args.markdown), ("plot", args.plot)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show a progress bar: unless --no-progress, whenever standard error is a terminal."""
    return show_progress(False if getattr(args, "no_progress", False) else None)


def _plot_format(path: str | None) -> str | None:
    """The image format a --plot file's extension names (png without one), or a one-line error."""
    if not path:
        return None
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in PLOT_FORMATS:
        raise ProxyGymError(f"--plot {path!r}: the file must end in " + ", ".join(f".{f}" for f in PLOT_FORMATS))
    return fmt


def _check_outputs(*paths: str | None) -> None:
    """Fail in one line, before any work, if an output file cannot be written."""
    for path in paths:
        if path:
            check_writable(path)


def cmd_sweep(args: argparse.Namespace) -> int:
    from proxygym.agents.sweep import parse_vary, sweep, sweep_flip_points, terms_grid, winner_grid

    scenario = load_scenario(args.scenario)
    fmt = _plot_format(args.plot)
    axes = [parse_vary(scenario, v) for v in args.vary]
    texts = list(args.plans or [])
    _check_outputs(args.json, args.csv, args.plot)
    rows = sweep(scenario, axes, texts, optimal=args.optimal, progress=_progress(args), workers=args.workers,
                 ray_address=args.ray_address)
    names = texts + (["optimal"] if args.optimal else [])
    points = len(rows) // max(1, len(names))
    wins = winner_grid(rows, axes, texts, args.metric) if texts else None
    print(f"{scenario.name}: {points} grid points x {len(names)} ({', '.join(names)}), exact; best by {args.metric}")
    flip_points = []
    if len(axes) == 1:
        grid = table(axes[0].path, *names, "best", right=tuple(range(len(names) + 1)))
        by = {(r["params"][axes[0].path], r["plan"]): r.get(args.metric) for r in rows}
        for i, v in enumerate(axes[0].values):
            cells = [_fmt(by.get((v, n))) for n in names]
            grid.add_row(f"{v:g}", *cells, texts[wins[i]] if wins is not None and wins[i] >= 0 else "-")
        print(render(grid), end="")
        if texts:
            flip_points = sweep_flip_points(scenario, rows, axes[0], texts, args.metric)
            for value, before, after in flip_points:
                print(f"flip at {axes[0].path} = {value:.6g}: {before} -> {after}")
    elif wins is not None:
        for i, t in enumerate(texts):
            print(f"{t} is best at {int((wins == i).sum())} of {wins.size} points")
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1) + "\n")
    if args.csv:
        write_text_atomic(args.csv, _sweep_csv(rows, [a.path for a in axes]))
    if args.plot:
        from proxygym.agents.plots import sweep_plot  # loads matplotlib: only when a plot is asked for

        terms = terms_grid(rows, axes, texts, args.metric) if len(axes) == 2 else None
        write_bytes_atomic(args.plot, sweep_plot(rows, axes, texts, args.metric, flip_points, terms, fmt))
    for label, path in (("json", args.json), ("csv", args.csv), ("plot", args.plot)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def _sweep_csv(rows: list[dict], paths: list[str]) -> str:
    import csv
    import io

    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("params", "plan", "compare")))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*paths, "plan", *keys])
    for r in rows:
        writer.writerow([*(r["params"][p] for p in paths), r["plan"], *("" if r.get(k) is None else r[k] for k in keys)])
    return buf.getvalue()


def cmd_flips(args: argparse.Namespace) -> int:
    from proxygym.agents.sweep import flips

    scenario = load_scenario(args.scenario)
    fmt = _plot_format(args.plot)
    _check_outputs(args.json, args.plot)
    results = flips(scenario, args.plan, args.than, args.metric, progress=_progress(args))
    now = results[0].margins[2] if results else None
    lead = "ties with" if now is None or abs(now) <= 1e-12 else ("beats" if now > 0 else "loses to")
    print(f"{scenario.name}: {args.plan} {lead} {args.than} on {args.metric} (margin {_fmt(now)});"
          " where each parameter alone would flip that, nearest first:")
    out = table("parameter", "value", "range searched", "flips at", right=(1,))
    for r in results:
        flips_text = ", ".join(f"{f:.6g}" for f in r.flips) or "-"
        out.add_row(r.path, f"{r.value:g}", f"[{r.window[0]:g}, {r.window[1]:g}]", flips_text)
    print(render(out), end="")
    if args.json:
        write_text_atomic(args.json, json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    if args.plot:
        from proxygym.agents.plots import flips_plot  # loads matplotlib: only when a plot is asked for

        write_bytes_atomic(args.plot, flips_plot(results, args.plan, args.than, args.metric, fmt))
    for label, path in (("json", args.json), ("plot", args.plot)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from proxygym.agents.advice import advice_text, advise

    scenario = load_scenario(args.scenario)
    _check_outputs(args.json)
    adv = advise(scenario, with_optimal=not args.no_optimal, progress=_progress(args))
    print(advice_text(adv), end="")
    if args.json:
        write_text_atomic(args.json, json.dumps(adv.to_dict(), indent=1) + "\n")
        print(f"wrote json: {args.json}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from proxygym import experiment as ex
    from proxygym.agents.parallel import check_ray

    fmt = _plot_format(args.plot)
    seeds = ex.parse_seeds(args.seeds)
    specs, scenarios = ex.plan_runs(args.scenarios, args.algos, seeds, args.n_timesteps, args.observation,
                                    args.eval_episodes, args.frame_stack)
    if args.workers is not None and args.workers < 1:
        raise ProxyGymError(f"--workers must be at least 1, got {args.workers}")
    if args.reps < 1:
        raise ProxyGymError(f"--reps must be at least 1, got {args.reps}")
    check_ray(args.ray_address)
    ex.check_rliable()
    refs = ex.references(scenarios)
    out = Path(args.out)
    _check_outputs(args.json, args.plot, out / "runs" / ex.RECORD)

    def started(done: int, todo: int) -> None:
        procs = min(args.workers or os.cpu_count() or 1, todo)
        where = f" on Ray ({args.ray_address})" if args.ray_address else f" in {procs} local process" + "es" * (procs > 1)
        sizes = [(len(scenarios), "scenario"), (len(dict.fromkeys(args.algos)), "algorithm"), (len(seeds), "seed")]
        print(f"{len(specs)} runs ({' x '.join(f'{n} {w}' + 's' * (n > 1) for n, w in sizes)}) in {out}:"
              f" {done} recorded already, {todo} to train" + (where if todo else ""), flush=True)

    records, trained = ex.run_all(specs, out, workers=args.workers, ray_address=args.ray_address,
                                  progress=_progress(args), on_start=started)
    runs = ex.scored_runs(records, refs)
    overall, per = ex.aggregate(runs, reps=args.reps)
    out_table = table("scenario", "algorithm (observation)", "seeds", "mean return", "normalized score: IQM",
                      "95% interval", right=(2, 3, 4, 5))
    means = ex.mean_returns(runs)
    for row in per + [dict(r, scenario="all") for r in overall]:
        mine = means.get((ex.agent_of(row), row["scenario"]))
        out_table.add_row(row["scenario"], ex.agent_label(ex.agent_of(row)), str(len(seeds)),
                      "-" if mine is None else f"{mine:.4f}", f"{row['iqm']:.3f}",
                      f"[{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]")
    print(render(out_table), end="")
    if args.json:
        write_text_atomic(args.json, ex.experiment_json(runs, overall, per))
    if args.plot:
        write_bytes_atomic(args.plot, ex.profile_plot(runs, fmt, reps=args.reps))
    for label, path in (("json", args.json), ("plot", args.plot)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def _exact_outcomes(o) -> dict:
    """The exact outcomes under the analysis' names (``proxygym solve --json``)."""
    return dict(p_deploy_aligned=o.p_deploy_aligned, p_deploy_misaligned=o.p_deploy_misaligned, p_abstain=o.p_abstain,
                expected_runs=o.mean_runs)


def _max_memory(args: argparse.Namespace) -> int:
    """The exact solver's memory limit in bytes: ``--max-memory``, else the solver's default."""
    return MAX_MEMORY if args.max_memory is None else parse_size(args.max_memory)


def cmd_solve(args: argparse.Namespace) -> int:
    limit = _max_memory(args)
    scenario = load_scenario(args.scenario)
    estimate_size(scenario).check(scenario, limit)  # refuses, in one line, before spending the time
    solution = solve(scenario, max_memory=limit)
    if args.json:
        out = {
            "value": solution.value,
            "seconds": solution.seconds,
            "states": solution.states,
            "program_states": solution.program_states,
            **_exact_outcomes(solution.outcomes()),
            "first_run_idea": scenario.idea_names[solution.policy.idea(solution.policy.root)],
            "first_run": first_run(solution, scenario),
        }
        print(json.dumps(out, indent=2))
        return 0
    print(describe_policy(solution, scenario))
    return 0


MAX_MEMORY_HELP = (
    "the most memory the exact solver may plan to use, e.g. 4GB, 500MB, 1.5GiB or plain bytes"
    f" (default {MAX_MEMORY / 1e9:g}GB); a larger scenario is refused before solving"
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="proxygym",
        description="Should we train on this alignment proxy, keep it as a held-out test, or anti-train on it?",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("analyze", help="exact analysis of a fixed regimen (the essay's formal section)")
    p.add_argument("scenario", metavar="SCENARIO", help="a shipped scenario's name or a path to a YAML file")
    p.add_argument("--plan", required=True, help="usage per phase and proxy: R reserve, T train, A anti; e.g. TR,TR,RR")
    p.add_argument("--test", default=None, help="proxies that must all pass at the final checkpoint (default all; 'none')")
    p.add_argument(
        "--screen",
        action="append",
        default=[],
        metavar="D:NAMES",
        help="also discard a run whose NAMES fail at early checkpoint D (repeatable)",
    )
    p.add_argument("--idea", default=None, help="the idea every run uses (default the first)")
    p.add_argument("--budget", type=int, default=None, help="override the scenario's budget of runs")
    p.add_argument(
        "--compute", type=int, default=None,
        help="give the program this compute budget (phases cost their 'cost'; default: the scenario's, if any)",
    )
    p.add_argument("--fallback", choices=("deploy", "abstain"), default="deploy", help="when the budget is spent with no pass")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--trajectory",
        action="store_true",
        help="also read one run of the plan, played to the end with no test, at every checkpoint: P(aligned) and,"
        " per proxy, P(pass | aligned), P(pass | misaligned), P(shaped) (JSON: key 'trajectory')",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        default=None,
        help="draw that trajectory (of both regimens, with a comparison) to FILE (.png, .pdf or .svg): P(aligned)"
        " and each proxy's recall, 1 - P(pass | misaligned), at every checkpoint",
    )
    g = p.add_argument_group(
        "comparison with a second regimen",
        "Compare with a complete second regimen. Each option defaults to the first side's value; giving any of"
        " them alone compares with the first plan. --json then prints the first side's keys and 'regimen',"
        " 'second' (the same for the second regimen) and 'compare' (the log-impact split).",
    )
    g.add_argument("--compare", metavar="PLAN2", default=None, help="the second regimen's plan (default the first plan)")
    g.add_argument("--compare-test", metavar="NAMES", default=None, help="its test set (default --test; 'all', 'none')")
    g.add_argument(
        "--compare-screen",
        action="append",
        default=None,
        metavar="D:NAMES",
        help="its screens, repeatable, replacing the first side's (default the --screen ones; 'none': no screen)",
    )
    g.add_argument("--compare-idea", metavar="NAME", default=None, help="its idea (default --idea)")
    g.add_argument("--compare-budget", metavar="N", type=int, default=None, help="its budget (default --budget)")
    g.add_argument("--compare-compute", metavar="N", type=int, default=None, help="its compute budget (default --compute)")
    g.add_argument("--compare-fallback", choices=("deploy", "abstain"), default=None, help="its fallback (default --fallback)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("scenarios", help="list the shipped scenarios")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--markdown", action="store_true", help="print the README's scenario table")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("bench", help="every strategy on every scenario, with 95%% intervals and exact values")
    p.add_argument("--scenario", action="extend", nargs="+", metavar="NAME", help="default: every shipped scenario")
    p.add_argument("--strategy", action="extend", nargs="+", metavar="NAME", help="default: every strategy")
    p.add_argument("--episodes", type=int, default=2000, help="episodes per scenario and strategy (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write the results as a JSON list")
    p.add_argument("--csv", metavar="PATH", help="write the results as CSV")
    p.add_argument("--markdown", metavar="PATH", help="write one Markdown table (the README's)")
    p.add_argument("--plot", metavar="PATH", help="draw a panel per scenario (.png, .pdf or .svg)")
    p.add_argument("--max-memory", metavar="SIZE", default=None, help=MAX_MEMORY_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown by default on a terminal)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("solve", help="the exact Bayes-optimal policy of a scenario and its value")
    p.add_argument("scenario", metavar="SCENARIO", help="a shipped scenario's name or a path to a YAML file")
    p.add_argument("--json", action="store_true", help="print value, seconds, states, the outcomes and the first run's policy (first_run) as JSON")
    p.add_argument("--max-memory", metavar="SIZE", default=None, help=MAX_MEMORY_HELP)
    p.set_defaults(func=cmd_solve)

    def exact_command(name: str, help_: str, json_help: str, plot_help: str | None = None, best: str | None = None):
        """A subcommand over the exact analysis: SCENARIO, and --json, --no-progress (with ``plot_help``, --plot;
        with ``best``, --metric)."""
        q = sub.add_parser(name, help=help_)
        q.add_argument("scenario", metavar="SCENARIO", help="a shipped scenario's name or a path to a YAML file")
        if best:
            q.add_argument("--metric", default="expected_return", choices=METRICS, help=f"what decides the {best} (default expected_return)")
        q.add_argument("--json", metavar="FILE", default=None, help=json_help)
        if plot_help:
            q.add_argument("--plot", metavar="FILE", default=None, help=f"{plot_help} (.png, .pdf or .svg)")
        q.add_argument("--no-progress", action="store_true", help="no progress bar (shown by default on a terminal)")
        return q

    p = exact_command("sweep", "exact analyses of regimens over a grid of one or two parameters", "write every row as JSON",
                      "draw the sweep", best="best")
    p.add_argument("--vary", action="append", required=True, metavar="PATH=LO:HI:N",
                   help="a parameter and its grid, e.g. proxies.cot_monitor.steer=0:1:21 (once or twice)")
    p.add_argument("--plans", nargs="+", metavar="REGIMEN", default=[],
                   help="regimens: plans such as T,R,R or mappings such as '{plan: R, test: none}'")
    p.add_argument("--optimal", action="store_true", help="also solve the exact optimum at every point (in parallel)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for --optimal and for a large grid (default: every local core)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="solve --optimal's points on Ray instead: local (a new instance here), auto (the one running"
                   " here), HOST:PORT or ray://HOST:PORT (needs proxygym[ray])")
    p.add_argument("--csv", metavar="FILE", default=None, help="write every row as CSV")
    p.set_defaults(func=cmd_sweep)

    p = exact_command("flips", "for every parameter, where the better of two regimens flips", "write the flips as JSON",
                      "a tornado chart", best="better")
    p.add_argument("--plan", required=True, metavar="REGIMEN", help="the first regimen (a plan or a mapping)")
    p.add_argument("--than", required=True, metavar="REGIMEN", help="the second regimen")
    p.set_defaults(func=cmd_flips)

    p = exact_command("advise", "what to do with each proxy in each phase, the margin, and what would flip it",
                      "also write the advice as JSON")
    p.add_argument("--no-optimal", action="store_true", help="skip the exact optimal policy (the solver)")
    p.set_defaults(func=cmd_advise)

    p = sub.add_parser("experiment", help="train every scenario x algorithm x seed, resumably, locally or on Ray;"
                       " normalized scores aggregated with rliable")
    p.add_argument("--scenarios", nargs="+", required=True, metavar="NAME",
                   help="shipped scenarios' names or YAML paths ('all': every shipped scenario)")
    p.add_argument("--algos", nargs="+", required=True, metavar="ALGO", help="algorithms (ppo, recurrent_ppo, ...)")
    p.add_argument("--seeds", nargs="+", required=True, metavar="SEEDS", help="seeds and ranges, e.g. 0-4 or 0 1 7")
    p.add_argument("-n", "--n-timesteps", type=int, default=None,
                   help="training steps of every run (default: each algorithm's hyperparameter file)")
    p.add_argument("--observation", choices=("history", "belief"), default=None,
                   help="what every agent observes (default: each algorithm's hyperparameter file)")
    p.add_argument("--frame-stack", type=int, default=None, metavar="N",
                   help="every agent sees its last N observations side by side (SB3's VecFrameStack; default: each"
                   " algorithm's hyperparameter file, else 1)")
    p.add_argument("--eval-episodes", type=int, default=2000,
                   help="episodes of each trained policy's evaluation (default 2000)")
    p.add_argument("--out", metavar="DIR", default="logs/experiment",
                   help="where each finished run is recorded; a rerun skips them (default logs/experiment)")
    p.add_argument("--json", metavar="FILE", default=None, help="write the runs and the aggregates as JSON")
    p.add_argument("--plot", metavar="FILE", default=None, help="draw the performance profiles (.png, .pdf or .svg)")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: every local core)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="train on Ray instead: local (a new instance here), auto (the one running here), HOST:PORT"
                   " or ray://HOST:PORT (needs proxygym[ray])")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the intervals (default 2000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("claims", help="check the scenarios' expect claims (exact analysis, else the benchmark)")
    p.add_argument("scenario", nargs="*", metavar="SCENARIO", help="default: every shipped scenario")
    p.add_argument("--episodes", type=int, default=20_000, help="benchmark episodes for an adaptive strategy (default 20000)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write every claim (sides, values, whether it holds, and at persistence 0 and 1) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown by default on a terminal)")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("inspect", help="play a saved agent and summarize its policy (optionally to TensorBoard)")
    p.add_argument("model", metavar="MODEL", help="a model saved by Stable-Baselines3 (a .zip file)")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="a shipped scenario's name or a YAML path (default: the one in the args.yml train.py wrote beside MODEL)")
    p.add_argument("--algo", default=None, help="the algorithm that saved MODEL (default: read from the file)")
    p.add_argument("--observation", choices=("history", "belief"), default=None,
                   help="what MODEL observes (default: what its spaces fit, or the config.yml train.py wrote beside it)")
    p.add_argument("--episodes", type=int, default=200, help="episodes to play (default 200)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the batch the episodes are played in, all at once (default 0)")
    p.add_argument("--tensorboard-log", metavar="DIR", default=None, help="also write the summary to TensorBoard in DIR")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_inspect)

    # listed for --help; main() hands everything after "train" to train.py's own parser
    sub.add_parser("train", help="train an RL agent (the same as python train.py; see proxygym train --help)")
    return parser


def _inspect(args: argparse.Namespace) -> int:
    from proxygym.inspection import run_inspect  # imports SB3 and torch: only when needed

    return run_inspect(args)


def _train(argv: list[str]) -> int:
    from proxygym.train import main as train_main  # imports SB3 and torch: only when needed

    return train_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # train.py parses its own options, --help included
        return _train(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ProxyGymError as err:
        print(f"proxygym: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # output files are written through agents/files.py (a ProxyGymError); a write error with no file name
        # is standard output's: a full disk, or a pipe whose reader left (| head)
        if err.filename is not None or err.errno not in (errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise
        _silence_stdout()
        if err.errno == errno.EPIPE:  # nothing to say, as other tools
            return 1
        print(f"proxygym: error: cannot write standard output: {err.strerror or err}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's last flush does not fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (captured in a test): nothing will flush it to a disk
        pass


if __name__ == "__main__":
    sys.exit(main())
