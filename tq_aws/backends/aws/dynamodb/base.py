"""What every DynamoDB store shares: ``DynamoStore`` holds the table's models, the blob store and
the item limit, counts requests and writes, and makes the conditional writes, in which a
condition that does not hold is ``ConditionFailed`` (normal control flow), never an error."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.calls import in_thread, query_all
from tq_aws.backends.aws.dynamodb.items import pack, unpack, validate_limits
from tq_aws.backends.aws.dynamodb.models import ConditionFailed, TableModels, table_models
from tq_aws.core import limits
from tq_aws.ports import BlobStore

logger = logging.getLogger(__name__)

DEFAULT_ITEM_LIMIT = limits.DEFAULT_ITEM_LIMIT
"""The largest JSON document a store keeps in an item, in bytes, unless told otherwise (the
limit lives in ``tq_aws.core.limits``)."""


class DynamoStore:
    """The base of the DynamoDB stores (one table, see ``models``).

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where values over ``item_limit`` go (``S3BlobStore``); without one, such a
            value raises ``ItemTooLargeError``.
        item_limit: the largest JSON kept in an item, in bytes (at most 400 000).
        ttl_days: items expire this many days after their last write; ``None`` keeps them.

    Attributes:
        writes: items written (conditions that held).
        requests: DynamoDB requests made, by operation.
    """

    def __init__(
        self,
        table: str,
        settings: AwsSettings,
        *,
        blob_store: BlobStore | None = None,
        item_limit: int = DEFAULT_ITEM_LIMIT,
        ttl_days: float | None = 30,
    ):
        validate_limits(item_limit, ttl_days)
        self.table = table
        self.settings = settings
        self.models: TableModels = table_models(table, settings)
        self.blob_store = blob_store
        self.item_limit = item_limit
        self.ttl_days = ttl_days
        self.writes = 0
        self.requests: Counter[str] = Counter()

    # -- conditional writes --------------------------------------------------------------------

    async def _put_item(self, item: Any, condition: Any) -> bool:
        """One conditional ``PutItem`` of the pynamodb ``item``; whether the condition held."""
        kwargs = item.get_save_kwargs_from_instance(condition=condition)
        self.requests["PutItem"] += 1
        try:
            await in_thread(self.models.execute, "PutItem", kwargs)
        except ConditionFailed:
            return False
        self.writes += 1
        return True

    async def _update_item(
        self,
        pk: str,
        sk: str,
        actions: list[Any],
        condition: Any,
        *,
        return_values: str | None = None,
        old_on_failure: bool = False,
    ) -> dict[str, Any]:
        """One conditional ``UpdateItem``: the item's attributes as ``return_values`` asks
        (``ALL_NEW``, ``NONE``; ``None``: DynamoDB's default).

        Raises:
            ConditionFailed: the condition did not hold; it carries the old item when
                ``old_on_failure`` and the item existed.
        """
        kwargs = self.models.connection.get_operation_kwargs(
            pk,
            sk,
            actions=actions,
            condition=condition,
            return_values=return_values,
            return_values_on_condition_failure="ALL_OLD" if old_on_failure else None,
        )
        self.requests["UpdateItem"] += 1
        data = await in_thread(self.models.execute, "UpdateItem", kwargs)
        self.writes += 1
        return dict(data.get("Attributes", {}))

    # -- reads ---------------------------------------------------------------------------------

    async def _get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The raw item at ``pk``/``sk`` (a strongly consistent ``GetItem``), ``None`` if absent."""
        self.requests["GetItem"] += 1
        data = await in_thread(
            lambda: self.models.connection.get_item(pk, sk, consistent_read=True)
        )
        raw = data.get("Item")
        return None if raw is None else dict(raw)

    async def _query(self, pk: str, *, sk_prefix: str | None) -> list[dict[str, Any]]:
        """Every raw item of ``pk`` (with ``sk_prefix``), page by page."""
        return await query_all(self.models, pk, sk_prefix=sk_prefix, requests=self.requests)

    # -- documents -----------------------------------------------------------------------------

    async def _pack(
        self, doc: str, fields: tuple[str, ...], *, blob_key: str, item_key: str
    ) -> tuple[str, set[str] | None]:
        """``items.pack`` with this store's blob store and limit: the JSON to keep in the item,
        and the item's ``blobs`` (the fields moved, ``None`` if none)."""
        doc, moved = await pack(
            doc,
            fields,
            blob_store=self.blob_store,
            blob_key=blob_key,
            limit=self.item_limit,
            item_key=item_key,
        )
        return doc, set(moved) or None

    async def _unpack(self, item: Any) -> Any:
        """The JSON object of a pynamodb ``item`` (``doc``), its moved fields read back."""
        return await unpack(item.doc, item.blobs, self.blob_store)
