"""ProjectionStore on DynamoDB: one item per (entity, task or flow), written only forward."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb.models import (
    ConditionFailed,
    entity_pk,
    expiry,
    gather_all,
    in_key_order,
    in_thread,
    pack,
    projection_sk,
    query_all,
    table_models,
    unpack,
    validate_limits,
)
from tq_aws.core.projections import TERMINAL_RANK, ProjectionRow
from tq_aws.core.task import Entity
from tq_aws.ports import BlobStore

LARGE_FIELDS = ("result", "payload")


class DynamoProjectionStore:
    """Entity status rows in DynamoDB (pk ``ENTITY#<type>#<id>``, sk ``TASK#<task or flow
    id>``), with the semantics of ``MemoryProjectionStore``.

    Each row is one conditional ``PutItem`` (``BatchWriteItem`` cannot carry conditions): it
    lands if the row is absent, of a lower rank, or of the same non-terminal rank and an older
    version (``core.projections.supersedes``). The rows of one call are written concurrently;
    rows of the same key in one call, in order.

    Args:
        table: the table (create it with ``ensure_table``).
        settings: region and endpoint.
        blob_store: where a row's ``result``/``payload`` go when its JSON is over
            ``item_limit``; without one, such a row raises ``ItemTooLargeError``.
        item_limit: the largest row JSON kept in the item, in bytes.
        ttl_days: rows expire this many days after their last write; ``None`` keeps them.

    Example:
        >>> store = DynamoProjectionStore("tq", AwsSettings())
        >>> await store.upsert(rows)
        >>> [r.status for r in await store.for_entity(Entity(id="u-1", type="user"))]
        ['executed']
    """

    def __init__(
        self,
        table: str,
        settings: AwsSettings,
        *,
        blob_store: BlobStore | None = None,
        item_limit: int = 350_000,
        ttl_days: float | None = 30,
    ):
        validate_limits(item_limit, ttl_days)
        self.models = table_models(table, settings)
        self.blob_store = blob_store
        self.item_limit = item_limit
        self.ttl_days = ttl_days
        self.calls = 0
        """``upsert`` calls (one per stage per batch)."""
        self.writes = 0
        """Rows written (conditions that held)."""
        self.requests: Counter[str] = Counter()
        """DynamoDB requests made, by operation."""

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None:
        """Write each row that supersedes the stored one."""
        self.calls += 1
        items = await gather_all(self._encode(row) for row in rows)
        keys = [f"{item.pk}\n{item.sk}" for item in items]
        await in_key_order(keys, lambda i: self._put(items[i], rows[i]))

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]:
        """The entity's rows, oldest first (``created_at``, then task id)."""
        pk = entity_pk(entity.type, entity.id)
        raws = await query_all(self.models, pk, sk_prefix="TASK#", requests=self.requests)
        rows = await gather_all(self._decode(raw) for raw in raws)
        # ``<type>#<id>`` keys of two entities can coincide when a '#' is in a type or id.
        mine = [r for r in rows if (r.entity_type, r.entity_id) == (entity.type, entity.id)]
        return sorted(mine, key=lambda r: (r.created_at, r.task_id))

    async def _put(self, item: Any, row: ProjectionRow) -> bool:
        model = self.models.projection
        condition = model.pk.does_not_exist() | (model.rank < row.rank)
        if row.rank < TERMINAL_RANK:  # a terminal row is never replaced by its own rank
            condition = condition | ((model.rank == row.rank) & (model.version < row.version))
        kwargs = item.get_save_kwargs_from_instance(condition=condition)
        self.requests["PutItem"] += 1
        try:
            await in_thread(self.models.execute, "PutItem", kwargs)
        except ConditionFailed:
            return False
        self.writes += 1
        return True

    async def _encode(self, row: ProjectionRow) -> Any:
        pk = entity_pk(row.entity_type, row.entity_id)
        sk = projection_sk(row.task_id)
        doc, moved = await pack(
            row.model_dump_json(),
            LARGE_FIELDS,
            blob_store=self.blob_store,
            blob_key=f"projections/{row.entity_type}/{row.entity_id}/{row.task_id}",
            limit=self.item_limit,
            item_key=f"{pk} {sk}",
        )
        return self.models.projection(
            pk,
            sk,
            status=row.status,
            rank=row.rank,
            version=row.version,
            doc=doc,
            blobs=set(moved) or None,
            ttl=expiry(self.ttl_days, row.updated_at),
        )

    async def _decode(self, raw: dict[str, Any]) -> ProjectionRow:
        item = self.models.projection.from_raw_data(raw)
        return ProjectionRow.model_validate(await unpack(item.doc, item.blobs, self.blob_store))
