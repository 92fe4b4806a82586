"""AWS requests per task and per flow step, and what they would cost on AWS.

Every scenario runs the real engine on ``TaskQueue.aws(...)`` against moto (a
``ThreadedMotoServer`` on 127.0.0.1, Kinesis writes serialized: ``tq_aws.testing.moto``), except
flows of more than 1,000 steps (moto copies the whole table for every ``TransactWriteItems``,
so they would take hours there): those run the DynamoDB flow and task stores' own
request-building code with the HTTP send stubbed out (no moto, nothing leaves the process).

What is counted: every request of every client the app opens (botocore ``before-parameter-build``
and ``after-call`` hooks on the aioboto3 clients, the boto3 clients and the DynamoDB stores'
pynamodb client). What it would cost is computed from the requests themselves, since moto's
``ConsumedCapacity`` is a constant:

* DynamoDB write request units: ``ceil(item bytes / 1 KiB)`` per item written, the larger of the
  item before and after the write (a shadow copy of every item the run wrote is kept to know
  "before"), twice that inside ``TransactWriteItems``; item bytes by DynamoDB's rules (attribute
  names plus values: strings and binaries by length, numbers 1 byte per 2 significant digits plus
  1, lists and maps 3 bytes plus 1 per element). A write whose condition fails is charged for
  the stored item (at least 1). Read units: ``ceil(bytes / 4 KiB)`` per strongly consistent
  ``GetItem`` and per ``Query`` page (at least 1).
* Kinesis on demand: each record's data plus partition key rounded up to 1 KiB; provisioned
  streams: 25 KB PUT payload units.
* SQS: every request, each 64 KiB of a request's payload counting as one.
* EventBridge Scheduler: one invocation per schedule that fires (fired by the test-only firing
  on loopback, whose own ``ListSchedules``/``GetSchedule``/``DeleteSchedule`` calls are left out:
  EventBridge makes none of them). S3: ``PutObject`` and ``GetObject``.

Not counted: stream hours and retention, storage, data transfer, free tiers, and the consumer's
polling (``GetRecords`` is free per call on on-demand streams; an empty ``ReceiveMessage`` of the
local worker is listed but a Lambda consumer's polling is billed differently).

Run: ``python -m bench.aws_cost`` (about 1.5 to 2 minutes), ``--quick`` (about 40 seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import math
import os
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench._rounds import Row as BenchRow
from bench._rounds import report

if TYPE_CHECKING:
    from tq_aws import TaskQueue

# -- prices ----------------------------------------------------------------------------------

PRICES_AS_OF = "2026-11-25"
PRICES_SOURCE = (
    "list prices, us-east-1, as published on the AWS pricing pages (DynamoDB on-demand after "
    "the 2024-11-01 reduction); no free tier"
)


@dataclass(frozen=True)
class Prices:
    """US dollars per unit (us-east-1 list prices, see ``PRICES_SOURCE``)."""

    dynamodb_wru: float = 0.625 / 1e6  # on-demand, per write request unit
    dynamodb_rru: float = 0.125 / 1e6  # on-demand, per read request unit
    kinesis_gb_in: float = 0.08  # on-demand, per GB ingested (records rounded up to 1 KiB)
    kinesis_put_unit: float = 0.014 / 1e6  # provisioned, per 25 KB PUT payload unit
    sqs_request: float = 0.40 / 1e6  # standard queue, per request (64 KiB chunk)
    scheduler_invocation: float = 1.00 / 1e6  # EventBridge Scheduler, per invocation
    s3_put: float = 0.005 / 1000  # S3 Standard PUT/COPY/POST/LIST
    s3_get: float = 0.0004 / 1000  # S3 Standard GET


PRICES = Prices()

# -- DynamoDB item sizes ---------------------------------------------------------------------

KIB = 1024


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per 2 significant digits, plus 1."""
    digits = text.strip().lstrip("+-").lower()
    if "e" in digits:  # 1.5e3: the exponent is not a digit of the value
        digits = digits.split("e", 1)[0]
    digits = digits.replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB JSON (``{"S": ...}``, ``{"N": ...}``, ...)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(number_size(n) for n in data)
    if kind == "BS":
        return sum(len(b) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: dict[str, Any] | None) -> int:
    """Bytes of an item: attribute names plus values."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(*sizes: int) -> int:
    """Write request units of one standard write: the larger image, per started KiB (min 1)."""
    return max(1, math.ceil(max(sizes) / KIB))


def read_units(size: int) -> int:
    """Read request units of one strongly consistent read of ``size`` bytes (min 1)."""
    return max(1, math.ceil(size / (4 * KIB)))


_CLAUSE = re.compile(r"\b(SET|ADD|REMOVE|DELETE)\s+(.*?)(?=\s+\b(?:SET|ADD|REMOVE|DELETE)\s|$)")


def apply_update(
    item: dict[str, Any] | None,
    expression: str,
    names: dict[str, str],
    values: dict[str, Any],
) -> dict[str, Any]:
    """The item after an ``UpdateExpression`` of the forms pynamodb writes here: ``SET #a = :v``,
    ``ADD #n :v`` (numbers and sets) and ``REMOVE #a``."""
    out = dict(item or {})
    for clause, body in _CLAUSE.findall(expression.strip()):
        for part in (p.strip() for p in body.split(",") if p.strip()):
            if clause == "SET":
                path, value = (x.strip() for x in part.split("=", 1))
                if value not in values:
                    raise ValueError(f"cannot size SET {part!r}")
                out[names.get(path, path)] = values[value]
            elif clause == "ADD":
                path, value = part.split()
                name, add = names.get(path, path), values[value]
                old = out.get(name)
                if "N" in add:
                    total = Decimal(old["N"] if old else "0") + Decimal(add["N"])
                    out[name] = {"N": str(total)}
                else:
                    ((kind, members),) = add.items()
                    merged = set(old[kind]) | set(members) if old else set(members)
                    out[name] = {kind: sorted(merged)}
            elif clause == "REMOVE":
                out.pop(names.get(part, part), None)
            else:
                raise ValueError(f"cannot size {clause} {part!r}")
    return out


def _key(key_or_item: dict[str, Any]) -> tuple[str, str]:
    return (str(key_or_item["pk"]["S"]), str(key_or_item["sk"]["S"]))


def item_kind(key: tuple[str, str]) -> str:
    """What an item of the one-table layout is: task, projection, barrier or step."""
    pk, sk = key
    if pk.startswith("TASK#"):
        return "task"
    if pk.startswith("ENTITY#"):
        return "projection"
    if pk.startswith("FLOW#"):
        return "step" if sk.startswith("STEP#") else "barrier"
    return "other"


# -- the meter -------------------------------------------------------------------------------

_SIMULATED = contextvars.ContextVar("simulated_firing", default=False)
_FIRING_ONLY = {"ListSchedules", "GetSchedule", "DeleteSchedule", "GetQueueUrl"}
_CONTROL_PLANE = {
    "CreateTable",
    "DescribeTable",
    "DescribeTimeToLive",
    "UpdateTimeToLive",
    "CreateStream",
    "DescribeStreamSummary",
    "ListShards",
    "GetShardIterator",
    "CreateQueue",
    "GetQueueAttributes",
    "CreateBucket",
    "GetBucketLifecycleConfiguration",
    "PutBucketLifecycleConfiguration",
    "CreateScheduleGroup",
}


@dataclass
class Meter:
    """Requests of one AWS app and what they would cost (see the module docstring)."""

    calls: Counter[str] = field(default_factory=Counter)
    """``service.Operation`` -> requests (test-only firing calls under ``simulated.``)."""
    writes: Counter[str] = field(default_factory=Counter)
    """Item kind (``task``, ``projection``, ``barrier``, ``step``; ``@tx`` inside
    ``TransactWriteItems``) -> items written (conditions that held)."""
    wru: Counter[str] = field(default_factory=Counter)
    """Item kind -> write request units (transactional writes count double)."""
    rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Item kind (of the key read) -> read request units (eventually consistent: halves)."""
    failed_conditions: int = 0
    cancelled_transactions: int = 0
    kinesis_records: int = 0
    kinesis_kib: int = 0
    kinesis_put_units: int = 0
    sqs_requests: int = 0
    sqs_empty_receives: int = 0
    invocations: int = 0
    s3_puts: int = 0
    s3_gets: int = 0
    shadow: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _hooked: list[Any] = field(default_factory=list)

    # -- attaching -------------------------------------------------------------------------

    def attach(self, app: Any) -> Meter:
        """Hook every client ``app`` has or will open, and mark the test-only firing."""
        clients = app.resources.clients
        get, sync = clients.get, clients.sync

        async def hooked_get(service: str) -> Any:
            return self.hook(await get(service))

        def hooked_sync(service: str) -> Any:
            return self.hook(sync(service))

        clients.get, clients.sync = hooked_get, hooked_sync
        self.hook(app.task_store.models.connection.connection.client)
        scheduler = app.scheduler
        fire_due = getattr(scheduler, "fire_due", None)
        if fire_due is not None:

            async def marked_fire_due(now: Any) -> int:
                token = _SIMULATED.set(True)
                try:
                    fired = int(await fire_due(now))
                finally:
                    _SIMULATED.reset(token)
                self.invocations += fired
                return fired

            scheduler.fire_due = marked_fire_due
        next_due = getattr(scheduler, "next_due", None)
        if next_due is not None:

            def marked_next_due() -> Any:
                token = _SIMULATED.set(True)
                try:
                    return next_due()
                finally:
                    _SIMULATED.reset(token)

            scheduler.next_due = marked_next_due
        return self

    def hook(self, client: Any) -> Any:
        """Count the requests of one botocore (or aiobotocore) client."""
        if not any(c is client for c in self._hooked):
            events = client.meta.events
            # unique ids are per emitter, not per event: one each
            events.register("before-parameter-build", self._before, unique_id=f"{self._uid}-b")
            events.register("after-call", self._after, unique_id=f"{self._uid}-a")
            self._hooked.append(client)
        return client

    def detach(self) -> None:
        for client in self._hooked:
            client.meta.events.unregister("before-parameter-build", unique_id=f"{self._uid}-b")
            client.meta.events.unregister("after-call", unique_id=f"{self._uid}-a")
        self._hooked.clear()

    @property
    def _uid(self) -> str:
        return f"tq-aws-cost-{id(self)}"

    # -- events ------------------------------------------------------------------------------

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["tq_cost_params"] = params
        context["tq_cost_simulated"] = _SIMULATED.get()

    def _after(
        self, http_response: Any, parsed: dict[str, Any], model: Any, event_name: str, **kw: Any
    ) -> None:
        context = kw.get("context") or {}
        params = context.get("tq_cost_params") or {}
        service, operation = event_name.split(".")[1], model.name
        ok = int(getattr(http_response, "status_code", 200)) < 300
        error = (parsed.get("Error") or {}).get("Code") if not ok else None
        if context.get("tq_cost_simulated") and operation in _FIRING_ONLY:
            self.calls[f"simulated.{operation}"] += 1
            return
        self.calls[f"{service}.{operation}"] += 1
        if operation in _CONTROL_PLANE:
            return
        if service == "dynamodb":
            self._dynamodb(operation, params, parsed, error)
        elif service == "kinesis" and ok and operation in ("PutRecords", "PutRecord"):
            records = params.get("Records") or [params]
            for record in records:
                size = len(record.get("Data") or b"") + len(record["PartitionKey"].encode())
                self.kinesis_records += 1
                self.kinesis_kib += math.ceil(size / KIB)
                self.kinesis_put_units += math.ceil(size / 25_000)
        elif service == "sqs":
            entries = params.get("Entries") or [params]
            payload = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
            self.sqs_requests += max(1, math.ceil(payload / (64 * KIB)))
            if operation == "ReceiveMessage" and not parsed.get("Messages"):
                self.sqs_empty_receives += 1
        elif service == "s3":
            if operation == "PutObject":
                self.s3_puts += 1
            elif operation == "GetObject":
                self.s3_gets += 1

    def _dynamodb(
        self, operation: str, params: dict[str, Any], parsed: dict[str, Any], error: str | None
    ) -> None:
        if operation == "PutItem":
            self._write(params, params["Item"], error is None, transactional=False)
        elif operation == "UpdateItem":
            after = parsed.get("Attributes") if params.get("ReturnValues") == "ALL_NEW" else None
            self._update(params, after, error is None, transactional=False)
        elif operation == "TransactWriteItems":
            committed = error is None
            if not committed:
                self.cancelled_transactions += 1
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    self._write(entry["Put"], entry["Put"]["Item"], committed, transactional=True)
                elif "Update" in entry:
                    self._update(entry["Update"], None, committed, transactional=True)
                else:  # ConditionCheck / Delete: charged as a write of the stored item
                    body = next(iter(entry.values()))
                    key = _key(body["Key"])
                    units = 2 * write_units(item_size(self.shadow.get(key)))
                    self.wru[item_kind(key) + "@tx"] += units
        elif operation == "GetItem":
            key = _key(params["Key"])
            units = read_units(item_size(parsed.get("Item")))
            self.rru[item_kind(key)] += units if params.get("ConsistentRead") else units / 2
        elif operation == "Query":
            size = sum(item_size(i) for i in parsed.get("Items") or [])
            values = (params.get("ExpressionAttributeValues") or {}).values()
            pk = next((str(v["S"]) for v in values if "#" in str(v.get("S", ""))), "")
            kind = "step" if pk.startswith("FLOW#") else item_kind((pk, ""))
            units = read_units(size)
            self.rru[kind] += units if params.get("ConsistentRead") else units / 2

    def _write(
        self, params: dict[str, Any], item: dict[str, Any], ok: bool, *, transactional: bool
    ) -> None:
        key = _key(item)
        kind = item_kind(key) + ("@tx" if transactional else "")
        old = self.shadow.get(key)
        factor = 2 if transactional else 1
        if ok:
            self.wru[kind] += factor * write_units(item_size(item), item_size(old))
            self.writes[kind] += 1
            self.shadow[key] = item
        else:
            self.wru[kind] += factor * write_units(item_size(old))
            self.failed_conditions += not transactional

    def _update(
        self, params: dict[str, Any], after: dict[str, Any] | None, ok: bool, *, transactional: bool
    ) -> None:
        key = _key(params["Key"])
        kind = item_kind(key) + ("@tx" if transactional else "")
        before = self.shadow.get(key)
        factor = 2 if transactional else 1
        if not ok:
            self.wru[kind] += factor * write_units(item_size(before))
            self.failed_conditions += not transactional
            return
        if after is None:
            after = apply_update(
                before,
                params["UpdateExpression"],
                params.get("ExpressionAttributeNames") or {},
                params.get("ExpressionAttributeValues") or {},
            )
        self.wru[kind] += factor * write_units(item_size(before), item_size(after))
        self.writes[kind] += 1
        self.shadow[key] = dict(after)

    # -- totals ----------------------------------------------------------------------------

    def service_calls(self, service: str) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith(f"{service}."))

    def dollars(self, prices: Prices = PRICES) -> dict[str, float]:
        """What the counted requests would cost, by service (Kinesis on demand)."""
        return {
            "dynamodb": sum(self.wru.values()) * prices.dynamodb_wru
            + sum(self.rru.values()) * prices.dynamodb_rru,
            "kinesis": self.kinesis_kib * KIB / 1e9 * prices.kinesis_gb_in,
            "sqs": self.sqs_requests * prices.sqs_request,
            "scheduler": self.invocations * prices.scheduler_invocation,
            "s3": self.s3_puts * prices.s3_put + self.s3_gets * prices.s3_get,
        }


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: ``n`` items of one kind and what they cost together."""

    scenario: str
    n: int
    meter: Meter
    seconds: float = 0.0

    def per(self, value: float) -> float:
        return value / self.n if self.n else 0.0

    @property
    def ddb_requests(self) -> int:
        return self.meter.service_calls("dynamodb")

    @property
    def writes(self) -> int:
        return sum(self.meter.writes.values())

    @property
    def wru(self) -> float:
        return sum(self.meter.wru.values())

    @property
    def cost(self) -> float:
        return sum(self.meter.dollars().values())


async def _app(
    endpoint: str, clock: Any, *, stream: bool = True, sqs: bool = False, **options: Any
) -> TaskQueue:
    from tq_aws import TaskQueue

    queue = f"{endpoint}/123456789012/{_name('tq-queue')}" if sqs else None
    app = TaskQueue.aws(
        stream=_name("tq-stream") if stream else None,
        queue_url=queue,
        table=_name("tq-table"),
        bucket=_name("tq-bucket"),
        scheduler_group="tq",
        scheduler_role_arn="arn:aws:iam::123456789012:role/tq",
        region="us-east-1",
        endpoint_url=endpoint,
        clock=clock,
        **options,
    )
    await app.ensure_resources()
    return app


class WorkNotDone(RuntimeError):
    """A scenario did not run what it was measured for."""


async def plain_tasks(endpoint: str, n: int, *, sqs: bool) -> Row:
    """``n`` plain tasks (no entity, not stored), added in one call and run."""
    from tq_aws import Task
    from tq_aws.testing import ManualClock

    app = await _app(endpoint, ManualClock(), stream=not sqs, sqs=sqs)
    done = 0

    @app.executor("q", "t")
    async def run(task: Any, actions: Any) -> None:
        nonlocal done
        done += 1
        actions.success(task)

    meter = Meter().attach(app)
    started = time.perf_counter()
    await app.add_tasks([Task(type="t", queue_id="q", payload={"i": i}) for i in range(n)])
    await app.run_until_idle()
    seconds = time.perf_counter() - started
    meter.detach()
    await app.aclose()
    if done != n:
        raise WorkNotDone(f"plain tasks: {done} of {n} ran")
    transport = "SQS" if sqs else "Kinesis"
    return Row(f"plain task ({transport})", n, meter, seconds)


async def stored_tasks(endpoint: str, n: int) -> Row:
    """``n`` tasks with ``force_store``: a record from ``add_tasks`` to ``executed``."""
    from tq_aws import Task, TaskStatus
    from tq_aws.testing import ManualClock

    app = await _app(endpoint, ManualClock())

    @app.executor("q", "t")
    async def run(task: Any, actions: Any) -> None:
        actions.success(task, {"ok": True})

    meter = Meter().attach(app)
    started = time.perf_counter()
    ids = await app.add_tasks([Task(type="t", queue_id="q", force_store=True) for _ in range(n)])
    await app.run_until_idle()
    seconds = time.perf_counter() - started
    meter.detach()
    last = await app.get_task(ids[-1])
    await app.aclose()
    if last is None or last.status is not TaskStatus.EXECUTED:
        raise WorkNotDone("stored tasks: the last record is not executed")
    return Row("stored task (force_store)", n, meter, seconds)


async def entity_tasks(endpoint: str, n: int, *, grace: float) -> Row:
    """``n`` tasks of one entity each: projection rows ``scheduled -> processing -> executed``
    (``processing`` only when the batch outlives ``processing_grace``)."""
    from tq_aws import Entity, Task
    from tq_aws.testing import ManualClock

    app = await _app(endpoint, ManualClock(), processing_grace=grace)

    @app.executor("q", "t")
    async def run(task: Any, actions: Any) -> None:
        actions.success(task)

    meter = Meter().attach(app)
    started = time.perf_counter()
    await app.add_tasks(
        [Task(type="t", queue_id="q", entity=Entity(id=f"e-{i}", type="user")) for i in range(n)]
    )
    await app.run_until_idle()
    seconds = time.perf_counter() - started
    meter.detach()
    rows = await app.entity_status(Entity(id=f"e-{n - 1}", type="user"))
    await app.aclose()
    if [r.status for r in rows] != ["executed"]:
        raise WorkNotDone(f"entity tasks: the last row is {[r.status for r in rows]}")
    label = f"entity task, processing_grace={grace:g}"
    return Row(label, n, meter, seconds)


async def retried_tasks(endpoint: str, n: int) -> Row:
    """``n`` plain tasks that fail once and run again ``retry_after`` later (EventBridge)."""
    from tq_aws import Task
    from tq_aws.testing import ManualClock

    clock = ManualClock()
    app = await _app(endpoint, clock)
    attempts: Counter[int] = Counter()

    @app.executor("q", "t", retries=1, retry_after=60)
    async def run(task: Any, actions: Any) -> None:
        attempts[task.retry_count] += 1
        if task.retry_count == 0:
            raise RuntimeError("try again")
        actions.success(task)

    meter = Meter().attach(app)
    started = time.perf_counter()
    await app.add_tasks([Task(type="t", queue_id="q") for _ in range(n)])
    await app.run_until_idle()
    clock.advance(seconds=60)
    await app.run_until_idle()
    seconds = time.perf_counter() - started
    meter.detach()
    await app.aclose()
    if attempts != Counter({0: n, 1: n}):
        raise WorkNotDone(f"retried tasks: attempts {dict(attempts)}")
    return Row("plain task retried once", n, meter, seconds)


@dataclass
class FlowCost:
    """One flow of ``steps`` steps: what its steps cost and what the flow itself costs."""

    steps: int
    how: str
    seconds: float
    batch: int
    transactions: int
    step_writes: int
    """Items written by the steps' transactions: step items and barrier updates."""
    step_wru: float
    flow_writes: int
    """The barrier's own writes: ``init`` and ``close``."""
    flow_wru: float
    join_writes: int
    """The join task's record: ``create``, ``claim`` and the final ``put``."""
    join_wru: float
    rru: float
    """Every read: the barrier after each reported batch, the results at the close."""
    s3_puts: int = 0
    note: str = ""

    @classmethod
    def from_meter(
        cls, steps: int, meter: Meter, how: str, seconds: float, batch: int, note: str = ""
    ) -> FlowCost:
        return cls(
            steps=steps,
            how=how,
            seconds=seconds,
            batch=batch,
            transactions=meter.calls["dynamodb.TransactWriteItems"],
            step_writes=meter.writes["step@tx"] + meter.writes["barrier@tx"],
            step_wru=meter.wru["step@tx"] + meter.wru["barrier@tx"],
            flow_writes=meter.writes["barrier"],
            flow_wru=meter.wru["barrier"],
            join_writes=meter.writes["task"],
            join_wru=meter.wru["task"],
            rru=sum(meter.rru.values()),
            s3_puts=meter.s3_puts,
            note=note,
        )


async def flow_on_moto(endpoint: str, steps: int) -> FlowCost:
    """A flow of ``steps`` no-op steps through the engine on moto (Kinesis, batches of 100)."""
    from tq_aws import Join, Task
    from tq_aws.testing import ManualClock

    app = await _app(endpoint, ManualClock())
    joined: list[int] = []

    @app.executor("q", "start")
    async def start(task: Any, actions: Any) -> None:
        batch = [Task(type="step", queue_id="q", payload=i) for i in range(steps)]
        actions.start_flow(batch, Join(queue_id="q", type="join"))
        actions.success(task)

    @app.executor("q", "step")
    async def step(task: Any, actions: Any) -> None:
        actions.success(task, task.payload)

    @app.executor("q", "join")
    async def join(task: Any, actions: Any) -> None:
        joined.append(len(task.payload["flow_results"]["steps"]))
        actions.success(task)

    meter = Meter().attach(app)
    started = time.perf_counter()
    await app.add_tasks([Task(type="start", queue_id="q")])
    await app.run_until_idle()
    seconds = time.perf_counter() - started
    meter.detach()
    await app.aclose()
    if joined != [steps]:
        raise WorkNotDone(f"flow of {steps}: joins {joined}")
    return FlowCost.from_meter(steps, meter, "engine on moto", seconds, app.batch_size)


class _Stub:
    """Answers the DynamoDB client in place of the network (``before-call`` returns a response,
    so botocore sends nothing): every write succeeds; an ``UpdateItem`` asking for ``ALL_NEW``
    gets the item as the meter's shadow copy has it after the update."""

    @dataclass
    class _Http:
        status_code: int = 200
        headers: dict[str, str] = field(default_factory=dict)

    def __init__(self, meter: Meter):
        self.meter = meter

    def __call__(
        self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> Any:
        api = context.get("tq_cost_params") or {}
        if model.name == "UpdateItem" and api.get("ReturnValues") == "ALL_NEW":
            before = self.meter.shadow.get(_key(api["Key"]))
            after = apply_update(
                before,
                api["UpdateExpression"],
                api.get("ExpressionAttributeNames") or {},
                api.get("ExpressionAttributeValues") or {},
            )
            return self._Http(), {"Attributes": {**after, **api["Key"]}}
        if model.name == "GetItem":
            item = self.meter.shadow.get(_key(api["Key"]))
            return self._Http(), ({"Item": item} if item else {})
        return self._Http(), {}


def sample_batches(steps: int, batch: int) -> list[int]:
    """First indexes of the batches a stubbed flow runs: every batch up to 20,000 steps; beyond,
    the first batch and the last batch of each index length (1-9, 10-99, ...), whose items are
    the largest of their length; the other batches of a length cost what its last one costs."""
    starts = list(range(0, steps, batch))
    if steps <= 20_000:
        return starts
    chosen = {0, starts[-1]}
    bound = 10
    while bound < steps:
        chosen.add((bound - 1) // batch * batch)
        bound *= 10
    return sorted(chosen)


async def flow_stubbed(steps: int, batch: int = 100) -> FlowCost:
    """The DynamoDB flow and task stores' requests for a flow of ``steps`` steps, built by
    their own code and answered by ``_Stub`` (nothing is sent): ``init``; ``record_steps`` once
    per ``batch`` steps, as the engine reports a delivered batch, with the barrier at the counts
    it has then (every batch up to 20,000 steps, else ``sample_batches``); ``close``; and the
    join task's record (``create``, ``claim``, final ``put``) carrying all ``steps`` results, kept
    in the blob store once too large for the item. The reads the engine makes (the barrier after
    each batch, one ``Query`` of every step item at the close) are computed from the items."""
    from datetime import UTC, datetime

    from tq_aws.backends.aws.clients import AwsSettings
    from tq_aws.backends.aws.dynamodb import DynamoFlowStore, DynamoTaskStore
    from tq_aws.backends.memory import MemoryBlobStore
    from tq_aws.core.flows import FlowRecord, FlowState, Join, StepResult, build_join
    from tq_aws.core.task import TaskStatus

    settings = AwsSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    table = _name("tq-stub")
    blobs = MemoryBlobStore()
    flows = DynamoFlowStore(table, settings, blob_store=blobs)
    tasks = DynamoTaskStore(table, settings, blob_store=blobs)
    meter = Meter()
    client = meter.hook(flows.models.connection.connection.client)
    client.meta.events.register("before-call.dynamodb", _Stub(meter), unique_id="tq-cost-stub")
    started = time.perf_counter()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = FlowRecord(
        flow_id=f"flow-{uuid.uuid4().hex}",
        total=steps,
        join=Join(queue_id="q", type="join"),
        failure_policy="continue",
        tolerated_failures=None,
        tolerated_failure_percentage=None,
        started_at=now,
    )
    barrier = (f"FLOW#{record.flow_id}", "FLOW")
    starts = list(range(0, steps, batch))
    sampled = sample_batches(steps, batch)
    per_batch: dict[int, tuple[int, int, float, int]] = {}  # start -> tx, writes, wru, bytes
    try:
        await flows.init(record)
        for start in sampled:
            # the barrier as it is when this batch is reported: ``start`` steps recorded
            for counter in ("succeeded", "completed"):
                meter.shadow[barrier][counter] = {"N": str(start)}
            before = (
                meter.calls["dynamodb.TransactWriteItems"],
                meter.writes["step@tx"] + meter.writes["barrier@tx"],
                meter.wru["step@tx"] + meter.wru["barrier@tx"],
            )
            results = [StepResult(i, "success", i) for i in range(start, min(steps, start + batch))]
            await flows.record_steps(record.flow_id, results)
            step_bytes = sum(
                item_size(meter.shadow[(barrier[0], f"STEP#{r.step_index:08d}")]) for r in results
            )
            per_batch[start] = (
                meter.calls["dynamodb.TransactWriteItems"] - before[0],
                meter.writes["step@tx"] + meter.writes["barrier@tx"] - before[1],
                meter.wru["step@tx"] + meter.wru["barrier@tx"] - before[2],
                step_bytes,
            )
        for counter in ("succeeded", "completed"):
            meter.shadow[barrier][counter] = {"N": str(steps)}
        await flows.close(record.flow_id, FlowState.JOINED, expected_completed=steps, now=now)
        record.state = FlowState.JOINED
        join = build_join(
            record, [StepResult(i, "success", i) for i in range(steps)], FlowState.JOINED, now
        )
        await tasks.create([join.model_copy(update={"stored": True})])
        claims = await tasks.claim([join], now)
        done = join.model_copy(update={"status": TaskStatus.EXECUTED, "updated_at": now})
        await tasks.put([done])
    finally:
        client.meta.events.unregister("before-call.dynamodb", unique_id="tq-cost-stub")
        meter.detach()
    if claims[join.id or ""].state.value != "run":
        raise WorkNotDone("stubbed flow: the join could not be claimed")

    def measured(start: int) -> tuple[int, int, float, int]:
        """A batch's figures: its own, or those of the sampled batch ending its index length."""
        if start in per_batch:
            return per_batch[start]
        last = start + batch - 1
        return per_batch[min(s for s in sampled if len(str(s + batch - 1)) == len(str(last)))]

    totals = [measured(start) for start in starts]
    step_bytes = sum(t[3] for t in totals)
    barrier_rru = len(starts) * read_units(item_size(meter.shadow[barrier]))
    pages = math.ceil(step_bytes / 1_000_000)  # Query pages of at most 1 MB
    results_rru = sum(read_units(min(1_000_000, step_bytes - p * 1_000_000)) for p in range(pages))
    note = (
        ""
        if len(sampled) == len(starts)
        else f"record_steps ran for {len(sampled)} of the {len(starts):,} batches"
        " (the first, and the last of each index length); the others cost what the last batch"
        " of their index length costs"
    )
    return FlowCost(
        steps=steps,
        how="store code, send stubbed",
        seconds=time.perf_counter() - started,
        batch=batch,
        transactions=sum(t[0] for t in totals),
        step_writes=sum(t[1] for t in totals),
        step_wru=sum(t[2] for t in totals),
        flow_writes=meter.writes["barrier"],
        flow_wru=meter.wru["barrier"],
        join_writes=meter.writes["task"],
        join_wru=meter.wru["task"],
        rru=barrier_rru + results_rru,
        s3_puts=len(blobs._blobs),
        note=note,
    )


# -- the report --------------------------------------------------------------------------------


def _money(dollars: float) -> str:
    return f"${dollars:,.2f}" if dollars >= 0.01 or dollars == 0 else f"${dollars:,.4f}"


def print_tasks(rows: Sequence[Row]) -> None:
    header = (
        f"{'scenario':<36} {'n':>6} {'Kinesis':>8} {'SQS':>6} {'DDB req':>8} {'DDB wr':>7}"
        f" {'WRU':>6} {'RRU':>6} {'sched':>6} {'$ per 1M':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        m = r.meter
        kinesis = m.calls["kinesis.PutRecords"] + m.calls["kinesis.PutRecord"]
        print(
            f"{r.scenario:<36} {r.n:>6} {r.per(kinesis):>8.3f} {r.per(m.sqs_requests):>6.2f}"
            f" {r.per(r.ddb_requests):>8.2f} {r.per(r.writes):>7.2f} {r.per(r.wru):>6.2f}"
            f" {r.per(sum(m.rru.values())):>6.2f} {r.per(m.invocations):>6.2f}"
            f" {_money(r.per(r.cost) * 1e6):>10}"
        )
    print(
        "  per task: Kinesis = PutRecords/PutRecord calls; SQS = billed requests (send, receive,"
        " delete); DDB req = DynamoDB requests;\n  DDB wr = items written; WRU/RRU = request"
        " units; sched = EventBridge Scheduler invocations; $ = all of them per million tasks"
    )
    refused = sum(r.meter.failed_conditions for r in rows)
    empty = sum(r.meter.sqs_empty_receives for r in rows)
    plain = next(r for r in rows if r.scenario == "plain task (Kinesis)")
    provisioned = plain.per(plain.meter.kinesis_put_units) * PRICES.kinesis_put_unit * 1e6
    print(
        f"  conditional writes refused: {refused}; empty ReceiveMessage calls (counted in SQS):"
        f" {empty}; a plain task on a provisioned stream instead: {_money(provisioned)} per"
        " million (PUT payload units, without shard hours)"
    )


def print_flows(flows: Sequence[FlowCost]) -> None:
    header = (
        f"{'steps':>9} {'how':<26} {'batch':>5} {'tx':>7} {'wr/step':>8} {'WRU/step':>9}"
        f" {'RRU/step':>9} {'flow wr':>8} {'flow WRU':>9} {'join wr':>8} {'join WRU':>9}"
        f" {'S3 put':>6} {'$/1M steps':>11} {'s':>6}"
    )
    print(header)
    print("-" * len(header))
    for f in flows:
        dollars = f.step_wru * PRICES.dynamodb_wru + f.rru * PRICES.dynamodb_rru
        print(
            f"{f.steps:>9,} {f.how:<26} {f.batch:>5} {f.transactions:>7,}"
            f" {f.step_writes / f.steps:>8.3f} {f.step_wru / f.steps:>9.3f}"
            f" {f.rru / f.steps:>9.3f} {f.flow_writes:>8} {f.flow_wru:>9.0f}"
            f" {f.join_writes:>8} {f.join_wru:>9.0f} {f.s3_puts:>6}"
            f" {_money(dollars / f.steps * 1e6):>11} {f.seconds:>6.1f}"
        )
    for f in flows:
        if f.note:
            print(f"  {f.steps:,} steps: {f.note}")
    print(
        "  tx = TransactWriteItems; wr/step = items written by the steps (step item + barrier"
        " update); WRU/step = their units (x2 in transactions);\n  RRU/step = every read of the"
        " flow (barrier after each batch, the results at the close) per step; flow wr/WRU = the"
        " barrier's init and close;\n  join wr/WRU = the join task's record (create, claim,"
        " final put); S3 put = objects written (the join's results once over the item limit);"
        "\n  $/1M steps = DynamoDB for the steps and the reads (each step is also a task record:"
        " see the plain task)"
    )


def check(label: str, ok: bool, detail: str) -> bool:
    print(f"  [{'meets' if ok else 'MISSES'}] {label}: {detail}")
    return ok


KINESIS_TARGET = 0.05
"""Dollars per million plain tasks on an on-demand stream."""
FLOW_STEP_TARGET = 0.75
"""Dollars of DynamoDB per million flow steps, at every flow size."""


def flow_step_dollars(f: FlowCost) -> float:
    """DynamoDB dollars per million steps of one flow: the steps' writes and the reads."""
    return (f.step_wru * PRICES.dynamodb_wru + f.rru * PRICES.dynamodb_rru) / f.steps * 1e6


def report_rows(rows: dict[str, Row], flows: Sequence[FlowCost]) -> None:
    """The performance table's rows: counted, not timed (the same on every run)."""
    print()
    for key, label in (("plain_kinesis", "without aggregation"), ("plain_kinesis_agg", "with")):
        r = rows.get(key)
        if r is None:
            continue
        dollars = r.per(r.cost) * 1e6
        per_record = r.meter.kinesis_kib / max(1, r.meter.kinesis_records)
        report(
            BenchRow(
                measure=f"plain task on an on-demand Kinesis stream, cost per million ({label})",
                value=_money(dollars),
                cpu="",
                spread="",
                target=f"<= {_money(KINESIS_TARGET)}",
                met=dollars <= KINESIS_TARGET,
                note=(
                    f"{r.n:,} tasks, {r.meter.kinesis_records:,} Kinesis records of "
                    f"{per_record:.2f} KiB billed each; counted, not timed"
                ),
            )
        )
    if flows:
        per_step = [flow_step_dollars(f) for f in flows]
        worst = max(per_step)
        flat = max(per_step) - min(per_step) <= 0.05 * worst
        report(
            BenchRow(
                measure="flow step, DynamoDB cost per million",
                value=_money(worst) + " (the largest)",
                cpu="",
                spread=", ".join(
                    f"{f.steps:,}: {_money(d)}" for f, d in zip(flows, per_step, strict=True)
                ),
                target=f"<= {_money(FLOW_STEP_TARGET)}, flat",
                met=worst <= FLOW_STEP_TARGET and flat,
                note=(
                    f"{'flat' if flat else 'NOT flat'} across sizes; "
                    f"{max(f.step_wru / f.steps for f in flows):.3f} WRU per step at most; "
                    "counted, not timed"
                ),
            )
        )


def check_targets(rows: dict[str, Row], flows: Sequence[FlowCost]) -> None:
    print("\nTargets")
    plain = rows["plain_kinesis"]
    puts = plain.meter.calls["kinesis.PutRecords"]
    check(
        "ceil(N/500) PutRecords for N small tasks",
        puts == math.ceil(plain.n / 500),
        f"{puts} calls for {plain.n} tasks",
    )
    for key in ("plain_kinesis", "plain_sqs"):
        r = rows[key]
        check(
            f"no DynamoDB request for a plain successful task ({r.scenario})",
            r.ddb_requests == 0,
            f"{r.ddb_requests} requests for {r.n} tasks",
        )
    for f in flows:
        check(
            f"<= 2 DynamoDB writes per flow step ({f.steps:,} steps)",
            f.step_writes / f.steps <= 2,
            f"{f.step_writes / f.steps:.3f} items, {f.step_wru / f.steps:.3f} WRU per step",
        )
    per_step = [f.step_wru / f.steps for f in flows]
    check(
        "write units per step flat at every flow size",
        max(per_step) - min(per_step) <= 0.05 * max(per_step),
        ", ".join(f"{f.steps:,}: {w:.3f}" for f, w in zip(flows, per_step, strict=True)),
    )
    for f in flows:
        # init and close of the barrier, and the join's create; the join task then runs like
        # any stored task (claim, final put)
        init_join = f.flow_writes + 1
        check(
            f"<= 3 writes per flow for init and join ({f.steps:,} steps)",
            init_join <= 3,
            f"barrier init + close {f.flow_writes}, join create 1, then the join task's claim"
            f" and final put {f.join_writes - 1}; {f.flow_wru + f.join_wru:.0f} WRU in all",
        )
    for key in ("entity", "entity_grace"):
        r = rows[key]
        changes = 3 if key == "entity" else 2  # scheduled, (processing), executed
        check(
            f"one projection write per status change ({r.scenario})",
            r.meter.writes["projection"] == changes * r.n,
            f"{r.per(r.meter.writes['projection']):.2f} rows written per task,"
            f" {changes} status changes",
        )
    without, with_grace = rows["entity"], rows["entity_grace"]
    saved = 1 - with_grace.cost / without.cost if without.cost else 0.0
    print(
        f"  processing_grace: {_money(without.per(without.cost) * 1e6)} per million entity tasks"
        f" without, {_money(with_grace.per(with_grace.cost) * 1e6)} with ({saved:.0%} less)"
    )


def print_prices() -> None:
    p = PRICES
    print(f"Prices ({PRICES_SOURCE}; as of {PRICES_AS_OF}):")
    print(
        f"  DynamoDB on demand ${p.dynamodb_wru * 1e6:.3f}/M WRU, ${p.dynamodb_rru * 1e6:.3f}/M"
        f" RRU; Kinesis on demand ${p.kinesis_gb_in:.2f}/GB in (1 KiB per record at least),"
        f" provisioned ${p.kinesis_put_unit * 1e6:.3f}/M PUT payload units;\n  SQS"
        f" ${p.sqs_request * 1e6:.2f}/M requests; EventBridge Scheduler"
        f" ${p.scheduler_invocation * 1e6:.2f}/M invocations; S3 ${p.s3_put * 1e3:.4f}/1k PUT,"
        f" ${p.s3_get * 1e3:.4f}/1k GET"
    )


# -- main --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    plain: int
    sqs: int
    stored: int
    entity: int
    retried: int
    moto_flows: tuple[int, ...]
    stub_flows: tuple[int, ...]


# moto copies the whole table for every TransactWriteItems (to roll back), so a flow's step
# transactions cost O(its items) each there: 1,000 steps take 20 to 50 s, 10,000 would take
# hours. Larger flows run the stores' own code with the send stubbed.
FULL = Sizes(
    plain=2000,
    sqs=200,
    stored=200,
    entity=200,
    retried=100,
    moto_flows=(100, 1000),
    stub_flows=(10_000, 1_000_000),
)
QUICK = Sizes(
    plain=1000,
    sqs=100,
    stored=50,
    entity=50,
    retried=20,
    moto_flows=(100, 300),
    stub_flows=(10_000, 100_000),
)


async def run(sizes: Sizes, log: Callable[[str], None]) -> tuple[dict[str, Row], list[FlowCost]]:
    rows: dict[str, Row] = {}
    flows: list[FlowCost] = []
    from tq_aws.testing.moto import MotoServer

    with MotoServer(serialize="kinesis_puts") as moto:
        endpoint = moto.endpoint
        log(f"plain tasks: {sizes.plain} on Kinesis, {sizes.sqs} on SQS")
        rows["plain_kinesis"] = await plain_tasks(endpoint, sizes.plain, sqs=False)
        rows["plain_sqs"] = await plain_tasks(endpoint, sizes.sqs, sqs=True)
        log(f"stored tasks: {sizes.stored}")
        rows["stored"] = await stored_tasks(endpoint, sizes.stored)
        log(f"entity tasks: {sizes.entity}, without and with processing_grace")
        rows["entity"] = await entity_tasks(endpoint, sizes.entity, grace=0.0)
        rows["entity_grace"] = await entity_tasks(endpoint, sizes.entity, grace=5.0)
        log(f"retried tasks: {sizes.retried}")
        rows["retried"] = await retried_tasks(endpoint, sizes.retried)
        for steps in sizes.moto_flows:
            log(f"flow of {steps:,} steps on moto")
            flows.append(await flow_on_moto(endpoint, steps))
    for steps in sizes.stub_flows:
        log(f"flow of {steps:,} steps, store code with the send stubbed")
        flows.append(await flow_stubbed(steps))
    return rows, flows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aws_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 40 s)")
    args = parser.parse_args(argv)
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(key, value)
    os.environ.pop("AWS_PROFILE", None)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        rows, flows = asyncio.run(run(sizes, log))
    except WorkNotDone as exc:
        print(f"not measured: {exc}")
        return 1
    print_prices()
    print()
    print_tasks(list(rows.values()))
    print()
    print_flows(flows)
    check_targets(rows, flows)
    report_rows(rows, flows)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Meter", "Prices", "apply_update", "item_size", "main"]
