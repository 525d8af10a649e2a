"""The errors an operator may see: each carries one line that names the problem.

The CLI prints `str(error)` as the last line of stderr and exits non-zero, with
no traceback; anything else escaping is a bug.
"""


class MinyiError(Exception):
    """A refusal or failure that an operator can act on; its message is one line."""

    exit_code = 2


class ConfigError(MinyiError):
    """The TOML config or an environment variable is wrong."""


class InputError(MinyiError):
    """A command-line argument or parameter is malformed (a date, an instant, a reference)."""


class StoreUnavailable(MinyiError):
    """The database cannot be reached or is not migrated."""

    exit_code = 3


class SourceError(MinyiError):
    """One upstream source failed; the others go on."""
