"""``tq-aws demo``: a morning at a small online shop, run on the embedded in-memory default.

Four customers place orders. Each ``orders/charge`` task reports its status on its customer
(an ``Entity``); a successful charge adds two child tasks: an ``emails/receipt`` and a
``reports/aggregate`` sale line due at the close of the morning, where one batch executor call
summarises every sale at once. Bob's card is declined twice and goes through on the third
attempt; Carol's charge fails for good (insufficient funds) once its retries are used up;
Dave's subscription renewal is scheduled a minute ahead, and a newsletter to him is cancelled
before it runs. At the close of the morning the sales batch adds a ``reports/month_end`` task,
which starts a flow: one ``warehouse/pick`` step per item sold (the flow fans out), and once
every pick has its final outcome one join task, ``reports/month_end.done``, gets all their
results (the flow fans in). A restocked shelf makes one pick wait for its retry; the ink is out
of stock, and with ``failure_policy="continue"`` the flow still joins, with that failure in its
results.

Time is simulated: a ``ManualClock`` is moved from one due moment to the next and the worker
runs everything due at each step (``TaskQueue.run_until_idle``), so retries with backoff and
scheduled tasks play out in a few seconds. On a terminal the entity status table (with the
flow's state from ``TaskQueue.flow_status``) and the last lifecycle events are redrawn live;
otherwise the events are printed as a plain log. Both end with the final status table and a
summary checked against the story.

The package has one module per concern: ``shop`` (the shop's orders and ``build_shop``: it is
ordinary tq-aws application code), ``monitor`` (the lifecycle events and log lines it is watched
through), ``screen`` (drawing with Rich) and ``story`` (the driver, ``play``, and the checks that
the run ended as the story says, ``problems``).
"""

from __future__ import annotations

import logging

from tq_aws.demo.monitor import ShopMonitor, library_logs_to
from tq_aws.demo.screen import FRAME_PAUSE, Screen, Snapshot, status_table
from tq_aws.demo.shop import (
    CLOSE_OF_MORNING,
    CUSTOMERS,
    OPENING,
    ORDERS,
    OUT_OF_STOCK,
    RESTOCKING,
    SHOP,
    Order,
    build_shop,
    customer,
    order_tasks,
)
from tq_aws.demo.story import (
    EXPECTED,
    EXPECTED_FLOW,
    EXPECTED_STATS,
    ShopDay,
    play,
    problems,
    run_demo,
)
from tq_aws.testing.clock import ManualClock

logger = logging.getLogger(__name__)

__all__ = [
    "CLOSE_OF_MORNING",
    "CUSTOMERS",
    "EXPECTED",
    "EXPECTED_FLOW",
    "EXPECTED_STATS",
    "FRAME_PAUSE",
    "OPENING",
    "ORDERS",
    "OUT_OF_STOCK",
    "RESTOCKING",
    "SHOP",
    "ManualClock",
    "Order",
    "Screen",
    "ShopDay",
    "ShopMonitor",
    "Snapshot",
    "build_shop",
    "customer",
    "library_logs_to",
    "order_tasks",
    "play",
    "problems",
    "run_demo",
    "status_table",
]
