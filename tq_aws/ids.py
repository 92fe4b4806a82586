"""Task and flow ids: UUIDv7 strings, time-sortable and unique without coordination."""

from __future__ import annotations

import functools
import hashlib
import uuid

import uuid_utils


def new_id() -> str:
    """Return a new time-sortable id (UUIDv7, canonical text form)."""
    return str(uuid_utils.uuid7())


def derived_id(parent: str, label: str, order: int | None = None) -> str:
    """A deterministic id for the thing called ``label`` that ``parent`` makes.

    The same ``(parent, label)`` always gives the same id, so a redelivered attempt re-creates
    the same flow, steps and join instead of new ones. When ``parent`` is a UUIDv7 the result
    keeps its 48-bit timestamp, so derived ids sort next to their parent; ``order`` (0..4095)
    fills the 12 bits after it, so the things one parent makes sort in the order it made them.
    """
    digest = bytearray(hashlib.sha256(f"{parent}\x00{label}".encode()).digest()[:16])
    prefix = _timestamp_of(parent)
    if prefix is not None:
        digest[:6] = prefix
    digest[6] = (digest[6] & 0x0F) | 0x70  # version 7
    if order is not None:
        order = min(max(order, 0), 0xFFF)
        digest[6] = 0x70 | (order >> 8)
        digest[7] = order & 0xFF
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()  # str(uuid.UUID(bytes=...)), without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=1024)
def _timestamp_of(parent: str) -> bytes | None:
    """The 48-bit timestamp of a UUIDv7 ``parent``, or ``None`` (a flow derives thousands of
    step ids from one parent: it is parsed once)."""
    try:
        parent_bytes = uuid.UUID(parent).bytes
    except ValueError:
        return None
    return parent_bytes[:6] if parent_bytes[6] >> 4 == 7 else None
