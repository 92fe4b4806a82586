"""The TaskQueue run by the worker process tests (``tq-aws worker --app
tests.support.worker_app:app``), configured by ``TQ_*`` variables like any deployed app.

Every execution is recorded in ``$TQ_TEST_LOG/<TQ_TEST_NAME>.jsonl`` (one JSON line per event:
``start``, ``held``, ``done``, with the wall-clock time), written unbuffered so that a process
killed with SIGKILL loses nothing it wrote.

- A task whose payload has ``"hold": <path>`` waits until that file exists, then ends.
- Once the file named by ``TQ_TEST_ARM`` exists, every task this process starts is held
  until the process is killed (so it dies with a batch in hand).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from tq_aws import Actions, Task, TaskQueue

app = TaskQueue.from_env(batch_size=int(os.environ.get("TQ_TEST_BATCH", "5")))
NAME = os.environ.get("TQ_TEST_NAME", str(os.getpid()))
WAIT_LIMIT = 60.0


def log(event: str, task_id: str | None) -> None:
    directory = os.environ.get("TQ_TEST_LOG")
    if not directory:
        return
    line = json.dumps({"w": NAME, "e": event, "id": task_id, "t": time.time()}) + "\n"
    fd = os.open(os.path.join(directory, f"{NAME}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def wait_for_file(path: str, limit: float = WAIT_LIMIT) -> bool:
    for _ in range(int(limit / 0.02)):
        if os.path.exists(path):
            return True
        await asyncio.sleep(0.02)
    return False


async def record(task: Task, actions: Actions) -> None:
    log("start", task.id)
    arm = os.environ.get("TQ_TEST_ARM")
    if arm and os.path.exists(arm):
        log("held", task.id)
        await wait_for_file(os.path.join(os.path.dirname(arm), "never"))
    hold = (task.payload or {}).get("hold")
    if hold:
        await wait_for_file(str(hold))
    log("done", task.id)
    actions.success(task)


app.executor("work", "record")(record)
app.executor("mail", "record")(record)
