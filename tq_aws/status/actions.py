"""The operator actions' routes: each a POST that needs authentication (``Authenticator.actor``:
the token, or IAM on the function URL; refused with 403 when neither is configured), runs the
app's own action (``Engine.retry_task``, ``cancel``, ``retry_failed``, ``redrive_poison``,
which log who, what and when), and answers JSON.

- ``POST /tasks/{id}/retry``, body ``{"failed_attempt"?: n}``: 200 ``{"retried": true}``;
  409 when the task is not stored as failed (at that attempt);
- ``POST /tasks/{id}/cancel``: 200 ``{"cancelled": true}``; 409 when it is not scheduled;
- ``POST /tasks/retry-failed``, body ``{"task_type"?, "queue_id"?, "since"?}``: 200
  ``{"retried": n}``;
- ``POST /poison/redrive``, body ``{"keys"?: [...], "reason"?, "queue_id"?, "since"?}``: 200
  ``{"redriven": n}``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response

from tq_aws.engine.engine import Engine
from tq_aws.status.auth import Authenticator
from tq_aws.status.params import (
    json_body,
    optional_int,
    optional_keys,
    optional_str,
    parse_time,
)
from tq_aws.status.responses import json_response

T = TypeVar("T")


class Api(Protocol):
    """What the action routes need of ``StatusApi``."""

    resolver: LambdaFunctionUrlResolver
    engine: Engine
    auth: Authenticator

    @property
    def event(self) -> dict[str, Any]: ...

    def run(self, awaitable: Awaitable[T]) -> T: ...


def register(api: Api) -> None:
    """Add the action routes to ``api``'s resolver."""
    app = api.resolver
    engine = api.engine

    def body() -> dict[str, object]:
        return json_body(app.current_event.decoded_body)

    @app.post("/tasks/retry-failed")
    def retry_failed() -> Response[str]:
        who = api.auth.actor(api.event)
        data = body()
        count = api.run(
            engine.retry_failed(
                optional_str(data, "task_type"),
                optional_str(data, "queue_id"),
                parse_time("since", data.get("since")),
                actor=who.name,
            )
        )
        return json_response({"retried": count})

    @app.post("/tasks/<task_id>/retry")
    def retry(task_id: str) -> Response[str]:
        who = api.auth.actor(api.event)
        task_id = unquote(task_id)
        attempt = optional_int(body(), "failed_attempt")
        done = api.run(engine.retry_task(task_id, actor=who.name, failed_attempt=attempt))
        if not done:
            message = (
                f"task {task_id} was not retried: it is not stored as failed"
                + ("" if attempt is None else f" at attempt {attempt}")
                + " (or it was just retried)"
            )
            return json_response({"task_id": task_id, "retried": False, "message": message}, 409)
        return json_response({"task_id": task_id, "retried": True})

    @app.post("/tasks/<task_id>/cancel")
    def cancel(task_id: str) -> Response[str]:
        who = api.auth.actor(api.event)
        task_id = unquote(task_id)
        done = api.run(engine.cancel(task_id, actor=who.name))
        if not done:
            message = f"task {task_id} was not cancelled: it is not stored as scheduled"
            return json_response({"task_id": task_id, "cancelled": False, "message": message}, 409)
        return json_response({"task_id": task_id, "cancelled": True})

    @app.post("/poison/redrive")
    def redrive() -> Response[str]:
        who = api.auth.actor(api.event)
        data = body()
        count = api.run(
            engine.redrive_poison(
                optional_keys(data),
                reason=optional_str(data, "reason"),
                queue_id=optional_str(data, "queue_id"),
                since=parse_time("since", data.get("since")),
                actor=who.name,
            )
        )
        return json_response({"redriven": count})
