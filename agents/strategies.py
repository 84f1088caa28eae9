"""Named heuristic strategies: the ways of using proxies that the essay discusses.

Every strategy has one interface: ``strategy.act(obs)`` takes a batch of observations
``(N, n)`` (from :class:`proxygym.envs.vector.ProxyAlignmentVectorEnv`, or one observation of
:class:`proxygym.envs.proxy_alignment.ProxyAlignmentEnv` as a batch of one) and returns ``(N, 2 + k)``
actions; ``strategy(obs)`` also accepts a single observation. A strategy reads the
observation only through :class:`proxygym.envs.observation.ObservationLayout`, so it sees what an
organization sees and nothing hidden.

A strategy that is a fixed regimen (decided before anything is observed) returns it from
``regimen()``, and the exact analysis scores the same object the env plays: one
definition, two evaluations. The others return None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from proxygym.agents.regimen import RegimenAgent
from proxygym.agents.solver import DEPLOY_CODE, Solution, solve
from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, ActionLayout
from proxygym.envs.analysis import analyze
from proxygym.envs.errors import ProxyGymError
from proxygym.envs.observation import ObservationLayout
from proxygym.envs.regimen import Regimen, can_start, make_regimen
from proxygym.envs.scenario import Scenario


class Strategy(ABC):
    """Base class: a policy for ProxyAlignment-v0 over a batch of observations."""

    name = "strategy"
    #: True when the strategy reads the exact posterior (the env must run with observation="belief").
    needs_belief = False

    def __init__(self, scenario: Scenario, layout: ObservationLayout, seed: int | None = None):
        if self.needs_belief and layout.mode != "belief":
            raise ProxyGymError(f"strategy {self.name!r} reads the exact posterior: use observation='belief'")
        self.scenario = scenario
        self.layout = layout
        self.budget = scenario.budget
        self.n_phases = len(scenario.phases)
        self.n_proxies = len(scenario.proxies)
        self.actions = ActionLayout.of(scenario)
        self.rng = np.random.default_rng(seed)

    def regimen(self) -> Regimen | None:
        """The fixed regimen this strategy plays, or None if it adapts to what it sees."""
        return None

    def exact_return(self) -> float | None:
        """The strategy's expected return computed exactly (no sampling), or None where there is no exact value."""
        regimen = self.regimen()
        return None if regimen is None else analyze(self.scenario, regimen).expected_return

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """``(N, 2 + k)`` actions for a batch of observations ``(N, n)``."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return self.act(obs[None, :])[0] if obs.ndim == 1 else self.act(obs)


class FixedRegimen(Strategy):
    """A strategy that is a fixed regimen; subclasses say which one in :meth:`build`."""

    def __init__(self, scenario: Scenario, layout: ObservationLayout, seed: int | None = None):
        super().__init__(scenario, layout, seed)
        self._regimen = self.build(scenario)
        self._agent = RegimenAgent(self._regimen, layout, scenario.budget, seed=self.rng)

    @abstractmethod
    def build(self, scenario: Scenario) -> Regimen:
        """The regimen this strategy plays on ``scenario``."""

    def regimen(self) -> Regimen:
        return self._regimen

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._agent.act(obs)


def _groups(letters: list[str]) -> str:
    return ",".join(letters)


class AlwaysReserve(FixedRegimen):
    """Plain rejection sampling: never train on a proxy; deploy the first run that passes every
    proxy at the final checkpoint; when the budget runs out with no pass, deploy the last model.

    Essay: "The net effect" (rejection sampling on "do you look like an angel?") and the
    formal section's rejection-sampling equation, where training leaves both the base rate
    and the likelihood ratio as they are by default.
    """

    name = "always_reserve"

    def build(self, scenario):
        return make_regimen(scenario, "R")


class RandomIdeas(FixedRegimen):
    """Plain rejection sampling over ideas chosen blindly: each run's idea is drawn uniformly at
    random; never train on a proxy; deploy the first run that passes every proxy at the final
    checkpoint (the last allowed run is deployed whatever it shows). With one idea it is
    always_reserve.

    Essay: the end of "What if pass/fail are close in parameter space?": when each idea is
    settled in advance and one randomizes across ideas, training choices cannot help; this is
    the baseline that learning which ideas work (idea_screening) improves on.
    """

    name = "random_ideas"

    def build(self, scenario):
        return make_regimen(scenario, "R", idea="random")


class AlwaysTrain(FixedRegimen):
    """Train on every proxy in every phase, then test at the end as always_reserve does.

    Essay: "The base rate" (use the blueprint) and "Quality of the proxy" (training on a
    proxy makes it a worse test): this is the side of the trade that bets on the base rate.
    """

    name = "always_train"

    def build(self, scenario):
        return make_regimen(scenario, "T")


class AlwaysAnti(FixedRegimen):
    """Anti-train on every proxy in every phase, then test at the end.

    Essay: "Cost": removing circumvention precursors from the objective can sharpen the
    test, at the price of many more runs failing before one passes.
    """

    name = "always_anti"

    def build(self, scenario):
        return make_regimen(scenario, "A")


class FirstModel(FixedRegimen):
    """No test at all: deploy the first run whatever it shows.

    Essay: "Formal": the baseline that a proxy with likelihood ratio below 1 loses to.
    """

    name = "first_model"

    def build(self, scenario):
        return make_regimen(scenario, "R", test="none")


class TrainEarlyReserveLate(FixedRegimen):
    """Train on every proxy while values are plastic (the first phase, and every phase with
    plasticity at least 0.5), reserve them afterwards, test at the end.

    Essay: "Quality of the proxy" and "The base rate": steer values before they
    crystallize, then keep the proxy out of training so it still measures something.
    """

    name = "train_early_reserve_late"
    PLASTIC = 0.5

    def build(self, scenario):
        letters = ["T" if t == 0 or p.plasticity >= self.PLASTIC else "R" for t, p in enumerate(scenario.phases)]
        return make_regimen(scenario, _groups(letters))


class EarlyRejection(FixedRegimen):
    """Reserve every proxy; discard a run at the first checkpoint where any proxy fails
    (every early checkpoint screens, and the final one tests).

    Essay: TLDR and "Quality of the proxy": if capable models get around the test, doing
    rejection sampling early in training, while the model is weak, beats doing it at the end.
    """

    name = "early_rejection"

    def build(self, scenario):
        T = len(scenario.phases)
        return make_regimen(scenario, "R", screen={d: "all" for d in range(1, T)})


class AreYouAlignedProtocol(FixedRegimen):
    """The essay's multi-part protocol: reserve the proxies in the first phase and reject runs
    until one passes them at checkpoint 1; then train on them in every later phase (continuing
    to ask and penalizing a "no"); test at the end. With one phase there is no early
    checkpoint, and the protocol is always_reserve.

    Essay: "The net effect", the "are you aligned?" protocol against plain rejection sampling.
    """

    name = "are_you_aligned_protocol"

    def build(self, scenario):
        T = len(scenario.phases)
        if T == 1:
            return make_regimen(scenario, "R")
        return make_regimen(scenario, _groups(["R"] + ["T"] * (T - 1)), screen={1: "all"})


class IdeaScreening(Strategy):
    """Use throwaway runs to learn which ideas are bad, then commit to the best one.

    Each run uses the idea whose posterior mean base rate is highest (ties: the first),
    reserves every proxy and tests at the end: a failed run lowers its idea's posterior, so
    the next run moves to another idea; a pass is deployed. On the last run the model is
    deployed whatever it shows, as always_reserve does.

    Essay: TLDR and the end of "What if pass/fail are close in parameter space?": when each
    idea is decided in advance, find out which ideas are promising, then use the best fully.
    """

    name = "idea_screening"
    needs_belief = True

    def __init__(self, scenario, layout, seed=None):
        super().__init__(scenario, layout, seed)
        self._agent = RegimenAgent(make_regimen(scenario, "R"), layout, scenario.budget)

    def act(self, obs):
        verdict, usage, idea = self.actions.decode(self._agent.act(obs))
        rates = self.layout.decode(obs)["base_rate"]  # (N, m)
        start = self.layout.position(obs, self.budget)[0] == 0
        idea = np.where(start, np.argmax(rates, axis=-1), idea)
        return self.actions.encode(verdict, usage, idea)


class BayesThreshold(Strategy):
    """Reserve every proxy and read the exact posterior: at the final checkpoint, deploy when
    the expected reward of deploying, P(aligned) R_aligned + (1 - P(aligned)) R_misaligned,
    is at least what the runs left are worth (the exact value of always_reserve with that
    budget; with no run left, the abstain reward); else discard.

    Essay: "Formal": Bayes' rule decides, and "Cost": the threshold falls as the budget runs out.
    """

    name = "bayes_threshold"
    needs_belief = True

    def __init__(self, scenario, layout, seed=None):
        super().__init__(scenario, layout, seed)
        self._worth: dict[tuple[int, int | None], float] = {}

    def worth(self, runs_left: int, compute_left: int | None) -> float:
        """What the runs left are worth if the run under way is discarded: the exact value of always_reserve
        with that many runs (and that much compute), or the abstain reward when no run can start. (Valued under
        the prior over base rates and worlds, not the posterior the program has learned: a heuristic.)"""
        key = (runs_left, compute_left)
        if key not in self._worth:
            sc = self.scenario
            if not can_start(sc.budget - runs_left, compute_left, sc.budget, sc.compute, sc.full_run_compute):
                self._worth[key] = sc.reward.abstain
            else:
                regimen = make_regimen(sc, "R", budget=runs_left, compute=compute_left)
                self._worth[key] = analyze(sc, regimen).expected_return
        return self._worth[key]

    def act(self, obs):
        o = self.layout.decode(obs)
        d, runs_left = self.layout.position(obs, self.budget)
        compute_left = self.layout.compute_left(obs)
        pairs = np.stack([runs_left, runs_left if compute_left is None else compute_left], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        worth = np.array([self.worth(int(n), None if compute_left is None else int(c)) for n, c in uniq])
        later = worth[inverse.reshape(-1)]
        p = o["p_aligned"][:, 0].astype(np.float64)
        r = self.scenario.reward
        deploy_value = p * r.aligned + (1.0 - p) * r.misaligned
        at_end = d == self.n_phases
        verdict = np.where(at_end, np.where(deploy_value >= later, DEPLOY, DISCARD), CONTINUE)
        return self.actions.encode(verdict, 0, 0)


class RandomStrategy(Strategy):
    """Uniformly random among the allowed verdicts, with random usages and ideas: the floor."""

    name = "random"

    def act(self, obs):
        n = obs.shape[0]
        d = self.layout.position(obs, self.budget)[0]
        coin = self.rng.integers(0, 2, size=n)
        verdict = np.where(d == 0, CONTINUE, np.where(d < self.n_phases, coin * DISCARD, DISCARD + coin))
        usage = self.rng.integers(0, 3, size=(n, self.n_proxies))
        idea = self.rng.integers(0, len(self.scenario.ideas), size=n)
        return self.actions.encode(verdict, usage, idea)


class OptimalStrategy(Strategy):
    """The Bayes-optimal policy (:func:`proxygym.agents.solver.solve`), played from the observation.

    The policy is looked up by the solver's state, which the strategy follows itself for
    each episode of the batch: the program state (runs left and each idea's base-rate
    posterior, as the solver interned it) and, within a run, the node of the run tree
    that the run's usages and results so far (read from the observation) lead to. When a
    run ends in a discard, the next observation is a run's start and the program state
    moves to the one the solver reached from the node where the run ended. A run's start
    with the whole budget left is a new episode (a reset or an autoreset). The pooled
    counts of the ``history`` observation and the ``belief`` read-outs do not always fix
    the exact posterior (an unknown base rate with several support values), so the
    strategy does not rely on them; it works in either observation mode.

    Essay: "Formal" (Bayes' rule decides) and "Cost": the best an organization that knows
    the scenario can do, the ceiling for every other strategy.
    """

    name = "optimal"
    needs_belief = False

    def __init__(
        self,
        scenario: Scenario,
        layout: ObservationLayout,
        seed: int | None = None,
        solution: Solution | None = None,
    ):
        super().__init__(scenario, layout, seed)
        self.solution = solution if solution is not None else solve(scenario)
        self.policy = self.solution.policy
        self._dyn = self.policy.dyn
        self._state = np.zeros(0, dtype=np.int64)  # per episode: the program state (-1: unknown)
        self._level = np.zeros(0, dtype=np.int64)  # the checkpoint last seen in the current run (0: none)
        self._node = np.zeros(0, dtype=np.int64)  # the node there

    def exact_return(self) -> float:
        """The solver's value: this strategy's expected return, exactly."""
        return self.solution.value

    def act(self, obs: np.ndarray) -> np.ndarray:
        pol, B = self.policy, self.budget
        o = self.layout.decode(obs)
        n = obs.shape[0]
        if len(self._state) != n:
            self._state = np.full(n, -1, dtype=np.int64)
            self._level = np.zeros(n, dtype=np.int64)
            self._node = np.zeros(n, dtype=np.int64)
        d, runs_left = self.layout.position(obs, B)

        fresh = self.layout.episode_start(obs)
        self._state[fresh], self._level[fresh], self._node[fresh] = pol.root, 0, 0
        ended = np.flatnonzero((d == 0) & ~fresh & (self._level > 0) & (self._state >= 0))
        if len(ended):
            triples = np.stack([self._state[ended], self._level[ended], self._node[ended]], axis=1)
            uniq, inv = np.unique(triples, axis=0, return_inverse=True)
            nxt = np.array([pol.after_discard(int(s), int(c), int(x)) for s, c, x in uniq])
            self._state[ended] = nxt[inv.reshape(-1)]
            self._level[ended], self._node[ended] = 0, 0

        running = d > 0
        if running.any():
            usage = np.argmax(o["usage"], axis=-1)  # (N, T, k)
            codes = self._dyn.usage_code(usage)  # (N, T)
            results = self._dyn.result_code(o["results"][..., 0] > 0.5)  # (N, T)
            node = pol.node_index(codes, results, depth=d)
            self._level[running], self._node[running] = d[running], node[running]

        state = self._state
        left = np.append(pol.runs_left_table(), -1)  # runs left per state made so far; [-1]: unknown
        expected_left = left[state] - (d > 0)  # state -1 reads the last entry, -1
        if (state < 0).any() or (expected_left != runs_left).any():
            bad = int(np.flatnonzero((state < 0) | (expected_left != runs_left))[0])
            raise RuntimeError(
                f"OptimalStrategy lost track of episode {bad} of the batch: it must see every observation"
                " of an episode from its start (checkpoint 0 with the whole budget left)"
            )

        code = np.empty(n, dtype=np.int64)
        idea = np.empty(n, dtype=np.int64)
        for s in np.unique(state):
            rows = np.flatnonzero(state == s)
            acts = pol.actions[int(s)]
            idea[rows] = pol.ideas[int(s)]
            for c in np.unique(d[rows]):
                sub = rows[d[rows] == c]
                code[sub] = acts[int(c)][self._node[sub] * (c > 0)]
        verdict = np.where(code >= 0, CONTINUE, np.where(code == DEPLOY_CODE, DEPLOY, DISCARD))
        usage = np.where((code >= 0)[:, None], self._dyn.usages[np.maximum(code, 0)], 0)
        return self.actions.encode(verdict, usage, idea)


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    cls.name: cls
    for cls in (
        AlwaysReserve,
        RandomIdeas,
        AlwaysTrain,
        AlwaysAnti,
        FirstModel,
        TrainEarlyReserveLate,
        EarlyRejection,
        AreYouAlignedProtocol,
        IdeaScreening,
        BayesThreshold,
        RandomStrategy,
        OptimalStrategy,
    )
}


def make_strategy(name: str, scenario: Scenario, layout: ObservationLayout, seed: int | None = None) -> Strategy:
    """Build a strategy by name; an unknown name is a one-line error that lists the valid ones."""
    if name not in STRATEGIES:
        raise ProxyGymError(f"unknown strategy {name!r}; strategies are {', '.join(STRATEGIES)}")
    return STRATEGIES[name](scenario, layout, seed)
