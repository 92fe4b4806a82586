"""The Lambda runtime's ordering rules per key, as pure functions: which records the next
sub-batch holds, and what a record is reported as.

A key is the Kinesis partition key or the SQS FIFO ``MessageGroupId`` (``None``: a standard
queue, which promises no order). Once a record of a key is reported, the later records of the
**same key** in the event are not run and are reported too; other keys keep going (the circuit
breaker of Powertools' ``SqsFifoPartialProcessor(skip_group_on_error=True)``). A sub-batch never
holds records of one key in an order the engine's grouping by executor could change: the
sub-batch ends there instead. A poison record never blocks anything, its key included.

Nothing here knows Powertools or AWS: records are whatever ``decode`` and ``key_of`` read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import NamedTuple, TypeVar

from tq_aws.ports import Delivery

logger = logging.getLogger(__name__)

R = TypeVar("R")


class SubBatch(NamedTuple):
    """The next sub-batch of an event."""

    deliveries: list[Delivery]
    """What the engine runs, in record order (poison records included: the engine keeps them)."""
    poison: set[int]
    """Indexes of the records that did not decode."""
    end: int
    """The index after the sub-batch: where the next one starts."""


def plan_sub_batch(
    records: Sequence[R],
    start: int,
    size: int,
    failed_keys: AbstractSet[str],
    decode: Callable[[R], Delivery],
    key_of: Callable[[R], str | None],
) -> SubBatch:
    """The next sub-batch from ``start``, at most ``size`` deliveries: its deliveries, the
    indexes of poison records in it, and the index after it. Records of a blocked key (in
    ``failed_keys``) are left out (reported later); a key whose records would be reordered by
    the engine's grouping ends the sub-batch."""
    deliveries: list[Delivery] = []
    poison: set[int] = set()
    first_group: tuple[str, str] | None = None
    # Only once a second executor group appears: executor group -> index of its first
    # record, and key -> (its group, its index).
    first_seen: dict[tuple[str, str], int] | None = None
    last: dict[str, tuple[tuple[str, str], int]] = {}
    index = start
    while index < len(records) and len(deliveries) < size:
        record = records[index]
        delivery = decode(record)
        task = delivery.task
        if task is None:
            poison.add(index)
            deliveries.append(delivery)
            index += 1
            continue
        # keys matter only once one is blocked, or a second executor group shows up
        key = key_of(record) if failed_keys or first_seen is not None else None
        if key is not None and key in failed_keys:
            index += 1
            continue
        group = (task.queue_id, task.type)
        if first_group is None:
            first_group = group
        if first_seen is None and group != first_group:
            first_seen = {first_group: start}
            for i in range(start, index):  # every record so far is of the first group
                k = None if i in poison else key_of(records[i])
                if k is not None and k not in failed_keys:
                    last[k] = (first_group, i)
            key = key_of(record)
        if first_seen is not None:
            seen = first_seen.setdefault(group, index)
            previous = last.get(key) if key is not None else None
            # The engine runs a batch group by group, in order of first appearance: a key
            # moving to a group that appeared before its previous record could run out of
            # order, so the sub-batch ends here.
            if previous is not None and previous[0] != group and seen < previous[1]:
                break
            if key is not None:
                last[key] = (group, index)
        deliveries.append(delivery)
        index += 1
    return SubBatch(deliveries, poison, index)


class Verdict(Enum):
    """What becomes of a record once its sub-batch ran (or was not started)."""

    RECORDED = "recorded"
    """A success: its sub-batch was recorded, or it is a poison record that was kept."""
    HANDED_BACK = "handed back"
    """Reported: its sub-batch was not started for lack of time (it comes again)."""
    BLOCKED = "blocked"
    """Reported: an earlier record of its key was reported."""
    NOT_RECORDED = "not recorded"
    """Reported: its sub-batch's outcomes could not be recorded."""


def verdict(
    index: int,
    key: str | None,
    *,
    cut_from: int | None,
    poison: AbstractSet[int],
    failed_keys: AbstractSet[str],
    recorded: bool,
) -> Verdict:
    """The verdict on the record at ``index`` of key ``key``: ``cut_from`` is the first record
    handed back (``None``: none), ``poison`` the indexes of the poison records kept,
    ``failed_keys`` the keys reported so far, ``recorded`` whether its sub-batch was recorded."""
    if cut_from is not None and index >= cut_from:
        return Verdict.HANDED_BACK
    if index in poison:  # kept in the poison store: never reported, never blocks
        return Verdict.RECORDED
    if key is not None and key in failed_keys:
        return Verdict.BLOCKED
    return Verdict.RECORDED if recorded else Verdict.NOT_RECORDED


def stop_key(failed_keys: set[str], key: str | None) -> None:
    """A record of ``key`` was reported: the later records of that key are reported too (a
    record without a key stops nothing)."""
    if key is not None:
        failed_keys.add(key)


__all__ = ["SubBatch", "Verdict", "plan_sub_batch", "stop_key", "verdict"]
