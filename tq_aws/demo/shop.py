"""The demo's shop: its orders and ``build_shop``, ordinary tq-aws application code (seven
executors with retries, child tasks, a batch executor and a flow)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tq_aws.app import TaskQueue
from tq_aws.core.actions import Actions
from tq_aws.core.flows import Join
from tq_aws.core.task import Entity, Task
from tq_aws.testing.clock import ManualClock

logger = logging.getLogger(__name__)

OPENING = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
CLOSE_OF_MORNING = OPENING + timedelta(minutes=1, seconds=30)


class CardDeclined(Exception):
    """The payment provider turned the card down this time."""


class ShelfBusy(Exception):
    """The picker could not reach the shelf this time (it is being restocked)."""


@dataclass(frozen=True, slots=True)
class Order:
    """One order of the story: who pays how much, with what card, and when."""

    order_id: str
    customer: str
    amount_cents: int
    card: str
    """``ok``; ``flaky`` (declined on the first two attempts); ``empty`` (always refused)."""
    items: tuple[str, ...]
    """What the warehouse picks once the order is paid."""
    delay: timedelta = timedelta(0)
    """How long after opening the charge is due."""


ORDERS = (
    Order("o-1001", "alice", 4200, "ok", ("teapot", "green tea")),
    Order("o-1002", "bob", 1850, "flaky", ("notebook", "fountain pen", "ink")),
    Order("o-1003", "carol", 9900, "empty", ("espresso machine",)),
    Order("o-1004", "dave", 1200, "ok", ("coffee beans",), delay=timedelta(minutes=1)),
)
CUSTOMERS = tuple(order.customer for order in ORDERS)
NEWSLETTER_DELAY = timedelta(seconds=30)
UNSUBSCRIBE_AT = OPENING + timedelta(seconds=2)
SHOP = Entity(id="shop", type="shop")
"""The shop itself: the month-end task, its flow, the flow's steps and its join report here."""
RESTOCKING = frozenset({"teapot"})
"""Items whose shelf is busy at the first pick (the retry gets them)."""
OUT_OF_STOCK = frozenset({"ink"})
"""Items the warehouse no longer has (every pick fails)."""
MONTH_END_JOIN = Join(queue_id="reports", type="month_end.done")


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def customer(name: str) -> Entity:
    return Entity(id=name, type="customer")


# -- the shop: ordinary application code ------------------------------------------------------


def build_shop(clock: ManualClock) -> TaskQueue:
    """The shop's TaskQueue on the embedded default, with its seven executors."""
    app = TaskQueue(clock=clock)

    @app.executor("orders", "charge", retries=2, retry_after=1.0, store_on_failure=True)
    async def charge(task: Task, actions: Actions) -> None:
        order = task.payload
        actions.log.info("charging %s (attempt %d)", money(order["amount_cents"]), attempt(task))
        if order["card"] == "empty":
            actions.fail(task, "insufficient funds")  # decided, not raised: retried all the same
            return
        if order["card"] == "flaky" and task.retry_count < 2:
            raise CardDeclined("card declined: issuer timeout")
        actions.add_tasks(
            [
                Task(
                    type="receipt",
                    queue_id="emails",
                    entity=task.entity,
                    payload={"order_id": order["order_id"], "amount_cents": order["amount_cents"]},
                ),
                Task(
                    type="aggregate",
                    queue_id="reports",
                    entity=task.entity,
                    payload={
                        "order_id": order["order_id"],
                        "amount_cents": order["amount_cents"],
                        "items": order["items"],
                    },
                    execute_at=CLOSE_OF_MORNING,
                ),
            ]
        )
        actions.success(task, {"charge_id": f"ch-{order['order_id']}"})

    @app.executor("emails", "receipt")
    def receipt(task: Task, actions: Actions) -> None:
        actions.log.info("sending the receipt for %s", task.payload["order_id"])
        actions.success(task, {"message_id": f"m-{task.payload['order_id']}"})

    @app.executor("emails", "newsletter")
    def newsletter(task: Task, actions: Actions) -> None:
        actions.success(task, {"message_id": "m-newsletter"})

    @app.batch_executor("reports", "aggregate")
    async def aggregate(tasks: list[Task], actions: Actions) -> None:
        total = sum(t.payload["amount_cents"] for t in tasks)
        actions.log.info("morning report: %d sales, %s", len(tasks), money(total))
        for t in tasks:
            actions.success(t, {"sales_in_batch": len(tasks), "morning_total": money(total)})
        sales = sorted(
            ({"order_id": t.payload["order_id"], "items": t.payload["items"]} for t in tasks),
            key=lambda sale: sale["order_id"],
        )
        # Not tied to one sale: a child of the whole batch.
        actions.add_tasks(
            [Task(type="month_end", queue_id="reports", entity=SHOP, payload={"sales": sales})]
        )

    @app.executor("reports", "month_end")
    async def month_end(task: Task, actions: Actions) -> None:
        steps = [
            Task(
                type="pick",
                queue_id="warehouse",
                entity=SHOP,
                payload={"order_id": sale["order_id"], "item": item},
            )
            for sale in task.payload["sales"]
            for item in sale["items"]
        ]
        # Fan out: one pick per item. Fan in: one month_end.done task gets every pick's
        # outcome once all of them have one; "continue" keeps failed picks in its results.
        actions.start_flow(steps, MONTH_END_JOIN, failure_policy="continue", entity=SHOP)
        actions.log.info(
            "closing the morning: %d sales, %d items to pick",
            len(task.payload["sales"]),
            len(steps),
        )
        actions.success(task, {"sales": len(task.payload["sales"]), "items_to_pick": len(steps)})

    @app.executor("warehouse", "pick", retries=2, retry_after=1.0)
    def pick(task: Task, actions: Actions) -> None:
        item = task.payload["item"]
        if item in OUT_OF_STOCK:
            actions.fail(task, f"out of stock: {item}")
            return
        if item in RESTOCKING and task.retry_count == 0:
            raise ShelfBusy(f"{item} shelf being restocked")
        actions.success(task, {"item": item, "order_id": task.payload["order_id"]})

    @app.executor("reports", "month_end.done")
    def month_end_done(task: Task, actions: Actions) -> None:
        steps = task.payload["flow_results"]["steps"]
        picked = [s["result"]["item"] for s in steps if s["status"] == "success"]
        problems = [s["error"] for s in steps if s["status"] == "fail"]
        actions.log.info(
            "month end: %d of %d items picked; %s",
            len(picked),
            len(steps),
            "; ".join(problems) or "no problems",
        )
        actions.success(
            task, {"steps": len(steps), "picked": len(picked), "problems": "; ".join(problems)}
        )

    return app


def attempt(task: Task) -> int:
    """The 1-based number of the attempt ``task`` is on."""
    return task.retry_count + 1


def order_tasks() -> list[Task]:
    """The tasks added when the shop opens: every charge, and Dave's newsletter."""
    tasks = [
        Task(
            type="charge",
            queue_id="orders",
            entity=customer(o.customer),
            payload={
                "order_id": o.order_id,
                "amount_cents": o.amount_cents,
                "card": o.card,
                "items": list(o.items),
            },
            execute_at=OPENING + o.delay,
            metadata={"log_context": {"customer": o.customer, "order": o.order_id}},
        )
        for o in ORDERS
    ]
    tasks.append(
        Task(
            type="newsletter",
            queue_id="emails",
            entity=customer("dave"),
            payload={"issue": "january"},
            execute_at=OPENING + NEWSLETTER_DELAY,
            metadata={"log_context": {"customer": "dave"}},
        )
    )
    return tasks
