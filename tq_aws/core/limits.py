"""Every limit a task must respect, in one place, for every backend alike.

``add_tasks`` checks a task against these before anything of its call is added, so the embedded
default refuses exactly what AWS would refuse later; the memory and AWS backends read their
service limits from here too. The table in docs/semantics.md ("What add_tasks refuses") lists
them with their reasons.

The checks here are pure predicates returning what is wrong (``None`` when nothing is): the
callers turn the answer into their own typed error.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

# -- ids and keys --------------------------------------------------------------------------

MAX_ID_CHARS = 256
"""A task id is 1 to 256 characters: it is the default Kinesis partition key."""

MAX_ID_BYTES = 512
"""... and at most 512 bytes of UTF-8, so the DynamoDB keys built on it (``TASK#<id>``, at most
1024 bytes in a sort key) and blob keys fit with their prefixes."""

MAX_ENTITY_FIELD_CHARS = MAX_ID_CHARS
MAX_ENTITY_FIELD_BYTES = MAX_ID_BYTES
"""An entity's ``id`` and ``type`` each (both are in the projection key
``ENTITY#<type>#<id>``, at most 2048 bytes)."""

MAX_NAME_CHARS = 256
"""A task's ``type`` and ``queue_id`` (and an executor's): 1 to 256 characters."""

KINESIS_MAX_PARTITION_KEY_CHARS = 256
"""Kinesis partition keys are 1 to 256 characters."""

MAX_PARTITION_KEY_CHARS = KINESIS_MAX_PARTITION_KEY_CHARS
"""A task's ``partition_key`` (every transport takes what Kinesis takes)."""

SQS_MAX_FIFO_ID_CHARS = 128
"""SQS FIFO ``MessageGroupId`` and ``MessageDeduplicationId``: 1 to 128 characters of
letters, digits and ASCII punctuation (longer or other keys are sent as their digest)."""

# -- schedules -----------------------------------------------------------------------------

SCHEDULE_MAX_NAME_CHARS = 64
"""EventBridge Scheduler names: 1 to 64 of ``[0-9A-Za-z-_.]``."""

SCHEDULE_MAX_INPUT_BYTES = 256 * 1024
"""EventBridge Scheduler's limit on a schedule's target input, 256 KB."""

SQS_MAX_DELAY_SECONDS = 900
"""SQS ``DelaySeconds`` upper bound (15 minutes)."""

# -- record, message and item sizes --------------------------------------------------------

MAX_RECORD_BYTES = 1_048_576
"""A Kinesis record (data plus partition key) and an SQS message: 1 MiB. Larger tasks keep
their payload in the blob store (claim check)."""

KINESIS_MAX_RECORDS_PER_CALL = 500
KINESIS_MAX_BYTES_PER_CALL = 5 * 1024 * 1024
"""``PutRecords`` limits: 500 records and 5 MiB of data plus partition keys per call."""

KINESIS_MAX_GET_RECORDS = 10_000
"""``GetRecords`` returns at most this many records per call."""

SQS_MAX_BATCH_ENTRIES = 10
"""``SendMessageBatch``, ``DeleteMessageBatch``, ``ChangeMessageVisibilityBatch`` and
``ReceiveMessage`` handle at most 10 messages per call."""

DYNAMODB_MAX_ITEM_BYTES = 400_000
"""DynamoDB's item limit (400 KB, attribute names and values together)."""

DEFAULT_ITEM_LIMIT = 350_000
"""The largest JSON document a DynamoDB store keeps in an item unless told otherwise; larger
payloads and results go to the blob store."""

MAX_BYTES_BESIDE_PAYLOAD = 64 * 1024
"""A task's JSON apart from its ``payload`` (metadata, execution_stats, result, names): the
payload can move to the blob store, the rest cannot, and it must stay well inside a schedule's
input (256 KB) and an item, with room for what the framework adds at retries."""

# -- times ---------------------------------------------------------------------------------

MAX_SCHEDULE_AHEAD = timedelta(days=3653)
"""``execute_at`` is at most ten years after now: the stores and schedules add days to it
(item expiry, retries), which far-future sentinels such as ``datetime.max`` overflow."""

# -- numbers -------------------------------------------------------------------------------

MAX_INT_DIGITS = 4300
"""Integers in task data have at most 4,300 decimal digits: JSON readers (Python's
``int`` conversion limit) refuse longer ones, so the record could not be read back."""

MAX_RETRIES = 10_000
"""``retries`` of a task or an executor (with the 300 s backoff cap: about a month of
attempts)."""

_BIG_INT: int = 10**MAX_INT_DIGITS
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_PRINTABLE_ASCII = re.compile("[\x20-\x7e]+")


def text_problem(value: str, *, max_chars: int, max_bytes: int | None = None) -> str | None:
    """What makes ``value`` unfit as an id or key (length, UTF-8 size, control characters,
    lone surrogates), or ``None``."""
    size = len(value)
    if (
        size <= max_chars
        and (max_bytes is None or size <= max_bytes)
        and _PRINTABLE_ASCII.fullmatch(value)
    ):
        return None  # the common case in one call: 1+ printable ASCII characters
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"has {len(value)} characters, over the limit of {max_chars}"
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return "holds a lone surrogate, which is not text UTF-8 can carry"
        if max_bytes is not None and size > max_bytes:
            return f"is {size} bytes of UTF-8, over the limit of {max_bytes}"
    if _CONTROL.search(value):
        return "holds a control character (a newline, a tab, \\x00...)"
    return None


def id_problem(value: str) -> str | None:
    """What makes ``value`` unfit as a task id, or ``None``."""
    return text_problem(value, max_chars=MAX_ID_CHARS, max_bytes=MAX_ID_BYTES)


def partition_key_problem(value: str) -> str | None:
    """What makes ``value`` unfit as a partition key, or ``None``."""
    if not value:
        return "is empty"
    if len(value) > MAX_PARTITION_KEY_CHARS:
        return f"has {len(value)} characters, over the limit of {MAX_PARTITION_KEY_CHARS}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate, which is not text UTF-8 can carry"
    return None


def seconds_problem(value: object, *, positive: bool = False) -> str | None:
    """What makes ``value`` unfit as a number of seconds (not a number, NaN, infinite,
    negative, or zero when ``positive``), or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is a {type(value).__name__}, not a number of seconds"
    if isinstance(value, float) and not math.isfinite(value):
        return f"is {value}, not a finite number of seconds"
    if value < 0 or (positive and value == 0):
        return f"is {value}; give seconds {'> 0' if positive else '>= 0'}"
    return None


def int_too_long(value: int) -> bool:
    """Whether ``value`` has more than ``MAX_INT_DIGITS`` decimal digits."""
    return value >= _BIG_INT or value <= -_BIG_INT


__all__ = [
    "DEFAULT_ITEM_LIMIT",
    "DYNAMODB_MAX_ITEM_BYTES",
    "KINESIS_MAX_BYTES_PER_CALL",
    "KINESIS_MAX_GET_RECORDS",
    "KINESIS_MAX_PARTITION_KEY_CHARS",
    "KINESIS_MAX_RECORDS_PER_CALL",
    "MAX_BYTES_BESIDE_PAYLOAD",
    "MAX_ENTITY_FIELD_BYTES",
    "MAX_ENTITY_FIELD_CHARS",
    "MAX_ID_BYTES",
    "MAX_ID_CHARS",
    "MAX_INT_DIGITS",
    "MAX_NAME_CHARS",
    "MAX_PARTITION_KEY_CHARS",
    "MAX_RECORD_BYTES",
    "MAX_RETRIES",
    "MAX_SCHEDULE_AHEAD",
    "SCHEDULE_MAX_INPUT_BYTES",
    "SCHEDULE_MAX_NAME_CHARS",
    "SQS_MAX_BATCH_ENTRIES",
    "SQS_MAX_DELAY_SECONDS",
    "SQS_MAX_FIFO_ID_CHARS",
    "id_problem",
    "int_too_long",
    "partition_key_problem",
    "seconds_problem",
    "text_problem",
]
