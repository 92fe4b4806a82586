"""BlobStore contract: the same assertions over the memory store and the S3 store on moto."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.s3 import (
    S3BlobStore,
)
from tq_aws.backends.memory.blob_store import MemoryBlobStore
from tq_aws.errors import BlobNotFoundError, ConfigurationError, InvalidBlobRefError


@pytest.fixture(params=["memory", "aws"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryBlobStore()
        return
    settings: AwsSettings = request.getfixturevalue("aws_settings")
    clients = AwsClients(settings)
    s3 = S3BlobStore(unique("tq-blobs"), clients)
    await s3.ensure_bucket()
    yield s3
    await clients.aclose()


async def test_binary_round_trip(store: Any) -> None:
    data = bytes(range(256)) * 4 + b"\x00\xff\x78\x9c"
    ref = await store.put("payload/t-1", data)
    assert isinstance(ref, str) and ref
    assert await store.get(ref) == data


async def test_round_trip_over_one_mebibyte(store: Any) -> None:
    data = os.urandom(1024 * 1024 + 17)
    ref = await store.put("result/t-big", data)
    assert await store.get(ref) == data


async def test_empty_blob_round_trips(store: Any) -> None:
    ref = await store.put("result/t-empty", b"")
    assert await store.get(ref) == b""


async def test_put_again_replaces_and_keys_are_distinct(store: Any) -> None:
    ref_a = await store.put("payload/a", b"first")
    ref_b = await store.put("payload/b", b"other")
    assert ref_a != ref_b
    assert await store.put("payload/a", b"second") == ref_a
    assert await store.get(ref_a) == b"second"
    assert await store.get(ref_b) == b"other"


async def test_missing_key_raises_a_key_error(store: Any) -> None:
    ref = await store.put("payload/present", b"x")
    missing = ref.replace("present", "absent")
    with pytest.raises(KeyError):
        await store.get(missing)


# -- S3 only ---------------------------------------------------------------------------------


@pytest.fixture
async def s3_store(aws_settings: AwsSettings) -> AsyncIterator[S3BlobStore]:
    clients = AwsClients(aws_settings)
    store = S3BlobStore(unique("tq-blobs"), clients, prefix="tq/")
    await store.ensure_bucket()
    yield store
    await clients.aclose()


async def test_s3_reference_names_bucket_and_prefixed_key(s3_store: S3BlobStore) -> None:
    ref = await s3_store.put("payload/t-1", b"abc")
    assert ref == f"s3://{s3_store.bucket}/tq/payload/t-1"
    head = s3_store.clients.sync("s3").head_object(Bucket=s3_store.bucket, Key="tq/payload/t-1")
    assert head["ContentLength"] == 3


@pytest.mark.parametrize(
    "ref",
    [
        "memory://payload/t-1",
        "payload/t-1",
        "s3://other-bucket/tq/payload/t-1",
        "s3://{bucket}",
        "",
    ],
)
async def test_s3_foreign_or_malformed_refs_are_typed_errors(
    s3_store: S3BlobStore, ref: str
) -> None:
    await s3_store.put("payload/t-1", b"abc")
    ref = ref.replace("{bucket}", s3_store.bucket)
    with pytest.raises(InvalidBlobRefError) as info:
        await s3_store.get(ref)
    assert info.value.ref == ref
    assert "s3" in str(info.value)


async def test_s3_missing_key_error_is_typed_and_readable(s3_store: S3BlobStore) -> None:
    ref = s3_store.ref_for("payload/never")
    with pytest.raises(BlobNotFoundError) as info:
        await s3_store.get(ref)
    assert info.value.ref == ref
    assert str(info.value).startswith(f"no blob at {ref}")


async def test_ensure_bucket_sets_the_expiry_rule_and_keeps_other_rules(
    s3_store: S3BlobStore,
) -> None:
    s3 = s3_store.clients.sync("s3")
    other = {
        "ID": "logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 7},
    }
    rules = s3.get_bucket_lifecycle_configuration(Bucket=s3_store.bucket)["Rules"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=s3_store.bucket, LifecycleConfiguration={"Rules": [*rules, other]}
    )
    await s3_store.ensure_bucket(expire_after_days=45)  # again, with another expiry
    rules = s3.get_bucket_lifecycle_configuration(Bucket=s3_store.bucket)["Rules"]
    by_id = {r["ID"]: r for r in rules}
    assert set(by_id) == {"tq-expire-tq/", "logs"}
    assert by_id["tq-expire-tq/"]["Expiration"] == {"Days": 45}
    assert by_id["tq-expire-tq/"]["Filter"] == {"Prefix": "tq/"}
    assert by_id["tq-expire-tq/"]["Status"] == "Enabled"
    assert by_id["logs"]["Expiration"] == {"Days": 7}


async def test_ensure_bucket_outside_us_east_1(aws_settings: AwsSettings) -> None:
    clients = AwsClients(AwsSettings(region="eu-west-1", endpoint_url=aws_settings.endpoint_url))
    store = S3BlobStore(unique("tq-blobs-eu"), clients)
    await store.ensure_bucket()
    s3 = clients.sync("s3")
    location = s3.get_bucket_location(Bucket=store.bucket)["LocationConstraint"]
    assert location == "eu-west-1"
    assert await store.get(await store.put("k", b"v")) == b"v"
    await clients.aclose()


def test_s3_store_configuration_checks(aws_settings: AwsSettings) -> None:
    clients = AwsClients(aws_settings)
    with pytest.raises(ConfigurationError, match="bucket"):
        S3BlobStore("s3://b", clients)
    with pytest.raises(ConfigurationError, match="prefix"):
        S3BlobStore("b", clients, prefix="/tq/")
