"""An independent reference for world model v1, written from the contract alone.

Source: ``/work/shared/design/world-model-v1.md`` (v1) and ``world-model.md`` (v0), and the
analysis formulas' *meaning* in ``docs/model.md`` ("Exact analysis"). Nothing here reads
``envs/dynamics.py``, ``envs/analysis.py`` or ``envs/core.py``: a scenario is read from the
plain mapping a YAML file holds, with the contract's defaults, and every number is computed
by enumerating latent paths (and, where asked, test outcomes) in plain Python. The tests
compare these numbers with the project's implementation; two computations that agree are
the point, so keep this module free of the project's dynamics.

Conventions (the contract's): phases t = 1..T, checkpoint 0 is a run's start (it reads
phase 1's capability and n = 0); usages 0 reserve, 1 train, 2 anti; a state is a tuple
``(a, h, b)`` with ``h`` one bit per proxy and ``b`` one bit per *persistent* proxy
(persistence > 0), in proxy order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

RESERVE, TRAIN, ANTI = 0, 1, 2
LETTERS = "RTA"

PROXY_DEFAULTS = {
    # v0 (world-model.md / docs/model.md)
    "steer": 0.0,
    "incentive": 1.0,
    "native": 0.0,
    "anti_strength": 1.0,
    "anti_damage": 0.0,
    "proximity": 0.0,
    "difficulty": 10.0,
    "sharpness": 10.0,
    # v1 (world-model-v1.md, "New fields")
    "persistence": 0.0,
    "gate": 0.0,
    "proximity_aligned": None,  # = proximity
    "faking_when_set": 0.0,
    "obfuscation_difficulty": None,
    "wash_out": 1.0,
    "transfer": {},
}
REWARD_DEFAULTS = {"aligned": 1.0, "misaligned": 0.0, "abstain": 0.0, "run_cost": 0.0}


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def bern(p: float, bit: int) -> float:
    return p if bit else 1.0 - p


def parse_plan(text: str, T: int, k: int) -> tuple[tuple[int, ...], ...]:
    """``"TR,A"``-style plan text into (T, k) usages (one group: every phase; one letter: every proxy)."""
    groups = text.split(",")
    if len(groups) == 1:
        groups = groups * T
    assert len(groups) == T, text
    groups = [g * k if len(g) == 1 else g for g in groups]
    return tuple(tuple(LETTERS.index(c) for c in g) for g in groups)


@dataclass
class Ref:
    """The contract's model of one scenario mapping."""

    data: dict
    phases: list = field(init=False)
    proxies: list = field(init=False)
    ideas: list = field(init=False)

    def __post_init__(self):
        d = self.data
        self.phases = [(float(p["capability"]), float(p["plasticity"])) for p in d["phases"]]
        self.T = len(self.phases)
        self.proxies = []
        for p in d["proxies"]:
            q = dict(PROXY_DEFAULTS)
            q.update(p)
            if q["proximity_aligned"] is None:
                q["proximity_aligned"] = q["proximity"]
            self.proxies.append(q)
        self.k = len(self.proxies)
        self.names = [p["name"] for p in self.proxies]
        ideas = d.get("ideas") or [{"name": "default", "base_rate": 0.3}]
        self.ideas = []
        for i in ideas:
            br = i.get("base_rate", 0.3)
            if isinstance(br, dict):
                vals, probs = list(map(float, br["values"])), list(map(float, br["probs"]))
            else:
                vals, probs = [float(br)], [1.0]
            self.ideas.append((vals, probs, float(i.get("drift", 0.0))))
        self.reward = dict(REWARD_DEFAULTS)
        self.reward.update(d.get("reward") or {})
        self.budget = int(d["budget"])
        # W[j][l]: share of proxy l's training pressure acting on proxy j (declared on j), W_jj = 1
        self.W = [[1.0 if j == l else 0.0 for l in range(self.k)] for j in range(self.k)]
        for j, p in enumerate(self.proxies):
            for other, w in p["transfer"].items():
                self.W[j][self.names.index(other)] = float(w)
        self.persistent = [j for j, p in enumerate(self.proxies) if p["persistence"] > 0]
        self._paths: dict = {}
        self._steps: dict = {}

    # -- the contract's rates ------------------------------------------------------------
    def capability(self, c: int) -> float:
        """Capability at checkpoint c (0: a run's start, read with phase 1's capability)."""
        return self.phases[max(c, 1) - 1][0]

    def pi(self, j: int, a: int, c: int, n: int) -> float:
        """Unshaped pass rate pi_j(a, c, n)."""
        p = self.proxies[j]
        if a == 1:
            return p["sensitivity"] * (1.0 - p["anti_damage"]) ** n
        circ = sigmoid(p["sharpness"] * (self.capability(c) - p["difficulty"]))
        return p["false_pass"] + (1.0 - p["false_pass"]) * circ

    def kappa(self, j: int) -> float:
        return self.proxies[j]["persistence"]

    def b_of(self, state, j: int) -> int:
        """The b bit of proxy j (0 for a proxy that has none; it is then multiplied by kappa = 0)."""
        if j in self.persistent:
            return state[2][self.persistent.index(j)]
        return 0

    def pass_p(self, state, j: int, t: int, n: int) -> float:
        """Step 4: P(pass_j) at checkpoint t, with n anti-trained phases of j up to and including t."""
        a, h, _ = state
        if h[j]:
            return 1.0
        kap = self.kappa(j)
        return kap * self.b_of(state, j) + (1.0 - kap) * self.pi(j, a, t, n)

    # -- states ----------------------------------------------------------------------------
    def states(self):
        for a in (0, 1):
            for h in itertools.product((0, 1), repeat=self.k):
                for b in itertools.product((0, 1), repeat=len(self.persistent)):
                    yield (a, h, b)

    @property
    def n_states(self) -> int:
        return 2 ** (1 + self.k + len(self.persistent))

    def index(self, state) -> int:
        """The packing the project documents: s = a + 2 sum_j h_j 2^j + 2^(k+1) sum_q b_(q) 2^q."""
        a, h, b = state
        return a + 2 * sum(hj << j for j, hj in enumerate(h)) + 2 ** (self.k + 1) * sum(bq << q for q, bq in enumerate(b))

    def start(self, rho: float) -> dict:
        """A run's start: a ~ Bernoulli(rho), h = 0, b_j ~ Bernoulli(pi_j(a, 0, 0))."""
        out = {}
        h0 = (0,) * self.k
        for a in (0, 1):
            pa = bern(rho, a)
            for b in itertools.product((0, 1), repeat=len(self.persistent)):
                pb = math.prod(bern(self.pi(j, a, 0, 0), bq) for j, bq in zip(self.persistent, b))
                if pa * pb > 0:
                    out[(a, h0, b)] = out.get((a, h0, b), 0.0) + pa * pb
        return out

    def step(self, state, t: int, usage, n_prev, drift: float) -> dict:
        """Phase t (1-based) from ``state``: {next state: probability}, as the product of steps 1-3.

        ``n_prev[j]`` = n_j(t-1), the anti-trained phases of j before this one.
        """
        key = (state, t, tuple(usage), tuple(n_prev), drift)
        if key not in self._steps:
            self._steps[key] = self._step(state, t, usage, n_prev, drift)
        return self._steps[key]

    def _step(self, state, t: int, usage, n_prev, drift: float) -> dict:
        a, h, b = state
        cap, p = self.phases[t - 1]
        n_new = [n_prev[j] + (usage[j] == ANTI) for j in range(self.k)]
        # 1. values
        if a == 0:
            stay = 1.0
            for j in range(self.k):
                if usage[j] == TRAIN:
                    q = self.proxies[j]
                    psi = 1.0 if h[j] else self.kappa(j) * self.b_of(state, j) + (1 - self.kappa(j)) * self.pi(
                        j, 0, t - 1, n_prev[j]
                    )
                    stay *= 1.0 - p * max(q["steer"], 0.0) * (1.0 - q["gate"] * psi)
            p_a1 = 1.0 - stay
        else:
            keep = 1.0 - p * drift
            for j in range(self.k):
                if usage[j] == TRAIN:
                    keep *= 1.0 - p * max(-self.proxies[j]["steer"], 0.0)
            p_a1 = keep
        out = {}
        for a2 in (0, 1):
            pa = bern(p_a1, a2)
            if pa == 0:
                continue
            # 2. shaping, per proxy, with the new alignment
            h_opts = []
            for j in range(self.k):
                q = self.proxies[j]
                pressure = q["native"] + sum(
                    self.W[j][l]
                    * (
                        self.proxies[l]["incentive"] * (usage[l] == TRAIN)
                        - self.proxies[l]["anti_strength"] * (usage[l] == ANTI)
                    )
                    for l in range(self.k)
                )
                prox = q["proximity_aligned"] if a2 == 1 else q["proximity"]
                onset = 1.0 if q["obfuscation_difficulty"] is None else sigmoid(
                    q["sharpness"] * (cap - q["obfuscation_difficulty"])
                )
                up = prox * sigmoid(pressure) * ((1.0 - p) ** q["faking_when_set"] if a2 == 0 else 1.0) * onset
                down = prox * sigmoid(-pressure) * q["wash_out"]
                if h[j] == 0:
                    h_opts.append(((0, 1.0 - up), (1, up)))
                else:
                    h_opts.append(((0, down), (1, 1.0 - down)))
            # 3. dispositions, per persistent proxy
            b_opts = []
            for qi, j in enumerate(self.persistent):
                bj = b[qi]
                if a2 != a:
                    p1 = self.pi(j, a2, t, n_new[j])
                else:
                    before, after = self.pi(j, a, t - 1, n_prev[j]), self.pi(j, a, t, n_new[j])
                    if after >= before:
                        up_b = 0.0 if before == 1.0 else (after - before) / (1.0 - before)
                        p1 = 1.0 if bj else up_b
                    else:
                        down_b = (before - after) / before
                        p1 = (1.0 - down_b) if bj else 0.0
                b_opts.append(((0, 1.0 - p1), (1, p1)))
            for hs in itertools.product(*h_opts):
                ph = math.prod(x[1] for x in hs)
                for bs in itertools.product(*b_opts):
                    pb = math.prod(x[1] for x in bs)
                    pr = pa * ph * pb
                    if pr > 0:
                        key = (a2, tuple(x[0] for x in hs), tuple(x[0] for x in bs))
                        out[key] = out.get(key, 0.0) + pr
        return out

    # -- a run, by enumerating latent paths -----------------------------------------------------
    @staticmethod
    def anti_counts(plan, k: int):
        """n[t][j] = n_j(t) for t = 0..T."""
        n = [[0] * k]
        for row in plan:
            n.append([n[-1][j] + (row[j] == ANTI) for j in range(k)])
        return n

    def paths(self, rho: float, plan, idea: int = 0) -> list:
        """Every latent path (s_0, s_1, ..., s_T) of a run with its probability (zero-probability branches pruned)."""
        key = (rho, tuple(plan), idea)
        if key not in self._paths:
            self._paths[key] = list(self._enumerate_paths(rho, plan, idea))
        return self._paths[key]

    def _enumerate_paths(self, rho: float, plan, idea: int):
        drift = self.ideas[idea][2]
        n = self.anti_counts(plan, self.k)
        cache = {}

        def succ(state, t):
            key = (state, t)
            if key not in cache:
                cache[key] = list(self.step(state, t, plan[t - 1], n[t - 1], drift).items())
            return cache[key]

        def rec(path, prob, t):
            if t > self.T:
                yield path, prob
                return
            for s2, p2 in succ(path[-1], t):
                yield from rec(path + (s2,), prob * p2, t + 1)

        for s0, p0 in self.start(rho).items():
            yield from rec((s0,), p0, 1)

    def records(self, rho: float, plan, idea: int = 0):
        """Every latent path and every vector of test results at every checkpoint, with its probability.

        Yields ``(path, results, prob)`` where ``results[t-1][j]`` is 1 if proxy j passed at checkpoint t.
        """
        n = self.anti_counts(plan, self.k)
        for path, prob in self.paths(rho, plan, idea):
            per_cp = []
            for t in range(1, self.T + 1):
                ps = [self.pass_p(path[t], j, t, n[t][j]) for j in range(self.k)]
                per_cp.append([(r, math.prod(bern(ps[j], r[j]) for j in range(self.k))) for r in itertools.product((0, 1), repeat=self.k)])
            for combo in itertools.product(*per_cp):
                pr = prob * math.prod(c[1] for c in combo)
                if pr > 0:
                    yield path, tuple(c[0] for c in combo), pr

    def state_marginals(self, rho: float, plan, idea: int = 0) -> list[dict]:
        """P(state after phase t), t = 0..T, summed over the enumerated paths."""
        out = [{} for _ in range(self.T + 1)]
        for path, prob in self.paths(rho, plan, idea):
            for t, s in enumerate(path):
                out[t][s] = out[t].get(s, 0.0) + prob
        return out

    def run_summary(self, rho: float, plan, required, idea: int = 0):
        """(base, q, qA): P(aligned at T), P(the run passes every required test), P(passes and aligned).

        ``required[t-1]``: the proxies that must all pass at checkpoint t (empty: no test there).
        For each latent path, the chance of passing is the product over its checkpoints and the
        required proxies (tests are independent given the state).
        Also returns (1 - base, q - qA) summed directly over the misaligned paths (so that a tiny
        misaligned mass is not lost to rounding in 1 - base).
        """
        n = self.anti_counts(plan, self.k)
        base = q = qa = base_m = qm = 0.0
        for path, prob in self.paths(rho, plan, idea):
            a_final = path[-1][0]
            pp = math.prod(self.pass_p(path[t], j, t, n[t][j]) for t in range(1, self.T + 1) for j in required[t - 1])
            base += prob * a_final
            q += prob * pp
            qa += prob * pp * a_final
            base_m += prob * (1 - a_final)
            qm += prob * pp * (1 - a_final)
        return base, q, qa, base_m, qm

    # -- a fixed regimen's analysis -------------------------------------------------------------
    def analyze(self, plan_text: str, test=None, screen=None, idea: int = 0, budget=None, fallback="deploy") -> dict:
        """The analysis outputs of a regimen, from path enumeration and an enumeration of programs.

        ``test``: proxy names that must pass at T (None: all); ``screen``: {d: [names]}.
        Budgeted outcomes: for each base-rate value, programs are enumerated as sequences of
        runs, each run's (passed, aligned) outcome drawn from the run summary.
        """
        T, k = self.T, self.k
        plan = parse_plan(plan_text, T, k)
        required = [[] for _ in range(T)]
        for d, names in (screen or {}).items():
            required[d - 1] = [self.names.index(x) for x in names]
        required[T - 1] = list(range(k)) if test is None else [self.names.index(x) for x in test]
        B = self.budget if budget is None else budget
        vals, probs, _ = self.ideas[idea]
        rw = self.reward
        tot = {key: 0.0 for key in ("base", "q", "qa", "dA", "dM", "ab", "runs", "base_m", "qm")}
        for rho, w in zip(vals, probs):
            base, q, qa, base_m, qm = self.run_summary(rho, plan, required, idea)
            # one run's outcomes: passed & aligned, passed & misaligned, failed & aligned, failed & misaligned
            outcomes = {(1, 1): qa, (1, 0): q - qa, (0, 1): base - qa, (0, 0): (1 - q) - (base - qa)}
            dA = dM = ab = runs = 0.0

            def program(run, prob, outcomes=outcomes):
                nonlocal dA, dM, ab, runs
                runs += prob
                for (passed, aligned), po in outcomes.items():
                    pr = prob * po
                    if pr == 0:
                        continue
                    last = run == B
                    if passed or (last and fallback == "deploy"):
                        if aligned:
                            dA += pr
                        else:
                            dM += pr
                    elif last:
                        ab += pr
                    else:
                        program(run + 1, pr)

            program(1, 1.0)
            for key, v in zip(tot, (base, q, qa, dA, dM, ab, runs, base_m, qm)):
                tot[key] += w * v
        pA = tot["base"]
        out = {
            "base_rate": pA,
            "p_pass": tot["q"],
            "p_pass_aligned": tot["qa"] / pA if pA > 0 else None,
            "p_pass_misaligned": tot["qm"] / tot["base_m"] if tot["base_m"] > 0 else None,
            "p_deploy_aligned": tot["dA"],
            "p_deploy_misaligned": tot["dM"],
            "p_abstain": tot["ab"],
            "expected_runs": tot["runs"],
        }
        ppa, ppm = out["p_pass_aligned"], out["p_pass_misaligned"]
        out["likelihood_ratio"] = ppa / ppm if ppa is not None and ppm else None
        out["expected_return"] = (
            rw["aligned"] * tot["dA"] + rw["misaligned"] * tot["dM"] + rw["abstain"] * tot["ab"] - rw["run_cost"] * tot["runs"]
        )
        return out

    # -- the optimal program, by expectimax over the exact posterior -------------------------------
    def optimal_value(self) -> float:
        """The best expected return of an episode (world-model.md, "One episode: the decision protocol").

        A recursion over observable histories that carries the unnormalised joint measure over
        (each idea's base rate, the current model's state); its value is linear in the measure,
        so maximising over actions at each observable node on the unnormalised measure is the
        same as on the posterior. At d = 0 the organization picks an idea and the usages of
        phase 1; at d = 1..T-1 it discards or continues with the next usages; at d = T it
        deploys or discards; a discard with no run left ends with the abstain reward.
        """
        T, k, rw = self.T, self.k, self.reward
        supports = [list(zip(v, p)) for v, p, _ in self.ideas]
        worlds = {}
        for combo in itertools.product(*supports):
            worlds[tuple(x[0] for x in combo)] = math.prod(x[1] for x in combo)
        usages = list(itertools.product((RESERVE, TRAIN, ANTI), repeat=k))
        results = list(itertools.product((0, 1), repeat=k))

        def after_discard(joint, runs_left):
            W = {}
            for (world, _), m in joint.items():
                W[world] = W.get(world, 0.0) + m
            if runs_left == 0:
                return rw["abstain"] * sum(W.values())
            return start(W, runs_left)

        def start(W, runs_left):
            mass = sum(W.values())
            best = -math.inf
            for i in range(len(self.ideas)):
                joint = {}
                for world, m in W.items():
                    for s, p in self.start(world[i]).items():
                        if m * p > 0:
                            joint[(world, s)] = joint.get((world, s), 0.0) + m * p
                for u in usages:
                    v = -rw["run_cost"] * mass + phase(joint, 1, u, (0,) * k, i, runs_left - 1)
                    best = max(best, v)
            return best

        def phase(joint, t, u, n_prev, i, runs_left):
            drift = self.ideas[i][2]
            n_new = tuple(n_prev[j] + (u[j] == ANTI) for j in range(k))
            nxt = {}
            for (world, s), m in joint.items():
                for s2, p in self.step(s, t, u, n_prev, drift).items():
                    nxt[(world, s2)] = nxt.get((world, s2), 0.0) + m * p
            total = 0.0
            for r in results:
                jr = {}
                for (world, s), m in nxt.items():
                    lik = math.prod(bern(self.pass_p(s, j, t, n_new[j]), r[j]) for j in range(k))
                    if m * lik > 0:
                        jr[(world, s)] = m * lik
                if not jr:
                    continue
                options = [after_discard(jr, runs_left)]
                if t == T:
                    options.append(sum(m * (rw["aligned"] if s[0] else rw["misaligned"]) for (_, s), m in jr.items()))
                else:
                    options += [phase(jr, t + 1, u2, n_new, i, runs_left) for u2 in usages]
                total += max(options)
            return total

        return start(worlds, self.budget)


# -- v0, from world-model.md alone -------------------------------------------------------------
def v0_analyze(data: dict, plan_text: str, test=None, screen=None, idea: int = 0, budget=None, fallback="deploy") -> dict:
    """v0's analysis of a regimen: forward propagation of f and g over v0's 2^(k+1) states, closed-form budget sums.

    A separate, deliberately different computation from :meth:`Ref.analyze` (dense matrices, no
    disposition bits, docs/model.md's closed forms for the budget).
    """
    import numpy as np

    T = len(data["phases"])
    prox = [dict(PROXY_DEFAULTS, **p) for p in data["proxies"]]
    k = len(prox)
    names = [p["name"] for p in prox]
    ideas = data.get("ideas") or [{"name": "default", "base_rate": 0.3}]
    br = ideas[idea].get("base_rate", 0.3)
    vals, probs = (br["values"], br["probs"]) if isinstance(br, dict) else ([br], [1.0])
    drift = ideas[idea].get("drift", 0.0)
    rw = dict(REWARD_DEFAULTS, **(data.get("reward") or {}))
    B = data["budget"] if budget is None else budget
    plan = parse_plan(plan_text, T, k)
    S = 2 ** (k + 1)
    req = [[] for _ in range(T)]
    for d, nm in (screen or {}).items():
        req[d - 1] = [names.index(x) for x in nm]
    req[T - 1] = list(range(k)) if test is None else [names.index(x) for x in test]
    a_of = np.array([s & 1 for s in range(S)])
    h_of = np.array([[(s >> (j + 1)) & 1 for j in range(k)] for s in range(S)])
    n_anti = np.zeros(k, dtype=int)
    mats, pis = [], []
    for t in range(T):
        cap, p = data["phases"][t]["capability"], data["phases"][t]["plasticity"]
        u = plan[t]
        n_anti = n_anti + np.array([x == ANTI for x in u])
        up_a = 1 - math.prod(1 - p * max(prox[j]["steer"], 0) for j in range(k) if u[j] == TRAIN)
        down_a = 1 - (1 - p * drift) * math.prod(1 - p * max(-prox[j]["steer"], 0) for j in range(k) if u[j] == TRAIN)
        V = np.array([[1 - up_a, up_a], [down_a, 1 - down_a]])
        H = []
        for j in range(k):
            pr = prox[j]["native"] + prox[j]["incentive"] * (u[j] == TRAIN) - prox[j]["anti_strength"] * (u[j] == ANTI)
            up, down = prox[j]["proximity"] * sigmoid(pr), prox[j]["proximity"] * sigmoid(-pr)
            H.append(np.array([[1 - up, up], [down, 1 - down]]))
        P = np.ones((S, S))
        for s in range(S):
            for s2 in range(S):
                P[s, s2] = V[a_of[s], a_of[s2]] * math.prod(H[j][h_of[s, j], h_of[s2, j]] for j in range(k))
        pi = np.ones(S)
        for s in range(S):
            for j in req[t]:
                q = prox[j]
                if h_of[s, j]:
                    pj = 1.0
                elif a_of[s]:
                    pj = q["sensitivity"] * (1 - q["anti_damage"]) ** n_anti[j]
                else:
                    pj = q["false_pass"] + (1 - q["false_pass"]) * sigmoid(q["sharpness"] * (cap - q["difficulty"]))
                pi[s] *= pj
        mats.append(P)
        pis.append(pi)
    acc = dict.fromkeys(("base", "q", "qa", "dA", "dM", "ab", "runs"), 0.0)
    for rho, w in zip(vals, probs):
        f = np.zeros(S)
        f[0], f[1] = 1 - rho, rho
        g = f.copy()
        for P, pi in zip(mats, pis):
            f = f @ P
            g = (g @ P) * pi
        base, q, qa = float(f @ a_of), float(g.sum()), float(g @ a_of)
        phi = 1 - q
        runs = sum(phi**n for n in range(B))
        if fallback == "deploy":
            head = sum(phi**n for n in range(B - 1))
            dA, dM, ab = qa * head + phi ** (B - 1) * base, (q - qa) * head + phi ** (B - 1) * (1 - base), 0.0
        else:
            dA, dM, ab = qa * runs, (q - qa) * runs, phi**B
        for key, v in zip(acc, (base, q, qa, dA, dM, ab, runs)):
            acc[key] += w * v
    pA = acc["base"]
    out = {
        "base_rate": pA,
        "p_pass": acc["q"],
        "p_pass_aligned": acc["qa"] / pA if pA > 0 else None,
        "p_pass_misaligned": (acc["q"] - acc["qa"]) / (1 - pA) if pA < 1 else None,
        "p_deploy_aligned": acc["dA"],
        "p_deploy_misaligned": acc["dM"],
        "p_abstain": acc["ab"],
        "expected_runs": acc["runs"],
    }
    out["expected_return"] = (
        rw["aligned"] * acc["dA"] + rw["misaligned"] * acc["dM"] + rw["abstain"] * acc["ab"] - rw["run_cost"] * acc["runs"]
    )
    return out
