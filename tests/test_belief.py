"""The Bayesian filter against a brute-force posterior and a case worked by hand (its Monte Carlo check
against frequencies: test_monte_carlo.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from proxygym.envs.actions import CONTINUE, DEPLOY, DISCARD, nearest_allowed
from proxygym.envs.core import SMALL_BATCH
from proxygym.envs.dynamics import Dynamics
from proxygym.envs.proxy_alignment import ProxyAlignmentEnv
from proxygym.envs.regimen import ANTI
from proxygym.envs.scenario import parse_scenario
from proxygym.envs.vector import ProxyAlignmentVectorEnv
from tests.helpers import hand_scenario, mixed_scenario, random_valid_actions


# -- a brute-force posterior ----------------------------------------------------------------------
def run_likelihood(dyn: Dynamics, rho: float, idea: int, phases: list) -> np.ndarray:
    """``(S,)``: P(the run's test results, its model ends in state s | the idea's base rate rho), summed
    over every path of latent states one by one (no recursion, no normalization).

    ``phases`` lists the run's phases so far as (usage code, anti-training counts, results).
    At the run's start the model is aligned with probability rho and shaped to pass nothing
    (docs/model.md, "Run start"): state 1 or state 0.
    """
    d = len(phases)
    paths = np.stack(np.unravel_index(np.arange(dyn.n_states ** (d + 1)), (dyn.n_states,) * (d + 1)), axis=1)
    start = np.zeros(dyn.n_states)
    start[0], start[1] = 1.0 - rho, rho
    prob = start[paths[:, 0]]
    for t, (code, n_anti, results) in enumerate(phases):
        before = np.asarray(n_anti) - (dyn.usages[code] == ANTI)  # the counts before this phase pick its transition
        prob = prob * dyn.transition[t, code, idea, dyn.anti_key(before)][paths[:, t], paths[:, t + 1]]
        for j, passed in enumerate(results):
            p = dyn.pass_prob[t, n_anti[j], paths[:, t + 1], j]
            prob = prob * (p if passed else 1.0 - p)
    return np.bincount(paths[:, -1], weights=prob, minlength=dyn.n_states)


def brute_force_posterior(dyn: Dynamics, finished: list, current) -> tuple[float, np.ndarray, np.ndarray]:
    """P(aligned), P(shaped) per proxy and each idea's posterior mean base rate, given the finished
    runs and the run under way (None: none), by summing over every combination of the ideas'
    base rates and every path of every run."""
    supports = [list(zip(v, p)) for v, p in zip(dyn.base_rate_values, dyn.base_rate_probs)]
    total, aligned, shaped = 0.0, 0.0, np.zeros(dyn.n_proxies)
    rates = np.zeros(dyn.n_ideas)
    for combo in itertools.product(*supports):
        rho = [v for v, _ in combo]
        w = math.prod(p for _, p in combo)
        for idea, phases in finished:
            w *= run_likelihood(dyn, rho[idea], idea, phases).sum()
        if current is None:
            end = np.zeros(dyn.n_states)
        else:
            end = w * run_likelihood(dyn, rho[current[0]], current[0], current[1])
            w = end.sum()
        total += w
        aligned += end[dyn.aligned].sum()
        shaped += end @ dyn.shaped
        rates += w * np.array(rho)
    return aligned / total, shaped / total, rates / total


@pytest.mark.parametrize("n", [SMALL_BATCH, SMALL_BATCH + 8])
def test_the_batched_filter_is_the_brute_force_posterior(n):
    """The vector env's filter (both engines: a list of programs with beliefs looked up by history, and the
    batch over arrays), through random play (ideas with priors of 1, 2 and 3 support values,
    two proxies, anti-training, invalid verdicts, discards, autoresets), reports at every step
    of every program the posterior a brute-force sum over base rates and latent paths gives:
    in info, in its read-outs and (as float32) in the belief observation."""
    sc = mixed_scenario()
    vec = ProxyAlignmentVectorEnv(n, sc, observation="belief")
    dyn = vec.dynamics
    k = dyn.n_proxies
    history = [([], None) for _ in range(n)]  # per program: finished runs, the run under way
    rng = np.random.default_rng(0)
    obs, info = vec.reset(seed=0)
    ended = np.zeros(n, dtype=bool)
    checked = 0
    for _ in range(60):
        before = info["checkpoint"].copy()
        actions = random_valid_actions(rng, vec.action_masks(), vec.single_action_space.nvec)
        actions[rng.random(n) < 0.2, 0] = DEPLOY  # some invalid verdicts too
        obs, _, terminated, _, info = vec.step(actions)
        seen = vec.layout.decode(obs)
        for i in range(n):
            finished, current = history[i]
            d = int(before[i])
            verdict = nearest_allowed(int(actions[i, 0]), d, dyn.n_phases)
            if ended[i]:
                finished, current = [], None  # autoreset
            elif verdict == CONTINUE:
                if d == 0:
                    current = (int(actions[i, -1]), [])
                usage = actions[i, 1 : 1 + k]
                n_anti = (current[1][-1][1] if current[1] else np.zeros(k, dtype=np.int64)) + (usage == ANTI)
                current[1].append((dyn.usage_code(usage), n_anti, seen["results"][i, d, :, 0] > 0.5))
            elif verdict == DISCARD:
                finished, current = finished + [current], None
            history[i] = (finished, current)
            if terminated[i]:
                continue  # the episode is over; the next step resets it
            p_aligned, p_shaped, rates = brute_force_posterior(dyn, finished, current)
            assert abs(info["p_aligned"][i] - p_aligned) <= 1e-12
            _, shaped_now, rates_now, _ = vec.programs.read_outs()
            assert np.allclose(shaped_now[i], p_shaped, rtol=0, atol=1e-12)
            assert np.allclose(rates_now[i], rates, rtol=0, atol=1e-12)
            assert np.allclose(seen["p_aligned"][i, 0], p_aligned, rtol=0, atol=1e-6)  # float32 in the observation
            assert np.allclose(seen["p_shaped"][i], p_shaped, rtol=0, atol=1e-6)
            assert np.allclose(seen["base_rate"][i], rates, rtol=0, atol=1e-6)
            checked += current is not None and len(finished) > 0
        ended = terminated.copy()
    assert checked > 200


def test_filter_learns_an_ideas_base_rate_across_runs():
    """An idea that is always aligned or never (50/50), a proxy that separates them well:
    after a first run that failed its test, the second run starts with P(aligned) well below 0.5,
    and the idea's posterior mean base rate says the same."""
    sc = parse_scenario(hand_scenario(
        budget=3,
        ideas=[{"name": "idea", "base_rate": {"values": [0.0, 1.0], "probs": [0.5, 0.5]}}],
    ))
    # under reserve, P(pass | A) = 0.925 and P(pass | M) = 0.4 (worked in test_analysis)
    env = ProxyAlignmentEnv(sc, observation="belief")
    for seed in range(200):
        obs, info = env.reset(seed=seed)
        obs, _, _, _, info = env.step(np.array([0, 0, 0]))
        if env.layout.decode(obs)["results"][0, 0, 1] == 1:  # failed
            break
    # P(rho = 1 | fail) = 0.5 * 0.075 / (0.5 * 0.075 + 0.5 * 0.6) = 0.0375 / 0.3375 = 1/9
    assert abs(info["p_aligned"] - 1 / 9) < 1e-12
    obs, _, _, _, info = env.step(np.array([1, 0, 0]))  # discard
    assert abs(env.layout.decode(obs)["base_rate"][0] - 1 / 9) < 1e-9
    obs, _, _, _, info = env.step(np.array([0, 0, 0]))  # next run, same idea
    assert info["p_aligned"] < 0.5
