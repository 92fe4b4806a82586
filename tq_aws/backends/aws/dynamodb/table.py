"""Creating the stores' table: ``pk``/``sk`` strings, on-demand billing, TTL on ``ttl``, and the
sparse GSI ``recent`` (``recent_pk``/``recent_sk``, projection ALL) the status overview reads
(the same table the SAM template and the CDK construct declare)."""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import AwsSettings, error_code
from tq_aws.backends.aws.dynamodb.models import (
    RECENT_INDEX,
    RECENT_KEYS,
    TTL_ATTRIBUTE,
    table_models,
)
from tq_aws.errors import ConfigurationError

logger = logging.getLogger(__name__)

KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "S"},
]
RECENT_ATTRIBUTES = [{"AttributeName": name, "AttributeType": "S"} for name in RECENT_KEYS]
RECENT_GSI = {
    "IndexName": RECENT_INDEX,
    "KeySchema": [
        {"AttributeName": RECENT_KEYS[0], "KeyType": "HASH"},
        {"AttributeName": RECENT_KEYS[1], "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}
_WAIT = {"Delay": 1, "MaxAttempts": 300}


def ensure_table(table: str, settings: AwsSettings) -> bool:
    """Create the table if it is missing, wait until it is active, add the ``recent`` index if
    the table lacks it, and turn on TTL on ``ttl``. Safe to repeat, and to run from several
    processes at once. Sync: from async code, run it
    with ``asyncio.to_thread``. Production creates the table with the SAM or CDK templates.

    Args:
        table: the table name.
        settings: where to reach DynamoDB.

    Returns:
        Whether this call created the table.

    Raises:
        ConfigurationError: the table exists with another key schema, a ``recent`` index of
            other keys, or TTL on another attribute.
    """
    client = table_models(table, settings).connection.connection.client
    created = False
    try:
        description = client.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        try:
            client.create_table(
                TableName=table,
                KeySchema=KEY_SCHEMA,
                AttributeDefinitions=ATTRIBUTE_DEFINITIONS + RECENT_ATTRIBUTES,
                GlobalSecondaryIndexes=[RECENT_GSI],
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except ClientError as exc2:
            if error_code(exc2) != "ResourceInUseException":  # created by someone else meanwhile
                raise
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig=_WAIT)
        description = client.describe_table(TableName=table)["Table"]
    _check_keys(table, description)
    _ensure_recent_index(client, table, description)
    _ensure_ttl(client, table)
    return created


def _check_keys(table: str, description: dict[str, Any]) -> None:
    keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    if keys != {"pk": "HASH", "sk": "RANGE"} or types.get("pk") != "S" or types.get("sk") != "S":
        raise ConfigurationError(
            f"table={table!r} exists with keys {keys} ({types}); the stores need a string hash "
            "key 'pk' and a string range key 'sk': use another table name"
        )


def _ensure_recent_index(client: Any, table: str, description: dict[str, Any]) -> None:
    """Add the ``recent`` GSI to a table made without it (a table of an earlier release);
    refuse one of the same name on other keys."""
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(RECENT_INDEX)
    if index is not None:
        keys = [k["AttributeName"] for k in index.get("KeySchema", [])]
        projection = index.get("Projection", {}).get("ProjectionType")
        if keys != list(RECENT_KEYS) or projection != "ALL":
            raise ConfigurationError(
                f"table={table!r} has an index {RECENT_INDEX!r} on {keys} (projection "
                f"{projection}); the status overview needs it on {list(RECENT_KEYS)} with "
                "projection ALL: drop that index, or use another table name"
            )
        return
    try:
        client.update_table(
            TableName=table,
            AttributeDefinitions=RECENT_ATTRIBUTES,
            GlobalSecondaryIndexUpdates=[{"Create": RECENT_GSI}],
        )
    except ClientError as exc:
        # another process is adding it (or another index change is under way): wait for it
        if error_code(exc) not in ("ResourceInUseException", "ValidationException"):
            raise
    logger.info("table %s: adding the %s index", table, RECENT_INDEX)
    for _ in range(_WAIT["MaxAttempts"]):
        described = client.describe_table(TableName=table)["Table"]
        status = {
            i["IndexName"]: i.get("IndexStatus", "ACTIVE")
            for i in described.get("GlobalSecondaryIndexes", [])
        }
        if status.get(RECENT_INDEX) == "ACTIVE":
            return
        time.sleep(_WAIT["Delay"])
    raise ConfigurationError(
        f"table={table!r}: the {RECENT_INDEX!r} index did not become active in "
        f"{_WAIT['MaxAttempts']} s; run ensure_table again once it is"
    )


def _ensure_ttl(client: Any, table: str) -> None:
    ttl = client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    status = ttl.get("TimeToLiveStatus", "DISABLED")
    if status in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") != TTL_ATTRIBUTE:
            raise ConfigurationError(
                f"table={table!r} has TTL on {ttl.get('AttributeName')!r}; the stores write "
                f"their expiry to {TTL_ATTRIBUTE!r}: change the table's TTL attribute"
            )
        return
    try:
        client.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as exc:
        # Two processes turning it on at once: AWS answers that TTL is already being set.
        if error_code(exc) != "ValidationException" or "already" not in str(exc).lower():
            raise
