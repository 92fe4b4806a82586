"""``app.serve_status`` (a local server in a background thread, from synchronous code and from
inside a running event loop) and ``app.status_handler()`` (a plain synchronous function), and
the status Lambda entry point in ``lambdas/`` calling it."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import urllib.error
import urllib.request

import pytest

from tests.status.shop import Shop, close, http, url_event
from tq_aws import Entity, Task, TaskQueue
from tq_aws.testing import ManualClock


def test_serve_status_from_synchronous_code(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock)
    shop = Shop(app)
    try:
        flow_id = app.run_sync(shop.checkout(2))
        server = app.serve_status(host="127.0.0.1", port=0)
        try:
            assert server.url.startswith("http://127.0.0.1:") and server.port > 0
            status, headers, body = http(server.url + "/entities/order/o-1")
            assert status == 200 and headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["flows"][0]["flow_id"] == flow_id
            status, _, html = http(server.url + f"/flows/{flow_id}", accept="text/html")
            assert status == 200 and '<b class="state">joined</b>' in html
            status, _, _ = http(server.url + "/tasks/nope")
            assert status == 404
        finally:
            server.stop()
        server.stop()  # twice is harmless
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(server.url + "/", timeout=5)
    finally:
        close(app)


async def test_serve_status_from_inside_a_running_event_loop(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock)
    shop = Shop(app)
    paid = await shop.failed_payment(error="card declined")
    server = app.serve_status(port=0)
    try:
        # the queries never need this loop: a blocking call from inside it is answered
        status, _, body = http(server.url + f"/tasks/{paid}")
        assert status == 200 and json.loads(body)["status"] == "failed"
        status, _, body = await asyncio.to_thread(http, server.url + "/entities/order/o-1")
        assert status == 200 and json.loads(body)["tasks"][0]["task_id"] == paid
        await shop.checkout(1, Entity(id="o-2", type="order"))  # this loop goes on working
        status, _, body = await asyncio.to_thread(http, server.url + "/entities/order/o-2")
        assert json.loads(body)["flows"][0]["status"] == "executed"
    finally:
        server.stop()
        await app.aclose()


def test_the_local_server_requires_the_token_when_given(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock)
    shop = Shop(app)
    try:
        paid = app.run_sync(shop.failed_payment())
        with app.serve_status(token="t0ken") as server:
            assert http(server.url + "/")[0] == 401
            bearer = {"Authorization": "Bearer t0ken"}
            assert http(server.url + "/", headers=bearer)[0] == 200
            status, _, body = http(
                server.url + f"/tasks/{paid}/retry", "POST", headers=bearer, body={}
            )
            assert (status, json.loads(body)["retried"]) == (200, True)
        app.run_sync(app.run_until_idle())
        assert shop.runs[f"pay:{paid}"] == 2
    finally:
        close(app)


def test_status_handler_is_a_plain_synchronous_function(clock: ManualClock) -> None:
    app = TaskQueue(clock=clock)
    try:
        app.run_sync(
            app.add_tasks([Task(type="t", queue_id="q", entity=Entity(id="u", type="user"))])
        )
        handler = app.status_handler()
        assert callable(handler) and not inspect.iscoroutinefunction(handler)
        response = handler(url_event("GET", "/entities/user/u"), None)
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["tasks"][0]["status"] == "scheduled"
    finally:
        close(app)


def test_the_status_lambda_entry_point_serves_the_tq_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_APP", "tests.status.lambda_app:app")
    sys.modules.pop("lambdas.status", None)
    entry = importlib.import_module("lambdas.status")
    from tests.status.lambda_app import app

    try:
        app.run_sync(
            app.add_tasks([Task(type="t", queue_id="q", entity=Entity(id="u", type="user"))])
        )
        response = entry.handler(url_event("GET", "/entities/user/u"), None)
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["tasks"][0]["task_type"] == "t"
        page = entry.handler(url_event("GET", "/", accept="text/html"), None)
        assert page["statusCode"] == 200 and page["headers"]["Content-Type"].startswith("text/html")
    finally:
        entry.status_handler.cache_clear()
        close(app)
