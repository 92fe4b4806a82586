"""What kind of failure an exception is, in one place: the task's own data, a passing fault of
the infrastructure, or a fault that lasts.

- ``DATA``: the task's own content cannot be run or recorded (``fail(meta=...)`` that is not
  JSON, ``retry_after=NaN``, a value a store or the scheduler refuses). Trying again changes
  nothing, so the engine ends **that task** (failed, the reason in ``execution_stats``) and
  records the rest of its batch as usual.
- ``TRANSIENT``: throttling, timeouts, connections, service faults. The batch is given back
  (reported to Lambda, retried by the worker) and the delivery is not counted towards the
  bound of ``max_deliveries``: an outage parks nothing.
- ``PERSISTENT``: anything else (access denied, a missing resource, an unexpected exception).
  The batch is given back too, and a record that keeps failing so is parked in the poison store
  after ``max_deliveries`` deliveries, so its key moves on.

AWS errors are recognised by their shape (botocore's ``ClientError`` carries
``response["Error"]["Code"]``; pynamodb's errors wrap one in ``cause``), so this module imports
no AWS SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from enum import StrEnum

from tq_aws.errors import (
    ConfigurationError,
    FlowConflictError,
    PublishError,
    TaskDataError,
    TqError,
)

logger = logging.getLogger(__name__)


class ErrorKind(StrEnum):
    """What a failure means for the batch it happened in (see the module docstring)."""

    DATA = "data"
    TRANSIENT = "transient"
    PERSISTENT = "persistent"


DATA_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "SerializationException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterException",
        "InvalidParameterCombination",
        "InvalidArgumentException",
        "ItemCollectionSizeLimitExceededException",
    }
)
"""AWS error codes that refuse a request for its content: the same request never passes."""

TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceeded",
        "ThrottlingException",
        "ThrottlingError",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "KMSThrottlingException",
        "LimitExceededException",
        "AWS.SimpleQueueService.RequestThrottled",
        "TransactionConflictException",
        "TransactionInProgressException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
"""AWS error codes of load and passing service faults: the same request may pass later."""

_TRANSIENT_CLASS_NAMES = frozenset(
    {
        # botocore (not OSError subclasses)
        "HTTPClientError",
        "ConnectionError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ProxyConnectionError",
        # aiohttp
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
    }
)
_DATA_CLASS_NAMES = frozenset({"ParamValidationError"})  # botocore: a request's own values


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of ``exc`` (see the module docstring)."""
    for error in _chain(exc):
        code = aws_error_code(error)
        if code:
            if code in DATA_CODES or (
                code == "TransactionCanceledException" and _cancelled_for_validation(error)
            ):
                return ErrorKind.DATA
            if code in TRANSIENT_CODES or (
                code == "TransactionCanceledException" and _cancelled_for_load(error)
            ):
                return ErrorKind.TRANSIENT
            return ErrorKind.PERSISTENT
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _DATA_CLASS_NAMES:
        return ErrorKind.DATA
    if isinstance(exc, PublishError):
        # records the transport could not take after its retries: throttling, unless the
        # service refused them for their content
        reasons = getattr(exc, "reasons", None) or {}
        if reasons and all(str(r) in DATA_CODES for r in reasons.values()):
            return ErrorKind.DATA
        return ErrorKind.TRANSIENT
    if isinstance(exc, OSError | FlowConflictError) or names & _TRANSIENT_CLASS_NAMES:
        # connections and timeouts; a flow barrier that stayed busy through every attempt
        return ErrorKind.TRANSIENT
    if isinstance(exc, ConfigurationError):
        return ErrorKind.PERSISTENT  # the app's setup, not the task: fixed by an operator
    if isinstance(exc, TaskDataError | ValueError | TypeError | ArithmeticError | RecursionError):
        # our typed refusals of a task's values (ItemTooLargeError, InvalidScheduleNameError,
        # ...) are ValueErrors too, as are pydantic's serialization errors
        return ErrorKind.DATA
    return ErrorKind.PERSISTENT


def is_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a task's own data (``ErrorKind.DATA``)."""
    return error_kind(exc) is ErrorKind.DATA


def describe(exc: BaseException) -> str:
    """``<type>: <message>``, as a reason kept in a task's stats or a poison record."""
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def aws_error_code(exc: BaseException) -> str:
    """The AWS error code a botocore ``ClientError`` carries (``""`` for other exceptions)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error")
    return str(error.get("Code") or "") if isinstance(error, dict) else ""


def _cancelled_for_validation(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons") or []
    return any(isinstance(r, dict) and r.get("Code") == "ValidationError" for r in reasons)


def _cancelled_for_load(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    reasons = response.get("CancellationReasons") or []
    return any(
        isinstance(r, dict)
        and r.get("Code")
        in ("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded")
        for r in reasons
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps (pynamodb's ``cause``, ``__cause__``), a few levels deep."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        yield current
        seen += 1
        wrapped = getattr(current, "cause", None)
        if not isinstance(wrapped, BaseException):
            wrapped = current.__cause__
        if isinstance(current, TqError) and not aws_error_code(current):
            # our own errors say what they mean; what they wrap is detail
            return
        current = wrapped


__all__ = [
    "DATA_CODES",
    "TRANSIENT_CODES",
    "ErrorKind",
    "aws_error_code",
    "describe",
    "error_kind",
    "is_data_error",
]
