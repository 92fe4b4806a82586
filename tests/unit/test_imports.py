"""``import tq_aws``, ``tq_aws.errors`` and ``tq_aws.testing`` load no AWS SDK: an app on the
embedded default, and its tests, start without botocore."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SDKS = ("botocore", "boto3", "aioboto3", "aiobotocore")


def loaded_sdks(code: str) -> list[str]:
    """The AWS SDK modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(",".join(m for m in {SDKS!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return [m for m in done.stdout.strip().split(",") if m]


def test_the_package_its_errors_and_its_test_helpers_load_no_aws_sdk() -> None:
    assert (
        loaded_sdks(
            """
            import tq_aws, tq_aws.errors, tq_aws.testing
            from tq_aws.testing import FaultInjector, ManualClock
            """
        )
        == []
    )


def test_fire_due_schedules_is_still_importable_from_the_test_helpers() -> None:
    assert "botocore" in loaded_sdks(
        """
        from tq_aws.testing import fire_due_schedules
        assert callable(fire_due_schedules)
        """
    )


# A Lambda's cold start: what a function imports before its first event. Powertools itself
# imports the bare ``botocore`` package (its user-agent hook, no session or client), so the
# check is on the parts that are an SDK at work.
SDK_AT_WORK = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "pynamodb",
)
ASYNC_SDK = ("aioboto3", "aiobotocore", "aiohttp")
LAMBDA_APP = """
from tq_aws import TaskQueue

app = TaskQueue.from_env()

@app.executor("orders", "ship")
def ship(task, actions):
    actions.success(task)

handler = app.lambda_handler()
"""


def loaded_after(code: str, modules: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """Which of ``modules`` are in ``sys.modules`` after ``code`` runs in a fresh interpreter
    whose ``TQ_*`` variables are exactly ``env``."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import sys
        print(",".join(m for m in {modules!r} if m in sys.modules))
        """
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    environ.update({"AWS_DEFAULT_REGION": "us-east-1", **env})
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=environ,
    )
    return [m for m in done.stdout.strip().split(",") if m]


def test_an_embedded_lambda_handler_loads_no_aws_sdk() -> None:
    assert loaded_after(LAMBDA_APP, SDK_AT_WORK, {}) == []


def test_a_kinesis_consumer_loads_no_async_sdk_before_it_sends() -> None:
    env = {
        "TQ_STREAM": "orders",
        "TQ_TABLE": "tq-orders",
        "TQ_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/tq-scheduler",
    }
    loaded = loaded_after(LAMBDA_APP + "\nassert app.transport is not None\n", SDK_AT_WORK, env)
    assert [m for m in loaded if m in ASYNC_SDK] == []
    assert "pynamodb" in loaded  # the stores it reads and writes are there, ready


def test_the_async_sdk_comes_with_the_first_async_client() -> None:
    code = """
    import asyncio
    from tq_aws.backends.aws.clients import AwsClients, AwsSettings

    clients = AwsClients(AwsSettings(endpoint_url="http://127.0.0.1:9"))
    import sys
    assert "aioboto3" not in sys.modules

    async def main():
        await clients.get("kinesis")
        await clients.aclose()

    asyncio.run(main())
    """
    assert loaded_after(code, ASYNC_SDK, {}) == list(ASYNC_SDK)


def test_the_event_names_that_route_providers_are_the_event_classes_names() -> None:
    from tq_aws.core.lifecycle import events, names

    assert names.EVENT_NAMES == events.EVENT_NAMES
    closed = {e.name for e in events.EVENT_TYPES if issubclass(e, events.FlowClosed)}
    assert closed == names.FLOW_CLOSED_NAMES


def test_the_lifecycle_package_gives_its_event_classes_on_first_use() -> None:
    code = """
    import sys
    import tq_aws.core.lifecycle as lifecycle
    assert "tq_aws.core.lifecycle.events" not in sys.modules
    from tq_aws.core.lifecycle import TaskFailed, EVENT_TYPES
    from tq_aws.core.lifecycle.events import TaskFailed as same
    assert TaskFailed is same and TaskFailed in EVENT_TYPES
    """
    assert loaded_after(code, ("tq_aws.core.lifecycle.events",), {}) == [
        "tq_aws.core.lifecycle.events"
    ]


KINESIS_ENV = {
    "TQ_STREAM": "orders",
    "TQ_TABLE": "tq-orders",
    "TQ_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/tq-scheduler",
}
# What a Kinesis consumer's cold start has no use for: Powertools' parser models (built by
# batch.types whenever pydantic is already imported, for type aliases only) and the lifecycle
# event classes (built with the first event, which the happy path never builds).
NOT_AT_COLD_START = (
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.utilities.parser.models",
    "tq_aws.core.lifecycle.events",
)


def test_a_kinesis_consumer_builds_no_parser_models_and_no_event_classes() -> None:
    loaded = loaded_after(
        LAMBDA_APP + "\nassert app.transport is not None\n", NOT_AT_COLD_START, KINESIS_ENV
    )
    assert loaded == []


def test_powertools_batch_without_its_parser_models_keeps_one_pydantic() -> None:
    code = """
    import sys
    import pydantic
    from tq_aws.runtimes.aws_lambda import powertools_batch
    from aws_lambda_powertools.utilities.batch import types
    assert sys.modules["pydantic"] is pydantic
    assert types.has_pydantic is False
    assert powertools_batch.BatchProcessor(powertools_batch.EventType.KinesisDataStreams)
    # asked for, the parser models are there as always
    from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamRecord
    assert issubclass(KinesisDataStreamRecord, pydantic.BaseModel)
    """
    assert loaded_after(code, NOT_AT_COLD_START[:2], {}) == list(NOT_AT_COLD_START[:2])
