"""Fixtures of the status tests: the shop app on the memory stores and on DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.status.shop import Shop, close, new_app
from tests.support.aws import REGION, unique
from tq_aws import TaskQueue
from tq_aws.backends.aws.clients import AwsSettings
from tq_aws.backends.aws.dynamodb import build_stores, ensure_table
from tq_aws.backends.memory import MemoryBlobStore
from tq_aws.testing import ManualClock


@pytest.fixture(params=["memory", "dynamodb"])
def store_app(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[TaskQueue]:
    """The app on the memory stores, or with its task, projection, flow and poison stores on
    DynamoDB (in-process moto; transport and scheduler in memory)."""
    if request.param == "memory":
        app = new_app(clock)
    else:
        request.getfixturevalue("moto")
        settings = AwsSettings(region=REGION, max_attempts=1)
        table = unique("tq-status")
        ensure_table(table, settings)
        stores = build_stores(table, settings, blob_store=MemoryBlobStore(), now=clock.now)
        app = new_app(
            clock,
            task_store=stores.tasks,
            projection_store=stores.projections,
            flow_store=stores.flows,
            poison_store=stores.poisons,
        )
    yield app
    close(app)


@pytest.fixture
def shop(store_app: TaskQueue) -> Shop:
    return Shop(store_app)
