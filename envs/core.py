"""The rules of the game: the decision protocol of docs/model.md ("One episode"), over a batch and for one program.

:class:`Programs` holds N independent programs of one scenario (each organization's hidden
base rates and current model, and what it has observed) and applies the protocol to all of
them at once with numpy; ``ProxyAlignmentVectorEnv`` is built on it. :class:`Program` is the
same protocol for one program in plain Python numbers (a step of one program over numpy
arrays costs dozens of array calls of a microsecond each); ``ProxyAlignmentEnv`` is built on
it. The two are the same rules draw for draw: given one random stream and the same actions,
a ``Program`` and a one-program ``Programs`` play identical trajectories, observations,
rewards and beliefs to the last bit (``tests/test_vec_env.py`` checks it on every kind of
scenario). Neither derives anything: every transition and test probability is read from
:class:`proxygym.envs.dynamics.Dynamics`, the posterior from
:class:`proxygym.envs.belief.BatchBeliefFilter`, the observation from
:class:`proxygym.envs.observation.ObservationLayout`, the action from
:class:`proxygym.envs.actions.ActionLayout`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, NEAREST, ActionLayout, decision_kind
from proxygym.envs.belief import NO_RUN, BatchBeliefFilter, RunTable, padded_support, padded_worlds
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import ANTI, can_start
from proxygym.envs.scenario import Scenario


def sample_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The index drawn from each distribution along the last axis of ``probs`` by the uniforms ``u`` (inverse CDF).

    ``u`` has the shape of ``probs`` less its last axis. ``u * total < total``, so the
    index found always has positive probability.
    """
    cum = np.cumsum(probs, axis=-1)
    lead = cum.shape[:-1]
    return count_at_most(cum.reshape(-1, cum.shape[-1]), (u * cum[..., -1]).reshape(-1)).reshape(lead)


def encode_observations(layout: ObservationLayout, checkpoint, runs_used, idea, usage, results, idea_runs, idea_passes,
                        idea_fails, compute_left, read_outs) -> np.ndarray:
    """``(N, n)`` observations encoded from scratch (:meth:`ObservationLayout.history`) from N programs'
    observable state and, in belief mode, the filter's ``read_outs`` (p_aligned, p_shaped, base rates)."""
    values = layout.history(
        checkpoint, runs_used, idea, usage, results, idea_runs, idea_passes, idea_fails, layout.budget, compute_left
    )
    if layout.mode == "belief":
        p_aligned, p_shaped, base_rate, world = read_outs
        values.update(p_aligned=np.asarray(p_aligned)[:, None], p_shaped=p_shaped, base_rate=base_rate)
        if "world" in layout.slices:
            values["world"] = world
    return layout.encode(values)


def fresh_observation(layout: ObservationLayout, dynamics: Dynamics) -> np.ndarray:
    """``(n,)`` the observation of a program that has just been reset: nothing run, the whole budget left."""
    T, k, m = dynamics.n_phases, dynamics.n_proxies, dynamics.n_ideas
    zeros = np.zeros(1, dtype=np.int64)
    prior = BatchBeliefFilter(dynamics, 1)
    return encode_observations(
        layout, zeros, zeros, np.full(1, -1, dtype=np.int64), np.zeros((1, T, k), dtype=np.int64),
        np.zeros((1, T, k), dtype=bool), np.zeros((1, m), dtype=np.int64), np.zeros((1, m, k), dtype=np.int64),
        np.zeros((1, m, k), dtype=np.int64), np.full(1, dynamics.scenario.compute or 0, dtype=np.int64),
        (*prior.read_outs(shaped=True), prior.world_posterior()),
    )[0]


def row_blocks(a: np.ndarray, columns: slice) -> np.ndarray:
    """``(N,)`` a view of the ``columns`` of each row of a C-contiguous 2-d array as one element (a void scalar
    of their bytes): a block written into many rows is then a 1-d fancy assignment, several times cheaper for
    numpy than assigning ``a[rows, columns]``. ``as_blocks`` gives the values to write."""
    start, stop, _ = columns.indices(a.shape[1])
    block = np.dtype((np.void, (stop - start) * a.itemsize))
    return np.ndarray((a.shape[0],), dtype=block, buffer=a, offset=start * a.itemsize, strides=(a.strides[0],))


def as_blocks(values: np.ndarray) -> np.ndarray:
    """``(R,)`` the rows of ``values`` ``(R, c)`` as elements of :func:`row_blocks` over ``c`` columns of an array of
    ``values``' dtype (a table to gather blocks from)."""
    values = np.ascontiguousarray(values)
    return values.view(np.dtype((np.void, values.shape[1] * values.itemsize))).reshape(-1)


def count_at_most(cum: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(cum <= x[:, None]).sum(axis=1)`` for ``cum`` ``(n, S)`` (int64). Up to 8 columns, the S booleans of a row
    are read as one unsigned integer of S bytes, each 0 or 1, whose multiple by 0x0101...01 holds their sum in its
    top byte (a sum along a short axis costs numpy more than a few whole-array operations); up to 16 columns,
    column by column."""
    S = cum.shape[1]
    if S in _BYTE_SUMS:
        word, ones = _BYTE_SUMS[S]
        at_most = np.less_equal(cum, x[:, None], order="C")  # (C order: a row's S bytes side by side)
        return (at_most.view(word)[:, 0] * ones >> word(8 * S - 8)).astype(np.int64)
    if S > 16:
        return (cum <= x[:, None]).sum(axis=1)
    out = (cum[:, 0] <= x).astype(np.int64)
    for j in range(1, S):
        out += cum[:, j] <= x
    return out


#: count_at_most's S booleans as one word: S -> (the unsigned integer of S bytes, 0x0101...01 in it)
_BYTE_SUMS = {S: (word, word(int("01" * S, 16))) for S, word in ((2, np.uint16), (4, np.uint32), (8, np.uint64))}


@dataclass
class StepOutcome:
    """What one step did to each program: its reward, whether its episode ended and how."""

    reward: np.ndarray  # (N,) float64
    invalid: np.ndarray  # (N,) bool: the verdict was not allowed and was mapped to the nearest allowed one
    deployed: np.ndarray  # (N,) bool
    aligned: np.ndarray  # (N,) bool: the deployed model is truly aligned
    abstained: np.ndarray  # (N,) bool: the last run was discarded with no budget left

    @property
    def terminated(self) -> np.ndarray:
        return self.deployed | self.abstained


#: What a step does to one program of a batch (:class:`Programs`): start a run (and run its first phase), run
#: the next phase, deploy, discard, or nothing (a program that is not live).
_START, _PHASE, _DEPLOY, _DISCARD, _IDLE = range(5)


class Programs:
    """N programs of one scenario, stepped at once.

    Hidden, per program: ``rho`` (each idea's base rate), ``world`` (with ``worlds:``, drawn with the
    base rate) and ``state`` (the latent state of the current model, -1 at a run's start). Observable: ``checkpoint`` (the decision point
    d of the current run, 0 at its start), ``runs_used``, the current run's ``idea``,
    ``usage`` and ``results`` of its phases so far (``(N, T, k)``, meaningful below ``checkpoint``
    only: a new run overwrites them phase by phase; both are read from ``branches`` ``(N, T)``, each
    phase's usage code * 2^k + result code), and per idea the runs, passes and fails of finished runs.
    ``rng`` is the owner's generator (the env's ``np_random``), set before use. What the run under way
    has anti-trained so far, and what it adds to its idea's record when it ends, are functions of its
    history, so of its belief id: they are read from ``table`` (:class:`proxygym.envs.belief.RunTable`'s
    ``n_anti`` and ``record``).

    ``obs`` ``(N, n)`` holds every program's observation, written in place by each rule as it
    changes the state (what :meth:`encode` would compute from scratch); the filter's read-outs
    are computed once per change, when read.
    """

    def __init__(self, scenario: Scenario, num_envs: int, observation: str = "history"):
        self.scenario = scenario
        self.dynamics = d = Dynamics.of(scenario)
        self.layout = ObservationLayout(d, observation)
        self.actions = ActionLayout.of(scenario)
        self.num_envs = N = int(num_envs)
        self.n_phases, self.n_proxies, self.n_ideas = T, k, m = d.n_phases, d.n_proxies, d.n_ideas
        self.budget = B = scenario.budget
        self.compute, self.full_run = scenario.compute, scenario.full_run_compute
        self.costs = np.array([p.cost for p in scenario.phases], dtype=np.int64)
        self.reward = r = scenario.reward
        self.table = RunTable(d, min_ids=8 * N)
        self.belief_id = np.full(N, NO_RUN, dtype=np.int64)  # the run under way's belief, in ``table``
        self.weights_id = np.tile(np.arange(m), (N, 1))  # each idea's posterior
        self.rng: np.random.Generator | None = None
        self._support_values, self._support_probs = padded_support(d)
        self._known_rho = as_blocks(self._support_values[None, :, 0])[0]  # every idea's base rate, where each has one value
        self._support_world = padded_worlds(d).argmax(axis=-1)  # (m, V): the world of each support value
        self.world = np.zeros(N, dtype=np.int64)
        self._proxies = np.arange(k)
        # What a step does, by one look-up at [checkpoint * 3 + verdict]: the verdict carried out
        # (actions.nearest_allowed; at a run's start every verdict starts it) and whether it was not allowed;
        # a program that is not live reads the block past the last checkpoint's (_IDLE, allowed).
        carried = NEAREST[decision_kind(np.arange(T + 1), T)]  # [checkpoint, verdict]
        kind_of = {CONTINUE: _PHASE, DEPLOY: _DEPLOY, DISCARD: _DISCARD}
        kinds = [[_START if c == 0 else kind_of[v] for v in row] for c, row in enumerate(carried.tolist())]
        self._kind = np.array(kinds + [[_IDLE] * 3], dtype=np.int64).reshape(-1)
        self._invalid = np.append((carried != np.arange(3)).reshape(-1), np.zeros(3, dtype=bool))
        self._idle_at = 3 * (T + 1)
        # the rewards a step pays, each to programs whose reward was still 0.0 (as 0.0 + reward, to the bit)
        self._start_reward, self._abstain_reward = 0.0 - r.run_cost, 0.0 + r.abstain
        self._aligned_reward, self._misaligned_reward = 0.0 + r.aligned, 0.0 + r.misaligned
        self._anti_by_code = (d.usages == ANTI).astype(np.int64)  # [usage code, proxy]: anti-trained
        self._runs_left = (B - np.arange(B + 1)) / B  # the runs_left slot's value by runs used

        self.rho = np.zeros((N, m))
        self.runs_used = np.zeros(N, dtype=np.int64)
        # each idea's record of finished runs, (runs, passes per proxy, fails per proxy) side by side (views of them
        # by name), and the same by flat row program * m + idea; each program's records as one block (row_blocks)
        self._records = np.zeros((N, m, 1 + 2 * k), dtype=np.int64)
        self.idea_runs, self.idea_passes, self.idea_fails = (
            self._records[:, :, 0], self._records[:, :, 1 : 1 + k], self._records[:, :, 1 + k :])
        self._records_at = self._records.reshape(N * m, 1 + 2 * k)
        self._record_rows = row_blocks(self._records_at, slice(None))
        self._program_records = row_blocks(self._records.reshape(N, -1), slice(None))
        self._no_records = as_blocks(np.zeros((1, m * (1 + 2 * k)), dtype=np.int64))[0]
        self.checkpoint = np.zeros(N, dtype=np.int64)
        self.idea = np.full(N, -1, dtype=np.int64)
        self.state = np.full(N, -1, dtype=np.int64)
        self.branches = np.zeros((N, T), dtype=np.int64)
        self._branches_at = self.branches.reshape(-1)  # [program * T + phase] (a view)
        self.compute_left = np.zeros(N, dtype=np.int64)  # with a compute budget: not yet spent
        # each idea's posterior by flat row program * m + idea (a view)
        self._weights_at = self.weights_id.reshape(-1)
        # each program's base rates, and its ideas' posteriors, as one block (row_blocks); the priors' block
        self._rho_rows, self._weights_rows = row_blocks(self.rho, slice(None)), row_blocks(self.weights_id, slice(None))
        self._prior_weights = as_blocks(np.arange(m)[None])[0]

        # The observations, kept up to date in place by the rules below (each writes the slots
        # it changes, as ObservationLayout.history would encode them), and a fresh program's row.
        self.obs = np.zeros((N, self.layout.size), dtype=np.float32)
        self._slot = self.layout.views(self.obs)
        self._fresh_obs = fresh_observation(self.layout, d)
        # Each slot's columns in an observation: a phase's usage (t, j, usage) and result (t, j, pass/fail)
        # one-hots are single 1.0s written into columns that were 0.0 (a phase is run once per run).
        columns = self.layout.decode(np.arange(self.layout.size))
        self._belief_moved = True  # the filter changed since its read-outs were last computed
        self._p_aligned = np.zeros(N)
        # Look-ups by flat index (one gather where a multi-index would cost several): each transition row's
        # cumulative sum (when the dense table exists) at (((t * C + code) * m + idea) * A + key) * S + state (key:
        # Dynamics.anti_key of the run's anti-training so far, A keys), the pass
        # probabilities at ((t * (T + 1) + n_anti) * S + state) * k + j.
        S = d.n_states
        self._trans_cum = None if d.transition is None else np.cumsum(d.transition, axis=-1).reshape(-1, S)
        # (2 W, S): by a + 2 w, the run's start (None where the state at a start is a itself)
        self._start_cum = np.cumsum(d.start_given_aligned, axis=-1) if d.persistent.size or d.n_worlds > 1 else None
        self._pass_flat = d.pass_prob.reshape(-1)
        self._obs_flat = self.obs.reshape(-1)  # a view: obs[i, c] is _obs_flat[i * size + c]
        # the same from a slot's first column: obs[i, slot.start + c] is _from[slot][i * size + c]
        self._from = {name: self._obs_flat[sl.start:] for name, sl in self.layout.slices.items()}
        # Blocks of columns written whole (row_blocks): each row, a fresh program's row; the run under way's
        # slots (two blocks: the checkpoint; idea, usage, results) and a fresh run's values; the checkpoint
        # one-hot, by checkpoint.
        fresh = self._fresh_obs[None]
        self._obs_rows, self._fresh_row = row_blocks(self.obs, slice(None)), as_blocks(fresh)[0]
        self._run_fresh = [(row_blocks(self.obs, block), as_blocks(fresh[:, block])[0]) for block in self.layout.run_slots]
        self._checkpoint_rows = row_blocks(self.obs, self.layout.slices["checkpoint"])
        # an idea's record in the observation: each count's divisor, and its columns by idea (one idea: a block)
        self._record_scale = np.array([B] + [B * T] * (2 * k), dtype=np.int64)
        self._record_cols = np.concatenate(
            [columns["idea_runs"][:, None], columns["idea_passes"], columns["idea_fails"]], axis=1)  # (m, 1 + 2k)
        first = int(self._record_cols[0, 0])
        side_by_side = m == 1 and np.array_equal(self._record_cols[0], np.arange(first, first + 1 + 2 * k))
        self._obs_record = row_blocks(self.obs, slice(first, first + 1 + 2 * k)) if side_by_side else None
        self._checkpoint_one_hot = as_blocks(np.eye(T + 1, dtype=np.float32))
        # the other columns a phase sets to 1.0, by (phase t, usage code, result code): each proxy's usage
        # one-hot at phase t and its (pass, fail) one-hot at checkpoint t+1
        R = 2**k
        self._phase_ones_t = np.array([
            [[*columns["usage"][t, np.arange(k), d.usages[c]],
              *columns["results"][t, np.arange(k), (~d.results[r]).astype(np.int64)]] for r in range(R)]
            for t in range(T) for c in range(d.n_usages)
        ]).reshape(T * d.n_usages * R, 2 * k).T.copy()
        self._code_weights = d.usage_weights.tolist()  # Dynamics.usage_code's

    @property
    def usage(self) -> np.ndarray:
        """``(N, T, k)`` each phase's usage of each proxy (meaningful below ``checkpoint``)."""
        return self.dynamics.usages[self.branches >> self.n_proxies]

    @property
    def results(self) -> np.ndarray:
        """``(N, T, k)`` each checkpoint's test results, True: pass (meaningful below ``checkpoint``)."""
        return self.dynamics.results[self.branches & (2**self.n_proxies - 1)]

    # -- the rules (each over the programs ``rows``) ---------------------------------
    def reset(self, rows: np.ndarray) -> None:
        """New programs: each idea's base rate drawn from its prior (hidden), the whole budget left."""
        n = len(rows)
        if n == 0:
            return
        m = self.n_ideas
        u = self.rng.random((n, m))  # drawn even where every base rate is known, as one program draws them
        if self._support_probs.shape[1] == 1:
            self._rho_rows[rows] = self._known_rho
        else:
            drawn = sample_rows(np.broadcast_to(self._support_probs, (n,) + self._support_probs.shape), u)
            self._rho_rows[rows] = as_blocks(self._support_values[np.arange(m), drawn])
            self.world[rows] = self._support_world[0].take(drawn[:, 0])  # (a scenario with worlds has one idea)
        self.runs_used[rows] = 0
        self._program_records[rows] = self._no_records
        self.compute_left[rows] = self.compute or 0
        self._next_run(rows, write_obs=False)
        self._weights_rows[rows] = self._prior_weights
        self._obs_rows[rows] = self._fresh_row
        self._belief_moved = True

    def step(self, actions: np.ndarray, live: np.ndarray) -> StepOutcome:
        """Apply one action to each program where ``live`` (the others are left as they are)."""
        if self.table.needs_room(self.num_envs):
            self.belief_id[:], self.weights_id[:] = self.table.compact(self.belief_id, self.weights_id)  # (in place: views)
        verdict, usage, idea = self.actions.decode(actions)
        at = np.where(live, self.checkpoint * 3, self._idle_at) + verdict
        kind = self._kind.take(at)
        N = self.num_envs
        out = StepOutcome(
            reward=np.zeros(N),
            invalid=self._invalid.take(at),
            deployed=np.zeros(N, dtype=bool),
            aligned=np.zeros(N, dtype=bool),
            abstained=np.zeros(N, dtype=bool),
        )
        continuing = np.flatnonzero(kind <= _PHASE)  # a run's start runs its first phase too

        rows = np.flatnonzero(kind == _START)  # continue at checkpoint 0 starts a run (charged)
        if len(rows):
            out.reward[rows] = self._start_reward
            self._start_run(rows, idea)
        rows = continuing
        if len(rows):
            code = usage[:, 0][rows]  # Dynamics.usage_code, proxy by proxy (k small: cheaper than a product)
            for j in range(1, self.n_proxies):
                code += usage[:, j][rows] * self._code_weights[j]
            self._run_phase(rows, code)

        rows = np.flatnonzero(kind == _DEPLOY)
        if len(rows):
            truth = self.dynamics.aligned.take(self.state.take(rows))
            out.reward[rows] = np.where(truth, self._aligned_reward, self._misaligned_reward)
            out.deployed[rows] = True
            out.aligned[rows] = truth

        rows = np.flatnonzero(kind == _DISCARD)
        if len(rows):
            self._end_run(rows)
            more = self.can_start(rows)
            spent = rows[~more]
            out.reward[spent] = self._abstain_reward
            out.abstained[spent] = True
            self._next_run(rows[more])
        return out

    def can_start(self, rows: np.ndarray) -> np.ndarray:
        """Whether each program ``rows`` may start another run (:func:`proxygym.envs.regimen.can_start`)."""
        return can_start(self.runs_used[rows], self.compute_left[rows], self.budget, self.compute, self.full_run)

    def _next_run(self, rows: np.ndarray, write_obs: bool = True) -> None:
        """Checkpoint 0 of the next run: nothing trained yet (``write_obs``: its slots too, unless the caller
        writes the whole observation)."""
        if len(rows) == 0:
            return
        self.checkpoint[rows] = 0
        self.idea[rows] = -1
        self.state[rows] = -1
        self.belief_id[rows] = NO_RUN  # (branches are written phase by phase and read below the checkpoint)
        if write_obs:
            for blocks, fresh in self._run_fresh:
                blocks[rows] = fresh

    def _start_run(self, rows: np.ndarray, idea: np.ndarray) -> None:
        """Start a run of each program's ``idea`` (given for every program, read at ``rows``)."""
        idea = idea[rows]
        runs = self.runs_used.take(rows) + 1
        self.runs_used[rows] = runs
        self.idea[rows] = idea
        at = rows * self.n_ideas + idea if self.n_ideas > 1 else rows  # (program, idea) as a flat row
        # a ~ Bernoulli(rho), nothing shaped (docs/model.md, "Run start"); then, where the scenario
        # has persistent proxies, their dispositions given a
        aligned = self.rng.random(len(rows)) < self.rho.take(at)
        if self._start_cum is not None:  # sample_rows over the rows a + 2 w of start_given_aligned, summed once
            at_start = aligned.view(np.uint8) if self.dynamics.n_worlds == 1 else aligned + 2 * self.world.take(rows)
            cum = self._start_cum.take(at_start, axis=0)
            self.state[rows] = count_at_most(cum, self.rng.random(len(rows)) * cum[:, -1])
        else:
            self.state[rows] = aligned
        self.belief_id[rows] = self.table.start(self._weights_at.take(at))
        base = rows * self.layout.size
        self._from["runs_left"][base] = self._runs_left.take(runs)
        self._from["idea"][base + idea] = 1.0  # shown from checkpoint 1, which the run's first phase reaches
        self._belief_moved = True

    def _run_phase(self, rows: np.ndarray, code: np.ndarray) -> None:
        """One phase under usage code ``code`` ``(n,)``, then the checkpoint's tests."""
        d, table = self.dynamics, self.table
        k, S, R = self.n_proxies, d.n_states, 2**self.n_proxies
        # (row gathers with take: numpy's fancy indexing of a 2-d array by rows costs several times more)
        t, ids, n = self.checkpoint.take(rows), self.belief_id.take(rows), len(rows)
        before = table.n_anti.take(ids, axis=0)  # the run's anti-trained phases so far, by its history
        tc = t * d.n_usages + code  # (phase, usage code): the leading axes of the transition rows and of _phase_ones_t's
        if self._trans_cum is not None:  # sample_rows over the transition rows, their cumulative sums made once
            at = tc * self.n_ideas + self.idea.take(rows) if self.n_ideas > 1 else tc
            if d.n_anti_keys > 1:
                at = at * d.n_anti_keys + table.anti_key.take(ids)
            cum = self._trans_cum.take(at * S + self.state.take(rows), axis=0)
            state = count_at_most(cum, self.rng.random(n) * cum[:, -1])
        else:
            state = sample_rows(d.transition_rows(t, code, self.idea.take(rows), before, self.state.take(rows)),
                                self.rng.random(n))
        n_anti = before + self._anti_by_code.take(code, axis=0)
        p = self._pass_flat.take(((t[:, None] * (self.n_phases + 1) + n_anti) * S + state[:, None]) * k + self._proxies)
        results = self.rng.random((n, k)) < p
        self.state[rows] = state
        if self.compute is not None:
            self.compute_left[rows] -= self.costs[t]
            self._slot["compute_left"][rows, 0] = self.compute_left[rows] / self.compute
        result_code = results[:, 0].astype(np.int64)  # Dynamics.result_code, proxy by proxy
        for j in range(1, k):
            result_code += results[:, j].astype(np.int64) << j
        branch = code * R + result_code
        self._branches_at[rows * self.n_phases + t] = branch  # (flat: a 2-d fancy assignment costs more)
        self.belief_id[rows] = table.child(ids, branch, t, code, before, n_anti, results)
        self.checkpoint[rows] = t = t + 1
        # the checkpoint's one-hot moves on; the phase's usage and (pass, fail) one-hots are set
        self._checkpoint_rows[rows] = self._checkpoint_one_hot.take(t)
        base, key, flat = rows * self.layout.size, tc * R + result_code, self._obs_flat  # key: the row of _phase_ones_t
        for cols in self._phase_ones_t:  # column by column (a short last axis costs numpy more than a loop)
            flat[base + cols.take(key)] = 1.0
        self._belief_moved = True

    def _end_run(self, rows: np.ndarray) -> None:
        """The runs end: each joins its idea's record (the run, its passes and fails, read from its history's
        belief id) and the idea's posterior takes in its evidence."""
        idea, ids = self.idea.take(rows), self.belief_id.take(rows)
        at = rows * self.n_ideas + idea if self.n_ideas > 1 else rows  # (program, idea) as a flat row
        record = self._records_at.take(at, axis=0) + self.table.record.take(ids, axis=0)
        self._record_rows[at] = as_blocks(record)
        self._weights_at[at] = self.table.end(ids)
        self.belief_id[rows] = NO_RUN
        shown = record / self._record_scale  # (runs / B, passes and fails / (B T), as one program divides them)
        if self._obs_record is not None:  # one idea: its slots are side by side in the observation
            self._obs_record[rows] = as_blocks(shown.astype(np.float32))
        else:
            self._obs_flat[(rows * self.layout.size)[:, None] + self._record_cols.take(idea, axis=0)] = shown
        self._belief_moved = True

    # -- read-outs (every program) -----------------------------------------------------
    def _read_belief(self) -> None:
        """The filter's read-outs, once per change: p_aligned, and in belief mode the observation's posterior slots."""
        if not self._belief_moved:
            return
        belief_mode = self.layout.mode == "belief"
        p_aligned, p_shaped, base_rate, world = self._read_outs(shaped=belief_mode)
        self._p_aligned = p_aligned
        if belief_mode:
            obs = self._slot
            obs["p_aligned"][:, 0] = p_aligned
            obs["p_shaped"][:] = p_shaped
            obs["base_rate"][:] = base_rate
            if "world" in obs:
                obs["world"][:] = world
        self._belief_moved = False

    @property
    def p_aligned(self) -> np.ndarray:
        """``(N,)`` the filter's P(current model aligned | history), as ``belief.p_aligned`` (read-only; computed once per change)."""
        self._read_belief()
        return self._p_aligned

    def observe(self) -> np.ndarray:
        """``(N, n)`` float32 observations (a copy)."""
        self._read_belief()
        return self.obs.copy()

    def read_outs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(p_aligned (N,), p_shaped (N, k), base_rates (N, m), world (N, W))``: the filter's posterior read-outs."""
        return self._read_outs(shaped=True)

    def infos(self, invalid: np.ndarray) -> list[dict]:
        """Each program's every-step info dict, as :meth:`Program.info` gives one's."""
        columns = [("p_aligned", self.p_aligned.tolist()), ("runs_used", self.runs_used.tolist())]
        if self.compute is not None:
            columns.append(("compute_left", self.compute_left.tolist()))
        columns += [("checkpoint", self.checkpoint.tolist()), ("invalid_action", np.asarray(invalid).tolist())]
        keys = [key for key, _ in columns]
        return [dict(zip(keys, values)) for values in zip(*(values for _, values in columns))]

    def _read_outs(self, shaped: bool):
        table, ids = self.table, self.belief_id
        p_aligned = table.p_aligned.take(ids)  # NO_RUN reads 0
        if not shaped:
            return p_aligned, None, None, None
        base_rate = table.mean.take(self.weights_id)
        rows = np.flatnonzero(ids != NO_RUN)
        base_rate[rows, self.idea[rows]] = table.base_rate[ids[rows]]
        world = table.weights_world.take(self.weights_id[:, 0], axis=0)  # (worlds: one idea)
        world[rows] = table.world[ids[rows]]
        return p_aligned, table.p_shaped.take(ids, axis=0), base_rate, world

    def encode(self) -> np.ndarray:
        """``(N, n)`` the observations encoded from scratch from the programs' state (``observe()`` equals it)."""
        return encode_observations(
            self.layout, self.checkpoint, self.runs_used, self.idea, self.usage, self.results,
            self.idea_runs, self.idea_passes, self.idea_fails, self.compute_left, self.read_outs(),
        )

    def masks(self) -> np.ndarray:
        """``(N, 3 + 3k + m)`` allowed choices (verdict, usages, idea) of each program."""
        return self.actions.masks(self.checkpoint, self.n_phases)


#: The memory a scenario's programs may keep in cumulative transition rows (:class:`ProgramTables`), and
#: the size of a single program's own belief table (a batch's holds up to RunTable.MAX_BYTES).
ROW_BYTES = 64 * 2**20
ONE_TABLE_BYTES = 32 * 2**20


class ProgramTables:
    """What every :class:`Program` of a scenario reads and nothing changes, as plain Python lists: built once
    per scenario object and observation mode, and shared (with the memo of transition rows)."""

    @classmethod
    def of(cls, scenario: Scenario, observation: str) -> "ProgramTables":
        return scenario.cached(f"program_tables:{observation}", lambda sc: cls(sc, observation))

    def __init__(self, scenario: Scenario, observation: str):
        self.dynamics = d = Dynamics.of(scenario)
        self.layout = layout = ObservationLayout(d, observation)
        self.actions = ActionLayout.of(scenario)
        T = d.n_phases
        self.costs = [p.cost for p in scenario.phases]
        values, probs = padded_support(d)
        self.rho_values, self.rho_cum = values.tolist(), np.cumsum(probs, axis=-1).tolist()
        self.start_cum = np.cumsum(d.start_given_aligned, axis=-1).tolist() if d.persistent.size or d.n_worlds > 1 else None
        self.support_world = [w.tolist() for w in d.support_world]
        self.nearest = NEAREST[decision_kind(np.arange(T + 1), T)].tolist()  # [checkpoint][verdict]
        self.pass_prob = d.pass_prob.tolist()  # [t][n_anti][state][proxy]
        self.aligned = d.aligned.tolist()
        # each usage vector (a tuple) -> its usage code and which proxies it anti-trains
        self.codes = {tuple(u): (c, tuple(int(x == ANTI) for x in u)) for c, u in enumerate(d.usages.tolist())}
        # cumulative transition rows, once per key, shared by both observation modes; at most row_limit
        # of them (a list of S floats costs about 32 S bytes): a full memo starts afresh
        self.rows: dict[tuple, list[float]] = scenario.cached("transition_rows", lambda _: {})
        self.row_limit = max(256, ROW_BYTES // (32 * d.n_states + 120))
        self.rows_by_anti = d.transition is None or d.n_anti_keys > 1  # a row depends on the run's anti-training so far
        self.fresh_obs = fresh_observation(layout, d)
        self.cols = {name: view.tolist() for name, view in layout.decode(np.arange(layout.size)).items()}


class Program:
    """One program of a scenario in plain Python numbers: the rules of :class:`Programs` for N = 1.

    The same state as a row of :class:`Programs` (``rho``, ``state`` hidden; ``checkpoint``,
    ``runs_used``, ``compute_left``, the run's ``idea``, ``usage`` and ``results`` per phase, per
    idea ``idea_runs``, ``idea_passes``, ``idea_fails``), as ints and lists, and the same random
    draws in the same order from ``rng``. What costs array calls in the batch is looked up:
    each transition row's cumulative sum once per (phase, usage, idea, state) (:class:`ProgramTables`,
    shared by the programs of a scenario), the belief by its id in a
    :class:`proxygym.envs.belief.RunTable` (the batch's own kind of table, read one id at a time:
    the program's own, or the one ``table`` a batch of programs shares). ``obs`` (a new array, or
    the row of a batch given) is written in place as in the batch.
    """

    def __init__(self, scenario: Scenario, observation: str = "history", obs: np.ndarray | None = None,
                 table: RunTable | None = None):
        self._tables = tables = ProgramTables.of(scenario, observation)
        self.scenario = scenario
        self.dynamics = d = tables.dynamics
        self.layout = layout = tables.layout
        self.actions = tables.actions
        self.n_phases, self.n_proxies, self.n_ideas = d.n_phases, d.n_proxies, d.n_ideas
        m = self.n_ideas
        self.budget = scenario.budget
        self.compute, self.full_run = scenario.compute, scenario.full_run_compute
        self.costs = tables.costs
        self.reward = scenario.reward
        self.table = RunTable(d, max_bytes=ONE_TABLE_BYTES, min_ids=64) if table is None else table
        self._owns_table = table is None
        self._branch_shift = 2**d.n_proxies
        self.rng: np.random.Generator | None = None
        self._rho_values, self._rho_cum, self._start_cum = tables.rho_values, tables.rho_cum, tables.start_cum
        self._nearest, self._pass, self._aligned = tables.nearest, tables.pass_prob, tables.aligned
        self._codes, self._rows, self._rows_by_anti = tables.codes, tables.rows, tables.rows_by_anti
        self._belief_mode = layout.mode == "belief"
        self._fresh_obs, self._cols = tables.fresh_obs, tables.cols
        self.obs = np.zeros(layout.size, dtype=np.float32) if obs is None else obs
        self.rho = [0.0] * m
        self.world = 0
        self.state = -1
        self._reset_counts()
        self._next_run()

    def _reset_counts(self) -> None:
        k, m = self.n_proxies, self.n_ideas
        self.runs_used = 0
        self.compute_left = self.compute or 0
        self.idea_runs = [0] * m
        self.idea_passes = [[0] * k for _ in range(m)]
        self.idea_fails = [[0] * k for _ in range(m)]
        self.weights_id = list(range(m))  # each idea's posterior, by its id in ``table``
        self.base_rates = self.table.mean[:m].tolist()  # their posterior mean base rates

    # -- the rules ---------------------------------------------------------------
    def reset(self) -> None:
        """A new program: each idea's base rate drawn from its prior (hidden), the whole budget left."""
        rng = self.rng
        for i, cum in enumerate(self._rho_cum):
            drawn = bisect_right(cum, rng.random() * cum[-1])
            self.rho[i] = self._rho_values[i][drawn]
            if i == 0:  # (a scenario with worlds has one idea)
                self.world = self._tables.support_world[0][drawn]
        self._reset_counts()
        self._next_run()
        self.obs[:] = self._fresh_obs

    def step(self, verdict: int, usage: list[int], idea: int) -> tuple[float, bool, bool, bool, bool]:
        """One action; returns ``(reward, invalid, deployed, aligned, abstained)`` as :class:`StepOutcome` would."""
        mapped = self._nearest[self.checkpoint][verdict]
        r = self.reward
        reward, deployed, aligned, abstained = 0.0, False, False, False
        if mapped == CONTINUE:
            if self.checkpoint == 0:  # continue starts a run (charged) and runs phase 1
                reward -= r.run_cost
                self._start_run(idea)
            self._run_phase(usage)
        elif mapped == DEPLOY:
            deployed, aligned = True, self._aligned[self.state]
            reward += r.aligned if aligned else r.misaligned
        else:
            self._end_run()
            if can_start(self.runs_used, self.compute_left, self.budget, self.compute, self.full_run):
                self._next_run()
            else:
                reward += r.abstain
                abstained = True
        return reward, mapped != verdict, deployed, aligned, abstained

    def _next_run(self) -> None:
        T, k = self.n_phases, self.n_proxies
        self.checkpoint, self.idea, self.state, self.belief_id = 0, -1, -1, NO_RUN
        self.usage = [[0] * k for _ in range(T)]
        self.results = [[False] * k for _ in range(T)]
        self.n_anti = [0] * k
        for block in self.layout.run_slots:
            self.obs[block] = self._fresh_obs[block]

    def _start_run(self, idea: int) -> None:
        rng = self.rng
        self.runs_used += 1
        self.idea = idea
        aligned = rng.random() < self.rho[idea]
        if self._start_cum is not None:
            cum = self._start_cum[aligned + 2 * self.world]
            self.state = bisect_right(cum, rng.random() * cum[-1])
        else:
            self.state = int(aligned)
        if self._owns_table and self.table.needs_room(1):  # keep only this program's ids
            (self.belief_id,), self.weights_id = (
                x.tolist() for x in self.table.compact(np.array([NO_RUN]), np.array(self.weights_id)))
        self.belief_id = self.table.start_one(self.weights_id[idea])
        obs, cols = self.obs, self._cols
        obs[cols["runs_left"][0]] = (self.budget - self.runs_used) / self.budget
        obs[cols["idea"][idea]] = 1.0  # the belief is shown once the run's first phase, in the same step, is done

    def _run_phase(self, usage: list[int]) -> None:
        rng, t, k = self.rng, self.checkpoint, self.n_proxies
        code, anti = self._codes[tuple(usage)]
        before = tuple(self.n_anti)
        key = (t, code, self.idea, before, self.state) if self._rows_by_anti else (t, code, self.idea, self.state)
        cum = self._rows.get(key)
        if cum is None:
            one = np.full(1, 0, dtype=np.int64)
            row = self.dynamics.transition_rows(one + t, one + code, one + self.idea, np.asarray([before]), one + self.state)
            if len(self._rows) >= self._tables.row_limit:  # a bounded memo: start afresh
                self._rows.clear()
            cum = self._rows[key] = np.cumsum(row, axis=-1)[0].tolist()
        state = bisect_right(cum, rng.random() * cum[-1])
        n_anti = [n + a for n, a in zip(before, anti)]
        passes = self._pass[t]
        results = [rng.random() < passes[n_anti[j]][state][j] for j in range(k)]
        self.state, self.n_anti = state, n_anti
        obs, cols = self.obs, self._cols
        if self.compute is not None:
            self.compute_left -= self.costs[t]
            obs[cols["compute_left"][0]] = self.compute_left / self.compute
        self.usage[t], self.results[t] = list(usage), results
        branch = code * self._branch_shift
        for j in range(k):
            if results[j]:
                branch += 1 << j
        self.belief_id = self.table.child_one(self.belief_id, branch, t, code, before, n_anti, results)
        self.checkpoint = t + 1
        checkpoint, usage_cols, result_cols = cols["checkpoint"], cols["usage"][t], cols["results"][t]
        obs[checkpoint[t]] = 0.0
        obs[checkpoint[t + 1]] = 1.0
        for j in range(k):
            obs[usage_cols[j][usage[j]]] = 1.0
            obs[result_cols[j][0 if results[j] else 1]] = 1.0  # (pass, fail)
        self._show_belief()

    def _end_run(self) -> None:
        idea, d, k = self.idea, self.checkpoint, self.n_proxies
        runs = self.idea_runs[idea] = self.idea_runs[idea] + 1
        obs, cols, B, T = self.obs, self._cols, self.budget, self.n_phases
        obs[cols["idea_runs"][idea]] = runs / B
        for j in range(k):
            passes = sum(self.results[t][j] for t in range(d))
            self.idea_passes[idea][j] += passes
            self.idea_fails[idea][j] += d - passes
            obs[cols["idea_passes"][idea][j]] = self.idea_passes[idea][j] / (B * T)
            obs[cols["idea_fails"][idea][j]] = self.idea_fails[idea][j] / (B * T)
        wid = self.weights_id[idea] = self.table.end_one(self.belief_id)
        self.base_rates[idea] = float(self.table.mean[wid])
        self.belief_id = NO_RUN
        self._show_belief()

    def _show_belief(self) -> None:
        """In belief mode, the observation's posterior slots, as the batch's read-outs write them."""
        if not self._belief_mode:
            return
        p_aligned, p_shaped, base_rates, world = self.read_outs()
        obs, slices = self.obs, self.layout.slices
        obs[slices["p_aligned"].start] = p_aligned
        obs[slices["p_shaped"]] = p_shaped
        obs[slices["base_rate"]] = base_rates
        if "world" in slices:
            obs[slices["world"]] = world

    # -- read-outs ---------------------------------------------------------------
    @property
    def p_aligned(self) -> float:
        """P(current model aligned | history), 0.0 where no run is under way."""
        return float(self.table.p_aligned[self.belief_id])  # NO_RUN reads 0

    def read_outs(self) -> tuple[float, np.ndarray, list[float], np.ndarray]:
        """``(p_aligned, p_shaped (k,), base_rates (m,), world (W,))``: the filter's posterior read-outs."""
        table, b = self.table, self.belief_id
        base_rates = list(self.base_rates)
        if b == NO_RUN:
            return 0.0, np.zeros(self.n_proxies), base_rates, table.weights_world[self.weights_id[0]].copy()
        base_rates[self.idea] = float(table.base_rate[b])
        return float(table.p_aligned[b]), table.p_shaped[b].copy(), base_rates, table.world[b].copy()

    def info(self, invalid: bool) -> dict:
        """The env's every-step info: ``p_aligned``, ``runs_used``, ``compute_left`` (with a compute budget),
        ``checkpoint``, ``invalid_action``, as Python scalars."""
        info = {"p_aligned": self.p_aligned, "runs_used": self.runs_used}
        if self.compute is not None:
            info["compute_left"] = self.compute_left
        info["checkpoint"], info["invalid_action"] = self.checkpoint, invalid
        return info

    def masks(self) -> np.ndarray:
        """``(3 + 3k + m,)`` the allowed choices (verdict, usages, idea)."""
        return self.actions.masks(self.checkpoint, self.n_phases)


#: The largest batch stepped as a list of :class:`Program`\ s rather than over arrays (:class:`ProgramList`).
SMALL_BATCH = 16


class ProgramList:
    """N programs as N :class:`Program`\\ s writing the rows of one observation array: :class:`Programs`'
    interface, for a small batch.

    A step of :class:`Programs` costs about the same few dozen array calls for 1 program as for 100,
    a :class:`Program` a few microseconds each: below :data:`SMALL_BATCH` programs the list is the
    faster engine (``benchmarks/bench_vector.py`` measures both). Every program draws from the one
    generator ``rng``, in program order.
    """

    def __init__(self, scenario: Scenario, num_envs: int, observation: str = "history"):
        self.num_envs = N = int(num_envs)
        self.obs = obs = np.zeros((N, ObservationLayout.of(scenario, observation).size), dtype=np.float32)
        self.table = RunTable(Dynamics.of(scenario), min_ids=8 * N)  # the programs' beliefs, shared
        self.members = [Program(scenario, observation, obs=obs[i], table=self.table) for i in range(N)]
        first = self.members[0]
        self.scenario, self.dynamics, self.layout, self.actions = scenario, first.dynamics, first.layout, first.actions
        self.n_phases, self.n_proxies, self.n_ideas = first.n_phases, first.n_proxies, first.n_ideas
        self.budget, self.compute = first.budget, first.compute
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator | None:
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator | None) -> None:
        self._rng = rng
        for program in self.members:
            program.rng = rng

    def reset(self, rows: np.ndarray) -> None:
        for i in np.asarray(rows).tolist():
            self.members[i].reset()

    def step(self, actions: np.ndarray, live: np.ndarray) -> StepOutcome:
        if self.table.needs_room(self.num_envs):  # keep only the programs' current ids
            beliefs, weights = self.table.compact(self._each("belief_id", np.int64),
                                                  np.array([p.weights_id for p in self.members], dtype=np.int64))
            for program, b, w in zip(self.members, beliefs.tolist(), weights.tolist()):
                program.belief_id, program.weights_id = b, w
        done = (0.0, False, False, False, False)  # a program not live: unchanged
        rows = [
            program.step(a[0], a[1:-1], a[-1]) if go else done
            for program, a, go in zip(self.members, np.asarray(actions).tolist(), np.asarray(live).tolist())
        ]
        reward, invalid, deployed, aligned, abstained = np.array(rows, dtype=np.float64).T
        return StepOutcome(reward=reward, invalid=invalid.astype(bool), deployed=deployed.astype(bool),
                           aligned=aligned.astype(bool), abstained=abstained.astype(bool))

    def _each(self, name: str, dtype) -> np.ndarray:
        return np.array([getattr(program, name) for program in self.members], dtype=dtype)

    @property
    def p_aligned(self) -> np.ndarray:
        return self._each("p_aligned", np.float64)

    @property
    def runs_used(self) -> np.ndarray:
        return self._each("runs_used", np.int64)

    @property
    def checkpoint(self) -> np.ndarray:
        return self._each("checkpoint", np.int64)

    @property
    def compute_left(self) -> np.ndarray:
        return self._each("compute_left", np.int64)

    @property
    def state(self) -> np.ndarray:
        return self._each("state", np.int64)

    def observe(self) -> np.ndarray:
        return self.obs.copy()

    def infos(self, invalid: np.ndarray) -> list[dict]:
        """Each program's every-step info dict (:meth:`Program.info`)."""
        return [program.info(bad) for program, bad in zip(self.members, np.asarray(invalid).tolist())]

    def masks(self) -> np.ndarray:
        return self.actions.masks(self.checkpoint, self.n_phases)

    def read_outs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(p_aligned (N,), p_shaped (N, k), base_rates (N, m), world (N, W))``: the filter's posterior read-outs."""
        each = [program.read_outs() for program in self.members]
        return (np.array([e[0] for e in each]), *(np.array([e[i] for e in each]).reshape(self.num_envs, -1)
                                                  for i in (1, 2, 3)))

    def encode(self) -> np.ndarray:
        """``(N, n)`` the observations encoded from scratch from the programs' state (``observe()`` equals it)."""
        ps = self.members
        return encode_observations(
            self.layout, self.checkpoint, self.runs_used, self._each("idea", np.int64),
            np.array([p.usage for p in ps], dtype=np.int64), np.array([p.results for p in ps], dtype=bool),
            np.array([p.idea_runs for p in ps], dtype=np.int64), np.array([p.idea_passes for p in ps], dtype=np.int64),
            np.array([p.idea_fails for p in ps], dtype=np.int64), self.compute_left, self.read_outs(),
        )


def make_programs(scenario: Scenario, num_envs: int, observation: str = "history") -> "Programs | ProgramList":
    """N programs of a scenario in the faster engine for N: a :class:`ProgramList` up to :data:`SMALL_BATCH`,
    else :class:`Programs`."""
    engine = ProgramList if int(num_envs) <= SMALL_BATCH else Programs
    return engine(scenario, num_envs, observation)
