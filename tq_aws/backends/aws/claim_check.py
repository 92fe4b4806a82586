"""Claim check for records: a task too large for one Kinesis record or SQS message keeps its
payload in the blob store (key ``payloads/<task id>``) and travels with the marker of
``tq_aws.core.claim_check`` in its place; the engine reads the payload back at delivery."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import pydantic_core

from tq_aws.core.claim_check import blob_ref, is_blob_ref
from tq_aws.core.task import Task
from tq_aws.errors import RecordTooLargeError
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def fit_record(
    task: Task,
    encode: Callable[[Task], tuple[T, int]],
    *,
    limit: int,
    blob_store: BlobStore | None,
    what: str,
) -> T:
    """Encode ``task`` for the wire; when it is over ``limit`` bytes, keep its payload in the
    blob store under ``payloads/<task id>`` and send the task with the marker
    ``{"$tq_blob": ref, "size": n}`` in its place (the engine reads it back at delivery).

    Args:
        task: the task to encode.
        encode: returns the wire value and its size as the transport counts it.
        limit: the largest size the transport takes.
        blob_store: where large payloads go; ``None``: an oversized task raises.
        what: how the transport calls one unit ("Kinesis record", "SQS message"), for errors.

    Raises:
        RecordTooLargeError: over the limit without a blob store, or still over it with the
            payload in the blob store.
    """
    value, size = encode(task)
    if size <= limit:
        return value
    if blob_store is None:
        raise RecordTooLargeError(
            f"task {task.id!r} is {size} bytes as a {what}, over the limit of {limit} bytes: "
            "give the transport a blob_store (claim check) to keep large payloads, or make "
            "the payload smaller",
            task_id=task.id,
            size=size,
            limit=limit,
        )
    if task.payload is None or is_blob_ref(task.payload):
        raise RecordTooLargeError(
            f"task {task.id!r} is {size} bytes as a {what}, over the limit of {limit} bytes, "
            "and its payload is not what makes it large: shrink its metadata or "
            "execution_stats",
            task_id=task.id,
            size=size,
            limit=limit,
        )
    data = pydantic_core.to_json(task.payload)
    ref = await blob_store.put(f"payloads/{task.id or uuid.uuid4().hex}", data)
    slim = task.model_copy(update={"payload": blob_ref(ref, len(data))})
    value, slim_size = encode(slim)
    if slim_size > limit:
        raise RecordTooLargeError(
            f"task {task.id!r} is {slim_size} bytes as a {what} even with its payload in the "
            f"blob store, over the limit of {limit} bytes: shrink its metadata or "
            "execution_stats",
            task_id=task.id,
            size=slim_size,
            limit=limit,
        )
    return value


__all__ = ["fit_record"]
