"""Log lines of long-running commands: on stderr, and a failure that repeats (AWS unreachable,
a table missing, credentials expired) shows its traceback once, then one line each time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class OnceTracebackFormatter(logging.Formatter):
    """Shows the traceback of the first record of each (logger, message, error type); the
    repeats are one line naming the error."""

    def __init__(self, fmt: str = FORMAT):
        super().__init__(fmt)
        self._seen: set[tuple[str, str, str]] = set()

    def format(self, record: logging.LogRecord) -> str:
        exc_info = record.exc_info
        if not exc_info or exc_info[0] is None:
            return super().format(record)
        kind, error = exc_info[0], exc_info[1]
        key = (record.name, str(record.msg), kind.__qualname__)
        if key not in self._seen:
            self._seen.add(key)
            return super().format(record)
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info = None
        plain.exc_text = None
        return f"{super().format(plain)} [{kind.__name__}: {error}; traceback shown once above]"


@contextlib.contextmanager
def configured(level: int = logging.INFO) -> Iterator[None]:
    """Log to stderr with ``OnceTracebackFormatter`` while the command runs: tq-aws's own
    loggers at ``level``, other libraries' warnings. Loggers are given back as they were."""
    root = logging.getLogger()
    ours = logging.getLogger("tq_aws")
    handler = logging.StreamHandler()
    handler.setFormatter(OnceTracebackFormatter())
    before = (root.level, ours.level)
    root.addHandler(handler)
    if not root.level or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    if not ours.level or ours.level > level:
        ours.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        ours.setLevel(before[1])


__all__ = ["FORMAT", "OnceTracebackFormatter", "configured"]
