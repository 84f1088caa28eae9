"""The observation vector: named slices of one flat float32 Box in [0, 1].

Both modes share the ``history`` slices; ``belief`` appends the exact posterior.
Strategies read observations through :meth:`ObservationLayout.decode`, so nothing
outside this file depends on the order of the slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from proxygym.envs.dynamics import Dynamics
from proxygym.envs.regimen import can_start

OBSERVATION_MODES = ("history", "belief")


@functools.lru_cache(maxsize=None)
def _one_hot(n: int) -> np.ndarray:
    """``(n + 1, n)`` bool: row i is the one-hot of i, row n is all False (read-only, shared)."""
    table = np.eye(n + 1, n, dtype=bool)
    table.setflags(write=False)
    return table


@dataclass(frozen=True)
class Slot:
    name: str
    shape: tuple[int, ...]
    doc: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class ObservationLayout:
    """Where each named quantity sits in the observation vector.

    ``history`` slices (T phases, k proxies, m ideas, B budget):

    ========================  ===========  ===================================================
    name                      shape        value
    ========================  ===========  ===================================================
    ``checkpoint``            (T+1,)       one-hot of the decision point d (0 = a run's start)
    ``runs_left``             (1,)         runs not yet started / B (a run under way is started)
    ``compute_left``          (1,)         compute not yet spent / the program's compute (only
                                           where the scenario sets ``compute``)
    ``idea``                  (m,)         one-hot of the current run's idea (zeros at d = 0)
    ``usage``                 (T, k, 3)    one-hot usage (reserve, train, anti) of each phase
                                           done so far in this run; zeros for phases to come
    ``results``               (T, k, 2)    one-hot (pass, fail) of each proxy at each checkpoint
                                           reached so far in this run; zeros for those to come
    ``idea_runs``             (m,)         finished earlier runs of each idea / B
    ``idea_passes``           (m, k)       passes seen in finished runs, per idea and proxy / (B T)
    ``idea_fails``            (m, k)       fails seen in finished runs, per idea and proxy / (B T)
    ========================  ===========  ===================================================

    ``belief`` adds:

    ========================  ===========  ===================================================
    ``p_aligned``             (1,)         P(current model aligned | history); 0 at d = 0
    ``p_shaped``              (k,)         P(current model shaped to pass proxy j | history)
    ``base_rate``             (m,)         posterior mean base rate of each idea
    ``world``                 (W,)         P(world | history), only where the scenario has ``worlds``
    ========================  ===========  ===================================================
    """

    @classmethod
    def of(cls, scenario, mode: str = "history") -> "ObservationLayout":
        """The layout of a scenario's observations in ``mode``."""
        return cls(Dynamics.of(scenario), mode)

    def __init__(self, dynamics: Dynamics, mode: str = "history"):
        if mode not in OBSERVATION_MODES:
            raise ValueError(f"observation must be one of {', '.join(OBSERVATION_MODES)}, got {mode!r}")
        T, k, m = dynamics.n_phases, dynamics.n_proxies, dynamics.n_ideas
        self.n_phases, self.n_proxies, self.n_ideas = T, k, m
        sc = dynamics.scenario
        self.budget, self.compute, self.full_run = sc.budget, sc.compute, sc.full_run_compute
        self.mode = mode
        self.slots = [
            Slot("checkpoint", (T + 1,), "one-hot decision point"),
            Slot("runs_left", (1,), "runs not yet started / budget"),
            *([Slot("compute_left", (1,), "compute not yet spent / compute")] if sc.compute is not None else []),
            Slot("idea", (m,), "one-hot idea of the current run"),
            Slot("usage", (T, k, 3), "usage so far in this run"),
            Slot("results", (T, k, 2), "test results so far in this run"),
            Slot("idea_runs", (m,), "finished runs per idea / budget"),
            Slot("idea_passes", (m, k), "passes in finished runs / (budget * phases)"),
            Slot("idea_fails", (m, k), "fails in finished runs / (budget * phases)"),
        ]
        if mode == "belief":
            self.slots += [
                Slot("p_aligned", (1,), "posterior P(aligned)"),
                Slot("p_shaped", (k,), "posterior P(shaped) per proxy"),
                Slot("base_rate", (m,), "posterior mean base rate per idea"),
                *([Slot("world", (dynamics.n_worlds,), "posterior over the worlds")] if dynamics.n_worlds > 1 else []),
            ]
        self.slices: dict[str, slice] = {}
        start = 0
        for slot in self.slots:
            self.slices[slot.name] = slice(start, start + slot.size)
            start += slot.size
        self.size = start
        #: the run under way's slots as contiguous blocks: the checkpoint, then idea, usage and results
        self.run_slots = (self.slices["checkpoint"], slice(self.slices["idea"].start, self.slices["results"].stop))
        self._shapes = {slot.name: slot.shape for slot in self.slots}

    def history(
        self,
        checkpoint: np.ndarray,
        runs_used: np.ndarray,
        idea: np.ndarray,
        usage: np.ndarray,
        results: np.ndarray,
        idea_runs: np.ndarray,
        idea_passes: np.ndarray,
        idea_fails: np.ndarray,
        budget: int,
        compute_left: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The ``history`` slots for a batch of N programs, from their observable state.

        Arguments are per program: ``checkpoint``, ``runs_used``, ``idea`` (-1: none) ``(N,)``;
        the current run's ``usage`` and ``results`` (True: pass) ``(N, T, k)``, read only for
        the phases done; ``idea_runs`` ``(N, m)``; ``idea_passes``, ``idea_fails`` ``(N, m, k)``;
        ``compute_left`` ``(N,)`` where the scenario has a compute budget.
        Returns each slot with a leading N axis (one-hots as booleans, which encode to 0 and 1).
        """
        N, T, _ = usage.shape
        m = idea_runs.shape[1]
        reached = (np.arange(T)[None, :] < checkpoint[:, None])[:, :, None]  # phases done in this run
        # One-hots by table look-up; the index one past the last picks the table's row of zeros.
        return dict(
            checkpoint=_one_hot(T + 1).take(checkpoint, axis=0),
            runs_left=((budget - runs_used) / budget)[:, None],
            idea=_one_hot(m).take(np.where(checkpoint > 0, idea, m), axis=0),
            usage=_one_hot(3).take(np.where(reached, usage, 3), axis=0),
            results=_one_hot(2).take(np.where(reached, ~results, 2), axis=0),
            idea_runs=idea_runs / budget,
            idea_passes=idea_passes / (budget * T),
            idea_fails=idea_fails / (budget * T),
            **({"compute_left": (compute_left / self.compute)[:, None]} if self.compute is not None else {}),
        )

    def encode(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """``(N, size)`` float32 observations from every slot's values, each with a leading N axis."""
        n = len(values["checkpoint"])
        out = np.empty((n, self.size), dtype=np.float32)
        for name, sl in self.slices.items():
            out[:, sl] = np.asarray(values[name]).reshape(n, -1)
        return out

    def views(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Every named slot of a batch ``obs`` ``(N, size)`` as a writable view ``(N,) + shape`` into it (no copies),
        for building observations in place."""
        out = self.decode(obs)
        for name, view in out.items():
            if not np.shares_memory(view, obs):
                raise ValueError(f"slot {name!r} of an array of shape {obs.shape} cannot be viewed in place")
        return out

    def position(self, obs: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """Where each program of a batch ``(N, n)`` stands: its decision point d and its runs not yet started."""
        obs = np.asarray(obs)
        checkpoint = obs[:, self.slices["checkpoint"]].argmax(axis=1)
        runs_left = np.rint(obs[:, self.slices["runs_left"].start] * budget).astype(np.int64)
        return checkpoint, runs_left

    def episode_start(self, obs: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: each program of a batch is at its episode's first decision point (a run's
        start with the whole budget left)."""
        d, runs_left = self.position(obs, self.budget)
        return (d == 0) & (runs_left == self.budget)

    def compute_left(self, obs: np.ndarray) -> np.ndarray | None:
        """``(N,)`` the compute each program of a batch has not spent yet, or None without a compute budget."""
        if self.compute is None:
            return None
        return np.rint(np.asarray(obs)[:, self.slices["compute_left"].start] * self.compute).astype(np.int64)

    def last_chance(self, obs: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: a discard now would leave no run to start (no run left, or less than one full
        run's compute left), so the program would end with nothing deployed."""
        runs_left = self.position(obs, self.budget)[1]
        left = self.compute_left(obs)
        return ~can_start(self.budget - runs_left, left, self.budget, self.compute, self.full_run)

    def decode(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Split an observation into its named slots, each reshaped."""
        obs = np.asarray(obs)
        return {name: obs[..., sl].reshape(obs.shape[:-1] + self._shapes[name]) for name, sl in self.slices.items()}
