"""The status page in a real headless Chromium: a flow fans out and joins while its page is
open, and the page follows without a reload; a ``<script>`` payload shows as text; a retry
from the page re-runs a failed task; screenshots go to ``tests/output/``.

The app runs on the memory stores and a manual clock; the test drives it through
``app.run_sync``, the same private loop the server's queries run on, so the page and the test
never touch the stores at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.status.browser import browser_context, require_chromium, screenshot
from tests.status.shop import SCRIPT, Shop, close
from tq_aws import TaskQueue
from tq_aws.testing import ManualClock

WAIT_MS = 20_000
"""How long a wait for the page to change may take before the test fails (a wait, not a
measured time: the page refreshes every 2 s)."""


@pytest.fixture
def shop_app(clock: ManualClock) -> Iterator[tuple[TaskQueue, Shop]]:
    require_chromium()
    app = TaskQueue(clock=clock, worker_id="w-1")
    yield app, Shop(app)
    close(app)


def text_is(page: Any, selector: str, value: str) -> None:
    script = "([s, v]) => document.querySelector(s)?.textContent.trim() === v"
    page.wait_for_function(script, arg=[selector, value], timeout=WAIT_MS)


def refreshed(page: Any) -> None:
    """Wait until the page's script has fetched and swapped in its fragment once."""
    page.evaluate("document.getElementById('live').textContent = 'waiting'")
    script = "() => document.getElementById('live').textContent.startsWith('live ·')"
    page.wait_for_function(script, timeout=WAIT_MS)


def test_a_flow_fans_out_and_joins_while_the_page_is_open(
    shop_app: tuple[TaskQueue, Shop], clock: ManualClock, tmp_path: Path
) -> None:
    app, shop = shop_app
    flow_id = app.run_sync(shop.checkout(4, spacing=60))  # step i due after i minutes
    with app.serve_status() as server, browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{server.url}/flows/{flow_id}")
        assert page.locator("b.state").inner_text() == "open"
        assert page.locator("b.succeeded").inner_text() == "1"
        assert page.locator("b.pending").inner_text() == "3"
        page.evaluate("window.__sameDocument = true")  # gone if the page reloaded
        for done in (2, 3, 4):
            clock.advance(60)
            app.run_sync(app.run_until_idle())
            text_is(page, "b.succeeded", str(done))
            assert page.locator(".progress-text").inner_text().startswith(f"{done} / 4 done")
        text_is(page, "b.state", "joined")
        assert page.locator("b.pending").inner_text() == "0"
        assert page.evaluate("window.__sameDocument") is True
        assert page.locator("tr.succeeded").count() == 4
        screenshot(page, "status-flow-joined")
        page.goto(f"{server.url}/entities/order/o-1")
        assert page.locator("table.flows .status").first.inner_text() == "executed"
        screenshot(page, "status-entity")


def test_a_script_payload_shows_as_text(shop_app: tuple[TaskQueue, Shop], tmp_path: Path) -> None:
    app, shop = shop_app
    paid = app.run_sync(shop.failed_payment(error=SCRIPT, note=SCRIPT))
    with app.serve_status() as server, browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for path in (f"/tasks/{paid}", "/entities/order/o-1", "/"):
            page.goto(server.url + path)
            refreshed(page)  # the fragment swapped in by the script: still text
            assert page.evaluate("window.__pwned") is None, path
            assert page.locator("img[src='x']").count() == 0, path
        page.goto(f"{server.url}/tasks/{paid}")
        assert page.locator("pre.last-error").inner_text() == SCRIPT
        assert json.dumps(SCRIPT) in page.locator("pre.payload").inner_text()
        assert dialogs == []
        screenshot(page, "status-task-escaped")


def test_a_retry_from_the_page_reruns_the_failed_task(
    shop_app: tuple[TaskQueue, Shop], tmp_path: Path
) -> None:
    app, shop = shop_app
    paid = app.run_sync(shop.failed_payment(error="card declined"))
    with (
        app.serve_status(token="page-t0ken") as server,
        browser_context(tmp_path / "profile") as context,
    ):
        page = context.new_page()
        response = page.goto(f"{server.url}/tasks/{paid}")
        assert response is not None and response.status == 401
        page.fill("input[name=token]", "page-t0ken")  # signs in once: an HttpOnly cookie
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/tasks/{paid}")
        assert page.locator("h1 .status").inner_text() == "failed"
        page.evaluate("window.__sameDocument = true")
        page.click("button[data-action$='/retry']")
        text_is(page, "#notice", f'Done: {{"task_id": "{paid}", "retried": true}}')
        app.run_sync(app.run_until_idle())
        text_is(page, "h1 .status", "executed")
        assert page.evaluate("window.__sameDocument") is True
        assert shop.runs[f"pay:{paid}"] == 2
        assert page.locator("dd.attempts").inner_text() == "2"
        assert "Retried by" in page.locator("dl.fields").inner_text()
        screenshot(page, "status-task-retried")
