"""The trained-agent table of benchmarks/README.md, from the JSON files ``proxygym experiment --json`` wrote.

    python benchmarks/experiment_table.py ppo_belief.json ppo_history.json ppo_history_stack4.json
    python benchmarks/experiment_table.py ppo_belief.json ... --readme benchmarks/README.md

One row per scenario and a last row over all of them; per agent (algorithm, observation, frames stacked) two
columns: the interquartile mean of the normalized scores over the seeds with its 95% interval (the JSON's
``per_scenario`` and ``aggregate``, rliable's), and the mean return over the seeds (the JSON's ``runs``). The
agents come in the order of the files, and the scenarios in the order of the first file. With ``--readme`` the
table replaces the one between the README's ``experiment-table`` markers (written atomically); else it is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from proxygym.agents.files import write_text_atomic
from proxygym.envs.errors import ProxyGymError
from proxygym.experiment import agent_label, agent_of, mean_returns

START, END = "<!-- experiment-table:start -->", "<!-- experiment-table:end -->"


#: The keys the table reads, per list of a file.
KEYS = {"runs": ("scenario", "algo", "observation", "mean_return"), "aggregate": ("algo", "observation", "iqm", "ci"),
        "per_scenario": ("scenario", "algo", "observation", "iqm", "ci")}


def read(paths: list[str]) -> list[dict]:
    """Every file's JSON, each checked for what the table reads (one line naming the file otherwise); an agent
    (:func:`agent_of`) in two files is refused (which file's aggregate would the table show?)."""
    out, seen = [], {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in KEYS):
                raise ValueError("no runs, aggregate and per_scenario lists")
            for name, keys in KEYS.items():
                if not all(isinstance(row, dict) and all(k in row for k in keys) for row in data[name]):
                    raise ValueError(f"a row of {name} lacks one of {', '.join(keys)}")
        except (OSError, ValueError) as err:
            raise ProxyGymError(f"{path}: not the JSON of proxygym experiment --json ({err})") from None
        for agent in dict.fromkeys(agent_of(run) for run in data["runs"]):
            if agent in seen:
                raise ProxyGymError(f"{path}: {agent_label(agent)} is in {seen[agent]} too; give each agent's runs once")
            seen[agent] = path
        out.append(data)
    return out


def markdown(files: list[dict]) -> str:
    agents: dict[tuple, dict] = {}  # agent -> {"runs": [...], "per": {scenario: row}, "all": row}
    scenarios: list[str] = []
    for data in files:
        for run in data["runs"]:
            if run["scenario"] not in scenarios:
                scenarios.append(run["scenario"])
            agents.setdefault(agent_of(run), {"runs": [], "per": {}, "all": None})["runs"].append(run)
        for row in data["per_scenario"]:
            if agent_of(row) in agents:
                agents[agent_of(row)]["per"][row["scenario"]] = row
        for row in data["aggregate"]:
            if agent_of(row) in agents:
                agents[agent_of(row)]["all"] = row

    def interval(row: dict | None, bold: bool = False) -> str:
        if row is None:
            return "-"
        text = f"{row['iqm']:.3f} [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]"
        return f"**{text}**" if bold else text

    means = mean_returns([run for got in agents.values() for run in got["runs"]])

    def mean_return(agent: tuple, scenario: str) -> str:
        mine = means.get((agent, scenario))
        return "-" if mine is None else f"{mine:.4f}"

    header = ["scenario"] + [h for a in agents for h in (f"{agent_label(a)}: IQM [95%]", "mean return")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in scenarios:
        cells = [name] + [c for a, got in agents.items() for c in (interval(got["per"].get(name)), mean_return(a, name))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| " + " | ".join(["**all**"] + [c for got in agents.values() for c in (interval(got["all"], True), "")])
                 + " |")
    return "\n".join(lines) + "\n"


def replace_table(readme: Path, table: str) -> None:
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ProxyGymError(f"{readme}: needs one {START} line before one {END} line")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    write_text_atomic(readme, f"{head}{START}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="+", help="files written by proxygym experiment --json")
    p.add_argument("--readme", default=None, help="replace the table between the experiment-table markers of this file")
    args = p.parse_args(argv)
    try:
        table = markdown(read(args.json))
        if args.readme:
            replace_table(Path(args.readme), table)
            print(f"wrote the table into {args.readme}")
        else:
            sys.stdout.write(table)
    except ProxyGymError as err:
        print(f"experiment_table.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
