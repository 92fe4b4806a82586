"""DynamoDB stores (pynamodb, one table): ``DynamoTaskStore``, ``DynamoProjectionStore``,
``DynamoFlowStore``, ``DynamoPoisonStore`` and ``DynamoLeaseStore``, each on the shared
``DynamoStore`` base; ``ensure_table`` creates the table, ``build_stores`` the four stores an app
is wired with (the ECS worker builds its lease store itself).

Modules: ``models`` (the pynamodb models and keys), ``calls`` (calls in worker threads),
``items`` (item values, and documents too large for an item), ``base`` (the store base and its
conditional writes), ``table`` (creating the table), one module per store.

Example:
    >>> settings = AwsSettings(region="eu-west-1")
    >>> ensure_table("tq", settings)
    >>> stores = build_stores("tq", settings, blob_store=S3BlobStore("my-bucket", clients))
    >>> app = TaskQueue(task_store=stores.tasks, projection_store=stores.projections,
    ...                 flow_store=stores.flows, ...)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.base import DEFAULT_ITEM_LIMIT, DynamoStore
from tq_aws.backends.aws.dynamodb.flow_store import DynamoFlowStore
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.backends.aws.dynamodb.models import TableModels, table_models
from tq_aws.backends.aws.dynamodb.poison_store import DynamoPoisonStore
from tq_aws.backends.aws.dynamodb.projection_store import DynamoProjectionStore
from tq_aws.backends.aws.dynamodb.table import ensure_table
from tq_aws.backends.aws.dynamodb.task_store import DynamoTaskStore
from tq_aws.errors import FlowConflictError, ItemTooLargeError
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)


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
    item_limit: int = DEFAULT_ITEM_LIMIT,
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
    "DynamoLeaseStore",
    "DynamoPoisonStore",
    "DynamoProjectionStore",
    "DynamoStore",
    "DynamoStores",
    "DynamoTaskStore",
    "FlowConflictError",
    "ItemTooLargeError",
    "TableModels",
    "build_stores",
    "ensure_table",
    "table_models",
]
