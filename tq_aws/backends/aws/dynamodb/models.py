"""pynamodb models of the one-table layout, and what the four DynamoDB stores share.

pynamodb keeps a model's table, region and endpoint on the class (``Meta``), so the models are
built per table by ``table_models``; the five models of one table share one connection (one
botocore client). Every call goes through ``TableModels.execute`` (or a pynamodb
``TransactWrite``) in a worker thread, so the stores' async methods never block the event loop.

Keys (docs/aws.md, "DynamoDB layout"):

| item | pk | sk |
|---|---|---|
| task | ``TASK#<id>`` | ``TASK`` |
| projection row | ``ENTITY#<type>#<id>`` | ``TASK#<task or flow id>`` |
| flow barrier | ``FLOW#<id>`` | ``FLOW`` |
| step result | ``FLOW#<id>`` | ``STEP#<index, 8 digits>`` |
| poison record | ``POISON#<yyyy-mm-dd of seen_at, UTC>`` | ``<poison key, 32 hex>`` |
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import botocore.session
import pydantic_core
from botocore.exceptions import ClientError
from pynamodb.attributes import (
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.models import Model

from tq_aws.backends.aws.clients import AwsSettings, error_code
from tq_aws.core.task import to_utc
from tq_aws.errors import ConfigurationError, ItemTooLargeError
from tq_aws.ports import BlobStore

T = TypeVar("T")

TASK_SK = "TASK"
FLOW_SK = "FLOW"
STEP_PREFIX = "STEP#"
POISON_PREFIX = "POISON#"
TTL_ATTRIBUTE = "ttl"
DYNAMODB_ITEM_MAX = 400_000
"""The largest ``item_limit`` accepted: DynamoDB's item limit is 400 KB, attribute names and
the attributes beside the JSON included."""
BLOB_MARKER = "$tq_blob"
"""The claim-check marker ``{"$tq_blob": ref, "size": n}``: the same shape the engine uses, but
a store reads back only the fields it moved itself (listed in the item's ``blobs``)."""
MAX_CONCURRENCY = 32
"""Worker threads (and HTTP connections) for DynamoDB calls, shared by every store."""
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def task_pk(task_id: str) -> str:
    return f"TASK#{task_id}"


def entity_pk(entity_type: str, entity_id: str) -> str:
    return f"ENTITY#{entity_type}#{entity_id}"


def projection_sk(task_id: str) -> str:
    return f"TASK#{task_id}"


def flow_pk(flow_id: str) -> str:
    return f"FLOW#{flow_id}"


def step_sk(index: int) -> str:
    return f"{STEP_PREFIX}{index:08d}"


def poison_pk(day: date) -> str:
    return f"{POISON_PREFIX}{day.isoformat()}"


class ConditionFailed(Exception):
    """A conditional write did not apply (normal control flow, never logged).

    Attributes:
        old: the item as it was (raw DynamoDB attributes) when the call asked for it with
            ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` and the item existed; else ``None``.
    """

    def __init__(self, old: dict[str, Any] | None):
        super().__init__("conditional check failed")
        self.old = old


@dataclass(frozen=True, slots=True)
class TableModels:
    """The pynamodb models of one table, sharing one connection.

    Attributes:
        table: the table name.
        task, projection, flow, step, poison: the model classes of the five item kinds.
        connection: the pynamodb ``TableConnection`` they share.
    """

    table: str
    task: Any
    projection: Any
    flow: Any
    step: Any
    poison: Any
    connection: Any

    def execute(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Run one DynamoDB call (sync; call it in a worker thread).

        Raises:
            ConditionFailed: the call's condition did not hold.
        """
        try:
            return dict(self.connection.connection.dispatch(operation, kwargs))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            # pynamodb re-raises botocore's error without the response's Item; the original
            # error (its cause) still has it.
            original = exc.__cause__ if isinstance(exc.__cause__, ClientError) else exc
            raise ConditionFailed(original.response.get("Item")) from None

    def query_page(
        self, pk: str, *, sk_prefix: str | None, start: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of a strongly consistent query of ``pk``: raw items and the key to go on
        from (``None`` on the last page)."""
        # Every model of the table has the same ``sk`` attribute.
        condition = None if sk_prefix is None else self.task.sk.startswith(sk_prefix)
        data = self.connection.query(
            pk,
            range_key_condition=condition,
            consistent_read=True,
            exclusive_start_key=start,
        )
        return list(data.get("Items", [])), data.get("LastEvaluatedKey")


def validate_table_name(table: str) -> None:
    if not isinstance(table, str) or not 3 <= len(table) <= 255 or set(table) - _TABLE_NAME_CHARS:
        raise ConfigurationError(
            f"table={table!r}; give a DynamoDB table name: 3 to 255 of [A-Za-z0-9_.-]"
        )


@functools.lru_cache(maxsize=128)
def table_models(table: str, settings: AwsSettings) -> TableModels:
    """The models of ``table`` reached with ``settings`` (built once per table and settings).

    Args:
        table: the table name.
        settings: region, endpoint (``Meta.host``), timeouts and attempts.
    """
    validate_table_name(table)

    class Meta:
        table_name = table
        region = settings.region
        host = settings.endpoint_url
        connect_timeout_seconds = settings.connect_timeout
        read_timeout_seconds = settings.read_timeout
        # pynamodb counts retries after the first attempt; AwsSettings counts attempts.
        max_retry_attempts = max(0, settings.max_attempts - 1)
        max_pool_connections = MAX_CONCURRENCY

    # ``doc`` is the JSON of the task, row, step or poison record; ``blobs`` names its fields
    # that the store moved to the blob store. Beside it are the attributes that conditions read.
    task = _model(
        "TaskItem",
        Meta,
        status=UnicodeAttribute(),
        retry_count=NumberAttribute(),
        updated_at=UnicodeAttribute(null=True),
        # A claim moves a task to processing without rewriting its JSON: these two hold its
        # processing_started_at and execution_stats.retry_count until the next put.
        started_at=UnicodeAttribute(null=True),
        claimed=NumberAttribute(null=True),
        doc=UnicodeAttribute(),
        blobs=UnicodeSetAttribute(null=True),
    )
    projection = _model(
        "ProjectionItem",
        Meta,
        status=UnicodeAttribute(),
        rank=NumberAttribute(),
        version=NumberAttribute(),
        doc=UnicodeAttribute(),
        blobs=UnicodeSetAttribute(null=True),
    )
    flow = _model(
        "FlowItem",
        Meta,
        definition=UnicodeAttribute(),
        state=UnicodeAttribute(),
        total=NumberAttribute(),
        succeeded=NumberAttribute(),
        failed=NumberAttribute(),
        completed=NumberAttribute(),
        finished_at=UnicodeAttribute(null=True),
    )
    step = _model(
        "StepItem",
        Meta,
        status=UnicodeAttribute(),
        doc=UnicodeAttribute(),
        blobs=UnicodeSetAttribute(null=True),
    )
    poison = _model(
        "PoisonItem",
        Meta,
        seen_at=UnicodeAttribute(),
        reason=UnicodeAttribute(),
        doc=UnicodeAttribute(),
        blobs=UnicodeSetAttribute(null=True),
    )
    connection = task._get_connection()
    for model in (projection, flow, step, poison):
        model._connection = connection  # one botocore client for the table
    # Create the client now (not racing in worker threads), from one shared botocore session:
    # pynamodb would load a fresh session's service data for every table (about 0.25 s).
    with _session_lock:
        connection.connection._local.session = _botocore_session()
        connection.connection.client  # noqa: B018
    return TableModels(table, task, projection, flow, step, poison, connection)


_session: Any = None
_session_lock = threading.Lock()


def _botocore_session() -> Any:
    global _session
    if _session is None:
        _session = botocore.session.get_session()
    return _session


def _model(name: str, meta: type, **attributes: Any) -> Any:
    """A pynamodb model class on ``meta``'s table: ``pk``/``sk`` strings, ``ttl``, and
    ``attributes``."""
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "Meta": meta,
        "pk": UnicodeAttribute(hash_key=True),
        "sk": UnicodeAttribute(range_key=True),
        TTL_ATTRIBUTE: TTLAttribute(null=True),
        **attributes,
    }
    return type(name, (Model,), namespace)


# -- threads -----------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # Our own pool: the loop's default one has min(32, cpus + 4) threads, shared with
            # everything else, which would cap concurrent DynamoDB calls at 6 on two cores.
            _pool = ThreadPoolExecutor(MAX_CONCURRENCY, thread_name_prefix="tq-dynamodb")
        return _pool


async def query_all(
    models: TableModels, pk: str, *, sk_prefix: str | None, requests: Counter[str]
) -> list[dict[str, Any]]:
    """Every item of ``pk`` (with ``sk_prefix``), page by page, strongly consistent; each
    page counts one ``Query`` in ``requests``."""
    raws: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        requests["Query"] += 1
        page, start = await in_thread(
            lambda s=start: models.query_page(pk, sk_prefix=sk_prefix, start=s)
        )
        raws.extend(page)
        if start is None:
            return raws


async def in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run the sync ``fn(*args)`` in a DynamoDB worker thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args))


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all, concurrently; if any raised, raise the first error once all have ended (so no
    write is left running behind the caller's back)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def in_key_order(keys: Sequence[str], fn: Callable[[int], Awaitable[T]]) -> list[T]:
    """``[await fn(i) for i in range(len(keys))]``, running different keys concurrently and
    the same key in order (a conditional write must see the one before it, as in memory)."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out: dict[int, T] = {}

    async def chain(indexes: list[int]) -> None:
        for i in indexes:
            out[i] = await fn(i)

    await gather_all(chain(indexes) for indexes in groups.values())
    return [out[i] for i in range(len(keys))]


# -- values ------------------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    return None if value is None else to_utc(value).isoformat()


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else to_utc(datetime.fromisoformat(value))


def expiry(ttl_days: float | None, *times: datetime | None) -> datetime | None:
    """When an item written now expires: ``ttl_days`` after the latest of now (wall clock: TTL
    runs on real time) and ``times`` (a task due later must outlive its due time)."""
    if ttl_days is None:
        return None
    latest = datetime.now(UTC)
    for value in times:
        if value is not None and to_utc(value) > latest:
            latest = to_utc(value)
    return latest + timedelta(days=ttl_days)


def validate_limits(item_limit: int, ttl_days: float | None) -> None:
    if isinstance(item_limit, bool) or not isinstance(item_limit, int):
        raise ConfigurationError(f"item_limit={item_limit!r}; give a whole number of bytes")
    if not 1024 <= item_limit <= DYNAMODB_ITEM_MAX:
        raise ConfigurationError(
            f"item_limit={item_limit!r}; give 1024 to {DYNAMODB_ITEM_MAX} bytes (DynamoDB items "
            "are at most 400 KB; keep room for the other attributes)"
        )
    if ttl_days is not None and (
        isinstance(ttl_days, bool) or not isinstance(ttl_days, int | float) or ttl_days <= 0
    ):
        raise ConfigurationError(
            f"ttl_days={ttl_days!r}; give days > 0, or None to keep items forever"
        )


async def pack(
    doc: str,
    fields: Sequence[str],
    *,
    blob_store: BlobStore | None,
    blob_key: str,
    limit: int,
    item_key: str,
) -> tuple[str, list[str]]:
    """Fit a JSON object into ``limit`` bytes: move its largest ``fields`` to the blob store,
    one at a time, until it fits. Returns the JSON to store and the fields moved.

    Blob keys are ``<blob_key>/<field>/<sha256 of the value>``: a write whose condition fails
    must not replace the blob that the stored item points to.

    Raises:
        ItemTooLargeError: no blob store, or still too large once the fields are moved.
    """
    size = len(doc.encode())
    if size <= limit:
        return doc, []
    if blob_store is None:
        raise ItemTooLargeError(
            f"{item_key}: {size} bytes of JSON, over item_limit={limit}; give the store a "
            "blob_store= (e.g. S3BlobStore) to keep large values out of the item",
            key=item_key,
            size=size,
            limit=limit,
        )
    data = json.loads(doc)
    values = {f: pydantic_core.to_json(data[f]) for f in fields if data.get(f) is not None}
    moved: list[str] = []
    for field in sorted(values, key=lambda f: len(values[f]), reverse=True):
        blob = values[field]
        digest = hashlib.sha256(blob).hexdigest()[:32]
        ref = await blob_store.put(f"{blob_key}/{field}/{digest}", blob)
        data[field] = {BLOB_MARKER: ref, "size": len(blob)}
        moved.append(field)
        doc = pydantic_core.to_json(data).decode()
        size = len(doc.encode())
        if size <= limit:
            return doc, moved
    raise ItemTooLargeError(
        f"{item_key}: {size} bytes of JSON even with {', '.join(moved) or 'nothing'} in the blob "
        f"store, over item_limit={limit}; the other fields are too large to store",
        key=item_key,
        size=size,
        limit=limit,
    )


async def unpack(doc: str, moved: Iterable[str] | None, blob_store: BlobStore | None) -> Any:
    """The JSON object ``pack`` stored, with the moved fields read back from the blob store."""
    data = json.loads(doc)
    fields = sorted(moved or ())
    if not fields:
        return data
    if blob_store is None:
        raise ConfigurationError(
            f"an item keeps {', '.join(fields)} in the blob store, but this store has no "
            "blob_store=; configure the blob store the items were written with"
        )
    blobs = await gather_all(blob_store.get(data[f][BLOB_MARKER]) for f in fields)
    for field, blob in zip(fields, blobs, strict=True):
        data[field] = json.loads(blob)
    return data
