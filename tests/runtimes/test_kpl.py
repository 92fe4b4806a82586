"""KPL aggregated records, as real producers write them: the decoder against records made by
``aws-kinesis-agg`` (``tests/data/kpl``), bad aggregates as poison naming KPL, and aggregates fed
to the Lambda handler (Kinesis events as Lambda sends them), the in-process Kinesis source and
the ECS worker, each user record its own delivery at its subSequenceNumber."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.runtimes.test_ecs_worker import FAST, Env, Running, env, until  # noqa: F401
from tests.support.aws import REGION, unique
from tests.support.lambda_events import Context, fail_puts_for, kinesis_record
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core import kpl
from tq_aws.errors import CodecError, KeyBlockedError, RecordNotRecordedError
from tq_aws.runtimes.aws_lambda.handler import reported_identifiers
from tq_aws.runtimes.aws_lambda.loop import close_process_loop, process_loop
from tq_aws.runtimes.ecs import EcsWorker

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "kpl" / "aggregates.json").read_text())[
    "vectors"
]
BY_NAME = {v["name"]: v for v in VECTORS}


def vector_bytes(name: str) -> bytes:
    return base64.b64decode(BY_NAME[name]["data"])


# -- a small encoder, to make aggregates of the tests' own tasks --------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def aggregate(users: list[tuple[str, bytes]]) -> bytes:
    """An aggregated record of ``(partition key, data)`` user records."""
    keys = list(dict.fromkeys(k for k, _ in users))
    body = b"".join(_field(1, k.encode()) for k in keys)
    for key, data in users:
        record = _varint(1 << 3) + _varint(keys.index(key)) + _field(3, data)
        body += _field(3, record)
    return kpl.MAGIC + body + hashlib.md5(body).digest()


def task_record(task_id: str, key: str, n: int, **fields: Any) -> bytes:
    task = {"id": task_id, "type": "step", "queue_id": "q", "partition_key": key}
    task.update(payload={"key": key, "n": n}, **fields)
    return json.dumps({"v": 1, "task": task}).encode()


# -- the decoder ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_user_records_of_aws_kinesis_agg_aggregates(vector: dict[str, Any]) -> None:
    users = kpl.deaggregate(base64.b64decode(vector["data"]))
    expected = vector["user_records"]
    assert [u.sub_sequence for u in users] == list(range(len(expected)))
    assert [(u.partition_key, u.explicit_hash_key) for u in users] == [
        (e["partition_key"], e["explicit_hash_key"]) for e in expected
    ]
    assert [u.data for u in users] == [base64.b64decode(e["data"]) for e in expected]


def test_our_encoder_makes_what_the_library_makes() -> None:
    vector = BY_NAME["three_tasks_two_keys"]
    users = [(u["partition_key"], base64.b64decode(u["data"])) for u in vector["user_records"]]
    assert aggregate(users) == vector_bytes("three_tasks_two_keys")


def _bad_aggregates() -> dict[str, bytes]:
    good = vector_bytes("three_tasks_two_keys")
    garbage = b"\x0a\xff\xff"  # a key whose length runs past the end
    no_key = _field(3, _varint(1 << 3) + _varint(4) + _field(3, b"x"))  # key index 4 of none
    return {
        "bad digest": good[:-1] + bytes([good[-1] ^ 1]),
        "bad protobuf": kpl.MAGIC + garbage + hashlib.md5(garbage).digest(),
        "key out of the table": kpl.MAGIC + no_key + hashlib.md5(no_key).digest(),
        "too short": kpl.MAGIC + b"\x00",
    }


@pytest.mark.parametrize("name", list(_bad_aggregates()))
def test_a_bad_aggregate_is_a_codec_error_naming_kpl(name: str) -> None:
    with pytest.raises(CodecError) as refused:
        kpl.deaggregate(_bad_aggregates()[name])
    assert refused.value.reason == "kpl_malformed"
    assert "KPL" in str(refused.value)


# -- the Lambda handler -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_process_loop() -> Iterator[None]:
    close_process_loop()
    yield
    close_process_loop()


def _app(**options: Any) -> tuple[TaskQueue, list[tuple[str, int]]]:
    app = TaskQueue(**options)
    log: list[tuple[str, int]] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        log.append((task.payload["key"], task.payload["n"]))
        actions.success(task)

    return app, log


def test_each_user_record_of_an_aggregate_runs_in_order_per_key() -> None:
    app, log = _app()
    handler = app.lambda_handler(sub_batch_size=8)
    event = {
        "Records": [
            kinesis_record(vector_bytes("three_tasks_two_keys"), "a", "1"),
            kinesis_record(vector_bytes("many_small"), "k0", "2"),
            kinesis_record(vector_bytes("explicit_hash_keys"), "c", "3"),
        ]
    }

    assert handler(event, Context()) == {"batchItemFailures": []}

    assert len(log) == 3 + 60 + 3
    for key in {k for k, _ in log}:
        runs = [n for k, n in log if k == key]
        assert runs == sorted(runs), key
    assert handler.last["records"] == 3 and handler.last["records_run"] == 66


def test_a_foreign_user_record_is_poison_at_its_sub_sequence_number() -> None:
    app, log = _app()
    handler = app.lambda_handler()
    event = {"Records": [kinesis_record(vector_bytes("a_foreign_user_record"), "e", "7")]}

    assert handler(event, Context()) == {"batchItemFailures": []}

    assert log == [("e", 0), ("e", 1)]
    [poison] = handler.run(app.poison_records())
    assert poison.position == "tq-memory/shardId-000000000000/7/1"
    assert (poison.reason, poison.data) == ("malformed", b"not a task record")


def test_a_bad_aggregate_is_poison_and_blocks_nothing() -> None:
    app, log = _app()
    handler = app.lambda_handler()
    bad = _bad_aggregates()["bad digest"]
    after = aggregate([("a", task_record("t-1", "a", 0))])
    event = {"Records": [kinesis_record(bad, "a", "1"), kinesis_record(after, "a", "2")]}

    assert handler(event, Context()) == {"batchItemFailures": []}

    assert log == [("a", 0)]
    [poison] = handler.run(app.poison_records())
    assert poison.reason == "kpl_malformed" and poison.data == bad
    assert poison.position == "tq-memory/shardId-000000000000/1"


def test_an_aggregate_is_reported_by_its_sequence_number_and_its_keys_wait() -> None:
    app, log = _app()
    handler = app.lambda_handler(sub_batch_size=2)
    first = aggregate(
        [
            ("a", task_record("t-a0", "a", 0, stored=True)),
            ("b", task_record("t-b0", "b", 0, stored=True)),
        ]
    )
    second = aggregate(
        [
            ("b", task_record("t-b1", "b", 1, stored=True)),
            ("c", task_record("t-c0", "c", 0, stored=True)),
        ]
    )
    third = aggregate([("c", task_record("t-c1", "c", 1, stored=True))])
    records = [kinesis_record(d, "x", str(i + 1)) for i, d in enumerate([first, second, third])]
    fail_puts_for(app, {"t-a0"})

    response = handler({"Records": records}, Context())

    # the first aggregate was not recorded: reported by its own sequence number; b waits for
    # it, so the second aggregate (b1, with c0 that ran) is reported too. Kinesis restarts at
    # the lowest reported number, so the third comes again with them.
    assert reported_identifiers(response) == ["1", "2"]
    processor = next(iter(handler._processors.values()))
    assert [type(e[1]) for e in processor.exceptions] == [RecordNotRecordedError, KeyBlockedError]
    assert ("b", 1) not in log and ("c", 0) in log
    assert handler({"Records": records}, Context()) == {"batchItemFailures": []}
    assert [(k, n) for k, n in log if k == "b"][-2:] == [("b", 0), ("b", 1)]


# -- the in-process source and the ECS worker, on moto -----------------------------------------


def test_the_kinesis_source_reads_aggregates(moto_server: str) -> None:
    stream = unique("tq-kpl")
    kinesis = boto3.client("kinesis", region_name=REGION, endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    app = TaskQueue.aws(stream=stream, table=unique("tq"), endpoint_url=moto_server)
    log: list[tuple[str, int]] = []

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        log.append((task.payload["key"], task.payload["n"]))
        actions.success(task)

    loop = process_loop()
    try:
        loop.run_until_complete(app.ensure_resources())
        for name in ("three_tasks_two_keys", "a_foreign_user_record"):
            kinesis.put_record(StreamName=stream, Data=vector_bytes(name), PartitionKey="p")
        loop.run_until_complete(app.run_until_idle())
        poison = loop.run_until_complete(app.poison_records())
    finally:
        loop.run_until_complete(app.aclose())
    assert sorted(log) == [("a", 0), ("a", 1), ("b", 0), ("e", 0), ("e", 1)]
    [foreign] = poison
    assert foreign.position.startswith(f"{stream}/shardId-000000000000/")
    assert foreign.position.endswith("/1")


async def test_the_ecs_worker_reads_aggregates_and_checkpoints_past_them(env: Env) -> None:  # noqa: F811
    env.make_stream(1)
    app = env.app()
    users = [
        (
            f"k{i % 2}",
            json.dumps(
                {"v": 1, "task": {"id": f"agg-{i}", "type": "record", "queue_id": "work"}}
            ).encode(),
        )
        for i in range(6)
    ]
    kinesis = env.clients.sync("kinesis")
    kinesis.put_record(StreamName=env.stream, Data=aggregate(users[:4]), PartitionKey="k0")
    kinesis.put_record(StreamName=env.stream, Data=aggregate(users[4:]), PartitionKey="k0")
    running = Running(EcsWorker(app, worker_id="solo", **FAST))
    await until(lambda: len(set(env.executed())) == 6, "every user record to run")
    report = await running.stop()
    assert sorted(set(env.executed())) == [f"agg-{i}" for i in range(6)]
    assert report.stats.records == 6
    [lease] = (await env.leases()).values()
    assert lease.checkpoint is not None  # past the second aggregate
