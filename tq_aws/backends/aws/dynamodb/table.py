"""Creating the stores' table: ``pk``/``sk`` strings, on-demand billing, TTL on ``ttl``."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from tq_aws.backends.aws.clients import AwsSettings, error_code
from tq_aws.backends.aws.dynamodb.models import TTL_ATTRIBUTE, table_models
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


def ensure_table(table: str, settings: AwsSettings) -> bool:
    """Create the table if it is missing, wait until it is active, and turn on TTL on ``ttl``.
    Safe to repeat, and to run from several processes at once. Sync: from async code, run it
    with ``asyncio.to_thread``. Production creates the table with the SAM or CDK templates.

    Args:
        table: the table name.
        settings: where to reach DynamoDB.

    Returns:
        Whether this call created the table.

    Raises:
        ConfigurationError: the table exists with another key schema, or with TTL on another
            attribute.
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
                AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
                BillingMode="PAY_PER_REQUEST",
            )
            created = True
        except ClientError as exc2:
            if error_code(exc2) != "ResourceInUseException":  # created by someone else meanwhile
                raise
        client.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        description = client.describe_table(TableName=table)["Table"]
    _check_keys(table, description)
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
