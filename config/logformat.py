"""The log line format, loaded by LOGGING while settings load (so it imports
nothing from Django): UTC times, and no value that can start a line of its own."""

import logging
import time


def one_line(value) -> str:
    """A value fit for one log line: CR, LF and other controls escaped."""
    text = str(value)
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


class SingleLineFormatter(logging.Formatter):
    """Log lines in UTC, with the message's control characters escaped so no
    value inside it can start a line of its own (tracebacks, added after the
    message, keep their lines)."""

    converter = time.gmtime

    def formatMessage(self, record):  # noqa: N802 - logging's own name
        record.message = one_line(record.message)
        return super().formatMessage(record)
