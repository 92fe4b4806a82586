"""The status API's JSON (``Accept: application/json``) through ``app.status_handler()``, on
the memory stores and on DynamoDB (moto): entity, flow, steps, task, poison, overview; unknown
ids 404, times ISO-8601 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.status.shop import ORDER, Shop, body_of, url_event
from tq_aws import Actions, Entity, Join, Task, TaskQueue
from tq_aws.core.codec import encode_task
from tq_aws.core.poison import PoisonRecord
from tq_aws.testing import ManualClock

ROW_FIELDS = {"status", "task_type", "queue_id", "error", "result", "updated_at", "created_at"}
FLOW_FIELDS = {
    "flow_id",
    "state",
    "total",
    "succeeded",
    "failed",
    "pending",
    "started_at",
    "finished_at",
    "join_task_id",
    "failure_policy",
    "deadline",
    "join",
    "entity",
    "parent_task_id",
}


def get(app: TaskQueue, path: str, **kw: Any) -> tuple[int, Any]:
    response = app.status_handler()(url_event("GET", path, **kw), None)
    return response["statusCode"], body_of(response)


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_an_entity_answers_its_tasks_and_flows_newest_first(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    flow_id = await shop.checkout(3)
    clock.advance(1)
    paid = await shop.failed_payment(error="card declined")
    status, body = get(store_app, "/entities/order/o-1")
    assert status == 200
    assert set(body) == {"tasks", "flows"}
    tasks, flows = body["tasks"], body["flows"]
    assert [t["task_type"] for t in tasks][:1] == ["pay"]  # newest first
    assert {"checkout", "pay", "ship"} == {t["task_type"] for t in tasks}
    failed = tasks[0]
    assert (failed["task_id"], failed["status"], failed["error"]) == (
        paid,
        "failed",
        "card declined",
    )
    assert set(failed) >= ROW_FIELDS and "task_id" in failed
    [flow] = flows
    assert (flow["flow_id"], flow["status"]) == (flow_id, "executed")  # the join succeeded
    assert set(flow) >= ROW_FIELDS
    assert flow["progress"] == {
        "state": "joined",
        "total": 3,
        "succeeded": 3,
        "failed": 0,
        "pending": 0,
    }
    assert flow["result"] == {"shipped": 3}
    for row in [*tasks, *flows]:
        assert utc(row["updated_at"]) >= utc(row["created_at"])


async def test_an_unknown_entity_flow_or_task_is_404(store_app: TaskQueue, shop: Shop) -> None:
    await shop.checkout(1)
    for path in (
        "/entities/order/nope",
        "/flows/nope",
        "/flows/nope/steps",
        "/tasks/nope",
        "/no/such/page",
    ):
        status, body = get(store_app, path)
        assert status == 404, path
        assert body["statusCode"] == 404 and body["message"]


async def test_a_flow_answers_the_fields_of_flow_status_open_then_joined(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    flow_id = await shop.checkout(4, spacing=60)  # step i due at i minutes
    status, body = get(store_app, f"/flows/{flow_id}")
    assert status == 200
    assert set(body) == FLOW_FIELDS
    assert (body["state"], body["total"], body["succeeded"], body["pending"]) == ("open", 4, 1, 3)
    assert body["finished_at"] is None
    assert body["join"] == {"queue_id": "shop", "type": "ship"}
    assert body["entity"] == {"id": ORDER.id, "type": ORDER.type}
    expected = await store_app.flow_status(flow_id)
    assert expected is not None and utc(body["started_at"]) == expected.started_at
    _, order = get(store_app, "/entities/order/o-1")
    assert order["flows"][0]["status"] == "processing"
    for _ in range(3):
        clock.advance(60)
        await store_app.run_until_idle()
    _, body = get(store_app, f"/flows/{flow_id}")
    assert (body["state"], body["succeeded"], body["pending"]) == ("joined", 4, 0)
    assert utc(body["finished_at"]) == clock.now()
    _, order = get(store_app, "/entities/order/o-1")
    assert order["flows"][0]["status"] == "executed"


async def test_a_flows_steps_with_a_failed_only_filter(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    flow_id = await shop.checkout(5, spacing=60, fail_items=[1, 3], fail="box crushed")
    clock.advance(60)
    await store_app.run_until_idle()  # steps 0 and 1 done: open
    _, open_steps = get(store_app, f"/flows/{flow_id}/steps")
    assert [s["status"] for s in open_steps["steps"]] == [
        "succeeded",
        "failed",
        "pending",
        "pending",
        "pending",
    ]
    for _ in range(3):
        clock.advance(60)
        await store_app.run_until_idle()
    _, steps = get(store_app, f"/flows/{flow_id}/steps", query={"failed": "1"})
    assert steps["failed_only"] is True
    assert [(s["step_index"], s["error"]) for s in steps["steps"]] == [
        (1, "box crushed"),
        (3, "box crushed"),
    ]
    _, every = get(store_app, f"/flows/{flow_id}/steps")  # from the join once closed
    assert [s["status"] for s in every["steps"]] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "succeeded",
    ]
    assert every["steps"][2]["result"] == {"packed": 2}


async def test_aborted_and_timed_out_flows_show_their_state_word(
    store_app: TaskQueue, clock: ManualClock
) -> None:
    @store_app.executor("f", "start")
    async def start(task: Task, actions: Actions) -> None:
        steps = [Task(type=t, queue_id="f") for t in task.payload["steps"]]
        join = Join(queue_id="f", type="join")
        actions.start_flow(steps, join, entity=task.entity, **task.payload["options"])
        actions.success(task, None)

    @store_app.executor("f", "doomed")
    async def doomed(task: Task, actions: Actions) -> None:
        raise RuntimeError("no")

    @store_app.executor("f", "slow", retries=3, retry_after=600)
    async def slow(task: Task, actions: Actions) -> None:
        raise RuntimeError("not yet")

    @store_app.executor("f", "ok")
    async def ok(task: Task, actions: Actions) -> None:
        actions.success(task, 1)

    @store_app.executor("f", "join")
    async def join(task: Task, actions: Actions) -> None:
        actions.success(task, None)

    cases = {
        "aborted": {"steps": ["doomed", "slow"], "options": {"failure_policy": "abort"}},
        "timed_out": {"steps": ["slow", "ok"], "options": {"timeout": 60}},
    }
    reasons = {"aborted": "flow_aborted", "timed_out": "flow_timeout"}
    for word, payload in cases.items():
        entity = Entity(id=word, type="case")
        await store_app.add_tasks(
            [Task(type="start", queue_id="f", entity=entity, payload=payload)]
        )
    await store_app.run_until_idle()
    clock.advance(61)  # past the timeout, before any retry of "slow"
    await store_app.run_until_idle()
    for word in cases:
        _, body = get(store_app, f"/entities/case/{word}")
        [row] = body["flows"]
        _, flow = get(store_app, f"/flows/{row['flow_id']}")
        assert flow["state"] == word
        assert flow["finished_at"] is not None
        assert row["progress"]["state"] == word
        # the flow's row reads failed with the reason, whatever its join then does
        assert (row["status"], row["error"]) == ("failed", reasons[word])


async def test_a_task_answers_the_stored_task(store_app: TaskQueue, shop: Shop) -> None:
    paid = await shop.failed_payment(error="card declined", amount=12)
    status, body = get(store_app, f"/tasks/{paid}")
    assert status == 200
    stored = await store_app.get_task(paid)
    assert stored is not None
    assert Task.model_validate(body) == stored
    assert body["status"] == "failed"
    assert body["execution_stats"]["last_error"] == "card declined"
    assert "RuntimeError: card declined" in body["execution_stats"]["last_error_stack"]
    assert body["updated_at"].endswith("Z")


async def test_poison_records_with_their_source_position(
    store_app: TaskQueue, clock: ManualClock
) -> None:
    sequence = "49590338271490256608559692538361571095921575989136588898"
    records = [
        PoisonRecord(
            queue_id="tq-tasks",
            position=f"tq-tasks/shardId-000000000003/{sequence}",
            reason="unknown_version",
            error="record version 9 is not known",
            data=encode_task(Task(id="t-late", type="pack", queue_id="shop", payload={})),
            seen_at=clock.now(),
        ),
        PoisonRecord(
            queue_id="https://sqs.us-east-1.amazonaws.com/123456789012/tq",
            position="059f36b4-87a3-44ab-83d2-661975830a7d",
            reason="malformed",
            error="not JSON",
            data=b"\x00<script>",
            seen_at=clock.now(),
        ),
    ]
    await store_app.poison_store.record(records)
    status, body = get(store_app, "/poison")
    assert status == 200
    by_reason = {r["reason"]: r for r in body["records"]}
    kinesis = by_reason["unknown_version"]
    assert (kinesis["stream"], kinesis["shard"], kinesis["sequence_number"]) == (
        "tq-tasks",
        "shardId-000000000003",
        sequence,
    )
    assert (kinesis["task_id"], kinesis["redriven"], kinesis["error"]) == (
        "t-late",
        None,
        "record version 9 is not known",
    )
    sqs = by_reason["malformed"]
    assert (sqs["source"], sqs["message_id"], sqs["stream"], sqs["task_id"]) == (
        "sqs",
        "059f36b4-87a3-44ab-83d2-661975830a7d",
        None,
        None,
    )
    assert sqs["seen_at"].endswith("Z")


async def test_the_overview_lists_failures_and_flows_by_filter_and_cursor(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    first = await shop.failed_payment(Entity(id="o-a", type="order"))
    clock.advance(60)
    flow_id = await shop.checkout(2, Entity(id="o-b", type="order"))
    clock.advance(60)
    since = clock.now()
    later = []
    for i in range(3):
        later.append(await shop.failed_payment(Entity(id=f"o-{i}", type="order")))
        clock.advance(1)
    _, body = get(store_app, "/")
    ids = [r.get("task_id") or r.get("flow_id") for r in body["rows"]]
    assert ids == [*reversed(later), flow_id, first]
    assert body["cursor"] is None
    _, flows = get(store_app, "/", query={"kind": "flow"})
    assert [r["flow_id"] for r in flows["rows"]] == [flow_id]
    assert flows["rows"][0]["progress"]["state"] == "joined"
    _, recent = get(store_app, "/", query={"since": since.isoformat().replace("+00:00", "Z")})
    assert [r["task_id"] for r in recent["rows"]] == list(reversed(later))
    _, by_type = get(store_app, "/", query={"task_type": "ship"})
    assert [r["flow_id"] for r in by_type["rows"]] == [flow_id]  # a flow row's type is its join's
    pages, cursor = [], None
    while True:
        _, page = get(
            store_app, "/", query={"limit": "2", **({"cursor": cursor} if cursor else {})}
        )
        pages.append([r.get("task_id") or r.get("flow_id") for r in page["rows"]])
        cursor = page["cursor"]
        if cursor is None:
            break
    assert [i for p in pages for i in p] == ids
    assert all(len(p) <= 2 for p in pages)
    status, bad = get(store_app, "/", query={"limit": "0"})
    assert status == 400 and "limit" in bad["message"]
    status, bad = get(store_app, "/", query={"since": "yesterday"})
    assert status == 400 and "since" in bad["message"]
