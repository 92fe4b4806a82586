"""The ECS worker on moto: in-process workers (leases, balancing, lost leases, reshards, SQS
heartbeats and hand-backs, the grace period), then worker processes killed with SIGKILL and
stopped with SIGTERM (``tq-aws worker --app tests.support.worker_app:app``).

Every wait is bounded and polls for a state; no assertion depends on how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws import unique
from tq_aws import Actions, Task, TaskQueue
from tq_aws.backends.aws.clients import AwsClients, AwsSettings
from tq_aws.backends.aws.dynamodb import ensure_table
from tq_aws.backends.aws.dynamodb.lease_store import DynamoLeaseStore
from tq_aws.core.codec import decode_task
from tq_aws.core.leases import Lease
from tq_aws.errors import ConfigurationError
from tq_aws.runtimes.ecs import EcsWorker, WorkerReport

ROOT = Path(__file__).resolve().parents[2]
FAST: dict[str, Any] = {
    "lease_seconds": 2.0,
    "renew_every": 0.3,
    "poll_interval": 0.05,
    "grace_seconds": 10.0,
}


async def until(check: Callable[[], Any], what: str, limit: float = 30.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``limit``."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Env:
    endpoint: str
    settings: AwsSettings
    clients: AwsClients
    table: str
    stream: str = ""
    queue_url: str = ""
    runs: list[tuple[str, str]] = field(default_factory=list)
    """(worker name, task id) of every execution, in order."""
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def make_stream(self, shards: int) -> str:
        self.stream = unique("tq-worker")
        kinesis = self.clients.sync("kinesis")
        kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        return self.stream

    def make_queue(self) -> str:
        self.queue_url = self.clients.sync("sqs").create_queue(QueueName=unique("tq-q"))["QueueUrl"]
        return self.queue_url

    def app(self, name: str = "w", *, batch_size: int = 5, sqs: bool = False) -> TaskQueue:
        app = TaskQueue.aws(
            stream=self.stream or None,
            queue_url=self.queue_url or None,
            sqs_queues=["mail"] if self.stream and sqs else None,
            table=self.table,
            endpoint_url=self.endpoint,
            fire_schedules=False,
            batch_size=batch_size,
        )

        async def record(task: Task, actions: Actions) -> None:
            self.runs.append((name, task.id or ""))
            gate = self.gates.get((task.payload or {}).get("gate", ""))
            if gate is not None:
                try:
                    await asyncio.wait_for(gate.wait(), timeout=30)
                except asyncio.CancelledError:
                    self.runs.append((name, f"cancelled {task.id}"))
                    raise
            actions.success(task)

        app.executor("work", "record")(record)
        app.executor("mail", "record")(record)
        return app

    async def publish(self, app: TaskQueue, ids: list[str], **payload: Any) -> None:
        queue = "mail" if payload.pop("sqs", False) else "work"
        key = payload.pop("key", None)
        await app.add_tasks(
            [
                Task(id=i, type="record", queue_id=queue, partition_key=key or i, payload=payload)
                for i in ids
            ]
        )

    def executed(self, name: str | None = None) -> list[str]:
        return [t for w, t in self.runs if (name is None or w == name) and " " not in t]

    def shards(self) -> list[str]:
        kinesis = self.clients.sync("kinesis")
        return [s["ShardId"] for s in kinesis.list_shards(StreamName=self.stream)["Shards"]]

    async def leases(self) -> dict[str, Lease]:
        store = DynamoLeaseStore(self.table, self.settings)
        return await store.get_all(self.stream, self.shards())

    def queue_counts(self) -> tuple[int, int]:
        attributes = self.clients.sync("sqs").get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def receive_now(self) -> list[str]:
        """Task ids of the messages visible now (received with a long visibility)."""
        messages = self.clients.sync("sqs").receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=300,
        )
        return sorted(json.loads(m["Body"])["task"]["id"] for m in messages.get("Messages", []))


async def make_env(settings: AwsSettings) -> Env:
    table = unique("tq-worker")
    await asyncio.to_thread(ensure_table, table, settings)
    return Env(settings.endpoint_url or "", settings, AwsClients(settings), table)


@pytest.fixture
async def env(aws_settings: AwsSettings) -> AsyncIterator[Env]:
    """On the moto server (SQS long polls need its concurrency)."""
    made = await make_env(aws_settings)
    yield made
    await made.clients.aclose()


@pytest.fixture
async def serial_env(serial_aws_settings: AwsSettings) -> AsyncIterator[Env]:
    """On the serialized moto server: workers racing for the same leases need atomic
    conditional writes (moto's own server does not make them atomic)."""
    made = await make_env(serial_aws_settings)
    yield made
    await made.clients.aclose()


class Running:
    """A worker running in the background of the test's event loop."""

    def __init__(self, worker: EcsWorker):
        self.worker = worker
        self.task: asyncio.Task[WorkerReport] = asyncio.create_task(worker.run())

    async def stop(self) -> WorkerReport:
        self.worker.request_stop()
        report = await asyncio.wait_for(self.task, timeout=60)
        await self.worker.app.aclose()
        return report


# -- configuration --------------------------------------------------------------------------


def test_options_are_checked_and_name_the_field(env: Env) -> None:
    env.make_stream(1)
    app = env.app()
    for bad, field_name in (
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"renew_every": 10, "lease_seconds": 10}, "renew_every"),
        ({"sqs_wait_seconds": 21}, "sqs_wait_seconds"),
        ({"sqs_visibility_timeout": 0}, "sqs_visibility_timeout"),
        ({"heartbeat_every": 60}, "heartbeat_every"),
        ({"grace_seconds": -1}, "grace_seconds"),
        ({"initial_position": "EARLIEST"}, "initial_position"),
    ):
        with pytest.raises(ConfigurationError, match=field_name):
            EcsWorker(app, **bad)
    with pytest.raises(ConfigurationError, match=r"TaskQueue\.aws"):
        EcsWorker(TaskQueue())


# -- Kinesis, in process ----------------------------------------------------------------------


async def test_one_worker_reads_every_shard_checkpoints_and_releases_at_stop(env: Env) -> None:
    env.make_stream(2)
    app = env.app(batch_size=4)
    ids = [f"t-{i:03d}" for i in range(20)]
    await env.publish(app, ids)
    running = Running(EcsWorker(app, worker_id="solo", **FAST))
    await until(lambda: set(env.executed()) == set(ids), "every task to run")
    await until(
        lambda: sum(1 for s in running.worker.held_shards) == 2, "both shards to be held", 5
    )

    async def checkpointed() -> bool:
        leases = await env.leases()
        return all(lease.checkpoint is not None for lease in leases.values())

    await until(checkpointed, "both shards to be checkpointed")
    report = await running.stop()
    assert sorted(env.executed()) == ids  # each once
    leases = await env.leases()
    assert all(lease.owner is None and lease.expiry == 0 for lease in leases.values())
    kinesis = env.clients.sync("kinesis")
    for shard, lease in leases.items():
        iterator = kinesis.get_shard_iterator(
            StreamName=env.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator)["Records"]
        assert lease.checkpoint == records[-1]["SequenceNumber"]
    assert report.stats.records == 20 and report.stats.leases_released == 2


async def test_a_batch_whose_outcomes_were_not_recorded_is_read_again_never_skipped(
    env: Env,
) -> None:
    env.make_stream(1)
    app = env.app(batch_size=3)
    ids = [f"t-{i:03d}" for i in range(9)]
    await env.publish(app, ids, key="one-shard-order")
    real = app.processor.process
    calls: list[list[str]] = []
    at_failure: list[str | None] = []

    async def flaky(deliveries: Any) -> None:
        calls.append([d.task.id for d in deliveries])
        await real(deliveries)
        if len(calls) == 2:  # the second batch ran, but its outcomes "could not be recorded"
            lease = (await env.leases())[env.shards()[0]]
            at_failure.append(lease.checkpoint)
            raise RuntimeError("the task store is unavailable")

    app.processor.process = flaky  # type: ignore[method-assign]
    running = Running(EcsWorker(app, **FAST))
    await until(lambda: len(calls) >= 4, "the batches, the failed one again")
    report = await running.stop()
    assert calls == [ids[0:3], ids[3:6], ids[3:6], ids[6:9]]
    assert at_failure == ["3"]  # the failed batch moved no checkpoint
    assert (await env.leases())[env.shards()[0]].checkpoint == "9"
    assert Counter(env.executed()) == Counter(ids + ids[3:6])
    assert report.stats.failed_batches == 1


async def test_a_lost_lease_stops_the_shard_at_once_and_is_never_checkpointed_again(
    env: Env,
) -> None:
    env.make_stream(1)
    app = env.app(batch_size=2)
    env.gates["hold"] = asyncio.Event()
    await env.publish(app, ["t-0", "t-1"], key="k")
    await env.publish(app, ["t-2"], key="k", gate="hold")
    running = Running(EcsWorker(app, worker_id="loser", **FAST))
    await until(lambda: "t-2" in env.executed(), "the held task to start")
    store = DynamoLeaseStore(env.table, env.settings)
    shard = env.shards()[0]

    async def steal() -> Lease | None:
        seen = (await store.get_all(env.stream, [shard]))[shard]
        # a clock far ahead makes the lease look expired to the thief
        return await store.take(seen, "thief", now=time.time() + 3600, lease_seconds=3600)

    stolen = await until(steal, "the thief to take the lease")
    await until(lambda: "cancelled t-2" in [t for _, t in env.runs], "the reader to be cancelled")
    assert running.worker.held_shards == []
    report = await running.stop()
    lease = (await env.leases())[shard]
    assert (lease.owner, lease.counter, lease.checkpoint) == ("thief", stolen.counter, "2")
    assert report.stats.leases_lost == 1 and report.stats.leases_released == 0
    assert env.executed() == ["t-0", "t-1", "t-2"]


async def test_after_a_split_children_are_read_once_the_parent_is_finished(env: Env) -> None:
    env.make_stream(1)
    app = env.app(batch_size=4)
    keys = ["a", "b", "c"]
    first = [f"t-{i:03d}" for i in range(12)]
    for i, task_id in enumerate(first):
        await env.publish(app, [task_id], key=keys[i % 3])
    running = Running(EcsWorker(app, worker_id="solo", shard_refresh_seconds=0.2, **FAST))
    await until(lambda: len(env.executed()) >= 4, "the first batch")
    env.clients.sync("kinesis").update_shard_count(
        StreamName=env.stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    second = [f"t-{i:03d}" for i in range(12, 24)]
    for i, task_id in enumerate(second, start=12):
        await env.publish(app, [task_id], key=keys[i % 3])

    async def children_read() -> bool:
        leases = await env.leases()
        parent = [lease for lease in leases.values() if lease.finished]
        children = [lease for lease in leases.values() if lease.parents]
        return (
            len(parent) == 1 and len(children) == 2 and set(env.executed()) >= set(first + second)
        )

    await until(children_read, "the parent to finish and the children to be read")
    await running.stop()
    executed = env.executed()
    # moto copies a split shard's records into its children, so some run again; the first
    # run of every task keeps each key's order.
    for key in keys:
        mine = [t for i, t in enumerate(first + second) if keys[i % 3] == key]
        first_runs = list(dict.fromkeys(t for t in executed if t in mine))
        assert first_runs == mine


async def test_latest_reads_only_what_is_written_after_the_leases_are_created(env: Env) -> None:
    env.make_stream(2)
    app = env.app()
    await env.publish(app, ["old-0", "old-1", "old-2"])
    # AT_TIMESTAMP travels in whole seconds: leases created in the second of the old records
    # would read them too (at-least-once), so start in the next second
    published = int(time.time())
    await until(lambda: int(time.time()) > published, "the next second")
    running = Running(EcsWorker(app, initial_position="LATEST", **FAST))
    await until(lambda: len(running.worker.held_shards) == 2, "both shards to be held")
    await env.publish(app, ["new-0", "new-1", "new-2"])
    await until(lambda: len(env.executed()) >= 3, "the new tasks to run")
    await running.stop()
    assert sorted(env.executed()) == ["new-0", "new-1", "new-2"]
    assert all(lease.start_at is not None for lease in (await env.leases()).values())


async def test_two_workers_balance_two_and_two_and_a_handover_runs_nothing_twice(
    serial_env: Env,
) -> None:
    env = serial_env
    env.make_stream(4)
    producer = env.app("producer")
    ids = [f"t-{i:03d}" for i in range(80)]
    await env.publish(producer, ids[:40])
    first = Running(EcsWorker(env.app("a", batch_size=3), worker_id="a", **FAST))
    await until(lambda: len(first.worker.held_shards) == 4, "a to take all four shards")
    second = Running(EcsWorker(env.app("b", batch_size=3), worker_id="b", **FAST))
    await env.publish(producer, ids[40:])

    async def balanced() -> bool:
        owners = Counter(lease.owner for lease in (await env.leases()).values())
        return owners == Counter({"a": 2, "b": 2})

    await until(balanced, "two shards each")
    await until(lambda: set(env.executed()) == set(ids), "every task to run")
    report_b = await second.stop()
    report_a = await first.stop()
    assert sorted(env.executed()) == ids  # none twice: the handovers waited for the batches
    assert report_a.stats.leases_handed_over == 2 and report_b.stats.handovers_requested >= 2
    assert report_a.stats.leases_lost == 0 and report_b.stats.leases_lost == 0
    await producer.aclose()


# -- SQS, in process --------------------------------------------------------------------------


async def test_heartbeats_keep_a_long_task_from_being_delivered_twice(env: Env) -> None:
    env.make_queue()
    app = env.app()
    env.gates["long"] = asyncio.Event()
    await env.publish(app, ["m-long"], gate="long")
    worker = EcsWorker(
        app, sqs_wait_seconds=1, sqs_visibility_timeout=1, heartbeat_every=0.2, **FAST
    )
    running = Running(worker)
    await until(lambda: env.executed() == ["m-long"], "the long task to start")
    # ten extensions of a one-second visibility: without them it would be visible again
    await until(lambda: worker.stats.sqs_heartbeats >= 10, "ten heartbeats")
    assert env.receive_now() == []
    env.gates["long"].set()
    await until(lambda: env.queue_counts() == (0, 0), "the message to be deleted")
    await running.stop()
    assert env.executed() == ["m-long"]


async def test_at_stop_prefetched_messages_go_back_at_once_and_running_ones_finish(
    env: Env,
) -> None:
    env.make_queue()
    app = env.app(batch_size=2)
    env.gates["g"] = asyncio.Event()
    ids = ["m-0", "m-1", "m-2", "m-3"]
    await env.publish(app, ids, gate="g")
    worker = EcsWorker(app, sqs_wait_seconds=1, sqs_visibility_timeout=120, **FAST)
    running = Running(worker)
    await until(lambda: env.executed(), "the first batch to start")
    await until(lambda: env.queue_counts() == (0, 4), "the next batch to be prefetched")
    worker.request_stop()
    await until(lambda: worker.stopping, "the worker to start draining")
    env.gates["g"].set()
    report = await running.stop()
    started = env.executed()
    assert len(started) == 2 and len(set(started)) == 2
    assert report.stats.sqs_handed_back == 2
    assert env.receive_now() == sorted(set(ids) - set(started))  # visible at once


async def test_past_the_grace_running_batches_are_cancelled_and_handed_back(env: Env) -> None:
    env.make_stream(1)
    env.make_queue()
    app = env.app(batch_size=2, sqs=True)
    env.gates["never"] = asyncio.Event()
    await env.publish(app, ["k-0"], key="k", gate="never")
    await env.publish(app, ["m-0"], gate="never", sqs=True)
    options = dict(FAST, grace_seconds=0.5)
    worker = EcsWorker(
        app, worker_id="w", sqs_wait_seconds=1, sqs_visibility_timeout=120, **options
    )
    running = Running(worker)
    await until(lambda: sorted(env.executed()) == ["k-0", "m-0"], "both tasks to start")
    report = await running.stop()
    cancelled = sorted(t for _, t in env.runs if t.startswith("cancelled"))
    assert cancelled == ["cancelled k-0", "cancelled m-0"]
    assert report.stats.cancelled_at_grace == 2
    assert env.receive_now() == ["m-0"]
    lease = (await env.leases())[env.shards()[0]]
    assert (lease.owner, lease.checkpoint) == (None, None)


# -- worker processes -------------------------------------------------------------------------


@dataclass
class Processes:
    env: Env
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        variables = dict(
            os.environ,
            TQ_ENDPOINT_URL=self.env.endpoint,
            TQ_TABLE=self.env.table,
            TQ_TEST_LOG=str(self.logs),
            TQ_TEST_NAME=name,
            PYTHONPATH=str(ROOT),
            **extra_env,
        )
        if self.env.stream:
            variables["TQ_STREAM"] = self.env.stream
        if self.env.queue_url:
            variables["TQ_QUEUE_URL"] = self.env.queue_url
            if self.env.stream:
                variables["TQ_SQS_QUEUES"] = "mail"
        command = [
            sys.executable,
            "-m",
            "tq_aws.cli",
            "worker",
            "--app",
            "tests.support.worker_app:app",
            "--worker-id",
            name,
            "--lease-seconds",
            "2",
            "--renew-every",
            "0.3",
            "--poll-interval",
            "0.05",
            "--sqs-wait-seconds",
            "1",
            *args,
        ]
        with open(self.logs / f"{name}.err", "wb") as stderr:
            proc = subprocess.Popen(command, env=variables, cwd=ROOT, stderr=stderr)
        self.procs[name] = proc
        return proc

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.logs.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if name is None or event["w"] == name:
                    out.append(event)
        return out

    def ids(self, event: str, name: str | None = None) -> list[str]:
        return [e["id"] for e in self.events(name) if e["e"] == event]

    def stderr(self, name: str) -> str:
        return (self.logs / f"{name}.err").read_text(errors="replace")


@contextlib.contextmanager
def worker_processes(env: Env, logs: Path) -> Iterator[Processes]:
    env.clients.sync("scheduler").create_schedule_group(Name="tq")
    running = Processes(env, logs)
    try:
        yield running
    finally:
        for proc in running.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def processes(env: Env, tmp_path: Path) -> Iterator[Processes]:
    with worker_processes(env, tmp_path) as running:
        yield running


@pytest.fixture
def serial_processes(serial_env: Env, tmp_path: Path) -> Iterator[Processes]:
    with worker_processes(serial_env, tmp_path) as running:
        yield running


def stream_positions(env: Env) -> dict[str, tuple[str, int]]:
    """Task id -> (shard, sequence number) of every record of the stream."""
    kinesis = env.clients.sync("kinesis")
    out = {}
    for shard in env.shards():
        iterator = kinesis.get_shard_iterator(
            StreamName=env.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]:
            out[decode_task(record["Data"]).id or ""] = (shard, int(record["SequenceNumber"]))
    return out


async def wait_exit(proc: subprocess.Popen[bytes], limit: float = 60.0) -> int:
    await until(lambda: proc.poll() is not None, "the worker process to exit", limit)
    return int(proc.returncode)


async def test_a_killed_workers_shards_are_taken_over_and_only_its_unfinished_batch_runs_again(
    serial_env: Env, serial_processes: Processes
) -> None:
    env, processes = serial_env, serial_processes
    env.make_stream(4)
    producer = env.app("producer")
    batch = 5
    wave1 = [f"t-{i:03d}" for i in range(40)]
    wave2 = [f"t-{i:03d}" for i in range(40, 80)]
    await env.publish(producer, wave1)
    arm = processes.logs / "arm"
    processes.start("A", TQ_TEST_BATCH=str(batch), TQ_TEST_ARM=str(arm))
    processes.start("B", TQ_TEST_BATCH=str(batch))

    async def owners() -> Counter[str | None]:
        return Counter(lease.owner for lease in (await env.leases()).values())

    async def balanced() -> bool:
        return await owners() == Counter({"A": 2, "B": 2})

    await until(balanced, "the two workers to hold two shards each", 60)
    await until(lambda: set(processes.ids("done")) >= set(wave1), "the first wave to run")
    arm.touch()  # from now on A holds every task it starts, until it is killed
    await env.publish(producer, wave2)
    await until(lambda: processes.ids("held", "A"), "A to be in the middle of a batch")
    processes.procs["A"].send_signal(signal.SIGKILL)
    assert await wait_exit(processes.procs["A"]) == -signal.SIGKILL
    everything = set(wave1 + wave2)
    await until(lambda: set(processes.ids("done")) >= everything, "every task to run", 60)

    async def b_holds_all() -> bool:
        return await owners() == Counter({"B": 4})

    await until(b_holds_all, "B to hold all four shards")
    processes.procs["B"].send_signal(signal.SIGTERM)
    assert await wait_exit(processes.procs["B"]) == 0
    await producer.aclose()

    started = Counter(processes.ids("start"))
    assert set(started) == everything  # none lost
    duplicates = {task_id for task_id, n in started.items() if n > 1}
    held = set(processes.ids("held", "A"))
    assert held and held <= duplicates
    assert all(started[t] == 2 for t in duplicates)
    by_a, by_b = processes.ids("start", "A"), processes.ids("start", "B")
    assert len(set(by_b)) == len(by_b) and len(set(by_a)) == len(by_a)
    first_start: dict[str, str] = {}
    for event in sorted(processes.events(), key=lambda e: e["t"]):
        if event["e"] == "start":
            first_start.setdefault(event["id"], event["w"])
    assert all(first_start[t] == "A" for t in duplicates)  # A ran them first, then B again
    # per shard: the duplicates are the last tasks A read there, at most one batch
    positions = stream_positions(env)
    for shard in env.shards():
        a_here = sorted((positions[t][1], t) for t in by_a if positions[t][0] == shard)
        dup_here = {t for t in duplicates if positions[t][0] == shard}
        assert len(dup_here) <= batch
        assert {t for _, t in a_here[len(a_here) - len(dup_here) :]} == dup_here


async def test_sigterm_drains_finishes_the_running_batches_and_exits_zero(
    env: Env, processes: Processes
) -> None:
    env.make_stream(1)
    env.make_queue()
    producer = env.app("producer", sqs=True)
    release = processes.logs / "release"
    kinesis_ids = ["k-0", "k-1", "k-2", "k-3"]
    sqs_ids = ["m-0", "m-1", "m-2", "m-3"]
    await env.publish(producer, kinesis_ids, key="k", hold=str(release))
    await env.publish(producer, sqs_ids, hold=str(release), sqs=True)
    worker = processes.start(
        "W", "--grace-seconds", "30", "--sqs-visibility-timeout", "120", TQ_TEST_BATCH="2"
    )
    started = processes.ids

    await until(
        lambda: {"k-0"} <= set(started("start")) and set(started("start")) & set(sqs_ids),
        "a Kinesis and an SQS batch to start",
        60,
    )
    await until(lambda: env.queue_counts() == (0, 4), "the next SQS batch to be prefetched")
    worker.send_signal(signal.SIGTERM)
    await until(lambda: "stopping" in processes.stderr("W"), "the worker to start draining")
    release.touch()
    assert await wait_exit(worker) == 0
    await producer.aclose()

    done = processes.ids("done")
    assert sorted(processes.ids("start")) == sorted(done)  # what started, finished
    assert sorted(t for t in done if t.startswith("k-")) == ["k-0", "k-1"]  # no new batch
    sqs_done = sorted(t for t in done if t.startswith("m-"))
    assert len(sqs_done) == 2
    assert env.receive_now() == sorted(set(sqs_ids) - set(sqs_done))  # prefetched: back at once
    lease = (await env.leases())[env.shards()[0]]
    assert (lease.owner, lease.expiry, lease.checkpoint) == (None, 0.0, "2")
    assert "lease released" in processes.stderr("W")


def test_the_cli_refuses_an_app_without_aws_resources_and_points_to_local(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tq_aws import cli

    assert cli.main(["worker", "--app", "tests.support.poison_app:app"]) == 2  # a memory app
    assert "(or use --local)" in capsys.readouterr().err
