"""The log line formats, loaded by LOGGING while settings load (so they import
nothing from Django): UTC times, no value that can start a line of its own,
and no e-mail address or bearer token in any line.

``console`` (SingleLineFormatter) is for people; ``json`` (JsonFormatter,
LOG_FORMAT=json) writes one object per line with the context in force
(config/logcontext.py).
"""

import json
import logging
import re
import time
from datetime import UTC, datetime

from config.logcontext import FIELDS, log_context

# Personal data and secrets a message may quote by mistake (a library's error
# that repeats a value, an address in an input): replaced, whatever logged them.
# Bounded repetitions, so a hostile line costs linear time.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
_BEARER = re.compile(r"(?i)(bearer|token|api[_-]?key|password)([\"']?\s*[:= ]\s*[\"']?)[^\s\"',;]{6,}")


def scrub(text: str) -> str:
    """``text`` without e-mail addresses and bearer tokens or keys."""
    return _BEARER.sub(r"\1\2[redacted]", _EMAIL.sub("[email]", text))


def one_line(value) -> str:
    """A value fit for one log line: CR, LF and other controls escaped."""
    text = str(value)
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


class SingleLineFormatter(logging.Formatter):
    """Log lines in UTC, with the message's control characters escaped so no
    value inside it can start a line of its own (tracebacks, added after the
    message, keep their lines), and scrubbed of addresses and tokens."""

    converter = time.gmtime

    def formatMessage(self, record):  # noqa: N802 - logging's own name
        record.message = scrub(one_line(record.message))
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message,
    the context in force (request_id, user, workspace, pipeline, run_id,
    step, task_id; those not set are left out), and a traceback as
    ``exception``. JSON escapes every control character, so a value cannot
    start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        context = log_context()
        line["user"] = context.get("user")
        line.update((name, context[name]) for name in FIELDS if name in context)
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        elif record.stack_info:
            line["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(line, default=str, ensure_ascii=False)
