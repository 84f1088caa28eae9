"""A policy summary in TensorBoard: scalars, the heatmap image and the Markdown text, with one tag per concept.

Tags (the names of ``docs/model.md``)::

    alignment/mean_return, alignment/p_deploy_aligned, alignment/p_deploy_misaligned,
    alignment/p_abstain, alignment/mean_runs, alignment/best_strategy_return,
    alignment/optimal_return, alignment/optimality_gap        (the last two when known)
    policy/<phase>/<proxy>/{train,reserve,anti}                usage shares
    policy/discard/<phase>                                     discarded at the checkpoint after the phase
    policy/idea/<idea>                                         share of runs started with the idea
    policy/heatmap                                             image
    summary                                                    Markdown text (proxygym.agents.report.format_text)
"""

from __future__ import annotations

import os

import numpy as np
from stable_baselines3.common.logger import Image, Logger
from torch.utils.tensorboard import SummaryWriter

from proxygym.agents.plots import heatmap
from proxygym.agents.report import format_text
from proxygym.agents.summary import PolicySummary
from proxygym.envs.regimen import USAGE_NAMES
from proxygym.envs.scenario import Scenario

#: Keys of the SB3 logger's other outputs that must not receive text, images or per-cell shares.
NOT_CONSOLE = ("stdout", "log")
TENSORBOARD_ONLY = ("stdout", "log", "json", "csv")


def summary_scalars(summary: PolicySummary) -> dict[str, float]:
    """Every scalar tag of :func:`write_summary` and its value."""
    s, o = summary, summary.outcomes
    out = {
        "alignment/mean_return": o.mean_return,
        "alignment/p_deploy_aligned": o.p_deploy_aligned,
        "alignment/p_deploy_misaligned": o.p_deploy_misaligned,
        "alignment/p_abstain": o.p_abstain,
        "alignment/mean_runs": o.mean_runs,
        "alignment/best_strategy_return": s.best_strategy_outcomes.mean_return,
    }
    if s.optimal_return is not None:
        out["alignment/optimal_return"] = s.optimal_return
        out["alignment/optimality_gap"] = s.optimality_gap
    for t, phase in enumerate(s.phases):
        for j, proxy in enumerate(s.proxies):
            for u, usage in enumerate(USAGE_NAMES):
                out[f"policy/{phase}/{proxy}/{usage}"] = float(s.usage_shares[t, j, u])
    for t, phase in enumerate(s.phases):
        out[f"policy/discard/{phase}"] = float(s.discard_shares[t])
    for i, idea in enumerate(s.ideas):
        out[f"policy/idea/{idea}"] = float(s.idea_shares[i])
    return {k: float(v) for k, v in out.items()}


def write_summary(target, summary: PolicySummary, scenario: "Scenario | None", step: int) -> None:
    """Write the summary's scalars, heatmap (``policy/heatmap``) and text (``summary``) at ``step``.

    ``target`` is one of:

    - an SB3 logger (``model.logger`` or ``self.logger`` in a callback): the values are
      recorded and dumped at ``step``, as SB3's ``EvalCallback`` does. The console shows the
      ``alignment/*`` scalars only; image and text go to TensorBoard only.
    - a ``torch.utils.tensorboard.SummaryWriter``: written and flushed, left open.
    - a directory (str or path): a writer is opened there, written and closed.
    """
    scalars = summary_scalars(summary)
    image = heatmap(summary, scenario)
    text = format_text(summary)
    if isinstance(target, Logger):
        for tag, value in scalars.items():
            target.record(tag, value, exclude=None if tag.startswith("alignment/") else NOT_CONSOLE)
        target.record("policy/heatmap", Image(image, "HWC"), exclude=TENSORBOARD_ONLY)
        target.record("summary", text, exclude=TENSORBOARD_ONLY)  # SB3 writes a str with add_text
        target.dump(step)
        return
    if isinstance(target, (str, os.PathLike)):
        writer = SummaryWriter(log_dir=str(target))
        try:
            write_summary(writer, summary, scenario, step)
        finally:
            writer.close()
        return
    if not isinstance(target, SummaryWriter):
        raise TypeError(f"write_summary writes to an SB3 Logger, a SummaryWriter or a directory, got {type(target).__name__}")
    for tag, value in scalars.items():
        target.add_scalar(tag, value, step)
    target.add_image("policy/heatmap", image, step, dataformats="HWC")
    target.add_text("summary", text, step)
    target.flush()


def hparam_value(v):
    """A value TensorBoard's HPARAMS tab accepts (bool, number or string)."""
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return str(v)
