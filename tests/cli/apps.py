"""The app the CLI tests run (``--app tests.cli.apps:app``): mail that is sent or bounces, and an
order packed by a flow (one pick step per item; ``ink`` is out of stock)."""

from __future__ import annotations

from pydantic import BaseModel

from tq_aws import Actions, Join, Task, TaskQueue

app = TaskQueue(batch_size=10)
SPEC = "tests.cli.apps:app"


class Mail(BaseModel):
    to: str


@app.executor("mail", "send", payload_model=Mail)
async def send(task: Task, actions: Actions) -> None:
    actions.success(task, {"sent_to": task.payload["to"]})


@app.executor("mail", "bounce", store_on_failure=True)
async def bounce(task: Task, actions: Actions) -> None:
    actions.fail(task, "mailbox full <script>alert(1)</script>")


@app.executor("orders", "pack")
async def pack(task: Task, actions: Actions) -> None:
    steps = [
        Task(queue_id="orders", type="pick", payload={"item": item})
        for item in task.payload["items"]
    ]
    actions.start_flow(steps, Join(queue_id="orders", type="packed"), entity=task.entity)
    actions.success(task)


@app.executor("orders", "pick")
async def pick(task: Task, actions: Actions) -> None:
    item = task.payload["item"]
    if item == "ink":
        actions.fail(task, "out of stock: ink")
        return
    actions.success(task, {"picked": item})


@app.executor("orders", "packed")
async def packed(task: Task, actions: Actions) -> None:
    actions.success(task, {"steps": len(task.payload["flow_results"]["steps"])})


def reset() -> None:
    """Fresh memory backends for the next test (the executors stay)."""
    app.use_ports(TaskQueue().ports)
    app.resources = None
