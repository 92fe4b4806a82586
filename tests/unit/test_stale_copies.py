"""A stale copy of a task (a redelivered earlier attempt) in the same batch as its next attempt
never hides that attempt: the latest attempt of each task id is the one admitted."""

from __future__ import annotations

from typing import Any

from tq_aws import Task, TaskQueue
from tq_aws.engine.processor import latest_attempts
from tq_aws.testing import ManualClock


async def test_an_operator_retry_runs_behind_a_redelivered_copy_of_the_failed_attempt() -> None:
    app = TaskQueue(clock=ManualClock())
    delivered: list[Task] = []
    runs: list[int] = []

    @app.executor("q", "refund", retries=0, store_on_failure=True)
    async def refund(task: Task, actions: Any) -> None:
        delivered.append(task)
        runs.append(task.retry_count)
        if task.retry_count == 0:
            actions.fail(task, "provider down")
        else:
            actions.success(task, "refunded")

    [task_id] = await app.add_tasks([Task(type="refund", queue_id="q", payload={})])
    await app.run_until_idle()
    assert runs == [0]
    await app.transport.publish([delivered[0]])  # the failed attempt, delivered once more
    assert await app.retry_task(task_id, actor="ops")
    await app.run_until_idle()

    assert runs == [0, 1]
    stored = await app.get_task(task_id)
    assert stored is not None
    assert (stored.status, stored.retry_count, stored.execution_result) == (
        "executed",
        1,
        "refunded",
    )


def test_latest_attempts_keeps_each_ids_latest_copy_where_it_was_delivered() -> None:
    a0, b0 = Task(id="a", type="t", queue_id="q"), Task(id="b", type="t", queue_id="q")
    a1 = a0.copy_with(execution_stats={"retry_count": 1})
    c0 = Task(id="c", type="t", queue_id="q")
    assert latest_attempts([a0, b0, a1, c0, a0, b0]) == [b0, a1, c0]
