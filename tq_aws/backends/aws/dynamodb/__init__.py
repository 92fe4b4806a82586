"""DynamoDB stores (pynamodb, one table): ``DynamoTaskStore``, ``DynamoProjectionStore``,
``DynamoFlowStore``, ``DynamoPoisonStore``; ``ensure_table`` creates the table,
``build_stores`` the four stores.

Example:
    >>> settings = AwsSettings(region="eu-west-1")
    >>> ensure_table("tq", settings)
    >>> stores = build_stores("tq", settings, blob_store=S3BlobStore("my-bucket", clients))
    >>> app = TaskQueue(task_store=stores.tasks, projection_store=stores.projections,
    ...                 flow_store=stores.flows, ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.flow_store import (
    DynamoFlowStore,
)
from tq_aws.backends.aws.dynamodb.models import (
    TableModels,
    table_models,
)
from tq_aws.backends.aws.dynamodb.poison_store import DynamoPoisonStore
from tq_aws.backends.aws.dynamodb.projection_store import DynamoProjectionStore
from tq_aws.backends.aws.dynamodb.table import ensure_table
from tq_aws.backends.aws.dynamodb.task_store import DynamoTaskStore
from tq_aws.errors import FlowConflictError, ItemTooLargeError
from tq_aws.ports import BlobStore


@dataclass(frozen=True, slots=True)
class DynamoStores:
    """The four DynamoDB stores of one table."""

    tasks: DynamoTaskStore
    projections: DynamoProjectionStore
    flows: DynamoFlowStore
    poisons: DynamoPoisonStore


def build_stores(
    table: str,
    settings: AwsSettings,
    *,
    blob_store: BlobStore | None = None,
    item_limit: int = 350_000,
    ttl_days: float | None = 30,
    poison_ttl_days: float | None = 14,
    now: Callable[[], datetime] | None = None,
) -> DynamoStores:
    """The task, projection, flow and poison stores on ``table`` (arguments as for each store;
    ``poison_ttl_days`` is the poison store's ``ttl_days``, ``now`` its clock)."""
    return DynamoStores(
        tasks=DynamoTaskStore(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        ),
        projections=DynamoProjectionStore(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        ),
        flows=DynamoFlowStore(
            table, settings, blob_store=blob_store, item_limit=item_limit, ttl_days=ttl_days
        ),
        poisons=DynamoPoisonStore(
            table,
            settings,
            blob_store=blob_store,
            item_limit=item_limit,
            ttl_days=poison_ttl_days,
            now=now,
        ),
    )


__all__ = [
    "DynamoFlowStore",
    "DynamoPoisonStore",
    "DynamoProjectionStore",
    "DynamoStores",
    "DynamoTaskStore",
    "FlowConflictError",
    "ItemTooLargeError",
    "TableModels",
    "build_stores",
    "ensure_table",
    "table_models",
]
