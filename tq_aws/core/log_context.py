"""Log context: user correlation keys that follow a task into every log line.

Limits follow the reference: at most 10 keys (the first 10 in alphabetical order are kept) and at
most 1024 characters of JSON (otherwise the context is dropped), both with a warning. Inside an
executor the runtime keys (``task_id``, ``task_type``, ``queue_id``, ``worker_id``) win over user
keys, so a task cannot spoof them.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

MAX_KEYS = 10
MAX_JSON_CHARS = 1024
RUNTIME_KEYS = ("task_id", "task_type", "queue_id", "worker_id")

logger = logging.getLogger(__name__)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "tq_log_context", default=_EMPTY
)
CURRENT = _current
"""The context variable ``bind`` sets (for hot loops that set and reset it directly)."""


def sanitize(context: Any, *, where: str = "task") -> dict[str, str] | None:
    """Apply the limits to a user log context; return the context to keep, or ``None``."""
    if not isinstance(context, Mapping) or not context:
        return None
    ctx = {str(k): str(v) for k, v in context.items()}
    if len(ctx) > MAX_KEYS:
        kept = sorted(ctx)[:MAX_KEYS]
        logger.warning(
            "log_context of %s has %d keys; keeping the first %d alphabetically: %s",
            where,
            len(ctx),
            MAX_KEYS,
            kept,
        )
        ctx = {k: ctx[k] for k in kept}
    if len(json.dumps(ctx, separators=(",", ":"), ensure_ascii=False)) > MAX_JSON_CHARS:
        logger.warning(
            "log_context of %s is over %d characters of JSON; dropped", where, MAX_JSON_CHARS
        )
        return None
    return ctx


def merge_into_child(parent: Mapping[str, str], child: Mapping[str, str]) -> dict[str, str]:
    """The context a child task inherits: the parent's keys, overridden by the child's own."""
    return {**parent, **child}


def current() -> Mapping[str, str]:
    """The log context bound to the running code (empty outside executors)."""
    return _current.get()


def bind(context: Mapping[str, str]) -> contextvars.Token[Mapping[str, str]]:
    """Bind ``context`` until ``unbind(token)`` (the cheap form of ``bound`` for hot paths)."""
    return _current.set(context)


def unbind(token: contextvars.Token[Mapping[str, str]]) -> None:
    _current.reset(token)


@contextmanager
def bound(context: Mapping[str, str]) -> Iterator[None]:
    """Bind ``context`` for the duration of the block (follows awaits and ``to_thread``)."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


def render(context: Mapping[str, str]) -> str:
    """Render ``[k1:v1][k2:v2]`` with keys sorted; control characters and ``]`` become ``_``."""
    return "".join(f"[{_clean(k)}:{_clean(v)}]" for k, v in sorted(context.items()))


def _clean(text: str) -> str:
    return "".join("_" if (ord(c) < 0x20 or c == "\x7f" or c == "]") else c for c in text)


_RESERVED = frozenset(logging.LogRecord("x", 0, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
}


def record_attributes(context: Mapping[str, str]) -> dict[str, Any]:
    """LogRecord attributes for ``context``: every key that does not shadow a standard attribute,
    plus ``tq_log_context`` holding the whole mapping."""
    attrs: dict[str, Any] = {k: v for k, v in context.items() if k not in _RESERVED}
    attrs["tq_log_context"] = dict(context)
    return attrs


class TaskLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A standard logger adapter bound to a task's log context.

    Records carry each context key as an attribute (and the whole mapping as
    ``tq_log_context``); the message is prefixed with ``[k:v]`` pairs so any format prints them.
    Keys given in a call's own ``extra`` win over context keys.
    """

    def __init__(self, logger: logging.Logger, context: Mapping[str, str]):
        super().__init__(logger, dict(context))
        self._prefix = render(context)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        attrs = record_attributes(self.extra or {})  # type: ignore[arg-type]
        del attrs["tq_log_context"]  # set by the record factory from the bound context
        attrs.update(kwargs.get("extra") or {})
        kwargs["extra"] = attrs
        return (f"{self._prefix} {msg}" if self._prefix else msg), kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            msg, options = self.process(msg, kwargs)
            # Bind this adapter's context while the record is made, so the record factory
            # stamps it even when the adapter is used after the executor returned.
            token = _current.set(self.extra or _EMPTY)  # type: ignore[arg-type]
            try:
                self.logger.log(level, msg, *args, **options)
            finally:
                _current.reset(token)


class LogContextFilter(logging.Filter):
    """A handler filter that copies the bound log context onto every record as attributes
    (keys already present on the record are left alone). Add it to a handler to format any
    logger's lines inside executors with ``%(task_id)s`` and the like."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = getattr(record, "tq_log_context", None) or _current.get()
        for key, value in record_attributes(ctx).items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True


_factory_installed = False


def install_record_factory() -> None:
    """Make every LogRecord created while a context is bound carry it as ``tq_log_context``
    (a dict) and ``tq_context`` (the rendered ``[k:v]`` string).

    Only these two attributes are set, so a call's own ``extra`` can never clash with them.
    Idempotent; chains whatever factory was installed before.
    """
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ctx = _current.get()
        record.tq_log_context = dict(ctx) if ctx else {}
        record.tq_context = render(ctx) if ctx else ""
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
