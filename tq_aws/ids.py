"""Task ids: UUIDv7 strings, time-sortable and unique without coordination."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """Return a new time-sortable id (UUIDv7, canonical text form)."""
    return str(uuid_utils.uuid7())
