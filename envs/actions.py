"""The action: a verdict on the run, a usage for each proxy in the next phase, and an idea.

One action of ``ProxyAlignment-v0`` is ``MultiDiscrete([3] + [3] * k + [m])`` for k proxies
and m ideas: ``(verdict, usage of proxy 1..k, idea)``. :class:`ActionLayout` is the one place
that packs and unpacks it, for the env, the vector env, the strategies and the wrappers; the
verdict rules of the decision protocol (docs/model.md, "One episode") are the functions below.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

CONTINUE, DISCARD, DEPLOY = 0, 1, 2
VERDICT_NAMES = ("continue", "discard", "deploy")

# The decision protocol's table, by kind of decision point:
# 0 a run's start (d = 0), 1 an early checkpoint (0 < d < T), 2 the final checkpoint (d = T).
START, EARLY, FINAL = 0, 1, 2
#: ALLOWED[kind, verdict]: is the verdict allowed there.
ALLOWED = np.array([[True, False, False], [True, True, False], [False, True, True]])
#: NEAREST[kind, verdict]: the allowed verdict a verdict stands for (itself when allowed).
NEAREST = np.array([[CONTINUE, CONTINUE, CONTINUE], [CONTINUE, DISCARD, CONTINUE], [DEPLOY, DISCARD, DEPLOY]])


def decision_kind(checkpoint, n_phases: int):
    """START, EARLY or FINAL for decision point(s) ``checkpoint`` (scalars or arrays alike)."""
    return (checkpoint > 0) * 1 + (checkpoint == n_phases)  # * 1: arrays of bools would add as "or"


def nearest_allowed(verdict, checkpoint, n_phases: int):
    """Map a verdict that is not allowed here to the one that stands for it (scalars or arrays alike).

    Checkpoint 0: continue; the final checkpoint: continue is read as deploy; otherwise
    deploy is read as continue.
    """
    out = NEAREST[decision_kind(checkpoint, n_phases), verdict]
    return int(out) if np.ndim(out) == 0 else out


class ActionLayout:
    """Where the verdict, each proxy's usage and the idea sit in an action, for one program or a batch.

    Attributes:
        n_proxies, n_ideas: k and m.
        nvec: ``[3] + [3] * k + [m]``.
        size: ``2 + k``, the length of one action.
        mask_size: ``3 + 3k + m``, the length of one flat mask (as sb3-contrib's MaskablePPO reads it).
        n_flat: ``3 * 3**k * m``, the number of distinct actions (a Discrete space's size).
        model_nvec: the components with a choice (``nvec`` without the idea when there is one idea):
            the action as a learning agent is shown it (:meth:`model_space`), since a
            one-choice component only costs a policy an output head.
    """

    def __init__(self, n_proxies: int, n_ideas: int):
        self.n_proxies, self.n_ideas = int(n_proxies), int(n_ideas)
        self.nvec = np.array([3] + [3] * self.n_proxies + [self.n_ideas], dtype=np.int64)
        self.size = 2 + self.n_proxies
        self.mask_size = int(self.nvec.sum())
        self.n_flat = int(np.prod(self.nvec))
        #: _mask_table[kind]: the mask at a decision point of that kind (START, EARLY, FINAL)
        self._mask_table = np.concatenate([ALLOWED, np.ones((len(ALLOWED), self.mask_size - 3), dtype=bool)], axis=1)
        self._mask_table.setflags(write=False)
        self._kept = np.flatnonzero(self.nvec > 1)  # the components with a choice
        self.model_nvec = self.nvec[self._kept]
        starts = np.concatenate([[0], np.cumsum(self.nvec)])
        self._kept_mask = np.concatenate([np.arange(starts[c], starts[c + 1]) for c in self._kept])

    @classmethod
    def of(cls, scenario) -> "ActionLayout":
        return cls(len(scenario.proxies), len(scenario.ideas))

    def space(self) -> spaces.MultiDiscrete:
        """The action space of one program."""
        return spaces.MultiDiscrete(self.nvec)

    def encode(self, verdict, usage, idea) -> np.ndarray:
        """``(N, 2 + k)`` int64 actions from verdicts ``(N,)``, usages ``(N, k)`` and ideas ``(N,)`` (each may broadcast)."""
        verdict, idea = np.asarray(verdict), np.asarray(idea)
        n = max(len(np.atleast_1d(verdict)), len(np.atleast_1d(idea)), len(np.atleast_2d(usage)))
        out = np.empty((n, self.size), dtype=np.int64)
        out[:, 0] = verdict
        out[:, 1 : 1 + self.n_proxies] = usage
        out[:, 1 + self.n_proxies] = idea
        return out

    def decode(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(verdict, usage, idea)`` of actions ``(..., 2 + k)``: shapes ``(...)``, ``(..., k)``, ``(...)``."""
        actions = np.asarray(actions)
        k = self.n_proxies
        return actions[..., 0], actions[..., 1 : 1 + k], actions[..., 1 + k]

    def masks(self, checkpoint, n_phases: int) -> np.ndarray:
        """``checkpoint.shape + (mask_size,)``: the allowed verdicts at each decision point; every usage and idea."""
        # one look-up in the table of the mask at each kind of decision point (a new array)
        checkpoint = checkpoint if isinstance(checkpoint, int) else np.asarray(checkpoint)
        return self._mask_table.take(decision_kind(checkpoint, n_phases), axis=0)

    def model_space(self) -> spaces.MultiDiscrete:
        """The action space a learning agent is given: ``MultiDiscrete(model_nvec)``."""
        return spaces.MultiDiscrete(self.model_nvec)

    def from_model(self, actions) -> np.ndarray:
        """``(N, 2 + k)`` env actions from actions ``(N, len(model_nvec))`` of :meth:`model_space` (a one-choice
        component is 0); actions already of the env's size are returned as they are."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape[-1] == self.size:
            return actions
        out = np.zeros(actions.shape[:-1] + (self.size,), dtype=np.int64)
        out[..., self._kept] = actions
        return out

    def to_model(self, actions) -> np.ndarray:
        """Env actions ``(..., 2 + k)`` in :meth:`model_space` (their one-choice component, always 0, left out)."""
        return np.asarray(actions)[..., self._kept]

    def model_masks(self, masks) -> np.ndarray:
        """The columns of flat masks ``(..., mask_size)`` that :meth:`model_space` has."""
        return np.asarray(masks)[..., self._kept_mask]

    def unflatten(self, index) -> np.ndarray:
        """The action(s) of flat index(es) ``index``: the mixed-radix digits (verdict, usages, idea), first most significant."""
        index = np.asarray(index, dtype=np.int64)
        return np.stack(np.unravel_index(index, self.nvec), axis=-1).astype(np.int64)
