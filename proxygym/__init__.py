"""ProxyGym: when is it better to train on an alignment proxy? (the ``proxygym`` command lives in :mod:`proxygym.cli`)."""

__version__ = "0.1.0"
