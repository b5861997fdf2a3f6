"""The one exception type for bad user input (config, data, paths).

The CLI turns it into a one-line message on stderr and exit code 2; the
library raises it before anything is written to a workdir.
"""


class UsageError(ValueError):
    """Bad input from the user: a config value, a data file, a path."""


def choose(kind: str, name: str, known) -> None:
    """Raises a UsageError unless `name` is one of `known`."""
    if name not in known:
        raise UsageError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
