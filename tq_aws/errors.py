"""Typed errors raised by tq-aws. Each names the field at fault and how to fix it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TqError(Exception):
    """Base class of every error tq-aws raises on purpose."""


class TaskValidationError(TqError, ValueError):
    """A task given to ``add_tasks`` (or ``actions.add_tasks``) is not acceptable.

    Raised before anything of that call is added: no task of the call is published or stored.

    Attributes:
        index: position of the offending task in the call's list.
        field: dotted path of the field at fault (``payload.to``, ``retry_after``...).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class TaskAlreadyExistsError(TaskValidationError):
    """``add_tasks`` was given an explicit id that is already a stored task's.

    Nothing of that call was added, and the stored task is left as it was. A producer that
    retries a call after an unclear outcome can catch this: that task was added before.

    Attributes:
        task_id: the id at fault (``field`` is ``"id"``).
    """

    def __init__(self, message: str, *, task_id: str, index: int | None = None):
        super().__init__(message, index=index, field="id")
        self.task_id = task_id


class ConfigurationError(TqError, ValueError):
    """An executor registration or a TaskQueue option is invalid."""


class CodecError(TqError, ValueError):
    """A record could not be decoded into a task (malformed bytes, unknown codec version).

    Attributes:
        reason: a short machine-readable reason: ``malformed``, ``unknown_version`` or
            ``invalid_task``.
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


class ResultNotSerializableError(TqError, TypeError):
    """``actions.success(task, result)`` was given a result that cannot be stored as JSON."""


class TaskDataError(TqError, ValueError):
    """A task's own data kept its outcome from being run or recorded (``fail(meta=...)``
    holding something that is not JSON, a ``retry_after`` the next attempt's time cannot be
    computed from, a value a store or the scheduler refuses).

    The engine ends that task ``failed`` with this reason in ``execution_stats["data_error"]``
    and records the rest of its batch as usual; retrying would change nothing.

    Attributes:
        task_id: the task at fault.
    """

    def __init__(self, message: str, *, task_id: str | None = None):
        super().__init__(message)
        self.task_id = task_id


class DecisionError(TqError, ValueError):
    """An action named a task that is not part of the running batch."""


class PermanentFailure(TqError):
    """Raise it from an executor to fail the task for good: its remaining retries are skipped.

    The task ends ``failed`` at once (stored, projected, reported to its flow as a failed step,
    ``on_task_exhausted`` emitted), as if its retries were exhausted. From a batch executor it
    fails every task of the call not decided yet. ``actions.fail(task, error, retry=False)``
    does the same without raising.

    Args:
        message: the error recorded in ``execution_stats["last_error"]`` (default: the class
            name).
        meta: extra keys merged into ``execution_stats``, as ``actions.fail(..., meta=)``.

    Example:
        >>> @app.executor("emails", "send", retries=5)
        ... async def send(task, actions):
        ...     if "@" not in task.payload["to"]:
        ...         raise PermanentFailure("no such address", meta={"to": task.payload["to"]})
        ...     actions.success(task)
    """

    def __init__(self, message: str = "", *, meta: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.meta: dict[str, Any] | None = dict(meta) if meta else None


class NotAJoinTaskError(TqError, ValueError):
    """``FlowResults.from_task`` / ``from_payload`` was given a task that is not a flow's join
    (its payload has no ``flow_results``)."""


class PublishError(TqError):
    """Tasks were accepted (ids assigned, maybe stored) but could not be handed to the transport.

    Attributes:
        task_ids: ids of the tasks that were not published.
    """

    def __init__(self, message: str, *, task_ids: list[str]):
        super().__init__(message)
        self.task_ids = task_ids


# -- Transports -----------------------------------------------------------------------------


class RecordTooLargeError(TqError, ValueError):
    """A task does not fit in one record or message, and no blob store was given to keep its
    payload (or it does not fit even with its payload in the blob store).

    Attributes:
        task_id: the task at fault.
        size: the encoded size in bytes.
        limit: the transport's limit in bytes.
    """

    def __init__(self, message: str, *, task_id: str | None, size: int, limit: int):
        super().__init__(message)
        self.task_id = task_id
        self.size = size
        self.limit = limit


class InvalidPartitionKeyError(TqError, ValueError):
    """A task's ordering key is not acceptable to the transport (too long, bad characters).

    Attributes:
        task_id: the task at fault.
        field: the task field at fault (``partition_key``).
        value: the key at fault.
    """

    def __init__(self, message: str, *, task_id: str | None, field: str, value: str):
        super().__init__(message)
        self.task_id = task_id
        self.field = field
        self.value = value


class RecordsNotPublishedError(PublishError):
    """Some records were not published after every retry; the rest were.

    Attributes:
        task_ids: ids of the tasks not published, in publish order (a task whose earlier
            record of the same partition key failed is not sent, so it is listed too).
        reasons: per task id, the last error code (or why it was held back).
    """

    def __init__(self, message: str, *, task_ids: list[str], reasons: dict[str, str]):
        super().__init__(message, task_ids=task_ids)
        self.reasons = reasons


class InvalidDelayError(TqError, ValueError):
    """A ``send_delayed`` call SQS cannot carry out.

    Attributes:
        field: ``delay_seconds`` (out of 0..900) or ``queue_url`` (a FIFO queue, which has no
            per-message delay).
    """

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class AcknowledgeError(TqError):
    """Messages could not be deleted (``ack``) or made visible again (``nack``) after every
    retry. They stay in the queue and come back when their visibility timeout ends.

    Attributes:
        message_ids: the messages at fault.
    """

    def __init__(self, message: str, *, message_ids: list[str]):
        super().__init__(message)
        self.message_ids = message_ids


# -- Scheduler ------------------------------------------------------------------------------


class InvalidScheduleNameError(TqError, ValueError):
    """A schedule name (or group name) is not acceptable to EventBridge Scheduler.

    Attributes:
        name: the name at fault.
    """

    def __init__(self, message: str, *, name: str):
        super().__init__(message)
        self.name = name


class ScheduleInputTooLargeError(TqError, ValueError):
    """A task's JSON is larger than EventBridge Scheduler accepts as a schedule's input.

    The payload should have been kept in the blob store (claim check) before scheduling.

    Attributes:
        task_id, name: the task and the schedule entry at fault.
        size, limit: the input's size and the limit, in bytes.
    """

    def __init__(self, message: str, *, task_id: str | None, name: str, size: int, limit: int):
        super().__init__(message)
        self.task_id = task_id
        self.name = name
        self.size = size
        self.limit = limit


# -- Blob store (claim check) ---------------------------------------------------------------


class BlobNotFoundError(TqError, KeyError):
    """No blob exists at the reference (never written, or expired by the lifecycle rule).

    Attributes:
        ref: the reference at fault.
    """

    def __init__(self, message: str, *, ref: str):
        super().__init__(message)
        self.ref = ref

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


class InvalidBlobRefError(TqError, ValueError):
    """A reference is not an ``s3://`` URI of this store's bucket.

    Attributes:
        ref: the reference at fault.
    """

    def __init__(self, message: str, *, ref: str):
        super().__init__(message)
        self.ref = ref


# -- Stores ---------------------------------------------------------------------------------


class ItemTooLargeError(TqError, ValueError):
    """An item would be larger than the store's ``item_limit``.

    Raised when no blob store is configured, or when what remains after moving the large
    fields (payload, result) to the blob store is still too large.

    Attributes:
        key: the item's key (``pk``/``sk``).
        size: the JSON's size in bytes.
        limit: the store's ``item_limit``.
    """

    def __init__(self, message: str, *, key: str, size: int, limit: int):
        super().__init__(message)
        self.key = key
        self.size = size
        self.limit = limit


class FlowConflictError(TqError, RuntimeError):
    """A flow's barrier stayed busy (``TransactionConflict`` or throttling) through every
    attempt. Nothing of the failed step was recorded; record it again (redelivery does).

    Attributes:
        flow_id: the flow.
    """

    def __init__(self, message: str, *, flow_id: str):
        super().__init__(message)
        self.flow_id = flow_id


# -- Runtimes -------------------------------------------------------------------------------


class InvalidSequenceNumberError(TqError, ValueError):
    """A checkpoint that is not a Kinesis sequence number (decimal digits, at most 129)."""


class LambdaEventError(TqError, ValueError):
    """The event is not a Kinesis or SQS event as Lambda sends it.

    Attributes:
        field: the path of the field at fault, e.g. ``Records[3].kinesis.sequenceNumber``.
    """

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class RecordNotRecordedError(TqError):
    """The outcomes of this record's sub-batch could not be recorded (a write failed); the
    record is reported so Lambda delivers it again."""


class HandedBackError(TqError):
    """The record was not started: too little of the invocation's time was left. It is
    reported so Lambda delivers it again."""


class KeyBlockedError(TqError):
    """An earlier record of the same partition key (or FIFO group) was reported; this one
    waits for it, so the key's order holds."""


class InvalidQueryError(TqError, ValueError):
    """A status query or operator action got a value it cannot use (a limit out of range, a
    cursor of another listing, a time that is not ISO-8601). The status API answers 400.

    Attributes:
        field: the parameter at fault (``limit``, ``cursor``, ``since``...).
    """

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field
