"""Claim check for results: values over the limit live in the BlobStore, and a marker
(``tq_aws.core.claim_check``) stands in their place until they are read back."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core

from tq_aws.core.claim_check import DEFAULT_RESULT_LIMIT, MARKER, blob_ref, is_blob_ref
from tq_aws.ports import BlobStore

__all__ = ["DEFAULT_RESULT_LIMIT", "is_blob_ref", "offload", "resolve"]


async def offload(store: BlobStore, key: str, value: Any, size: int, limit: int) -> Any:
    """Return ``value`` itself when it is within ``limit`` bytes, else a marker for its blob."""
    if value is None or size <= limit:
        return value
    ref = await store.put(key, pydantic_core.to_json(value))
    return blob_ref(ref, size)


async def resolve(store: BlobStore, value: Any) -> Any:
    """Read a value back: follow a blob marker, pass anything else through."""
    if is_blob_ref(value):
        return json.loads(await store.get(value[MARKER]))
    return value
