"""The one exception type the CLI turns into a clear sentence instead of a traceback."""


class ClipbenchError(Exception):
    """A user-facing problem: bad input, missing files, unknown names. The message says what to do.

    ``debug_hint``: whether the CLI points at --debug for the traceback behind it (a method's own failure,
    where the cause is in someone's code; never for a plain input mistake, which is one sentence)."""

    debug_hint = False
