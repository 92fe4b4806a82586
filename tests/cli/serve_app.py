"""The app of the ``tq-aws status serve`` process test on the embedded default
(``--app tests.cli.serve_app:app``): on import it runs a customer's morning (mail sent, mail
bounced) so the serving process has something to show."""

from __future__ import annotations

import asyncio

from tests.cli.apps import register
from tq_aws import Entity, Task, TaskQueue

app = register(TaskQueue())
CUSTOMER = Entity(type="customer", id="c-1")


async def _morning() -> None:
    await app.add_tasks(
        [
            Task(
                id="m-sent", queue_id="mail", type="send", payload={"to": "a@b.c"}, entity=CUSTOMER
            ),
            Task(id="m-bounced", queue_id="mail", type="bounce", entity=CUSTOMER),
        ]
    )
    await app.run_until_idle()


asyncio.run(_morning())
