"""Train the default algorithm on every shipped scenario and write how it compares into benchmarks/README.md.

    python benchmarks/train_quality.py [--algo ppo] [-n STEPS] [--seed 0] [--scenario NAME ...]

For each scenario: ``train.py`` with the hyperparameter file's budget (or ``-n``), then the
trained agent's mean return over 2,000 episodes with its 95% interval, beside the exact
optimum (proxygym.agents.solver), the best heuristic strategy (benchmark, 2,000 episodes, seed 0, as
the README's table) and first_model's exact return, and the normalized score
(agent - first_model) / (optimal - first_model). The table between the markers in
benchmarks/README.md is replaced; the rest of that file is kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from proxygym import train
from proxygym.agents.files import write_text_atomic
from proxygym.agents.report import normalized_score
from proxygym.agents.summary import best_strategy, score_references
from proxygym.envs.outcomes import Outcomes
from proxygym.envs.scenario import load_scenario, shipped_scenarios

ROOT = Path(__file__).resolve().parent.parent

START, END = "<!-- train-quality:start -->", "<!-- train-quality:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("-n", "--n-timesteps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", nargs="+", default=None)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenario or shipped_scenarios():
            sc = load_scenario(name)
            extra = [] if args.n_timesteps is None else ["-n", str(args.n_timesteps)]
            start = time.perf_counter()
            code = train.main(["--algo", args.algo, "--scenario", name, "--seed", str(args.seed), *extra,
                               "--final-episodes", "2000", "--log-folder", tmp, "--tensorboard-log", ""])
            seconds = time.perf_counter() - start
            if code != 0:
                print(f"{name}: train.py exited {code}", file=sys.stderr)
                return code
            folder = Path(tmp) / args.algo / f"{name}_1"
            ev = json.loads((folder / "evaluation.json").read_text())
            steps = train.load_hyperparams(args.algo, name, {})["n_timesteps"] if args.n_timesteps is None else args.n_timesteps
            best = best_strategy(sc)  # the reference the evaluations use: every heuristic, 2,000 episodes, seed 0
            first, optimum = score_references(sc)
            score = normalized_score(ev["mean_return"], first, optimum)
            trained = Outcomes(**{f.name: ev[f.name] for f in fields(Outcomes)})  # its interval as evaluated
            rows.append(
                f"| {name} | {optimum:.3f} | {best.strategy} {best.outcomes.return_text(3)} | "
                f"{trained.return_text(3)} | {score:.3f} | {first:.3f} | {steps} | {seconds:.0f} s |"
            )
            print(rows[-1], flush=True)

    path = ROOT / "benchmarks" / "README.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    # rows of scenarios not run this time are kept; the table stays in the shipped order
    old = re.search(f"{START}(.*?){END}", text, flags=re.S).group(1)
    by_name = {line.split("|")[1].strip(): line for line in old.strip().splitlines()[2:] if line.startswith("|")}
    by_name.update({row.split("|")[1].strip(): row for row in rows})
    order = [n for n in shipped_scenarios() if n in by_name] + sorted(set(by_name) - set(shipped_scenarios()))
    table = "\n".join(
        [f"| scenario | optimal | best heuristic strategy | {args.algo} agent | normalized score | first_model | steps | wall time |",
         "|---|---|---|---|---|---|---|---|", *(by_name[n] for n in order)]
    )
    text = re.sub(f"{START}.*?{END}", f"{START}\n{table}\n{END}", text, flags=re.S)
    write_text_atomic(path, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
