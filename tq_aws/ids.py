"""Task and flow ids: UUIDv7 strings, time-sortable and unique without coordination."""

from __future__ import annotations

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
    try:
        parent_bytes = uuid.UUID(parent).bytes
        if parent_bytes[6] >> 4 == 7:
            digest[:6] = parent_bytes[:6]
    except ValueError:
        pass
    digest[6] = (digest[6] & 0x0F) | 0x70  # version 7
    if order is not None:
        order = min(max(order, 0), 0xFFF)
        digest[6] = 0x70 | (order >> 8)
        digest[7] = order & 0xFF
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))
