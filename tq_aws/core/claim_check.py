"""The claim-check marker: a value too large for a record or an item is kept in the blob store,
and the small marker ``{"$tq_blob": ref, "size": n}`` stands in its place until it is read
back."""

from __future__ import annotations

from typing import Any

MARKER = "$tq_blob"
DEFAULT_RESULT_LIMIT = 256 * 1024
"""Results larger than this many bytes (JSON) go to the blob store."""


def is_blob_ref(value: Any) -> bool:
    """Whether ``value`` is a marker standing in for a blob."""
    return isinstance(value, dict) and MARKER in value and len(value) == 2


def blob_ref(ref: str, size: int) -> dict[str, Any]:
    """The marker for the blob at ``ref`` holding ``size`` bytes."""
    return {MARKER: ref, "size": size}
