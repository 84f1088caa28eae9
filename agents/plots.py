"""Pictures: the benchmark as bars, sweeps, a trained policy as a heatmap of phases x proxies, and
the trajectory of one run (base rate and each proxy's recall per checkpoint) of one or two plans.

All draw on matplotlib's object API with the Agg canvas (no global pyplot state, no display).
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from proxygym.agents.bench import BenchResult, best_index
from proxygym.agents.report import percent, usage_cell
from proxygym.agents.summary import PolicySummary
from proxygym.agents.sweep import winner_grid
from proxygym.envs.regimen import ANTI, RESERVE, TRAIN, USAGE_LETTERS, USAGE_NAMES
from proxygym.envs.scenario import Scenario


def bench_plot(results: list[BenchResult], fmt: str = "png") -> bytes:
    """A picture (``fmt``: png, pdf or svg): one panel per scenario, strategies as bars with their 95%
    intervals, exact values as diamonds."""
    names = list(dict.fromkeys(r.scenario for r in results))
    cols = min(3, len(names))
    rows_n = math.ceil(len(names) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows_n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows_n, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        rows = [r for r in results if r.scenario == name]
        x = np.arange(len(rows))
        best = best_index(rows)
        colors = ["tab:orange" if i == best else "tab:blue" for i in range(len(rows))]
        ax.bar(x, [r.outcomes.mean_return for r in rows], yerr=_return_errors([r.outcomes for r in rows]), color=colors,
               capsize=2)
        exact = [(i, r.exact_return) for i, r in enumerate(rows) if r.exact_return is not None]
        if exact:
            ax.scatter(*zip(*exact), marker="D", color="black", s=14, zorder=3, label="exact")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels([r.strategy for r in rows], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("mean return", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    return buf.getvalue()


def _return_errors(outcomes) -> np.ndarray:
    """Error bars of the mean returns, ``(2, n)`` below and above: each 95% interval as it is (off-centre for Wilson's)."""
    return np.array([[o.mean_return - o.ci95_low for o in outcomes], [o.ci95_high - o.mean_return for o in outcomes]])


def _figure_bytes(fig: Figure, fmt: str) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    return buf.getvalue()


def sweep_plot(rows: list[dict], axes, texts: list[str], metric: str, flip_points=(), terms=None, fmt: str = "png") -> bytes:
    """A sweep as a picture (``fmt``: png, pdf or svg). One parameter: ``metric`` of each regimen (and
    the optimum, if swept) against it, the flip points as dashed lines. Two parameters: the winning
    regimen at each grid point and, beside it, ``terms`` (0: the base rate, 1: the likelihood ratio,
    -1: undefined), which of the two log impacts decided between the two best regimens."""
    names = list(texts) + (["optimal"] if any(r["plan"] == "optimal" for r in rows) else [])
    if len(axes) == 1:
        fig = Figure(figsize=(7, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        path = axes[0].path
        for name in names:
            pts = sorted((r["params"][path], r[metric]) for r in rows if r["plan"] == name and r.get(metric) is not None)
            if pts:
                ax.plot(*zip(*pts), label=name, linestyle=":" if name == "optimal" else "-")
        for value, _, _ in flip_points:
            ax.axvline(value, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"{value:.4g}", (value, 1.0), xycoords=("data", "axes fraction"), fontsize=7, ha="center", va="bottom")
        ax.set_xlabel(path)
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        return _figure_bytes(fig, fmt)
    wins = winner_grid(rows, axes, texts, metric)
    fig = Figure(figsize=(11, 4.4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    extent = [axes[1].values[0], axes[1].values[-1], axes[0].values[0], axes[0].values[-1]]
    cmap = matplotlib.colormaps["tab10"]
    left.imshow(np.where(wins >= 0, wins, np.nan), origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=0, vmax=9,
                interpolation="nearest")
    left.legend(handles=[Patch(color=cmap(i), label=t) for i, t in enumerate(texts)], fontsize=7, loc="best")
    left.set_title(f"best regimen by {metric}", fontsize=10)
    if terms is not None:
        term_cmap = matplotlib.colors.ListedColormap(["tab:green", "tab:purple"])
        right.imshow(np.where(terms >= 0, terms, np.nan), origin="lower", aspect="auto", extent=extent, cmap=term_cmap,
                     vmin=0, vmax=1, interpolation="nearest")
        right.legend(handles=[Patch(color="tab:green", label="base rate"), Patch(color="tab:purple", label="likelihood ratio")],
                     fontsize=7, loc="best")
        right.set_title("which log impact is larger (best two)", fontsize=10)
    else:
        right.axis("off")
    for ax in (left, right):
        ax.set_xlabel(axes[1].path, fontsize=8)
        ax.set_ylabel(axes[0].path, fontsize=8)
    return _figure_bytes(fig, fmt)


def flips_plot(results, first: str, second: str, metric: str, fmt: str = "png") -> bytes:
    """A tornado chart: per parameter (the nearest flip on top), the range of the margin of ``first`` over
    ``second`` on ``metric`` as the parameter moves over its window; a bar that crosses zero is a flip,
    labelled with the flip points."""
    shown = [r for r in results if r.span is not None][:25]
    fig = Figure(figsize=(8, 0.32 * len(shown) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, r in enumerate(reversed(shown)):
        low, high = r.span
        ax.barh(i, high - low, left=low, color="tab:orange" if r.flips else "tab:blue", height=0.6)
        if r.margins[2] is not None:
            ax.plot(r.margins[2], i, marker="|", color="black", markersize=9)  # the margin at the scenario's values
        if r.flips:
            ax.annotate(", ".join(f"{f:.4g}" for f in r.flips), (max(low, high), i), fontsize=7, va="center",
                        xytext=(3, 0), textcoords="offset points")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([f"{r.path} ({r.value:g})" for r in reversed(shown)], fontsize=7)
    ax.set_xlabel(f"{metric}: {first} minus {second}, over each parameter's range", fontsize=8)
    ax.set_title("orange: the winner flips within the range (flip points beside); |: the scenario's own margin", fontsize=9)
    return _figure_bytes(fig, fmt)


#: Colours of the usages in the heatmap; a cell is their mix weighted by the usage shares,
#: so a 50/50 train/anti cell (purple) does not look like a reserved one (grey).
USAGE_COLOURS = np.array(
    [
        [0.86, 0.86, 0.86],  # reserve: grey, the proxy is kept as a test
        [0.19, 0.45, 0.80],  # train: blue
        [0.84, 0.27, 0.22],  # anti: red
    ]
)


def heatmap(summary: PolicySummary, scenario: "Scenario | None" = None) -> np.ndarray:
    """An RGB ``uint8`` image ``(H, W, 3)``: phases x proxies coloured by usage, and the discard rate per checkpoint.

    ``scenario`` (optional) adds each phase's plasticity to its label.
    """
    s, o = summary, summary.outcomes
    T, k = len(s.phases), len(s.proxies)
    fig = Figure(figsize=(max(5.0, 2.2 + 1.55 * k + 0.9), 1.9 + 0.62 * T), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=[k, 0.6])
    ax = fig.add_subplot(grid[0])
    ax_d = fig.add_subplot(grid[1], sharey=ax)

    ran = s.phase_runs > 0
    rgb = np.einsum("tju,uc->tjc", s.usage_shares, USAGE_COLOURS)
    rgb[~ran] = 1.0
    ax.imshow(rgb, aspect="auto", vmin=0, vmax=1)
    for t in range(T):
        for j in range(k):
            if not ran[t]:
                ax.text(j, t, "not run", ha="center", va="center", fontsize=8, color="0.45")
                continue
            dark = rgb[t, j] @ np.array([0.299, 0.587, 0.114]) < 0.55  # perceived brightness
            text = usage_cell(s.usage_shares[t, j]).replace(" / ", "\n")
            ax.text(j, t, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(s.proxies, rotation=20 if k > 2 else 0, ha="right" if k > 2 else "center", fontsize=8)
    ax.set_yticks(range(T))
    if scenario is not None:
        ylabels = [f"{p.name}\n(plasticity {p.plasticity:g})" for p in scenario.phases]
    else:
        ylabels = list(s.phases)
    ax.set_yticklabels(ylabels, fontsize=8)
    ax.set_xlabel("proxy", fontsize=9)
    ax.set_ylabel("phase", fontsize=9)
    ax.set_title("usage (share of the runs that ran the phase)" if k > 1 else "usage", fontsize=9)

    discard = np.where(ran, s.discard_shares, np.nan)[:, None]
    ax_d.imshow(np.ma.masked_invalid(discard), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    for t in range(T):
        label = percent(s.discard_shares[t]) if ran[t] else "-"
        ax_d.text(0, t, label, ha="center", va="center", fontsize=8, color="white" if ran[t] and s.discard_shares[t] > 0.6 else "black")
    ax_d.set_xticks([0])
    ax_d.set_xticklabels(["at the checkpoint\nafter the phase"], fontsize=8)
    ax_d.tick_params(axis="y", left=False, labelleft=False)
    ax_d.set_title("discarded", fontsize=9)

    fig.suptitle(
        f"{s.scenario}: {s.algo} policy, return {o.return_text(3)}\n"
        f"best strategy {s.best_strategy} {s.best_strategy_outcomes.mean_return:.3f}",
        fontsize=10,
    )
    handles = [Patch(color=USAGE_COLOURS[u], label=f"{USAGE_LETTERS[u]} {USAGE_NAMES[u]}") for u in (TRAIN, RESERVE, ANTI)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# -- the trajectory of one run ----------------------------------------------------------------
#: Colours of the regimens in the trajectory plot (first, second).
SIDE_COLOURS = ("tab:blue", "tab:orange")
#: Line styles of the proxies in the recall panel, in scenario order.
PROXY_STYLES = ("-", "--", ":", "-.")


def trajectory_series(points: list[dict], proxy: str) -> dict[str, list[float]]:
    """What the trajectory plot draws for one regimen, read off :func:`proxygym.envs.analysis.trajectory`:
    ``base_rate`` (P(aligned)) and ``recall`` (1 - P(pass | misaligned) of ``proxy``) at checkpoints
    1..T; a recall that is undefined (no misaligned mass) is NaN, drawn as a gap."""
    recall = []
    for point in points:
        ppm = point["proxies"][proxy]["p_pass_misaligned"]
        recall.append(math.nan if ppm is None else 1.0 - ppm)
    return {"base_rate": [point["base_rate"] for point in points], "recall": recall}


def trajectory_figure(scenario: Scenario, sides: list[tuple[str, list[dict]]]) -> Figure:
    """Two panels over the checkpoints: P(aligned), and each proxy's recall, one line per regimen.

    ``sides`` is one or two ``(label, trajectory)`` pairs. The panels' lines are, in order: the
    base rate of each side (left), then for each side each proxy's recall (right); their y data
    are :func:`trajectory_series` exactly.
    """
    T = len(scenario.phases)
    x = np.arange(1, T + 1)
    fig = Figure(figsize=(10.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_b, ax_r = fig.subplots(1, 2, sharex=True)
    several = len(scenario.proxy_names) > 1
    for s, (label, points) in enumerate(sides):
        colour = SIDE_COLOURS[s % len(SIDE_COLOURS)]
        ax_b.plot(x, trajectory_series(points, scenario.proxy_names[0])["base_rate"], marker="o", color=colour, label=label)
    for s, (label, points) in enumerate(sides):
        colour = SIDE_COLOURS[s % len(SIDE_COLOURS)]
        for j, proxy in enumerate(scenario.proxy_names):
            ax_r.plot(x, trajectory_series(points, proxy)["recall"], marker="o", color=colour,
                      linestyle=PROXY_STYLES[j % len(PROXY_STYLES)], label=f"{label}: {proxy}" if several else label)
    ticks = [f"{t}\n{phase.name}" for t, phase in zip(x, scenario.phases)]
    proxy_text = scenario.proxy_names[0] if not several else "each proxy"
    for ax, title in ((ax_b, "base rate: P(aligned)"), (ax_r, f"recall of {proxy_text}: 1 - P(pass | misaligned)")):
        ax.set_xticks(x)
        ax.set_xticklabels(ticks, fontsize=8)
        ax.set_xlabel("checkpoint (after the phase)", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{scenario.name}: one run of each plan, played to the end with no test applied", fontsize=10)
    return fig


def trajectory_plot(scenario: Scenario, sides: list[tuple[str, list[dict]]], fmt: str = "png") -> bytes:
    """:func:`trajectory_figure` as a picture in ``fmt`` (png, pdf or svg)."""
    buf = io.BytesIO()
    trajectory_figure(scenario, sides).savefig(buf, format=fmt)
    return buf.getvalue()
