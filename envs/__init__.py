"""ProxyGym's game: scenarios, the dynamics of a run, the Bayesian filter, the env and the exact analysis.

Importing this package registers ``ProxyAlignment-v0`` with Gymnasium, so both
``import envs; gym.make("ProxyAlignment-v0", scenario=...)`` and
``gym.make("envs:ProxyAlignment-v0", scenario=...)`` work, and so does the batched twin,
``gym.make_vec("ProxyAlignment-v0", num_envs=N, vectorization_mode="vector_entry_point", scenario=...)``.
"""

from gymnasium.envs.registration import register, registry

from envs.scenario import ProxyGymError, Scenario, ScenarioError, load_scenario, shipped_scenarios

ENV_ID = "ProxyAlignment-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="envs.proxy_alignment:ProxyAlignmentEnv",
        vector_entry_point="envs.vector:ProxyAlignmentVectorEnv",
    )

__all__ = ["ENV_ID", "ProxyGymError", "Scenario", "ScenarioError", "load_scenario", "shipped_scenarios"]
