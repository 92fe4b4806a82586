"""The app the status tests look at: orders whose checkout fans out one step per item and
joins; a payment that can fail (with any error text, ``<script>`` included); the function URL
events and HTTP calls the tests send."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from tq_aws import Actions, Entity, Join, Task, TaskQueue
from tq_aws.testing import ManualClock

SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
ORDER = Entity(id="o-1", type="order")


class Shop:
    """Registers the executors on ``app`` and counts their runs.

    - ``shop/checkout``: starts a flow of ``payload["items"]`` ``shop/pack`` steps (step ``i``
      due ``payload["spacing"] * i`` seconds later, so a flow advances as the clock does)
      joining on ``shop/ship``, on the task's entity;
    - ``shop/pack``: succeeds, or fails with ``payload["fail"]``;
    - ``shop/pay``: fails with ``payload["error"]`` until it has run ``payload["fail_runs"]``
      times, then succeeds.
    """

    def __init__(self, app: TaskQueue):
        self.app = app
        self.runs: Counter[str] = Counter()

        @app.executor("shop", "checkout")
        async def checkout(task: Task, actions: Actions) -> None:
            now = app.clock.now()
            spacing = float(task.payload.get("spacing", 0))
            steps = [
                Task(
                    type="pack",
                    queue_id="shop",
                    payload={
                        "item": i,
                        **(
                            {"fail": task.payload["fail"]}
                            if i in task.payload.get("fail_items", [])
                            else {}
                        ),
                    },
                    execute_at=now + timedelta(seconds=spacing * i),
                )
                for i in range(task.payload["items"])
            ]
            flow_id = actions.start_flow(
                steps, Join(queue_id="shop", type="ship"), entity=task.entity
            )
            actions.success(task, {"flow_id": flow_id})

        @app.executor("shop", "pack")
        async def pack(task: Task, actions: Actions) -> None:
            self.runs["pack"] += 1
            if "fail" in task.payload:
                raise RuntimeError(task.payload["fail"])
            actions.success(task, {"packed": task.payload["item"]})

        @app.executor("shop", "ship")
        async def ship(task: Task, actions: Actions) -> None:
            self.runs["ship"] += 1
            steps = task.payload["flow_results"]["steps"]
            actions.success(task, {"shipped": sum(s["status"] == "success" for s in steps)})

        @app.executor("shop", "pay")
        async def pay(task: Task, actions: Actions) -> None:
            self.runs[f"pay:{task.id}"] += 1
            if self.runs[f"pay:{task.id}"] <= task.payload.get("fail_runs", 1):
                raise RuntimeError(task.payload.get("error", "card declined"))
            actions.success(task, {"paid": task.payload.get("amount", 0)})

    async def checkout(self, items: int, entity: Entity = ORDER, **payload: Any) -> str:
        """Add a checkout, run what is due; return the flow id."""
        [tid] = await self.app.add_tasks(
            [
                Task(
                    type="checkout",
                    queue_id="shop",
                    entity=entity,
                    payload={"items": items, **payload},
                )
            ]
        )
        await self.app.run_until_idle()
        task = await self.app.get_task(tid)
        if task is not None:
            return str(task.execution_result["flow_id"])
        rows = await self.app.entity_status(entity)
        return next(r.task_id for r in reversed(rows) if r.kind == "flow")

    async def failed_payment(self, entity: Entity = ORDER, **payload: Any) -> str:
        """Add a payment that fails for good; return its id."""
        [tid] = await self.app.add_tasks(
            [Task(type="pay", queue_id="shop", entity=entity, payload=payload)]
        )
        await self.app.run_until_idle()
        return tid


def url_event(
    method: str,
    path: str,
    *,
    accept: str = "application/json",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    iam: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Lambda function URL (payload 2.0) event as AWS sends it."""
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "abcdefghij",
        "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
        "domainPrefix": "abcdefghij",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "198.51.100.7",
            "userAgent": "test",
        },
        "requestId": "r-1",
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Jan/2026:00:00:00 +0000",
        "timeEpoch": 1767225600000,
    }
    if iam is not None:
        context["authorizer"] = {"iam": iam}
    all_headers = {"accept": accept, "x-forwarded-proto": "https", **(headers or {})}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": all_headers,
        "queryStringParameters": dict(query) if query else None,
        "requestContext": context,
        "body": None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        "isBase64Encoded": False,
    }


def body_of(response: Mapping[str, Any]) -> Any:
    text = response["body"]
    return (
        json.loads(text)
        if response["headers"]["Content-Type"].startswith("application/json")
        else text
    )


def http(
    url: str,
    method: str = "GET",
    *,
    accept: str = "application/json",
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], str]:
    """One HTTP request to the local server: status, headers, body text."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Accept": accept, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def close(app: TaskQueue) -> None:
    """Close the app (its private loop too) from any context."""
    thread = threading.Thread(target=lambda: asyncio.run(app.aclose()))
    thread.start()
    thread.join(30)


def new_app(clock: ManualClock, **stores: Any) -> TaskQueue:
    return TaskQueue(clock=clock, worker_id="w-1", **stores)
