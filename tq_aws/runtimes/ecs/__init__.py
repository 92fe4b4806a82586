"""The long-running worker (ECS, or any host): Kinesis shards under leases, SQS queues.

``EcsWorker(app).run()`` (or ``tq-aws worker --app module:attr``) consumes what a
``TaskQueue.aws(...)`` app's routing names: the Kinesis stream and every SQS queue.

The rooms:

- ``worker``: ``EcsWorker``, what it consumes, starting its loops, draining on a stop request.
- ``options``: ``WorkerOptions``, the checked options.
- ``shard_leases``: the lease round (renew, list shards, take, balance, hand over).
- ``kinesis_consumer``: one held shard's reader and its fenced lease writes.
- ``sqs_consumer``: one queue's loop (long polling, prefetch, visibility heartbeats).
- ``stats``: ``WorkerStats`` and the ``WorkerReport`` that ``run`` returns.
- ``timing``: pauses and backoff shared by the loops.

Each module's docstring tells how its part works.
"""

from __future__ import annotations

from tq_aws.runtimes.ecs.options import InitialPosition, WorkerOptions
from tq_aws.runtimes.ecs.stats import WorkerReport, WorkerStats
from tq_aws.runtimes.ecs.worker import EcsWorker

__all__ = ["EcsWorker", "InitialPosition", "WorkerOptions", "WorkerReport", "WorkerStats"]
