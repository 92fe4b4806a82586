"""The app of the ``tq-aws worker --local`` process tests (``--app tests.cli.local_app:app``):
on import it adds ``$TQ_TEST_TASKS`` tasks ``t0``, ``t1``... to its memory queue, run
``$TQ_TEST_BATCH`` to a batch.

Each task writes ``start <id>`` and ``done <id>`` lines to ``$TQ_TEST_LOG`` (unbuffered, so a
killed process loses nothing it wrote). Before it ends, a task waits until the file
``$TQ_TEST_RELEASE`` exists; with ``TQ_TEST_BLOCK=1`` it waits in ``time.sleep``, blocking the
event loop as a careless executor would.
"""

from __future__ import annotations

import asyncio
import os
import time

from tq_aws import Actions, Task, TaskQueue

app = TaskQueue(batch_size=int(os.environ.get("TQ_TEST_BATCH", "2")))


def log(line: str) -> None:
    fd = os.open(os.environ["TQ_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@app.executor("work", "hold")
async def hold(task: Task, actions: Actions) -> None:
    log(f"start {task.id}")
    release = os.environ["TQ_TEST_RELEASE"]
    while not os.path.exists(release):
        if os.environ.get("TQ_TEST_BLOCK") == "1":
            time.sleep(0.02)
        else:
            await asyncio.sleep(0.02)
    log(f"done {task.id}")
    actions.success(task)


asyncio.run(
    app.add_tasks(
        [
            Task(id=f"t{n}", queue_id="work", type="hold")
            for n in range(int(os.environ.get("TQ_TEST_TASKS", "0")))
        ]
    )
)
