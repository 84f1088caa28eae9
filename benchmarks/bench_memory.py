"""Peak memory (resident set) of the full default benchmark and of the largest exact solve, each in a fresh process, and an older checkout's beside them.

    python benchmarks/bench_memory.py [--solve-case 3x3_persistence]
                                      [--reference-tree DIR --reference-python PY [--reference-solve-case CASE]]

Two workloads, each run in its own fresh subprocess (so nothing loaded by one counts for the
other), its peak resident set read from the child's own resource usage (``os.wait4``'s
``ru_maxrss``; Linux counts it in KiB):

- ``bench``: ``python -m proxygym bench`` with its defaults (every shipped scenario x every
  strategy, 2,000 episodes, seed 0), the user's command, run in a temporary directory and
  writing no file;
- ``solve``: ``solve()`` of the largest of ``bench_solver.py --cases``'s cases (``3x3_persistence``:
  loss_landscape with a third proxy, every proxy persistent, 3 phases), the scenario built
  as ``bench_solver.py`` builds it.

``--reference-tree DIR`` with ``--reference-python PY`` (a Python whose installed ``proxygym`` is
that checkout's, e.g. an editable install of it in a copy of this venv; the script checks) runs
both workloads again with that checkout, and prints each ratio now / reference. An older solver
may refuse the large cases (its size guard): ``--reference-solve-case`` names the one to solve
there, e.g. ``screening_7_ideas``; that case is then measured now too (the same solve on both
trees), and the largest solve now is also set against it (printed as such).

For example, against commit 197ff03 (whose size guard refuses the large cases):

    mkdir -p /tmp/proxygym-197ff03 && git archive 197ff03 | tar -x -C /tmp/proxygym-197ff03
    cp -a VENV /tmp/venv-197ff03 && /tmp/venv-197ff03/bin/python -m pip install -q -e /tmp/proxygym-197ff03 --no-deps
    python benchmarks/bench_memory.py --reference-tree /tmp/proxygym-197ff03 \\
        --reference-python /tmp/venv-197ff03/bin/python --reference-solve-case screening_7_ideas

Case names: ``3x3``, ``3x3_persistence``, ``screening_b<budget>`` (idea_screening with that
budget), ``screening_<m>_ideas`` (idea_screening with m ideas, copies of its own, its budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent


def run_solve(name: str) -> None:
    """The ``solve`` workload, in this (fresh) process: prints one JSON line."""
    from solve_cases import case_scenario  # this folder, on sys.path as the script's own

    import proxygym
    from proxygym.agents.solver import solve

    sc = case_scenario(name)
    sol = solve(sc)
    print(json.dumps({"case": name, "value": sol.value, "program_states": sol.program_states, "proxygym": proxygym.__file__}))


def peak_of(cmd: list[str], cwd: str) -> tuple[float, str]:
    """Run ``cmd`` in a fresh process; its peak resident set in MB and its stdout."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read()
        proc.stderr.close()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
        out.seek(0)
        return usage.ru_maxrss / 1024, out.read()


def check_tree(python: str, tree: Path) -> None:
    """The Python's proxygym must be the tree's."""
    got = subprocess.run([python, "-c", "import proxygym; print(proxygym.__file__)"], cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(got).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{python} imports proxygym from {got}, not from {tree}")


def measure(python: str, tree: Path, solve_cases: list[str]) -> dict[str, float]:
    """Peak MB of ``bench`` and of each solve case, each in a fresh process of ``python`` (whose proxygym is ``tree``'s)."""
    check_tree(python, tree)
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="proxygym-mem-") as tmp:
        peaks["bench"], out = peak_of([python, "-m", "proxygym", "bench"], tmp)
        if "sticky_values" not in out:
            raise SystemExit("proxygym bench printed no table")
        for case in solve_cases:
            peaks[case], out = peak_of([python, str(HERE), "--run-solve", case], tmp)
            json.loads(out.strip().splitlines()[-1])  # the solve's line
        left = os.listdir(tmp)
    if left:
        raise SystemExit(f"the workloads left files behind: {left}")
    return peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solve-case", default="3x3_persistence", help="the solve workload's case (default: the largest)")
    parser.add_argument("--reference-tree", type=Path, default=None, help="an older checkout to measure too")
    parser.add_argument("--reference-python", default=None, help="a Python whose installed proxygym is --reference-tree's")
    parser.add_argument("--reference-solve-case", default=None,
                        help="the solve case for the reference (default: --solve-case); also measured now")
    parser.add_argument("--run-solve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_solve:
        run_solve(args.run_solve)
        return 0
    if (args.reference_tree is None) != (args.reference_python is None):
        parser.error("--reference-tree and --reference-python go together")

    ref_case = args.reference_solve_case or args.solve_case
    cases = [args.solve_case] + ([ref_case] if args.reference_tree is not None and ref_case != args.solve_case else [])
    now = measure(sys.executable, ROOT, cases)
    ref = None if args.reference_tree is None else measure(args.reference_python, args.reference_tree, [ref_case])
    label = {"bench": "full default benchmark (python -m proxygym bench)", **{c: f"solve {c}" for c in cases}}
    head = f"{'workload':<52}{'peak MB now':>12}"
    print(head if ref is None else head + f"{'reference':>12}{'now / reference':>17}")
    for key in ["bench", *cases]:
        line = f"{label[key]:<52}{now[key]:>12.0f}"
        if ref is not None and key in ref:
            line += f"{ref[key]:>12.0f}{now[key] / ref[key]:>17.2f}"
        print(line)
    if ref is not None:
        print(f"reference: {args.reference_tree}")
        if ref_case != args.solve_case:
            print(f"largest solve now ({args.solve_case}) / largest solve there ({ref_case}):"
                  f" {now[args.solve_case] / ref[ref_case]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
