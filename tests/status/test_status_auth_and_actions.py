"""Who may read and who may act, and the operator actions as the page posts them: a token
makes every request need ``Authorization: Bearer``; IAM on the function URL is trusted; with
neither, actions are refused (403); a retry or redrive sent twice acts once; each is logged."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from tests.status.shop import Shop, body_of, url_event
from tq_aws import Task, TaskQueue, TaskStatus
from tq_aws.core.codec import encode_task
from tq_aws.core.poison import PoisonRecord
from tq_aws.testing import ManualClock

TOKEN = "s3cret-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}
IAM = {
    "accessKey": "AKIAEXAMPLE",
    "accountId": "123456789012",
    "callerId": "AIDAEXAMPLE",
    "userArn": "arn:aws:iam::123456789012:user/ops-alice",
    "userId": "AIDAEXAMPLE",
}


def call(
    app: TaskQueue, method: str, path: str, *, token: str | None = None, **kw: Any
) -> tuple[int, Any, dict[str, Any]]:
    response = app.status_handler(token=token)(url_event(method, path, **kw), None)
    return response["statusCode"], body_of(response), response


async def test_with_a_token_every_request_needs_the_bearer_header(
    store_app: TaskQueue, shop: Shop
) -> None:
    await shop.checkout(1)
    for path in ("/", "/entities/order/o-1", "/poison", "/tasks/x", "/flows/x"):
        status, body, _ = call(store_app, "GET", path, token=TOKEN)
        assert status == 401, path
        assert "Bearer" in body["message"]
        status, _, _ = call(
            store_app, "GET", path, token=TOKEN, headers={"authorization": "Bearer wrong"}
        )
        assert status == 401, path
    status, body, _ = call(store_app, "GET", "/entities/order/o-1", token=TOKEN, headers=BEARER)
    assert status == 200 and body["flows"]
    status, html, _ = call(store_app, "GET", "/", token=TOKEN, accept="text/html")
    assert status == 401 and '<form method="post" action="/login">' in html


async def test_without_any_authentication_reads_are_open_and_actions_refused(
    store_app: TaskQueue, shop: Shop
) -> None:
    paid = await shop.failed_payment()
    assert call(store_app, "GET", f"/tasks/{paid}")[0] == 200
    for path, body in (
        (f"/tasks/{paid}/retry", {}),
        (f"/tasks/{paid}/cancel", {}),
        ("/tasks/retry-failed", {}),
        ("/poison/redrive", {}),
    ):
        status, answer, _ = call(store_app, "POST", path, body=body, headers={"x-tq-action": "1"})
        assert status == 403, path
        assert "authentication" in answer["message"]
    assert (await store_app.get_task(paid)).status is TaskStatus.FAILED  # type: ignore[union-attr]


async def test_a_retry_sent_twice_runs_the_task_once_and_is_logged(
    store_app: TaskQueue, shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    paid = await shop.failed_payment()
    caplog.set_level(logging.INFO, logger="tq_aws.engine.operator")
    path = f"/tasks/{paid}/retry"
    first = call(store_app, "POST", path, token=TOKEN, headers=BEARER, body={"failed_attempt": 0})
    again = call(store_app, "POST", path, token=TOKEN, headers=BEARER, body={"failed_attempt": 0})
    assert (first[0], first[1]) == (200, {"task_id": paid, "retried": True})
    assert again[0] == 409 and again[1]["retried"] is False
    await store_app.run_until_idle()
    await store_app.run_until_idle()
    assert shop.runs[f"pay:{paid}"] == 2  # the failed run and one retry
    assert (await store_app.get_task(paid)).status is TaskStatus.EXECUTED  # type: ignore[union-attr]
    actors = {r.operator_actor for r in caplog.records if r.name == "tq_aws.engine.operator"}  # type: ignore[attr-defined]
    assert actors == {"token holder at 198.51.100.7"}


async def test_iam_on_the_function_url_is_trusted_and_named_in_the_log(
    store_app: TaskQueue, shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    paid = await shop.failed_payment()
    caplog.set_level(logging.INFO, logger="tq_aws.engine.operator")
    status, body, _ = call(store_app, "POST", f"/tasks/{paid}/retry", iam=IAM)
    assert (status, body["retried"]) == (200, True)
    [record] = [r for r in caplog.records if r.name == "tq_aws.engine.operator"]
    assert record.operator_actor == IAM["userArn"]  # type: ignore[attr-defined]
    # IAM also answers a token's demand (the function URL checked the caller)
    assert call(store_app, "GET", f"/tasks/{paid}", token=TOKEN, iam=IAM)[0] == 200


async def test_cancel_retry_failed_and_redrive_as_posts(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    [later] = await store_app.add_tasks(
        [Task(type="pay", queue_id="shop", execute_at=clock.now() + timedelta(hours=1))]
    )
    failed = [await shop.failed_payment() for _ in range(2)]
    auth: dict[str, Any] = {"token": TOKEN, "headers": BEARER}
    assert call(store_app, "POST", f"/tasks/{later}/cancel", **auth)[:2] == (
        200,
        {"task_id": later, "cancelled": True},
    )
    assert call(store_app, "POST", f"/tasks/{later}/cancel", **auth)[0] == 409
    assert call(store_app, "POST", "/tasks/retry-failed", body={"task_type": "ship"}, **auth)[
        1
    ] == {"retried": 0}
    assert call(store_app, "POST", "/tasks/retry-failed", body={"task_type": "pay"}, **auth)[1] == {
        "retried": 2
    }
    assert call(store_app, "POST", "/tasks/retry-failed", body={}, **auth)[1] == {"retried": 0}
    record = PoisonRecord(
        queue_id="tq-tasks",
        position="tq-tasks/shardId-000000000000/1",
        reason="unknown_version",
        error="record version 9 is not known",
        data=encode_task(Task(id="t-late", type="pay", queue_id="shop", payload={"fail_runs": 0})),
        seen_at=clock.now(),
    )
    await store_app.poison_store.record([record])
    assert call(store_app, "POST", "/poison/redrive", body={"keys": [record.key]}, **auth)[1] == {
        "redriven": 1
    }
    assert call(store_app, "POST", "/poison/redrive", body={"keys": [record.key]}, **auth)[1] == {
        "redriven": 0
    }
    await store_app.run_until_idle()
    assert [shop.runs[f"pay:{t}"] for t in failed] == [2, 2]
    assert shop.runs["pay:t-late"] == 1
    assert shop.runs[f"pay:{later}"] == 0
    _, poison, _ = call(store_app, "GET", "/poison")
    assert poison["records"][0]["redriven"] == "executed"
    status, bad, _ = call(store_app, "POST", "/tasks/retry-failed", body="[1]", **auth)
    assert status == 400 and "JSON object" in bad["message"]


async def test_a_browser_signs_in_once_and_its_cookie_acts_only_with_the_action_header(
    store_app: TaskQueue, shop: Shop
) -> None:
    paid = await shop.failed_payment()
    form = {"headers": {"content-type": "application/x-www-form-urlencoded"}, "accept": "text/html"}
    status, page, _ = call(
        store_app, "POST", "/login", token=TOKEN, body="token=nope&next=/", **form
    )
    assert status == 401 and "not this page" in page
    status, _, signed = call(
        store_app,
        "POST",
        "/login",
        token=TOKEN,
        body=f"token={TOKEN}&next=//elsewhere.example/",
        **form,
    )
    assert status == 303
    assert signed["headers"]["Location"] == "/"  # never to another site
    [cookie] = signed["cookies"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    pair = cookie.split(";")[0]
    session = {"cookies": [pair]}
    event = url_event("GET", f"/tasks/{paid}")
    event["cookies"] = [pair]
    assert store_app.status_handler(token=TOKEN)(event, None)["statusCode"] == 200
    post = url_event("POST", f"/tasks/{paid}/retry")
    post["cookies"] = session["cookies"]
    assert store_app.status_handler(token=TOKEN)(post, None)["statusCode"] == 403
    post["headers"]["x-tq-action"] = "1"
    assert store_app.status_handler(token=TOKEN)(post, None)["statusCode"] == 200
