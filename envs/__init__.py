"""ProxyGym's game: scenarios, the dynamics of a run, the Bayesian filter, the env and the exact analysis.

Importing this package (``import proxygym`` does) registers ``ProxyAlignment-v0`` with
Gymnasium, so ``gym.make("proxygym:ProxyAlignment-v0", scenario=...)`` works from any folder,
and so does the batched twin,
``gym.make_vec("ProxyAlignment-v0", num_envs=N, vectorization_mode="vector_entry_point", scenario=...)``.
"""

from gymnasium.envs.registration import register, registry

from proxygym.envs.errors import ProxyGymError, ScenarioError
from proxygym.envs.scenario import Scenario, load_scenario, shipped_scenarios

ENV_ID = "ProxyAlignment-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="proxygym.envs.proxy_alignment:ProxyAlignmentEnv",
        vector_entry_point="proxygym.envs.vector:ProxyAlignmentVectorEnv",
    )

__all__ = ["ENV_ID", "ProxyGymError", "Scenario", "ScenarioError", "load_scenario", "shipped_scenarios"]
