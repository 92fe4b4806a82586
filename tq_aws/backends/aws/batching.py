"""Ordered, batched sending with per-record retries, shared by the Kinesis and SQS transports
(and the SQS source's acks): ``send_in_order`` packs records into batch calls, never two of one
partition key in a call, and retries failed records with exponential backoff and full jitter
(see its docstring for the ordering rule)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tq_aws.backends.aws.clients import RETRYABLE_CALL_CODES, error_code
from tq_aws.errors import ConfigurationError, RecordsNotPublishedError

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0
"""Upper bound of one retry delay (before jitter)."""

MAX_CONCURRENT_CALLS = 8
"""Batch calls one ``send_in_order`` round makes at once."""

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Pending(Generic[T]):
    """One record waiting to be sent.

    Attributes:
        index: its place in the publish call (lower goes first).
        task_id: the task it carries (for errors).
        key: records of one key are sent one after another, never two in one call.
        entry: the request entry (transport-specific).
        size: its size as the per-call byte limit counts it.
    """

    index: int
    task_id: str
    key: str
    entry: T
    size: int
    attempts: int = 0
    not_before: float = 0.0


SendOutcome = tuple[str, bool] | None
"""Per record: ``None`` when it was accepted, else ``(error code, retryable)``."""


def _call_error_retryable(exc: BaseException) -> str | None:
    """The error code when a whole-call failure is worth retrying, else ``None``."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in RETRYABLE_CALL_CODES or (isinstance(status, int) and status >= 500):
            return code or f"HTTP {status}"
        return None
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return type(exc).__name__
    return None


def _pack(ready: Sequence[Pending[T]], max_entries: int, max_bytes: int) -> list[list[Pending[T]]]:
    calls: list[list[Pending[T]]] = []
    current: list[Pending[T]] = []
    used = 0
    for item in ready:
        if current and (len(current) >= max_entries or used + item.size > max_bytes):
            calls.append(current)
            current, used = [], 0
        current.append(item)
        used += item.size
    if current:
        calls.append(current)
    return calls


async def send_in_order(
    items: Sequence[Pending[T]],
    send: Callable[[list[Pending[T]]], Awaitable[list[SendOutcome]]],
    *,
    max_entries: int,
    max_bytes: int,
    max_attempts: int,
    base_backoff: float,
    what: str,
) -> None:
    """Send ``items`` in batch calls of at most ``max_entries`` entries and ``max_bytes``
    bytes, retrying failed entries with exponential backoff and full jitter.

    Ordering rule: a call carries at most one record per key, and a record goes out only once
    every earlier record of its key was accepted. Records of other keys keep flowing while one
    key waits for its retry. Items with distinct keys all go in the first round, so ``N``
    records of distinct keys cost ``ceil(N / max_entries)`` calls (byte limit permitting).

    Args:
        items: the records, in publish order.
        send: makes one batch call; returns one outcome per record, in order. A call that
            raises a throttling or transient error counts as a retryable failure of each of
            its records; any other error stops sending.
        max_entries, max_bytes: the per-call limits.
        max_attempts: attempts per record before giving up on it (and on the later records
            of its key, which are then not sent).
        base_backoff: seconds; the retry delay is uniform in
            ``[0, min(MAX_BACKOFF_SECONDS, base_backoff * 2 ** (attempt - 1))]``.
        what: names the target in error messages.

    Raises:
        RecordsNotPublishedError: listing every task not published, when a record ran out of
            attempts, was refused for good, or a call failed with a non-retryable error (the
            cause is chained).
    """
    chains: dict[str, deque[Pending[T]]] = {}
    for item in sorted(items, key=lambda i: i.index):
        chains.setdefault(item.key, deque()).append(item)
    failed: dict[str, str] = {}
    order: dict[str, int] = {i.task_id: i.index for i in items}
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def gated(call: list[Pending[T]]) -> list[SendOutcome]:
        async with gate:
            return await send(call)

    def give_up(key: str, reason: str) -> None:
        chain = chains.pop(key)
        first = chain.popleft()
        failed[first.task_id] = reason
        for later in chain:
            failed[later.task_id] = f"not sent: task {first.task_id} of its key was not published"

    while chains:
        now = loop.time()
        ready = [c[0] for c in chains.values() if c[0].not_before <= now]
        if not ready:
            wake = min(c[0].not_before for c in chains.values())
            await asyncio.sleep(max(0.0, wake - now))
            continue
        ready.sort(key=lambda i: i.index)
        calls = _pack(ready, max_entries, max_bytes)
        results = await asyncio.gather(*(gated(c) for c in calls), return_exceptions=True)
        fatal: BaseException | None = None
        for call, result in zip(calls, results, strict=True):
            outcomes: list[SendOutcome]
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                code = _call_error_retryable(result)
                if code is None:
                    fatal = fatal or result
                    continue
                outcomes = [(code, True)] * len(call)
            else:
                outcomes = result
            for item, outcome in zip(call, outcomes, strict=True):
                chain = chains[item.key]
                if outcome is None:
                    chain.popleft()
                    if not chain:
                        del chains[item.key]
                    continue
                code, retryable = outcome
                item.attempts += 1
                if not retryable or item.attempts >= max_attempts:
                    give_up(item.key, code)
                    continue
                ceiling = min(MAX_BACKOFF_SECONDS, base_backoff * 2 ** (item.attempts - 1))
                item.not_before = loop.time() + random.uniform(0.0, ceiling)
        if fatal is not None:
            for key in list(chains):
                for item in chains.pop(key):
                    failed[item.task_id] = "not sent: the call failed"
            ids = sorted(failed, key=lambda t: order[t])
            raise RecordsNotPublishedError(
                f"{len(ids)} task(s) not published to {what}: {fatal}",
                task_ids=ids,
                reasons=failed,
            ) from fatal
    if failed:
        ids = sorted(failed, key=lambda t: order[t])
        shown = ", ".join(f"{t} ({failed[t]})" for t in ids[:10])
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        raise RecordsNotPublishedError(
            f"{len(ids)} task(s) not published to {what} after {max_attempts} attempt(s): "
            f"{shown}{more}; publishing them again is safe (delivery is at-least-once)",
            task_ids=ids,
            reasons=failed,
        )


def check_batching_options(*, max_attempts: int, base_backoff: float) -> None:
    """Raise ``ConfigurationError`` for retry options out of range."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigurationError(f"max_attempts={max_attempts!r}; give a whole number >= 1")
    if base_backoff < 0:
        raise ConfigurationError(f"base_backoff={base_backoff!r}; give seconds >= 0")


__all__ = [
    "MAX_BACKOFF_SECONDS",
    "MAX_CONCURRENT_CALLS",
    "Pending",
    "SendOutcome",
    "check_batching_options",
    "send_in_order",
]
