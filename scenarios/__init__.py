"""The shipped scenario files (``*.yaml``), one per claim of the essay; see ``proxygym scenarios``."""
