"""The app the CLI tests run (``--app tests.cli.apps:app``): mail that is sent, bounces or is
greylisted at its first attempt, and an order packed by a flow (one pick step per item; ``ink``
is out of stock)."""

from __future__ import annotations

from pydantic import BaseModel

from tq_aws import Actions, Join, Task, TaskQueue

SPEC = "tests.cli.apps:app"


class Mail(BaseModel):
    to: str


def register(queue: TaskQueue) -> TaskQueue:
    """The test app's executors on ``queue``."""

    @queue.executor("mail", "send", payload_model=Mail)
    async def send(task: Task, actions: Actions) -> None:
        actions.success(task, {"sent_to": task.payload["to"]})

    @queue.executor("mail", "bounce", store_on_failure=True)
    async def bounce(task: Task, actions: Actions) -> None:
        actions.fail(task, "mailbox full <script>alert(1)</script>")

    @queue.executor("mail", "greylisted")
    async def greylisted(task: Task, actions: Actions) -> None:
        """Refused at the first attempt (no retries: it fails for good), accepted after."""
        if task.retry_count == 0:
            actions.fail(task, "greylisted, try later")
            return
        actions.success(task, {"attempt": task.retry_count + 1})

    @queue.executor("orders", "pack")
    async def pack(task: Task, actions: Actions) -> None:
        steps = [
            Task(queue_id="orders", type="pick", payload={"item": item})
            for item in task.payload["items"]
        ]
        actions.start_flow(steps, Join(queue_id="orders", type="packed"), entity=task.entity)
        actions.success(task)

    @queue.executor("orders", "pick")
    async def pick(task: Task, actions: Actions) -> None:
        item = task.payload["item"]
        if item == "ink":
            actions.fail(task, "out of stock: ink")
            return
        actions.success(task, {"picked": item})

    @queue.executor("orders", "packed")
    async def packed(task: Task, actions: Actions) -> None:
        actions.success(task, {"steps": len(task.payload["flow_results"]["steps"])})

    return queue


app = register(TaskQueue(batch_size=10))


def reset() -> None:
    """Fresh memory backends for the next test (the executors stay)."""
    app.use_ports(TaskQueue().ports)
    app.resources = None
