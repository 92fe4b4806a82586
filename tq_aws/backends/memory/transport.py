"""Memory transport: one FIFO of encoded records per queue id.

Records are encoded with the wire codec, exactly as on Kinesis or SQS, so a payload that would
not survive the trip on AWS fails here too. Received records stay in flight until acknowledged;
``nack`` puts them back at the head of their queue in their original order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from itertools import count

from tq_aws.core.codec import encode_task
from tq_aws.core.limits import MAX_PARTITION_KEY_CHARS, partition_key_problem
from tq_aws.core.task import Task
from tq_aws.errors import InvalidPartitionKeyError
from tq_aws.ports import Delivery

logger = logging.getLogger(__name__)


class MemoryTransport:
    """Transport and polling source in one, for the local runtime and tests."""

    def __init__(self, *, compress_over: int | None = None) -> None:
        self._queues: dict[str, deque[tuple[int, bytes, str | None]]] = {}
        self._seq = count(1)
        self._compress_over = compress_over
        self.in_flight = 0
        self.published = 0
        self._turn = -1

    async def publish(self, tasks: Sequence[Task]) -> None:
        """Append each task's record to its queue. Every task is encoded and its key checked
        before any is appended, as the AWS transports check before they send."""
        records = []
        for task in tasks:
            key = task.partition_key or task.id
            if key is not None:
                problem = partition_key_problem(key)
                if problem is not None:
                    raise InvalidPartitionKeyError(
                        f"task {task.id!r}: its partition key {problem}: give 1 to "
                        f"{MAX_PARTITION_KEY_CHARS} characters (the Kinesis limit)",
                        task_id=task.id,
                        field="partition_key",
                        value=key,
                    )
            data = encode_task(task, compress_over=self._compress_over)
            records.append((task.queue_id, data, key))
        for queue_id, data, key in records:
            self.put_raw(queue_id, data, key)
        self.published += len(tasks)

    def put_raw(self, queue_id: str, data: bytes, partition_key: str | None = None) -> None:
        """Append an already-encoded record (tests use it to inject undecodable records)."""
        self._queues.setdefault(queue_id, deque()).append((next(self._seq), data, partition_key))

    async def receive(self, max_records: int) -> list[Delivery]:
        """The next batch from the queues that have records, taken in turn."""
        ready = self.queues_with_work()
        if not ready:
            return []
        self._turn = (self._turn + 1) % len(ready)
        return await self.receive_from(ready[self._turn], max_records)

    async def receive_from(self, queue_id: str, max_records: int) -> list[Delivery]:
        """The next batch of one queue."""
        queue = self._queues.get(queue_id)
        out: list[Delivery] = []
        while queue and len(out) < max_records:
            seq, data, key = queue.popleft()
            out.append(
                Delivery.decode(
                    queue_id, data, f"memory:{queue_id}:{seq}", partition_key=key, token=seq
                )
            )
        self.in_flight += len(out)
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.in_flight -= len(deliveries)

    async def nack(self, deliveries: Sequence[Delivery]) -> None:
        self.in_flight -= len(deliveries)
        by_queue: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_queue.setdefault(d.queue_id, []).append(d)
        for queue_id, items in by_queue.items():
            queue = self._queues.setdefault(queue_id, deque())
            for d in sorted(items, key=lambda d: d.token, reverse=True):
                queue.appendleft((d.token, d.data, d.partition_key))

    def queues_with_work(self) -> list[str]:
        return [q for q, items in self._queues.items() if items]

    def pending(self, queue_id: str | None = None) -> int:
        """Records waiting (in one queue, or in all)."""
        if queue_id is not None:
            return len(self._queues.get(queue_id, ()))
        return sum(len(q) for q in self._queues.values())
