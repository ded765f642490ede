"""The one exception type users see: a clear message, printed without a traceback."""


class SrliteError(Exception):
    """A problem the user can fix (bad input, bad config, missing dependency).

    The CLI prints the message as one paragraph and exits non-zero; library code raises it
    instead of printing or exiting.
    """
