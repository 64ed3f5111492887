"""The error type for bad input: reported as one line, never as a traceback."""


class RegalError(Exception):
    """Bad input or an inconsistent run; the message names the file, row or config key."""


def regal_cause(exc: BaseException) -> RegalError | None:
    """The :class:`RegalError` that ``exc`` is or was raised from, if any.

    Hydra wraps an error raised while it instantiates a ``_target_`` in an
    ``InstantiationException`` whose ``__cause__`` is the original; this walks that chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RegalError):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None
