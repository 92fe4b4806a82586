"""The ECS worker's task role grants every call its shard leases make: the DynamoDB lease
store is driven through its whole life on moto while its calls are recorded, and each call
must be allowed by the task role of both templates (SAM with the ECS option on, CDK with
``ecs_worker``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.infra.aws_calls import api_calls, needed_actions
from tests.infra.conftest import sam_transform
from tests.infra.templates import Template
from tests.infra.test_policy_as_code import VARIANTS
from tests.support.aws import unique
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.core.leases import ShardSpec

STREAM = "tq-tasks"
NOW = 1_800_000_000.0


async def lease_life(settings: AwsSettings) -> set[str]:
    """Every lease operation a worker performs, in the order a shard's life has them."""
    table = unique("tq-leases")
    await asyncio.to_thread(ensure_table, table, settings)
    store = DynamoLeaseStore(table, settings)
    with api_calls() as calls:
        await store.create(STREAM, [ShardSpec("shard-0"), ShardSpec("shard-1", ("shard-0",))])
        leases = await store.get_all(STREAM, ["shard-0", "shard-1"])
        lease = await store.take(leases["shard-0"], "w1", now=NOW, lease_seconds=10)
        assert lease is not None
        lease = await store.renew(lease, now=NOW + 1, lease_seconds=10)
        assert lease is not None
        lease = await store.checkpoint(
            lease, "49590338271490256608559692538361571095921575989136588898"
        )
        assert lease is not None
        assert await store.request_handover(lease, "w2", now=NOW + 2)
        [seen] = (await store.get_all(STREAM, ["shard-0"])).values()
        handed = await store.hand_over(seen, now=NOW + 3, lease_seconds=10)
        assert handed is not None
        assert await store.finish(handed)
        other = await store.take(leases["shard-1"], "w1", now=NOW + 4, lease_seconds=10)
        assert other is not None
        assert await store.release(other)
    return needed_actions(calls)


@pytest.fixture
def lease_actions(aws_settings: AwsSettings) -> set[str]:
    return asyncio.run(lease_life(aws_settings))


def ecs_task_role_actions(template: Template) -> set[str]:
    [name] = template.of_type("AWS::ECS::TaskDefinition")
    role = template.raw(name)["Properties"]["TaskRoleArn"]
    return template.actions(template.role_name_of(role))


def test_the_lease_store_calls_are_recorded(lease_actions: set[str]) -> None:
    assert {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"} <= lease_actions


def test_the_sam_task_role_grants_the_lease_calls(lease_actions: set[str], tmp_path: Path) -> None:
    params = VARIANTS["ecs-on"]
    template = Template(sam_transform(tmp_path / "ecs.json", **params), **params)
    granted = ecs_task_role_actions(template)
    assert lease_actions <= granted, sorted(lease_actions - granted)


def test_the_cdk_task_role_grants_the_lease_calls(lease_actions: set[str]) -> None:
    from tests.infra.test_cdk_construct import build

    template = Template(build(ecs=True).to_json())
    granted = ecs_task_role_actions(template)
    assert lease_actions <= granted, sorted(lease_actions - granted)
