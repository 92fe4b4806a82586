"""ProjectionStore on DynamoDB: one item per (entity, task or flow), written only forward."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tq_aws.backends.aws.dynamodb.base import DynamoStore
from tq_aws.backends.aws.dynamodb.calls import gather_all, in_key_order
from tq_aws.backends.aws.dynamodb.items import expiry
from tq_aws.backends.aws.dynamodb.models import entity_pk, projection_sk, recent_keys
from tq_aws.backends.aws.dynamodb.recent import recent_page
from tq_aws.core.projections import TERMINAL_RANK, ProjectionRow
from tq_aws.core.recent import RecentFilter, RecentPage, check_limit, is_recent, time_key
from tq_aws.core.task import Entity

logger = logging.getLogger(__name__)

LARGE_FIELDS = ("result", "payload")
ROW_ATTRIBUTES = {"kind", "generation"}
"""Row fields kept as item attributes only, not in the row's JSON ``doc``."""


class DynamoProjectionStore(DynamoStore):
    """Entity status rows in DynamoDB (pk ``ENTITY#<type>#<id>``, sk ``TASK#<task or flow
    id>``), with the semantics of ``MemoryProjectionStore``.

    Each row is one conditional ``PutItem`` (``BatchWriteItem`` cannot carry conditions): it
    lands if the row is absent, of a lower rank, or of the same non-terminal rank and an older
    version, or of an earlier generation (``core.projections.supersedes``). The rows of one
    call are written concurrently; rows of the same key in one call, in order.

    Failed task rows and flow rows also carry the keys of the sparse ``recent`` index
    (``models.recent_keys``): ``recent`` lists them newest first across entities.

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

    calls: int = 0
    """``upsert`` calls (one per stage per batch)."""

    async def upsert(self, rows: Sequence[ProjectionRow]) -> None:
        """Write each row that supersedes the stored one."""
        self.calls += 1
        items = await gather_all(self._encode(row) for row in rows)
        keys = [f"{item.pk}\n{item.sk}" for item in items]
        await in_key_order(keys, lambda i: self._put_row(items[i], rows[i]))

    async def for_entity(self, entity: Entity) -> list[ProjectionRow]:
        """The entity's rows, oldest first (``created_at``, then task id)."""
        pk = entity_pk(entity.type, entity.id)
        raws = await self._query(pk, sk_prefix="TASK#")
        rows = await gather_all(self._decode(raw) for raw in raws)
        # ``<type>#<id>`` keys of two entities can coincide when a '#' is in a type or id.
        mine = [r for r in rows if (r.entity_type, r.entity_id) == (entity.type, entity.id)]
        return sorted(mine, key=lambda r: (r.created_at, r.task_id))

    async def recent(
        self, where: RecentFilter, *, limit: int = 50, cursor: str | None = None
    ) -> RecentPage:
        """Failed task rows and flow rows that ``where`` accepts, newest first, from the
        ``recent`` index (``Query`` on each of its shards, merged; never a ``Scan``)."""
        check_limit(limit)
        raws, next_cursor = await recent_page(
            self.models, where, limit=limit, cursor=cursor, requests=self.requests
        )
        return RecentPage(await gather_all(self._decode(raw) for raw in raws), next_cursor)

    async def _put_row(self, item: Any, row: ProjectionRow) -> bool:
        model = self.models.projection
        same = model.rank < row.rank
        if row.rank < TERMINAL_RANK:  # a terminal row is never replaced by its own rank
            same = same | ((model.rank == row.rank) & (model.version < row.version))
        # a later generation (an operator's retry) replaces any row of an earlier one; an item
        # without ``generation`` is of generation 0
        if row.generation == 0:
            condition = model.pk.does_not_exist() | (
                (model.generation.does_not_exist() | (model.generation == 0)) & same
            )
        else:
            condition = (
                model.pk.does_not_exist()
                | model.generation.does_not_exist()
                | (model.generation < row.generation)
                | ((model.generation == row.generation) & same)
            )
        return await self._put_item(item, condition)

    async def _encode(self, row: ProjectionRow) -> Any:
        pk = entity_pk(row.entity_type, row.entity_id)
        sk = projection_sk(row.task_id)
        doc, blobs = await self._pack(
            row.model_dump_json(exclude=ROW_ATTRIBUTES),
            LARGE_FIELDS,
            blob_key=f"projections/{row.entity_type}/{row.entity_id}/{row.task_id}",
            item_key=f"{pk} {sk}",
        )
        recent_pk, recent_sk = (
            recent_keys(pk, sk, time_key(row.updated_at)) if is_recent(row) else (None, None)
        )
        return self.models.projection(
            pk,
            sk,
            status=row.status,
            rank=row.rank,
            version=row.version,
            kind=row.kind,
            generation=row.generation,
            task_type=row.task_type,
            recent_pk=recent_pk,
            recent_sk=recent_sk,
            doc=doc,
            blobs=blobs,
            ttl=expiry(self.ttl_days, row.updated_at),
        )

    async def _decode(self, raw: dict[str, Any]) -> ProjectionRow:
        item = self.models.projection.from_raw_data(raw)
        data = await self._unpack(item)
        data["kind"] = item.kind or "task"  # rows written before ``kind`` are task rows
        data["generation"] = int(item.generation or 0)
        return ProjectionRow.model_validate(data)
