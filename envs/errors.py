"""The one error every bad input turns into."""


class ProxyGymError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what is allowed."""


class ScenarioError(ProxyGymError):
    """A scenario file (or a plan, test set or name given with it) is malformed."""
