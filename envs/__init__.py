"""ProxyGym's game: scenarios, the dynamics of a run, the Bayesian filter, the env and the exact analysis.

Importing this package (``import proxygym`` does) registers ``ProxyAlignment-v0`` with
Gymnasium, so ``gym.make("proxygym:ProxyAlignment-v0", scenario=...)`` works from any folder,
and so does the batched twin,
``gym.make_vec("ProxyAlignment-v0", num_envs=N, vectorization_mode="vector_entry_point", scenario=...)``.

Every shipped scenario also has an id of its own, ``ProxyAlignment-<scenario>-v0`` (:func:`scenario_env_id`),
the same env with the scenario and the ``belief`` observation as its defaults. Tools that name an env only by its
id (rl-baselines3-zoo: its hyperparameter files are keyed by env id, and its ``--env-kwargs`` replaces a file's
``env_kwargs`` rather than adding to them) then need no ``scenario`` argument, and a scenario's entry in such a
file is found by its id.
"""

from gymnasium.envs.registration import register, registry

from proxygym.envs.errors import ProxyGymError, ScenarioError
from proxygym.envs.scenario import Scenario, load_scenario, shipped_scenarios

ENV_ID = "ProxyAlignment-v0"
ENTRY_POINT = "proxygym.envs.proxy_alignment:ProxyAlignmentEnv"
VECTOR_ENTRY_POINT = "proxygym.envs.vector:ProxyAlignmentVectorEnv"
#: The observation of the per-scenario ids (``ProxyAlignment-v0`` itself defaults to ``history``, as the env does).
SCENARIO_ENV_OBSERVATION = "belief"


def scenario_env_id(name: str) -> str:
    """The Gymnasium id of a shipped scenario: ``ProxyAlignment-<name>-v0``."""
    return f"ProxyAlignment-{name}-v0"


if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT)
for _name in shipped_scenarios():
    if scenario_env_id(_name) not in registry:
        register(
            id=scenario_env_id(_name), entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs={"scenario": _name, "observation": SCENARIO_ENV_OBSERVATION},
        )

__all__ = [
    "ENV_ID", "ProxyGymError", "SCENARIO_ENV_OBSERVATION", "Scenario", "ScenarioError", "load_scenario",
    "scenario_env_id", "shipped_scenarios",
]
