"""The Lambda runtime: ``app.lambda_handler()`` fed Kinesis and SQS events.

Events on moto are built from records really read back (Kinesis ``GetRecords``, SQS
``ReceiveMessage``), shaped as Lambda shapes them; events for memory-backed apps are built from
the records the memory transport encoded. Redelivery is simulated as Lambda does it: Kinesis
restarts the shard at the lowest reported sequence number, SQS deletes the messages not reported
and delivers the reported ones again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from tests.support.aws import REGION, unique
from tests.support.lambda_events import (
    ACCOUNT,
    SHARD,
    Context,
    drain_memory_kinesis,
    kinesis_record,
    restart_at_lowest,
    sequences,
    sqs_record,
)
from tq_aws import Actions, Task, TaskQueue
from tq_aws.core.codec import encode_sqs_body
from tq_aws.core.task import TaskStatus
from tq_aws.engine.handoff import AsyncTaskManager
from tq_aws.errors import (
    ConfigurationError,
    HandedBackError,
    KeyBlockedError,
    LambdaEventError,
    RecordNotRecordedError,
)
from tq_aws.runtimes.aws_lambda.handler import LambdaHandler, reported_identifiers
from tq_aws.runtimes.aws_lambda.loop import close_process_loop, process_loop


class WriteFailed(RuntimeError):
    """A store write that failed (injected)."""


@pytest.fixture(autouse=True)
def _fresh_process_loop() -> Iterator[list[TaskQueue]]:
    """Each test gets a fresh process loop; apps listed here have their AWS clients closed on
    it first."""
    apps: list[TaskQueue] = []
    close_process_loop()
    yield apps
    loop = process_loop()
    for app in apps:
        loop.run_until_complete(app.aclose())
    close_process_loop()


@pytest.fixture
def aws_apps(_fresh_process_loop: list[TaskQueue]) -> list[TaskQueue]:
    return _fresh_process_loop


@pytest.fixture
def restore_tq_logger() -> Iterator[None]:
    """``logger=`` reconfigures the ``tq_aws`` logger; put it back for the other tests."""
    tq_logger = logging.getLogger("tq_aws")
    saved = (list(tq_logger.handlers), tq_logger.level, tq_logger.propagate)
    yield
    tq_logger.handlers[:] = saved[0]
    tq_logger.setLevel(saved[1])
    tq_logger.propagate = saved[2]


# -- events -----------------------------------------------------------------------------------


def fail_puts_for(app: TaskQueue, task_ids: set[str], times: int = 1) -> Counter[str]:
    """Make ``app.task_store.put`` raise when it writes one of ``task_ids`` (``times`` times
    each); returns the count of injected failures per id."""
    store: Any = app.task_store
    original = store.put
    failures: Counter[str] = Counter()

    async def put(tasks: Any) -> Any:
        for task in tasks:
            if task.id in task_ids and failures[task.id] < times:
                failures[task.id] += 1
                raise WriteFailed(f"injected: the write of task {task.id} failed")
        return await original(tasks)

    store.put = put
    return failures


def ordered_log(app: TaskQueue, log: list[tuple[str, int]], type_: str = "step") -> None:
    """Register ``q/<type_>``: appends ``(key, n)`` of each run to ``log``."""

    @app.executor("q", type_)
    async def step(task: Task, actions: Actions) -> None:
        log.append((task.payload["key"], task.payload["n"]))
        actions.success(task)


def assert_key_order(log: list[tuple[str, int]], expected: dict[str, int]) -> None:
    """Every task of every key ran, and in the key's order: first runs in order, and last runs
    (the ones recorded) in order. A redelivered task may run again, with the tasks after it;
    a task never runs before an earlier one of its key, nor again after a later one was
    recorded."""
    by_key: dict[str, list[int]] = {}
    for key, n in log:
        by_key.setdefault(key, []).append(n)
    assert set(by_key) == set(expected)
    for key, runs in by_key.items():
        assert sorted(set(runs)) == list(range(expected[key])), f"key {key}: {runs}"
        first = [runs.index(n) for n in range(expected[key])]
        last = [len(runs) - 1 - runs[::-1].index(n) for n in range(expected[key])]
        assert first == sorted(first), f"key {key} started out of order: {runs}"
        assert last == sorted(last), f"key {key} ended out of order: {runs}"


def step_task(key: str, n: int, **fields: Any) -> Task:
    """The ``n``-th task of ``key`` (type ``step``, payload ``{key, n}``)."""
    return Task(
        type="step", queue_id="q", partition_key=key, payload={"key": key, "n": n}, **fields
    )


def keyed_tasks(keys: dict[str, int], **fields: Any) -> list[Task]:
    """``count`` tasks per key, interleaved across keys, each with payload ``{key, n}``."""
    out: list[Task] = []
    for n in range(max(keys.values())):
        for key, count in keys.items():
            if n < count:
                out.append(step_task(key, n, **fields))
    return out


# -- memory-backed apps -----------------------------------------------------------------------


def test_runs_a_kinesis_event_in_record_order_on_one_loop() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=4)
    handler.run(app.add_tasks(keyed_tasks({"a": 4, "b": 4, "c": 3})))
    records = drain_memory_kinesis(app)
    loop = process_loop()

    response = handler({"Records": records}, Context())

    assert response == {"batchItemFailures": []}
    assert log == [(r["key"], r["n"]) for r in _payloads(records)]
    assert app.stats.executed == 11
    assert handler.last["sub_batches"] == 3
    handler({"Records": []}, Context())
    assert process_loop() is loop  # one loop per process, reused across invocations


def _payloads(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        doc = json.loads(base64.b64decode(r["kinesis"]["data"]))
        out.append(doc["task"]["payload"])
    return out


def test_an_executor_failure_goes_to_the_retry_path_not_to_the_response() -> None:
    app = TaskQueue()

    @app.executor("q", "flaky", retries=1)
    async def flaky(task: Task, actions: Actions) -> None:
        actions.fail(task, "busy")

    handler = app.lambda_handler()
    handler.run(app.add_tasks([Task(type="flaky", queue_id="q")]))

    response = handler({"Records": drain_memory_kinesis(app)}, Context())

    assert response == {"batchItemFailures": []}
    assert (app.stats.retried, app.stats.failed, app.stats.executed) == (1, 0, 0)
    assert app.next_due() is not None  # the retry is scheduled


def test_a_failed_write_reports_its_sub_batch_and_stops_its_keys() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=3)
    tasks = keyed_tasks({"a": 3, "b": 3, "c": 3}, force_store=True)
    ids = handler.run(app.add_tasks(tasks))
    by_payload = {(t.payload["key"], t.payload["n"]): i for t, i in zip(tasks, ids, strict=True)}
    records = drain_memory_kinesis(app)
    # records: a0 b0 c0 | a1 b1 c1 | a2 b2 c2 (sequence numbers 1..9), sub-batches of three
    fail_puts_for(app, {by_payload[("b", 1)]})

    response = handler({"Records": records}, Context())

    # The second sub-batch (a1 b1 c1) could not be recorded: all three are reported, and every
    # later record of those keys waits for them.
    assert reported_identifiers(response) == ["4", "5", "6", "7", "8", "9"]
    assert log == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    processor = handler._processors[next(iter(handler._processors))]
    reasons = [type(e[1]) for e in processor.exceptions]
    assert reasons == [RecordNotRecordedError] * 3 + [KeyBlockedError] * 3

    again = restart_at_lowest(records, response)
    assert handler({"Records": again}, Context()) == {"batchItemFailures": []}
    assert_key_order(log, {"a": 3, "b": 3, "c": 3})
    for task_id in ids:
        stored = handler.run(app.get_task(task_id))
        assert stored is not None and stored.status is TaskStatus.EXECUTED


def test_other_keys_keep_going_past_a_blocked_key() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=2)
    order = [("a", 0), ("b", 0), ("a", 1), ("c", 0), ("c", 1), ("c", 2)]
    tasks = [step_task(key, n, force_store=True) for key, n in order]
    # records: a0 b0 | a1 c0 | c1 c2
    ids = handler.run(app.add_tasks(tasks))
    records = drain_memory_kinesis(app)
    fail_puts_for(app, {ids[0]})  # a0's sub-batch fails: a0, b0 reported, a1 blocked

    response = handler({"Records": records}, Context())

    assert reported_identifiers(response) == ["1", "2", "3"]
    # a1 was left out; c0 ran in the next sub-batch, then c1 c2
    assert log == [("a", 0), ("b", 0), ("c", 0), ("c", 1), ("c", 2)]

    again = restart_at_lowest(records, response)
    assert sequences(again) == ["1", "2", "3", "4", "5", "6"]
    assert handler({"Records": again}, Context()) == {"batchItemFailures": []}
    assert_key_order(log, {"a": 2, "b": 1, "c": 3})
    # The c records after the restart point were recorded already: the claim drops them.
    assert Counter(log)[("c", 0)] == 1 and Counter(log)[("a", 0)] == 2


def test_nothing_is_lost_or_reordered_through_repeated_write_failures() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=4)
    keys = {"a": 6, "b": 5, "c": 6, "d": 2}
    tasks = keyed_tasks(keys, force_store=True)
    ids = handler.run(app.add_tasks(tasks))
    records = drain_memory_kinesis(app)
    fail_puts_for(app, {ids[2], ids[9], ids[15]}, times=2)

    event = records
    invocations = 0
    while event:
        invocations += 1
        assert invocations < 20
        response = handler({"Records": event}, Context())
        event = restart_at_lowest(records, response)

    assert invocations > 2
    assert_key_order(log, keys)
    for task_id in ids:
        stored = handler.run(app.get_task(task_id))
        assert stored is not None and stored.status is TaskStatus.EXECUTED


def test_a_key_is_not_reordered_across_executors() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log, "x")
    ordered_log(app, log, "y")
    handler = app.lambda_handler(sub_batch_size=10)
    tasks = [
        Task(type=t, queue_id="q", partition_key="k", payload={"key": "k", "n": n})
        for n, t in enumerate(["x", "y", "x", "x"])
    ]
    handler.run(app.add_tasks(tasks))

    response = handler({"Records": drain_memory_kinesis(app)}, Context())

    assert response == {"batchItemFailures": []}
    assert log == [("k", 0), ("k", 1), ("k", 2), ("k", 3)]
    assert handler.last["sub_batches"] == 2


def test_poison_records_are_kept_and_never_block_or_come_back() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=3)
    handler.run(app.add_tasks(keyed_tasks({"a": 3})))
    good = drain_memory_kinesis(app)
    bad_bytes = [
        b"\xff\xfenot json",
        b'{"v": 2, "task": {"type": "step", "queue_id": "q"}}',
        b'{"v": 1, "task": {"queue_id": "q"}}',
    ]
    records = [good[0]]
    for i, data in enumerate(bad_bytes):
        records.append(kinesis_record(data, "a", f"{10 + i}"))
    records += good[1:]
    bad_base64 = kinesis_record(b"", "a", "20")
    bad_base64["kinesis"]["data"] = "***"
    records.insert(2, bad_base64)

    response = handler({"Records": records}, Context())

    assert response == {"batchItemFailures": []}
    assert log == [("a", 0), ("a", 1), ("a", 2)]  # the key's records behind them ran
    assert app.stats.poison == 4
    poison = {p.position.rsplit("/", 1)[-1]: p for p in app.poison}
    assert poison["10"].data == bad_bytes[0] and poison["10"].reason == "malformed"
    assert poison["11"].data == bad_bytes[1] and poison["11"].reason == "unknown_version"
    assert poison["12"].reason == "invalid_task"
    assert poison["20"].reason == "malformed"
    assert all(p.position.startswith(f"tq-memory/{SHARD}/") for p in app.poison)
    assert all(p.queue_id == "tq-memory" for p in app.poison)


def test_poison_in_a_failed_sub_batch_is_still_not_reported() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=5)
    ids = handler.run(app.add_tasks(keyed_tasks({"a": 2}, force_store=True)))
    good = drain_memory_kinesis(app)
    records = [good[0], kinesis_record(b"garbage", "a", "7"), good[1]]
    fail_puts_for(app, {ids[0]})

    response = handler({"Records": records}, Context())

    assert reported_identifiers(response) == ["1", "2"]
    assert [p.position.rsplit("/", 1)[-1] for p in app.poison] == ["7"]


def test_poison_that_could_not_be_kept_is_reported_with_its_sub_batch() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=5)
    handler.run(app.add_tasks(keyed_tasks({"a": 1, "b": 1})))
    good = drain_memory_kinesis(app)
    records = [good[0], kinesis_record(b"garbage", "c", "7"), good[1]]
    original = app.poison_store.record

    async def unavailable(records: Any) -> None:
        raise ConnectionError("poison table unavailable")

    app.poison_store.record = unavailable  # type: ignore[method-assign]
    response = handler({"Records": records}, Context())

    # nothing was recorded: the whole sub-batch, poison included, comes again
    assert reported_identifiers(response) == [r["kinesis"]["sequenceNumber"] for r in records]
    assert log == []

    app.poison_store.record = original  # type: ignore[method-assign]
    response = handler({"Records": records}, Context())  # Lambda delivers them again

    assert response == {"batchItemFailures": []}
    assert sorted(log) == [("a", 0), ("b", 0)]
    [kept] = handler.run(app.poison_records())
    assert (kept.data, kept.position) == (b"garbage", f"tq-memory/{SHARD}/7")


def test_no_sub_batch_starts_that_the_remaining_time_cannot_finish() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    context = Context(remaining_ms=10_000)

    @app.executor("q", "step")
    async def step(task: Task, actions: Actions) -> None:
        log.append((task.payload["key"], task.payload["n"]))
        context.remaining_ms -= 1_000  # each task takes a second of the invocation
        actions.success(task)

    handler = app.lambda_handler(sub_batch_size=2, safety_margin=2)
    handler.run(app.add_tasks(keyed_tasks({"a": 5, "b": 5})))
    records = drain_memory_kinesis(app)

    response = handler({"Records": records}, context)

    # 10 s left: run 2 (8 s left, 1 s a record so far); 8 - 2 > 2: run 2; 6 - 2 > 2: run 2;
    # 4 - 2 is not > 2: the last four records are handed back, none of them started.
    assert len(log) == 6
    assert reported_identifiers(response) == ["7", "8", "9", "10"]
    processor = next(iter(handler._processors.values()))
    assert {type(e[1]) for e in processor.exceptions} == {HandedBackError}

    again = restart_at_lowest(records, response)
    assert handler({"Records": again}, Context()) == {"batchItemFailures": []}
    assert_key_order(log, {"a": 5, "b": 5})
    assert len(log) == 10


def test_a_function_with_little_time_still_runs_records() -> None:
    # A function configured with 1 s: the 2 s margin shrinks to a quarter of that, so the
    # records run instead of being handed back on every invocation.
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler()
    handler.run(app.add_tasks(keyed_tasks({"a": 2, "b": 1})))
    records = drain_memory_kinesis(app)

    response = handler({"Records": records}, Context(remaining_ms=1_000))

    assert response == {"batchItemFailures": []}
    assert log == [("a", 0), ("b", 0), ("a", 1)]
    processor = next(iter(handler._processors.values()))
    assert processor.deadline.margin == 0.25


def test_a_margin_of_seconds_is_kept_when_the_invocation_has_time() -> None:
    app = TaskQueue()
    ordered_log(app, [])
    handler = app.lambda_handler(safety_margin=3, margin_fraction=0.5)
    handler.run(app.add_tasks(keyed_tasks({"a": 1})))

    handler({"Records": drain_memory_kinesis(app)}, Context(remaining_ms=60_000))
    assert next(iter(handler._processors.values())).deadline.margin == 3.0
    handler({"Records": []}, Context(remaining_ms=4_000))  # no records: nothing to measure
    handler.run(app.add_tasks(keyed_tasks({"b": 1})))
    handler({"Records": drain_memory_kinesis(app)}, Context(remaining_ms=4_000))
    assert next(iter(handler._processors.values())).deadline.margin == 2.0


def test_every_record_reported_can_raise_as_powertools_does() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(raise_on_entire_batch_failure=True)
    task_ids = handler.run(app.add_tasks(keyed_tasks({"a": 2, "b": 1}, force_store=True)))
    records = drain_memory_kinesis(app)
    fail_puts_for(app, set(task_ids))

    with pytest.raises(BatchProcessingError):
        handler({"Records": records}, Context())


def _handoff_app() -> tuple[TaskQueue, asyncio.Event, list[str]]:
    app = TaskQueue(async_tasks=AsyncTaskManager(sweep_interval=0, default_max_duration=60))
    done: list[str] = []
    gate: asyncio.Event | None = None

    @app.executor("q", "long", handoff_timeout=0.01)
    async def long(task: Task, actions: Actions) -> None:
        assert gate is not None
        await gate.wait()
        done.append(task.id or "")
        actions.success(task, "finished")

    @app.executor("q", "short")
    async def short(task: Task, actions: Actions) -> None:
        done.append("short")
        actions.success(task)

    gate = asyncio.Event()
    return app, gate, done


def test_handed_off_tasks_are_awaited_until_the_margin() -> None:
    app, gate, done = _handoff_app()
    handler = app.lambda_handler(safety_margin=1)
    [long_id, _] = handler.run(
        app.add_tasks([Task(type="long", queue_id="q"), Task(type="short", queue_id="q")])
    )
    records = drain_memory_kinesis(app)
    calls = 0

    def time_passes() -> None:
        nonlocal calls
        calls += 1
        if calls > 2:  # after the sub-batch (one check before, one after): the task finishes
            gate.set()

    response = handler({"Records": records}, Context(remaining_ms=60_000, on_remaining=time_passes))

    assert response == {"batchItemFailures": []}
    assert done == ["short", long_id]
    assert handler.last["handed_off_running"] == 0
    stored = handler.run(app.get_task(long_id))
    assert stored is not None and stored.status is TaskStatus.EXECUTED
    assert app.next_due() is None  # its delivery watchdog was cancelled


def test_a_handed_off_task_still_running_is_left_to_its_record_and_watchdog() -> None:
    app, gate, done = _handoff_app()
    handler = app.lambda_handler(safety_margin=1)
    [long_id] = handler.run(app.add_tasks([Task(type="long", queue_id="q")]))
    records = drain_memory_kinesis(app)

    context = Context(remaining_ms=5_000)
    asked = 0

    def time_passes() -> None:  # the sub-batch starts with 5 s left and ends with 1 s
        nonlocal asked
        asked += 1
        if asked == 3:  # asked at the start (the margin), before the sub-batch, after it
            context.remaining_ms = 1_000

    context.on_remaining = time_passes
    response = handler({"Records": records}, context)

    assert response == {"batchItemFailures": []}  # its record is recorded: not handed back
    assert handler.last["handed_off_running"] == 1
    stored = handler.run(app.get_task(long_id))
    assert stored is not None and stored.status is TaskStatus.PROCESSING
    assert app.next_due() is not None  # the delivery watchdog brings it back if this dies

    gate.set()  # a later invocation of the warm process: it finishes and is recorded
    handler.run(app.async_tasks.wait_any())
    stored = handler.run(app.get_task(long_id))
    assert stored is not None and stored.status is TaskStatus.EXECUTED
    assert done == [long_id]


def test_sqs_fifo_groups_stop_alone_and_standard_messages_do_not_block() -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=2)
    tasks = keyed_tasks({"g1": 2, "g2": 2}, force_store=True)
    ids = handler.run(app.add_tasks(tasks))
    deliveries = handler.run(app.source.receive(100))
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tq.fifo"
    fifo = [
        sqs_record(
            f"m-{i}", encode_sqs_body(d.data), arn, {"MessageGroupId": d.partition_key or ""}
        )
        for i, d in enumerate(deliveries)
    ]  # g1/0 g2/0 | g1/1 g2/1
    failures = fail_puts_for(app, {ids[0]})

    response = handler({"Records": fifo}, Context())

    assert reported_identifiers(response) == ["m-0", "m-1", "m-2", "m-3"]
    assert log == [("g1", 0), ("g2", 0)]

    # A standard queue promises no order: after the same failure, the later messages run.
    failures.clear()
    standard = [dict(r, attributes={}) for r in fifo]
    response = handler({"Records": standard}, Context())
    assert reported_identifiers(response) == ["m-0", "m-1"]
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]}

    again = [r for r in standard if r["messageId"] in reported_identifiers(response)]
    assert handler({"Records": again}, Context()) == {"batchItemFailures": []}
    for task_id in ids:
        stored = handler.run(app.get_task(task_id))
        assert stored is not None and stored.status is TaskStatus.EXECUTED


# -- observability ----------------------------------------------------------------------------


def test_powertools_logger_lines_carry_the_task_log_context(restore_tq_logger: None) -> None:
    from aws_lambda_powertools import Logger

    stream = io.StringIO()
    service = unique("tq-log")
    powertools_logger = Logger(service=service, logger_handler=logging.StreamHandler(stream))
    app = TaskQueue(worker_id="w-1")

    @app.executor("q", "talk")
    async def talk(task: Task, actions: Actions) -> None:
        powertools_logger.info("from the executor")
        logging.getLogger("tq_aws.user").warning("from a tq_aws logger")
        actions.success(task)

    handler = app.lambda_handler(logger=powertools_logger)
    [task_id] = handler.run(
        app.add_tasks(
            [Task(type="talk", queue_id="q", metadata={"log_context": {"order_id": "o-7"}})]
        )
    )

    handler({"Records": drain_memory_kinesis(app)}, Context(request_id="req-42"))

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    inside = [line for line in lines if line["message"].endswith(("executor", "tq_aws logger"))]
    assert len(inside) == 2
    for line in inside:
        context = line["tq_log_context"]
        assert context["task_id"] == task_id and context["order_id"] == "o-7"
        assert context["worker_id"] == "w-1" and context["task_type"] == "talk"
        assert line["function_request_id"] == "req-42"
        assert "tq_context" not in line
    summary = [line for line in lines if "record(s)" in line["message"]]
    assert len(summary) == 1 and "tq_log_context" not in summary[0]
    assert summary[0]["function_name"] == "tq-test-fn"


def test_metrics_are_published_per_invocation_from_stats_deltas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aws_lambda_powertools import Metrics

    app = TaskQueue()

    @app.executor("q", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        actions.success(task)

    @app.executor("q", "flaky", retries=1)
    async def flaky(task: Task, actions: Actions) -> None:
        raise RuntimeError("down")

    @app.executor("q", "doomed")
    async def doomed(task: Task, actions: Actions) -> None:
        actions.fail(task, "no")

    metrics = Metrics(namespace="tq-test", service=unique("svc"))
    handler = app.lambda_handler(metrics=metrics, safety_margin=0)
    handler.run(
        app.add_tasks(
            [
                Task(type="ok", queue_id="q"),
                Task(type="ok", queue_id="q"),
                Task(type="flaky", queue_id="q"),
                Task(type="doomed", queue_id="q"),
            ]
        )
    )
    records = drain_memory_kinesis(app)
    records.append(kinesis_record(b"junk", "k", "99"))
    capsys.readouterr()

    handler({"Records": records}, Context())

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1
    names = {m["Name"]: m["Unit"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {
        "Processed": "Count",
        "Failed": "Count",
        "Retried": "Count",
        "Poison": "Count",
        "Reported": "Count",
        "Duration": "Milliseconds",
    }
    values = {
        name: emf[0][name][0] if isinstance(emf[0][name], list) else emf[0][name] for name in names
    }
    assert (values["Processed"], values["Failed"], values["Retried"]) == (4.0, 1.0, 1.0)
    assert (values["Poison"], values["Reported"]) == (1.0, 0.0)
    assert values["Duration"] > 0


class _Subsegment:
    def __init__(self, name: str, log: list[tuple[str, dict[str, Any]]]):
        self.annotations: dict[str, Any] = {}
        log.append((name, self.annotations))

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value


class _Provider:
    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []

    def in_subsegment(self, name: str) -> Any:
        import contextlib

        @contextlib.contextmanager
        def segment() -> Iterator[_Subsegment]:
            yield _Subsegment(name, self.log)

        return segment()


class _Tracer:
    def __init__(self) -> None:
        self.provider = _Provider()


def test_tracer_subsegments_per_invocation_and_sub_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    app = TaskQueue()
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    tracer = _Tracer()
    handler = app.lambda_handler(tracer=tracer, sub_batch_size=2)
    handler.run(app.add_tasks(keyed_tasks({"a": 3})))

    handler({"Records": drain_memory_kinesis(app)}, Context())

    assert [name for name, _ in tracer.provider.log] == [
        "## tq_aws lambda_handler",
        "## tq_aws sub-batch",
        "## tq_aws sub-batch",
    ]
    assert tracer.provider.log[0][1] == {"event_source": "aws:kinesis", "records": 3, "reported": 0}
    assert [a["records"] for _, a in tracer.provider.log[1:]] == [2, 1]

    # A real Tracer, turned off as in tests: the handler runs the same.
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    real = app.lambda_handler(tracer=True, logger=False, metrics=None)
    handler.run(app.add_tasks(keyed_tasks({"b": 1})))
    assert real({"Records": drain_memory_kinesis(app)}, Context()) == {"batchItemFailures": []}


# -- bad input --------------------------------------------------------------------------------


def test_events_that_are_not_kinesis_or_sqs_are_refused_naming_the_field() -> None:
    handler = TaskQueue().lambda_handler()
    good = kinesis_record(b"{}", "k", "1")
    cases: list[tuple[Any, str]] = [
        ([], "event"),
        ({"records": []}, "Records"),
        ({"Records": [1]}, "Records[0]"),
        ({"Records": [dict(good, eventSource="aws:dynamodb")]}, "Records[0].eventSource"),
        (
            {"Records": [good, sqs_record("m", "{}", "arn:aws:sqs:r:1:q", {})]},
            "Records[1].eventSource",
        ),
        (
            {"Records": [good, dict(good, kinesis={"data": "", "partitionKey": "k"})]},
            "Records[1].kinesis.sequenceNumber",
        ),
        ({"Records": [{"eventSource": "aws:sqs", "messageId": "m"}]}, "Records[0].body"),
    ]
    for event, field in cases:
        with pytest.raises(LambdaEventError) as caught:
            handler(event, Context())
        assert caught.value.field == field, event
    assert handler({"Records": []}, Context()) == {"batchItemFailures": []}


def test_options_are_checked() -> None:
    app = TaskQueue()
    for options in (
        {"sub_batch_size": 0},
        {"sub_batch_size": True},
        {"safety_margin": -1},
        {"safety_margin": "2"},
        {"margin_fraction": 0},
        {"margin_fraction": 1.5},
        {"logger": object()},
        {"metrics": "yes"},
        {"tracer": 1},
    ):
        with pytest.raises(ConfigurationError):
            LambdaHandler(app, **options)


async def test_calling_it_inside_a_running_loop_is_refused() -> None:
    handler = TaskQueue().lambda_handler()
    with pytest.raises(RuntimeError, match="running event loop"):
        handler({"Records": []}, Context())


# -- on moto ----------------------------------------------------------------------------------


def _kinesis_event_from_stream(
    kinesis: Any, stream: str, *, after_seq: str | None = None, at_seq: str | None = None
) -> list[dict[str, Any]]:
    """Records read with GetRecords from the stream's only shard, as a Lambda event's."""
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    position: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
    if at_seq is not None:
        position = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": at_seq}
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, **position)
    page = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)
    return [
        kinesis_record(
            r["Data"],
            r["PartitionKey"],
            r["SequenceNumber"],
            arrival=r["ApproximateArrivalTimestamp"].timestamp(),
            stream_arn=summary["StreamARN"],
            shard=shard,
        )
        for r in page["Records"]
    ]


def test_kinesis_events_read_from_moto_with_a_failed_write_and_poison(
    moto_server: str, aws_apps: list[TaskQueue]
) -> None:
    stream = unique("tq-lambda")
    kinesis = boto3.client("kinesis", region_name=REGION, endpoint_url=moto_server)
    kinesis.create_stream(StreamName=stream, ShardCount=1)  # one shard: one Lambda batch
    app = TaskQueue.aws(stream=stream, table=unique("tq"), endpoint_url=moto_server)
    aws_apps.append(app)
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=3)
    handler.run(app.ensure_resources())
    keys = {"a": 3, "b": 3, "c": 2}
    tasks = keyed_tasks(keys, force_store=True)
    ids = handler.run(app.add_tasks(tasks))
    kinesis.put_records(
        StreamName=stream, Records=[{"Data": b'{"v": 9, "task": {}}', "PartitionKey": "b"}]
    )
    records = _kinesis_event_from_stream(kinesis, stream)
    assert len(records) == 9
    # a0 b0 c0 | a1 b1 c1 | a2 b2 poison: b1's write fails in the second sub-batch
    fail_puts_for(app, {ids[4]})

    response = handler({"Records": records}, Context())

    seqs = sequences(records)
    assert reported_identifiers(response) == seqs[3:8]
    assert log == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]
    assert [p.reason for p in app.poison] == ["unknown_version"]
    assert app.poison[0].position == f"{stream}/shardId-000000000000/{seqs[8]}"
    assert app.poison[0].data == b'{"v": 9, "task": {}}'

    lowest = min(reported_identifiers(response), key=int)
    again = _kinesis_event_from_stream(kinesis, stream, at_seq=lowest)
    assert sequences(again) == seqs[3:]
    assert handler({"Records": again}, Context()) == {"batchItemFailures": []}
    assert_key_order(log, keys)
    for task_id in ids:
        stored = handler.run(app.get_task(task_id))
        assert stored is not None and stored.status is TaskStatus.EXECUTED


def _sqs_event(sqs: Any, url: str, arn: str) -> list[dict[str, Any]]:
    """Messages received with ReceiveMessage, as a Lambda event's records."""
    messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
        WaitTimeSeconds=0,
    ).get("Messages", [])
    for m in messages:
        assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode("utf-8")).hexdigest()
    return [
        dict(
            sqs_record(m["MessageId"], m["Body"], arn, m["Attributes"]),
            receiptHandle=m["ReceiptHandle"],
        )
        for m in messages
    ]


def _settle(sqs: Any, url: str, records: list[dict[str, Any]], response: dict[str, Any]) -> None:
    """What Lambda does with a partial batch response: delete the messages not reported, and
    let the reported ones come back."""
    reported = set(reported_identifiers(response))
    done = [r for r in records if r["messageId"] not in reported]
    back = [r for r in records if r["messageId"] in reported]
    if done:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)
            ],
        )
    if back:
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
                for i, r in enumerate(back)
            ],
        )


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_sqs_events_received_from_moto_with_a_failed_write(
    moto_server: str, aws_apps: list[TaskQueue], fifo: bool
) -> None:
    name = unique("tq-lambda") + (".fifo" if fifo else "")
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    url = f"{moto_server}/{ACCOUNT}/{name}"
    app = TaskQueue.aws(queue_url=url, table=unique("tq"), endpoint_url=moto_server)
    aws_apps.append(app)
    log: list[tuple[str, int]] = []
    ordered_log(app, log)
    handler = app.lambda_handler(sub_batch_size=2)
    handler.run(app.ensure_resources())
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    keys = {"a": 3, "b": 3}
    ids = handler.run(app.add_tasks(keyed_tasks(keys, force_store=True)))
    loop_before = process_loop()
    records = _sqs_event(sqs, url, arn)
    assert len(records) == 6
    payloads = [json.loads(r["body"])["task"]["payload"] for r in records]
    failing = next(i for i, p in enumerate(payloads) if (p["key"], p["n"]) == ("a", 0))
    fail_puts_for(app, {ids[0]})

    response = handler({"Records": records}, Context())

    reported = reported_identifiers(response)
    failed_sub_batch = records[failing - failing % 2 : failing - failing % 2 + 2]
    assert set(reported) >= {r["messageId"] for r in failed_sub_batch}
    if fifo:  # the group of a0 stops: every later "a" message is reported too
        later_a = [
            r["messageId"] for r, p in zip(records, payloads, strict=True) if p["key"] == "a"
        ]
        assert set(later_a) <= set(reported)
    else:
        assert set(reported) == {r["messageId"] for r in failed_sub_batch}

    for _ in range(3):
        _settle(sqs, url, records, response)
        records = _sqs_event(sqs, url, arn)
        if not records:
            break
        response = handler({"Records": records}, Context())
    assert records == []
    assert process_loop() is loop_before
    if fifo:
        assert_key_order(log, keys)
    assert {(k, n) for k, n in log} == {(k, n) for k in keys for n in range(keys[k])}
    for task_id in ids:
        stored = handler.run(app.get_task(task_id))
        assert stored is not None and stored.status is TaskStatus.EXECUTED
