"""Write the status page's screenshots in docs/images/: ``python scripts/status_screenshots.py``.

An order with a packing flow under way and one done, a payment that failed, on the embedded
default with a manual clock; the pages are taken in Debian's chromium through Playwright for
Python, as the tests do (``make browser`` installs it).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

from tq_aws import Actions, Entity, Join, Task, TaskQueue
from tq_aws.testing import ManualClock

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ORDER = Entity(type="order", id="o-1042")


def build() -> tuple[TaskQueue, ManualClock]:
    clock = ManualClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    app = TaskQueue(clock=clock, worker_id="shop-1")

    @app.executor("shop", "checkout")
    async def checkout(task: Task, actions: Actions) -> None:
        now = clock.now()
        steps = [
            Task(
                type="pack",
                queue_id="shop",
                payload={"sku": f"SKU-{100 + i}", "fragile": i in task.payload["fragile"]},
                execute_at=now + timedelta(seconds=task.payload["spacing"] * i),
            )
            for i in range(task.payload["items"])
        ]
        actions.start_flow(steps, Join(queue_id="shop", type="ship"), entity=task.entity)
        actions.success(task, {"items": task.payload["items"]})

    @app.executor("shop", "pack")
    async def pack(task: Task, actions: Actions) -> None:
        if task.payload["fragile"]:
            raise RuntimeError(f"{task.payload['sku']}: no fragile-goods box left")
        actions.success(task, {"sku": task.payload["sku"], "box": "M"})

    @app.executor("shop", "ship")
    async def ship(task: Task, actions: Actions) -> None:
        actions.success(task, {"carrier": "DHL", "parcels": 1})

    @app.executor("shop", "charge")
    async def charge(task: Task, actions: Actions) -> None:
        raise RuntimeError("card declined: insufficient funds (issuer code 51)")

    return app, clock


async def scene(app: TaskQueue, clock: ManualClock) -> str:
    def checkout(items: int, fragile: list[int], spacing: int) -> Task:
        payload = {"items": items, "fragile": fragile, "spacing": spacing}
        return Task(type="checkout", queue_id="shop", entity=ORDER, payload=payload)

    await app.add_tasks([checkout(3, [], 0)])
    await app.run_until_idle()
    clock.advance(240)
    await app.add_tasks([Task(type="charge", queue_id="shop", entity=ORDER, payload={"eur": 84})])
    await app.run_until_idle()
    clock.advance(60)
    await app.add_tasks([checkout(12, [4, 9], 30)])
    for _ in range(8):
        await app.run_until_idle()
        clock.advance(30)
    await app.run_until_idle()
    rows = await app.entity_status(ORDER)
    return next(r.task_id for r in reversed(rows) if r.kind == "flow")


def main() -> int:
    app, clock = build()
    flow_id = app.run_sync(scene(app, clock))
    IMAGES.mkdir(parents=True, exist_ok=True)
    with (
        app.serve_status() as server,
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1100, "height": 720},
        )
        page = context.new_page()
        for name, path in (
            ("status-entity", f"/entities/{ORDER.type}/{ORDER.id}"),
            ("status-flow", f"/flows/{flow_id}"),
        ):
            page.goto(server.url + path)
            page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)
            print(IMAGES / f"{name}.png")
        context.close()
    asyncio.run(app.aclose())
    return 0


if __name__ == "__main__":
    sys.exit(main())
