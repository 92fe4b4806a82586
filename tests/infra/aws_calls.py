"""Which AWS calls a piece of tq-aws makes, recorded as it makes them, so the tests can hold
each role of the templates to exactly what the code needs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

# An API call and the IAM action that authorizes it, where the two names differ.
IAM_ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "s3:HeadObject": "s3:GetObject",
}
# A transaction is authorized item by item (PutItem, UpdateItem, ConditionCheckItem...).
AUTHORIZED_PER_ITEM = {"dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"}


@contextlib.contextmanager
def api_calls() -> Iterator[set[str]]:
    """The ``service:Operation`` of every AWS call made inside the block, by boto3, aioboto3
    and pynamodb alike (all three go through these two methods)."""
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    calls: set[str] = set()
    sync_call, async_call = BaseClient._make_api_call, AioBaseClient._make_api_call

    def record(client: Any, operation: str) -> None:
        calls.add(f"{client.meta.service_model.signing_name}:{operation}")

    def sync_recording(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return sync_call(self, operation, params)

    async def async_recording(self: Any, operation: str, params: Any) -> Any:
        record(self, operation)
        return await async_call(self, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", sync_recording)
        patch.setattr(AioBaseClient, "_make_api_call", async_recording)
        yield calls


def needed_actions(calls: set[str]) -> set[str]:
    """The IAM actions that authorize ``calls``."""
    return {IAM_ACTION_OF.get(c, c) for c in calls} - AUTHORIZED_PER_ITEM
