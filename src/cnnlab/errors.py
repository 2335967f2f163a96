"""User-facing errors: raised anywhere, caught once in the CLI and printed as one paragraph.

Anything that is the user's input being wrong (config, paths, images, class counts) raises a
subclass of :class:`CnnlabError`; the CLI prints its message and exits with code 2. Any other
exception is a bug in cnnlab and keeps its traceback.
"""


class CnnlabError(Exception):
    """An error in the user's input, explained in one paragraph."""

    exit_code = 2


class ConfigError(CnnlabError):
    """The experiment file or an override is invalid."""


class DataError(CnnlabError):
    """The data cannot be found, read or used as configured."""


class RunError(CnnlabError):
    """A run folder is missing or cannot be resumed."""
