"""The status pages' HTML (any ``Accept`` but JSON), on the memory stores and on DynamoDB:
rendered on the server with the ids, statuses, errors and state words in the page source,
every piece of user data escaped, the fragment the page's script fetches, the script policy."""

from __future__ import annotations

import re
from typing import Any

from tests.status.shop import ORDER, SCRIPT, Shop, url_event
from tq_aws import Entity, TaskQueue
from tq_aws.testing import ManualClock

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def page(app: TaskQueue, path: str, **kw: Any) -> tuple[int, dict[str, str], str]:
    response = app.status_handler()(url_event("GET", path, accept=BROWSER, **kw), None)
    return response["statusCode"], response["headers"], response["body"]


async def test_the_entity_page_shows_a_timeline_failures_in_red_and_flow_progress(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    flow_id = await shop.checkout(4, spacing=60)
    paid = await shop.failed_payment(error="card declined")
    status, headers, html = page(store_app, "/entities/order/o-1")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert html.startswith("<!doctype html>")
    assert 'class="timeline"' in html
    assert re.search(rf'<li class="failed" data-id="{paid}">', html)
    assert '<div class="error">card declined</div>' in html
    assert flow_id in html
    assert 'role="progressbar"' in html and "1 / 4 done" in html
    assert f'data-action="/tasks/{paid}/retry"' in html  # a failed task has its retry button


async def test_the_flow_page_shows_the_map_run_counters_and_the_state_word(
    store_app: TaskQueue, shop: Shop, clock: ManualClock
) -> None:
    flow_id = await shop.checkout(3, spacing=60, fail_items=[1], fail="box crushed")
    _, _, html = page(store_app, f"/flows/{flow_id}")
    for counter, value in (("state", "open"), ("total", "3"), ("succeeded", "1"), ("pending", "2")):
        assert re.search(rf'<b class="{counter}[^"]*">{value}</b>', html), counter
    clock.advance(120)
    await store_app.run_until_idle()
    _, _, html = page(store_app, f"/flows/{flow_id}")
    assert '<b class="state">joined</b>' in html
    assert '<b class="failed error">1</b>' in html
    assert '<span class="error">box crushed</span>' in html
    _, _, only_failed = page(store_app, f"/flows/{flow_id}", query={"failed": "1"})
    assert only_failed.count('<tr class="failed">') == 1
    assert '<tr class="succeeded">' not in only_failed


async def test_the_task_page_shows_attempts_the_last_error_with_its_stack_and_the_result(
    store_app: TaskQueue, shop: Shop
) -> None:
    paid = await shop.failed_payment(error="card declined")
    _, _, html = page(store_app, f"/tasks/{paid}")
    assert '<dd class="attempts">1</dd>' in html
    assert '<pre class="error last-error">card declined</pre>' in html
    assert "Traceback (most recent call last)" in html
    assert f'data-action="/tasks/{paid}/retry"' in html


async def test_user_data_is_escaped_everywhere(store_app: TaskQueue, shop: Shop) -> None:
    evil = Entity(id=SCRIPT, type="order")
    paid = await shop.failed_payment(evil, error=SCRIPT, note=SCRIPT)
    pages = [
        page(store_app, f"/tasks/{paid}")[2],
        page(store_app, "/entities/order/" + _quote(SCRIPT))[2],
        page(store_app, "/")[2],
    ]
    for html in pages:
        assert "<script>window.__pwned" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
        # the page's own script is the only one, and it carries the nonce of the policy
        assert len(re.findall(r"<script\b", html)) == 1


async def test_the_fragment_is_the_main_content_only_and_the_page_has_a_script_policy(
    store_app: TaskQueue, shop: Shop
) -> None:
    await shop.checkout(1)
    _, headers, html = page(store_app, "/entities/order/o-1")
    nonce = re.search(r'<script nonce="([^"]+)">', html)
    assert nonce is not None
    policy = headers["Content-Security-Policy"]
    assert f"script-src 'nonce-{nonce.group(1)}'" in policy and "frame-ancestors 'none'" in policy
    assert headers["Cache-Control"] == "no-store"
    _, fragment_headers, fragment = page(
        store_app, "/entities/order/o-1", headers={"x-tq-fragment": "1"}
    )
    assert "<html" not in fragment and "<script" not in fragment
    assert fragment.lstrip().startswith("<h1>")
    assert "Content-Security-Policy" not in fragment_headers


async def test_unknown_ids_get_a_404_page(store_app: TaskQueue) -> None:
    status, _, html = page(store_app, f"/tasks/{_quote(SCRIPT)}")
    assert status == 404
    assert "<!doctype html>" in html and "no stored task" in html
    assert "<script>window" not in html


async def test_ids_with_slashes_and_hashes_are_reached_percent_encoded(
    store_app: TaskQueue, shop: Shop
) -> None:
    odd = Entity(id="a/b#c d", type="shop/order")
    await shop.failed_payment(odd)
    status, _, html = page(store_app, f"/entities/{_quote(odd.type)}/{_quote(odd.id)}")
    assert status == 200
    assert "a/b#c d" in html
    assert ORDER.id not in html


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
