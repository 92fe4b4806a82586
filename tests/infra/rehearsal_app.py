"""The application of the offline rehearsal (``TQ_APP=tests.infra.rehearsal_app:app``): an
order fans out one step per item over SQS (``TQ_SQS_QUEUES=items``) and joins on Kinesis.

Built from the ``TQ_*`` variables at import, as a user's module is in the function.
"""

from __future__ import annotations

from typing import Any

from tq_aws import Join, Task, TaskQueue

app = TaskQueue.from_env()


@app.executor("orders", "order")
async def order(task: Task, actions: Any) -> None:
    flow_id = actions.start_flow(
        steps=[Task(type="pack", queue_id="items", payload={"item": i}) for i in task.payload],
        join=Join(queue_id="orders", type="order.packed"),
    )
    actions.success(task, {"flow_id": flow_id})


@app.executor("items", "pack")
async def pack(task: Task, actions: Any) -> None:
    actions.success(task, {"box": f"box-{task.payload['item']}"})


@app.executor("orders", "order.packed")
async def packed(task: Task, actions: Any) -> None:
    steps = task.payload["flow_results"]["steps"]
    actions.success(task, {"boxes": sorted(s["result"]["box"] for s in steps)})


@app.executor("orders", "refund", retries=0, store_on_failure=True)
async def refund(task: Task, actions: Any) -> None:
    actions.fail(task, "the payment provider refused the refund")
