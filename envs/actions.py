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
        model_nvec: the components with a choice (``nvec`` without the idea when there is one idea).

    A learning agent acts in :meth:`model_space`: one ``Discrete(n_flat)`` index per distinct action
    (:meth:`unflatten` reads it), where ``n_flat <= FLAT_MAX``, else ``MultiDiscrete(model_nvec)``.
    SB3 builds one categorical distribution per component of a ``MultiDiscrete``, which costs a policy
    time at every step; one categorical over every action costs less while there are few actions, and
    learns as well on the shipped scenarios (benchmarks/README.md). :meth:`from_model`,
    :meth:`to_model` and :meth:`model_masks` translate to and from any space a model may act in
    (:meth:`fits_model`), the space given.
    """

    #: The largest ``n_flat`` for which :meth:`model_space` is flat (4 proxies and one idea make 243 actions, 3
    #: proxies and 3 ideas 243). PPO's training steps in a do-nothing env, flat against ``MultiDiscrete([3] * n)``:
    #: 1.3x as fast at 243 actions, 0.67x at 729 and 0.29x at 2187, as one output per action outgrows a small MLP.
    FLAT_MAX = 256

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
        self._starts = np.concatenate([[0], np.cumsum(self.nvec)])  # each component's first column in a mask
        self._kept_mask = np.concatenate([np.arange(self._starts[c], self._starts[c + 1]) for c in self._kept])

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

    def model_space(self, flat: bool | None = None) -> "spaces.Discrete | spaces.MultiDiscrete":
        """The action space a learning agent is given: ``Discrete(n_flat)``, one index per distinct action, where
        ``n_flat <= FLAT_MAX`` (or ``flat=True``, as DQN needs); else ``MultiDiscrete(model_nvec)``."""
        if (self.n_flat <= self.FLAT_MAX) if flat is None else flat:
            return spaces.Discrete(self.n_flat)
        return spaces.MultiDiscrete(self.model_nvec)

    def fits_model(self, space) -> bool:
        """Whether ``space`` is one a model may act in here: ``Discrete(n_flat)``, ``MultiDiscrete(model_nvec)`` (the
        model space of large scenarios, and of every scenario before the flat one) or the env's own :meth:`space`
        (a model trained on the bare env, as rl-baselines3-zoo trains)."""
        return space in (spaces.Discrete(self.n_flat), spaces.MultiDiscrete(self.model_nvec), self.space())

    def _form(self, space) -> str:
        """``"flat"``, ``"model"`` (``MultiDiscrete(model_nvec)``) or ``"env"`` (the env's own) for a model's action space."""
        if space is None:
            space = self.model_space()
        if isinstance(space, spaces.Discrete) and space.n == self.n_flat:
            return "flat"
        nvec = getattr(space, "nvec", None)
        if nvec is not None and np.array_equal(nvec, self.nvec):
            return "env"
        if nvec is not None and np.array_equal(nvec, self.model_nvec):
            return "model"
        raise ValueError(f"{space} is not an action space of this layout (nvec {self.nvec.tolist()})")

    def from_model(self, actions, space=None) -> np.ndarray:
        """``(N, 2 + k)`` env actions from ``N`` actions of a model acting in ``space`` (default :meth:`model_space`):
        flat indexes unflattened (:meth:`unflatten`), ``MultiDiscrete(model_nvec)`` actions given their one-choice
        component (0), the env's own actions as they are."""
        form = self._form(space)
        if form == "flat":
            return self.unflatten(np.asarray(actions, dtype=np.int64).reshape(-1))
        actions = np.asarray(actions, dtype=np.int64)
        if form == "env":
            return actions.reshape(-1, self.size)
        out = np.zeros((actions.size // len(self.model_nvec), self.size), dtype=np.int64)
        out[:, self._kept] = actions.reshape(len(out), -1)
        return out

    def to_model(self, actions, space=None) -> np.ndarray:
        """Env actions ``(..., 2 + k)`` as a model acting in ``space`` (default :meth:`model_space`) gives them:
        flat indexes ``(...)`` (:meth:`flatten`), or without the one-choice component (always 0), or as they are."""
        form = self._form(space)
        actions = np.asarray(actions, dtype=np.int64)
        if form == "flat":
            return self.flatten(actions)
        return actions if form == "env" else actions[..., self._kept]

    def model_masks(self, masks, space=None) -> np.ndarray:
        """Masks ``(..., mask_size)`` over the choices of a model acting in ``space`` (default :meth:`model_space`).

        For ``Discrete(n_flat)``, ``(..., n_flat)``: index ``i`` is allowed where every component of
        ``unflatten(i)`` is (verdict allowed x every usage x every idea, as the masks stand); for
        ``MultiDiscrete(model_nvec)``, the columns of the components it has; for the env's own space, the masks.
        """
        masks = np.asarray(masks, dtype=bool)
        form = self._form(space)
        if form == "env":
            return masks
        if form == "model":
            return masks[..., self._kept_mask]
        out = np.ones(masks.shape[:-1] + (1,), dtype=bool)
        for a, b in zip(self._starts[:-1], self._starts[1:]):  # mixed radix: the first component most significant
            out = (out[..., :, None] & masks[..., None, a:b]).reshape(masks.shape[:-1] + (-1,))
        return out

    def flatten(self, actions) -> np.ndarray:
        """The flat index(es) of actions ``(..., 2 + k)``: the inverse of :meth:`unflatten`."""
        actions = np.asarray(actions, dtype=np.int64)
        return np.ravel_multi_index(tuple(np.moveaxis(actions, -1, 0)), self.nvec).astype(np.int64)

    def unflatten(self, index) -> np.ndarray:
        """The action(s) of flat index(es) ``index``: the mixed-radix digits (verdict, usages, idea), first most significant."""
        index = np.asarray(index, dtype=np.int64)
        return np.stack(np.unravel_index(index, self.nvec), axis=-1).astype(np.int64)
