"""ProxyGym: when is it better to train on an alignment proxy?

One namespace: the game is :mod:`proxygym.envs` (importing ``proxygym`` registers
``ProxyAlignment-v0``), the ways of playing it are :mod:`proxygym.agents`, the shipped
scenarios are :mod:`proxygym.scenarios`, and the ``proxygym`` command is :mod:`proxygym.cli`.
"""

from proxygym.envs import ENV_ID

__version__ = "0.1.0"

__all__ = ["ENV_ID", "__version__"]
