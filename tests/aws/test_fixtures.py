"""The moto fixtures themselves work: clients reach the loopback servers and nothing else."""

from __future__ import annotations

import boto3

from tq_aws.backends.aws.clients import AwsClients, AwsSettings


def test_settings_know_a_local_endpoint() -> None:
    assert AwsSettings(endpoint_url="http://127.0.0.1:5000").is_local
    assert AwsSettings(endpoint_url="http://localhost:5000").is_local
    assert not AwsSettings(endpoint_url="https://kinesis.us-east-1.amazonaws.com").is_local
    assert not AwsSettings().is_local


async def test_async_and_sync_clients_reach_the_server(aws_settings: AwsSettings) -> None:
    clients = AwsClients(aws_settings)
    sqs = await clients.get("sqs")
    url = (await sqs.create_queue(QueueName="fixture-q"))["QueueUrl"]
    assert url.startswith(aws_settings.endpoint_url or "")
    assert clients.sync("sqs").get_queue_url(QueueName="fixture-q")["QueueUrl"] == url
    await clients.aclose()


async def test_mock_aws_in_process_with_aioboto3(moto: None) -> None:
    clients = AwsClients(AwsSettings())
    kinesis = await clients.get("kinesis")
    await kinesis.create_stream(StreamName="s-1", ShardCount=1)
    names = boto3.client("kinesis", region_name="us-east-1").list_streams()["StreamNames"]
    assert names == ["s-1"]
    await clients.aclose()
