"""Train a Stable-Baselines3 agent on a ProxyGym scenario (the same as ``proxygym train``).

    python train.py                                  # PPO on sticky_values, a few minutes on 2 cores
    python train.py --algo maskable_ppo --scenario protocol_wins -n 200000 --seed 1
    python train.py --algo dqn --hyperparams learning_rate:1e-3 exploration_fraction:0.5
    python train.py --trained-agent logs/ppo/sticky_values_1/model.zip -n 50000   # resume

The command-line habits are rl-baselines3-zoo's. Hyperparameters come from
``agents/hyperparams/<algo>.yml`` (the scenario's entry over ``default``), then
``--hyperparams key:value`` overrides. Everything lands in a numbered run folder
``<log-folder>/<algo>/<scenario>_<n>/``: ``model.zip`` (final), ``best_model.zip`` (best
evaluation), ``checkpoints/``, ``args.yml``, ``config.yml`` (the hyperparameters used) and
``evaluation.json``. TensorBoard gets SB3's scalars plus, at every evaluation, what the
agent does with each proxy (``alignment/*``, ``policy/*``, a heatmap, a text summary).
At the end the agent is compared with every heuristic strategy on the scenario.
"""

import sys

from proxygym.train import main

if __name__ == "__main__":
    sys.exit(main())
