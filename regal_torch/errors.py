"""The error type for bad input: reported as one line, never as a traceback."""


class RegalError(Exception):
    """Bad input or an inconsistent run; the message names the file, row or config key."""
