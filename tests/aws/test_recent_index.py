"""The ``recent`` GSI the status overview reads: ``ensure_table`` creates it as the SAM
template declares it, adds it to a table made without it, and refuses one on other keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.support.aws import REGION, unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.errors import ConfigurationError

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
KEYS = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
STRINGS = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")]


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref``, ``!Sub``...) read as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_index() -> dict[str, Any]:
    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    tables = [
        r["Properties"]
        for r in template["Resources"].values()
        if r.get("Type") == "AWS::DynamoDB::Table"
    ]
    [index] = [
        i for t in tables for i in t.get("GlobalSecondaryIndexes", []) if i["IndexName"] == "recent"
    ]
    return dict(index)


def described(table: str) -> dict[str, Any]:
    client = boto3.client("dynamodb", region_name=REGION)
    [index] = client.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    return dict(index)


def test_a_new_table_gets_the_index_the_template_declares(moto: None) -> None:
    table = unique("tq-index")
    assert ensure_table(table, AwsSettings(region=REGION)) is True
    index, declared = described(table), template_index()
    assert index["IndexName"] == declared["IndexName"] == "recent"
    assert index["KeySchema"] == declared["KeySchema"]
    assert index["Projection"] == declared["Projection"] == {"ProjectionType": "ALL"}
    assert ensure_table(table, AwsSettings(region=REGION)) is False  # safe to repeat


def test_a_table_made_without_it_gets_it_added(moto: None) -> None:
    table = unique("tq-old")
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName=table, KeySchema=KEYS, AttributeDefinitions=STRINGS, BillingMode="PAY_PER_REQUEST"
    )
    assert ensure_table(table, AwsSettings(region=REGION)) is False
    index = described(table)
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["recent_pk", "recent_sk"]
    assert index["IndexStatus"] == "ACTIVE"


def test_an_index_of_that_name_on_other_keys_is_refused(moto: None) -> None:
    table = unique("tq-clash")
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName=table,
        KeySchema=KEYS,
        AttributeDefinitions=[*STRINGS, {"AttributeName": "other", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "recent",
                "KeySchema": [{"AttributeName": "other", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigurationError, match="recent_pk"):
        ensure_table(table, AwsSettings(region=REGION))
