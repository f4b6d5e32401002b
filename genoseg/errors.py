"""User-facing errors.

Library code raises these instead of exiting; the CLI turns them into one line on stderr and a
non-zero exit status. The message must make sense on its own, without a traceback.
"""


class GenosegError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, mismatched model)."""


class InputError(GenosegError):
    """An input file is missing, empty, malformed or inconsistent."""


class ModelError(GenosegError):
    """A model directory is missing, incomplete or does not match the inputs."""


class ConfigError(GenosegError):
    """A configuration file has unknown keys, wrong types or impossible values."""
