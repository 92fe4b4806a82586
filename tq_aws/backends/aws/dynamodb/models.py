"""pynamodb models of the one-table layout: the item kinds, their keys, and ``TableModels``.

pynamodb keeps a model's table, region and endpoint on the class (``Meta``), so the models are
built per table by ``table_models``; the five models of one table share one connection (one
botocore client). Every call goes through ``TableModels.execute`` (or a pynamodb
``TransactWrite``) in a worker thread (``calls.in_thread``), so the stores' async methods never
block the event loop.

Keys (docs/aws.md, "DynamoDB layout"):

| item | pk | sk |
|---|---|---|
| task | ``TASK#<id>`` | ``TASK`` |
| projection row | ``ENTITY#<type>#<id>`` | ``TASK#<task or flow id>`` |
| flow barrier | ``FLOW#<id>`` | ``FLOW`` |
| step result | ``FLOW#<id>`` | ``STEP#<index, 8 digits>`` |
| steps' batch marker | ``FLOW#<id>`` | ``BATCH#<token>`` |
| poison record | ``POISON#<yyyy-mm-dd of seen_at, UTC>`` | ``<poison key, 32 hex>`` |

The sparse GSI ``recent`` (``recent_pk``, ``recent_sk``, projection ALL) holds the projection
rows the status overview lists (failed task rows, flow rows): ``recent_pk`` is
``RECENT#<shard>`` (``RECENT_SHARDS`` of them, so a burst of failures is spread over several
index partitions), ``recent_sk`` is ``<updated_at, fixed width>#<digest of pk and sk>``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

import botocore.session
from botocore.exceptions import ClientError
from pynamodb.attributes import (
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.models import Model

from tq_aws.backends.aws.clients import AwsSettings, error_code
from tq_aws.errors import ConfigurationError

logger = logging.getLogger(__name__)

TASK_SK = "TASK"
FLOW_SK = "FLOW"
STEP_PREFIX = "STEP#"
BATCH_PREFIX = "BATCH#"
POISON_PREFIX = "POISON#"
TTL_ATTRIBUTE = "ttl"
RECENT_INDEX = "recent"
RECENT_KEYS = ("recent_pk", "recent_sk")
RECENT_PREFIX = "RECENT#"
RECENT_SHARDS = 8
"""Index partitions of ``recent``: a fixed number (readers and writers must agree on it)."""
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


def batch_sk(token: str) -> str:
    return f"{BATCH_PREFIX}{token}"


def poison_pk(day: date) -> str:
    return f"{POISON_PREFIX}{day.isoformat()}"


def recent_shard(pk: str, sk: str) -> int:
    """The ``recent`` index partition of an item (stable: a row moves within its shard)."""
    return int(hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()[:8], 16) % RECENT_SHARDS


def recent_keys(pk: str, sk: str, time_key: str) -> tuple[str, str]:
    """``recent_pk`` and ``recent_sk`` of an item last updated at ``time_key``."""
    digest = hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()[:16]
    return f"{RECENT_PREFIX}{recent_shard(pk, sk)}", f"{time_key}#{digest}"


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
        # ``task`` or ``flow`` (ProjectionRow.kind), beside the doc rather than in it: readers
        # of an older release refuse a row document with a key they do not know.
        kind=UnicodeAttribute(null=True),
        # ProjectionRow.generation, beside the doc for the same reason; absent means 0
        generation=NumberAttribute(null=True),
        task_type=UnicodeAttribute(null=True),
        # the keys of the sparse ``recent`` index, only on rows the overview lists
        recent_pk=UnicodeAttribute(null=True),
        recent_sk=UnicodeAttribute(null=True),
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
        # the token of the batch that put it outside a transaction: the step counts once that
        # batch's marker (``BATCH#<token>``) is committed; absent: counted by its own write
        batch=UnicodeAttribute(null=True),
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
