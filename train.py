"""Train a Stable-Baselines3 agent on a ProxyGym scenario: ``python train.py [--algo ppo] [--scenario sticky_values] ...``.

A thin script over :mod:`proxygym.train` (the same command as ``proxygym train``); ``python train.py --help``
lists the options.
"""

import sys

from proxygym.train import main

if __name__ == "__main__":
    sys.exit(main())
